"""The statement of applicability as PDF (WeasyPrint), rendered in the gov:render_report job.

Nothing remote is ever fetched: WeasyPrint asks its url_fetcher for every stylesheet, image,
font and url() the document names, and ours answers only the report's own stylesheet, read from
static/css/report.css on disk. Anything else (an <img src="http://..."> or a url() that slipped
into a control title, a file: path) is refused and noted in `refused`; data the template shows is
autoescaped by Jinja, so a title's markup is text in the PDF, not markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from governance.services.reports.soa import NO_RESULT, PERIOD_NOTE, SoA

ROOT = Path(__file__).resolve().parents[3]
STYLESHEET = ROOT / "static" / "css" / "report.css"
TEMPLATE = "reports/soa_pdf.html"
# A plain Jinja environment on the app's templates (the job has no Flask app): autoescaped HTML.
_ENV = Environment(loader=FileSystemLoader(ROOT / "templates"), autoescape=select_autoescape(["html"]))


def _weasyprint() -> Any:
    import weasyprint  # type: ignore[import-untyped]  # imported on use: only the job renders PDFs

    return weasyprint


class LocalOnlyFetcher:
    """A WeasyPrint URL fetcher that serves exactly one file (the stylesheet) and refuses the rest."""

    def __init__(self, allowed: Path = STYLESHEET) -> None:
        self.allowed_url = allowed.as_uri()
        self.allowed = allowed
        self.refused: list[str] = []
        self.served: list[str] = []
        # WeasyPrint reads this on its fetchers: a refusal is a warning, the rendering goes on.
        self._fail_on_errors = False

    def __call__(self, url: str) -> Any:
        return self.fetch(url)

    def fetch(self, url: str, headers: Any = None) -> Any:
        if url.split("?")[0].split("#")[0] == self.allowed_url:
            self.served.append(url)
            return _weasyprint().urls.URLFetcherResponse(
                url, self.allowed.read_bytes(), {"Content-Type": "text/css; charset=utf-8"})
        self.refused.append(url)
        raise ValueError(f"report rendering fetches nothing but its stylesheet (refused {url[:200]!r})")


def html(soa: SoA, *, as_of: str, report_id: str) -> str:
    return _ENV.get_template(TEMPLATE).render(soa=soa, as_of=as_of, report_id=report_id,
                                             stylesheet=STYLESHEET.name, period_note=PERIOD_NOTE,
                                             no_result=NO_RESULT)


def render(soa: SoA, *, as_of: str, report_id: str,
           fetcher: LocalOnlyFetcher | None = None) -> bytes:
    fetcher = fetcher or LocalOnlyFetcher()
    document = _weasyprint().HTML(string=html(soa, as_of=as_of, report_id=report_id),
                                  base_url=STYLESHEET.parent.as_uri() + "/", url_fetcher=fetcher)
    pdf: bytes = document.write_pdf()
    return pdf
