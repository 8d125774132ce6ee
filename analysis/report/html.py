"""The HTML report: the executed notebooks as one self-contained page, code hidden.

The page is meant to be mailed, archived or opened on a phone without a network: no scripts, no
external stylesheets or fonts, images embedded as data URIs, a small inline stylesheet that
narrows to the screen. Readers see the notebooks' text, tables and figures, with a table of
contents built from the notebooks' headings; cells tagged ``remove`` are left out entirely, and
a run on synthetic data carries a "SYNTHETIC DATA" banner.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["render_html"]

REMOVE_CELL_TAGS = frozenset({"remove", "remove-cell", "remove_cell"})
"""Cells with one of these tags do not appear in the report at all."""

REMOVE_OUTPUT_TAGS = frozenset({"remove-output", "remove_output"})
"""Cells with one of these tags appear without their output."""

# papermill's parameter cells hold code only, with code hidden they would be empty boxes; its
# error banners only appear in a notebook that failed, which is not rendered anyway
_PAPERMILL_TAGS = frozenset({"parameters", "injected-parameters", "papermill-error-cell-tag"})

SYNTHETIC_NOTICE = "SYNTHETIC DATA \u2014 not a real platform"

_STYLESHEET = """
:root { --ink: #1d1d1f; --muted: #5f6368; --rule: #d9dce1; --accent: #0173b2; --warn: #b3261e; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 17px/1.55 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
.page { max-width: 52rem; margin: 0 auto; padding: 1.25rem 1rem 3rem; }
.synthetic-banner { position: sticky; top: 0; z-index: 10; margin: 0; padding: .55rem 1rem;
  background: var(--warn); color: #fff; font-weight: 700; letter-spacing: .04em; text-align: center; }
header.report-header { border-bottom: 2px solid var(--ink); margin-bottom: 1.5rem; padding-bottom: .75rem; }
header.report-header h1 { font-size: 1.9rem; line-height: 1.2; margin: .6rem 0 .3rem; }
header.report-header p { color: var(--muted); margin: .2rem 0; }
nav.toc { background: #f5f6f8; border: 1px solid var(--rule); border-radius: 6px; padding: .75rem 1rem;
  margin-bottom: 2rem; font-size: .95rem; }
nav.toc h2 { font-size: 1rem; margin: 0 0 .4rem; text-transform: uppercase; letter-spacing: .05em; }
nav.toc ol { margin: 0; padding-left: 1.2rem; }
nav.toc ol ol { padding-left: 1.1rem; }
nav.toc a { color: var(--accent); text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
section.notebook { border-top: 1px solid var(--rule); padding-top: 1rem; margin-top: 2rem; }
section.notebook:first-of-type { border-top: 0; margin-top: 0; }
h1, h2, h3, h4 { line-height: 1.25; scroll-margin-top: 3rem; }
main h1 { font-size: 1.6rem; } main h2 { font-size: 1.3rem; } main h3 { font-size: 1.1rem; }
a { color: var(--accent); }
img, svg { max-width: 100%; height: auto; }
pre { white-space: pre-wrap; word-break: break-word; background: #f5f6f8; padding: .6rem .8rem;
  border-radius: 4px; font-size: .85rem; overflow-x: auto; }
code { font-size: .9em; }
table { border-collapse: collapse; font-size: .85rem; margin: .75rem 0; display: block; max-width: 100%;
  overflow-x: auto; font-variant-numeric: tabular-nums; }
th, td { border: 0; border-bottom: 1px solid var(--rule); padding: .3rem .6rem; text-align: right;
  vertical-align: top; }
th { background: #f5f6f8; }
th:first-child, td:first-child { text-align: left; }
blockquote { border-left: 3px solid var(--rule); margin-left: 0; padding-left: 1rem; color: var(--muted); }
.output_stderr pre { background: #fff8e6; }
footer.report-footer { color: var(--muted); font-size: .85rem; border-top: 1px solid var(--rule);
  margin-top: 3rem; padding-top: .75rem; }
@media (max-width: 40rem) { body { font-size: 16px; } header.report-header h1 { font-size: 1.5rem; } }
@media print { .synthetic-banner { position: fixed; left: 0; right: 0; } nav.toc { break-after: page; } }
"""


def render_html(
    notebooks: Sequence[str | Path],
    out_html: str | Path,
    *,
    title: str,
    synthetic: bool,
) -> Path:
    """Render executed notebooks as one offline HTML report with the code hidden.

    Parameters
    ----------
    notebooks : list of str or Path
        Executed notebooks (e.g. from :func:`analysis.report.execute_notebooks`), in reading
        order; each becomes a section of the page.
    out_html : str or Path
        The file to write (its folder is created if missing).
    title : str
        Title shown at the top of the page and in the browser tab.
    synthetic : bool
        Whether the results come from simulated data; if so, a "SYNTHETIC DATA" banner stays at
        the top of the screen (and of every printed page).

    Returns
    -------
    Path
        ``out_html``.

    Notes
    -----
    Cells tagged ``remove`` (or ``remove-cell``) are dropped, cells tagged ``remove-output``
    keep no output. All ``<script>`` elements and external stylesheets are removed, so the page
    loads nothing from the network; links in the text stay clickable.

    Examples
    --------
    >>> render_html(["reports/sample/notebooks/01-data.ipynb"], "reports/sample/report.html",
    ...             title="Does money buy leniency?", synthetic=True)  # doctest: +SKIP
    PosixPath('reports/sample/report.html')
    """
    try:
        import nbformat
        from bs4 import BeautifulSoup
        from nbconvert import HTMLExporter
        from nbconvert.preprocessors import TagRemovePreprocessor
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError(
            "the HTML report needs the report extras: pip install 'levelfield[report]'"
        ) from error

    exporter = HTMLExporter(
        template_name="basic",  # the cells only: the page around them is ours, with no CDN links
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    exporter.register_preprocessor(
        TagRemovePreprocessor(
            remove_cell_tags=set(REMOVE_CELL_TAGS | _PAPERMILL_TAGS),
            remove_all_outputs_tags=set(REMOVE_OUTPUT_TAGS),
            enabled=True,
        ),
        enabled=True,
    )

    sections = []
    for number, path in enumerate(map(Path, notebooks), start=1):
        notebook = nbformat.read(path, as_version=4)
        body, _ = exporter.from_notebook_node(
            notebook, resources={"metadata": {"path": str(_source_folder(notebook, path)), "name": path.stem}}
        )
        sections.append(
            f'<section class="notebook" id="nb-{number}" data-notebook="{html.escape(path.name)}">'
            f"{body}</section>"
        )

    soup = BeautifulSoup("\n".join(sections), "html.parser")
    _make_offline(soup)
    toc = _number_headings(soup)

    from analysis import __version__

    banner = f'<p class="synthetic-banner" role="note">{SYNTHETIC_NOTICE}</p>\n' if synthetic else ""
    notice = (
        "<p><strong>Every number on this page comes from simulated data, generated to test the "
        "methods.</strong> It describes no real platform, account or advertiser.</p>"
        if synthetic
        else ""
    )
    document = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="levelfield {html.escape(__version__)}">
<title>{html.escape(title)}</title>
<style>{_STYLESHEET}</style>
</head>
<body>
{banner}<div class="page">
<header class="report-header">
<h1>{html.escape(title)}</h1>
{notice}
</header>
{_toc_html(toc)}
<main>
{soup.decode(formatter="minimal")}
</main>
<footer class="report-footer">
<p>Made with levelfield {html.escape(__version__)}. Rerunning the notebooks reproduces every
figure and number above; each test is named by its id in results.json.</p>
</footer>
</div>
</body>
</html>
"""
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    return out


def _source_folder(notebook: Any, path: Path) -> Path:
    """Where the notebook was written: pictures in its text are relative to that folder.

    An executed copy lives in the run folder, but papermill records the original's path.
    """
    original = notebook.metadata.get("papermill", {}).get("input_path")
    if original and Path(original).parent.is_dir():
        return Path(original).parent.resolve()
    return path.parent.resolve()


def _make_offline(soup: Any) -> None:
    """Remove everything that would make the page reach the network or run code."""
    for tag in soup.find_all(["script", "link", "iframe", "object", "embed"]):
        tag.decompose()
    for style in soup.find_all("style"):
        text = style.string or ""
        if "@import" in text:
            style.string = re.sub(r"@import[^;]*;", "", text)
    for image in soup.find_all("img"):
        source = image.get("src", "")
        if not source.startswith("data:"):
            # a picture that was not embedded: keep a link to it rather than fetch it on load
            link = soup.new_tag("a", href=source)
            link.string = image.get("alt") or source
            image.replace_with(link)
        elif image.get("alt") == "No description has been provided for this image":
            image["alt"] = "Figure"
    for anchor in soup.find_all("a", class_="anchor-link"):
        anchor.decompose()


def _slug(text: str) -> str:
    return re.sub(r"[^\w]+", "-", text.lower()).strip("-") or "section"


def _number_headings(soup: Any) -> list[tuple[int, str, str]]:
    """Give every heading of the notebooks a unique id; return (level, id, text) for the contents."""
    seen: dict[str, int] = {}
    toc = []
    for heading in soup.find_all(["h1", "h2", "h3"]):
        text = heading.get_text(" ", strip=True)
        if not text:
            continue
        slug = _slug(text)
        seen[slug] = seen.get(slug, 0) + 1
        anchor = slug if seen[slug] == 1 else f"{slug}-{seen[slug]}"
        heading["id"] = anchor
        toc.append((int(heading.name[1]), anchor, text))
    return toc


def _toc_html(toc: list[tuple[int, str, str]]) -> str:
    """Nested ordered lists of the headings; a jump of two levels is nested only one deeper."""
    if not toc:
        return ""
    top = min(level for level, _, _ in toc)
    parts = ['<nav class="toc" aria-label="Contents">', "<h2>Contents</h2>", "<ol>"]
    depth = None
    for level, anchor, text in toc:
        level = top if depth is None else max(top, min(level, depth + 1))
        if depth is not None:
            if level > depth:
                parts.append("<ol>")
            else:
                parts.append("</li>" + "</ol></li>" * (depth - level))
        depth = level
        parts.append(f'<li><a href="#{html.escape(anchor)}">{html.escape(text)}</a>')
    parts.append("</li>" + "</ol></li>" * (depth - top) + "</ol>")
    parts.append("</nav>")
    return "\n".join(parts)
