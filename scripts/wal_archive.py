"""PostgreSQL's archive_command / restore_command and base backups: see governance/wal_archive.py.

    archive_command = '/srv/governance/.venv/bin/python /srv/governance/scripts/wal_archive.py push %p %f'
    restore_command = '/srv/governance/.venv/bin/python /srv/governance/scripts/wal_archive.py fetch %f %p'

Runs once per WAL segment, so it loads only what it needs (no Flask app): see docs/operations.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governance.wal_archive import main

if __name__ == "__main__":
    sys.exit(main())
