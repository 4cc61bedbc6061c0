"""audit_chain_heads: the head (last seq and hash) of the audit log's hash chain.

One row (chain = 'audit_logs'). The audit_logs BEFORE INSERT trigger locks it (SELECT ... FOR
UPDATE), so concurrent writers queue on this row and the chain never forks; it links the entry to
the head, or to the transaction's own last entry, and a deferred trigger moves the head once at
commit. `flask audit verify` checks that the last entry is the head (a removed tail shows), and the
hourly anchor job exports it to object storage (docs/audit.md).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from governance.models.base import Base, Timestamps, UUIDPk

AUDIT_CHAIN = "audit_logs"


class AuditChainHead(UUIDPk, Timestamps, Base):
    __tablename__ = "audit_chain_heads"

    # The chain it heads; unique, so two first writers cannot each create a head.
    chain: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)

    def __repr__(self) -> str:
        return f"<AuditChainHead {self.chain} {self.seq}>"
