"""Audit-ready reports (docs/reports.md): the statement of applicability data (soa), its three
renderings (render_pdf, render_csv, oscal) and the requests, the job and the downloads (service)."""
