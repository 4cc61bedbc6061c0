"""The audit log: the auditor's pages and the CSV export."""
