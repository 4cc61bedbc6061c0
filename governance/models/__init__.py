"""Every table, imported so the metadata is complete."""

from governance.models.base import Base

__all__ = ["Base"]
