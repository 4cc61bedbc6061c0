"""Framework import and export: our JSON/YAML format and OSCAL catalogs (docs/framework-format.md)."""

from governance.services.framework_io.model import (
    MAX_ERRORS,
    FieldError,
    FrameworkConflictError,
    FrameworkFormatError,
    FrameworkIOError,
)
from governance.services.framework_io.ours import load_document
from governance.services.framework_io.service import (
    EXPORT_FORMATS,
    FORMATS,
    ImportResult,
    export_framework,
    find_framework,
    import_framework,
    parse,
    spec_from_db,
)

__all__ = [
    "EXPORT_FORMATS", "FORMATS", "MAX_ERRORS", "FieldError", "FrameworkConflictError", "FrameworkFormatError",
    "FrameworkIOError", "ImportResult", "export_framework", "find_framework", "import_framework",
    "load_document", "parse", "spec_from_db",
]
