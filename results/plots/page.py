"""Offline HTML pages of Plotly figures and HTML fragments, written atomically.

Pages open without a network connection: by default (``include_plotlyjs="directory"``) each
loads Plotly's ``plotly.min.js`` from its own folder, written there once
(:func:`write_plotlyjs`), so all the pages of a run folder share one 4.8 MB copy (copy the
page together with it); ``include_plotlyjs=True`` embeds plotly.js in the page instead. Files
are written atomically: a temporary file in the target folder is renamed over the target.
``tests/test_browser.py`` opens every kind of page in headless Chromium with the network cut
off and fails on a JavaScript error or a figure that draws nothing.

Plotly is imported lazily (:func:`_plotly`, by the rendering modules), so the data halves of
the plots (:mod:`results.plots.run_data`, :mod:`results.plots.pareto_data`) work without it.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_space.files import atomic_write_text

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "write_figures_html",
    "write_html",
    "write_page_html",
    "write_plotlyjs",
]

logger = logging.getLogger("results.plots")  # all plot modules share the plots' logger

PLOTLYJS_FILE = "plotly.min.js"  # the name Plotly's include_plotlyjs="directory" loads


def _plotly() -> tuple[Any, Any]:
    """Import Plotly lazily: ``(plotly.graph_objects, plotly.subplots.make_subplots)``."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError as err:
        raise ImportError(
            "the srnas plots need plotly to render figures; install it with `pip install plotly` "
            "(or `pip install -e .`, which pulls it in)"
        ) from err
    return go, make_subplots


def _check_include(include_plotlyjs: bool | str) -> None:
    if include_plotlyjs not in (True, "directory"):
        raise ValueError(
            f"include_plotlyjs={include_plotlyjs!r}; allowed: 'directory' (one plotly.min.js "
            "beside the pages, the default) or True (embedded in the page); both open offline"
        )


def write_plotlyjs(folder: str | os.PathLike[str]) -> Path:
    """Write Plotly's own ``plotly.min.js`` into ``folder`` (created) unless the same file is
    there already; returns its path. Pages written with ``include_plotlyjs="directory"`` load
    it from beside them, so every page of a folder shares one copy (about 4.8 MB)."""
    from plotly.offline import get_plotlyjs

    target = Path(folder) / PLOTLYJS_FILE
    text = get_plotlyjs()
    same_size = target.is_file() and target.stat().st_size == len(text.encode("utf-8"))
    if same_size and target.read_text(encoding="utf-8") == text:
        return target
    return _write_text_atomic(text, target)


def write_html(
    fig: go.Figure, path: str | os.PathLike[str], include_plotlyjs: bool | str = "directory"
) -> Path:
    """Write ``fig`` as a standalone HTML file that opens offline; returns the path.

    With ``include_plotlyjs="directory"`` (the default) the page loads ``plotly.min.js`` from
    its own folder, written there first by :func:`write_plotlyjs` (one copy per folder; keep
    the two files together when copying a page); with ``True`` plotly.js is embedded in the
    page (about 4.8 MB). There is never a CDN script tag. The parent folder is created if
    needed. The HTML goes to a temporary file in the same folder, which is then renamed over
    ``path`` (:func:`os.replace`), so readers never see a partial file; the temporary file is
    removed if anything fails.

    Raises:
        ValueError: ``include_plotlyjs`` is neither ``"directory"`` nor True.
    """
    _check_include(include_plotlyjs)
    if include_plotlyjs == "directory":
        write_plotlyjs(Path(path).parent)
    text = fig.to_html(include_plotlyjs=include_plotlyjs, full_html=True)
    return _write_text_atomic(text, path)


def _write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder (see
    :func:`write_html`); returns the path."""
    target = atomic_write_text(path, text)
    logger.info("Wrote %s (%.1f MB)", target, len(text) / 1e6)
    return target


def write_page_html(
    blocks: Sequence[go.Figure | str],
    path: str | os.PathLike[str],
    title: str,
    style: str = "",
    include_plotlyjs: bool | str = "directory",
) -> Path:
    """Write figures and HTML fragments into ONE offline HTML page; returns the path.

    ``blocks`` are shown in order, each in a ``<section>``: a Plotly figure is rendered as a div
    (plotly.js loaded once, with the first figure: from ``plotly.min.js`` beside the page with
    ``include_plotlyjs="directory"``, the default, see :func:`write_html`; embedded with
    ``True``), a string is inserted as it is (the caller escapes it). ``style`` is CSS for the
    page's ``<style>`` element. Written atomically like :func:`write_html`.

    Raises:
        ValueError: ``blocks`` is empty, or ``include_plotlyjs`` is neither ``"directory"``
            nor True.
    """
    if not blocks:
        raise ValueError("blocks is empty: pass at least one figure or HTML fragment")
    _check_include(include_plotlyjs)
    if include_plotlyjs == "directory" and not all(isinstance(b, str) for b in blocks):
        write_plotlyjs(Path(path).parent)
    parts = []
    embedded = False
    for i, block in enumerate(blocks):
        if isinstance(block, str):
            body = block
        else:
            body = block.to_html(
                include_plotlyjs=False if embedded else include_plotlyjs,
                full_html=False,
                div_id=f"figure-{i}",
            )
            embedded = True
        parts.append(f'<section id="section-{i}">\n{body}\n</section>')
    css = f"<style>\n{style}\n</style>\n" if style else ""
    page = (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n{css}</head>\n<body>\n"
        f'<h1 style="font-family: sans-serif">{html.escape(title)}</h1>\n'
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
    return _write_text_atomic(page, path)


def write_figures_html(
    figures: Sequence[go.Figure], path: str | os.PathLike[str], title: str = "Figures"
) -> Path:
    """Write several figures into ONE offline HTML page; returns the path.

    plotly.js is loaded once, with the first figure; the figures follow one another, each in
    a ``<section>`` (:func:`write_page_html`).

    Raises:
        ValueError: ``figures`` is empty.
    """
    if not figures:
        raise ValueError("figures is empty: pass at least one figure")
    return write_page_html(list(figures), path, title)
