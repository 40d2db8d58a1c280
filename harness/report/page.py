"""The HTML shell of a report: one self-contained file (plotly.js and the table sorter inline).

Sections are HTML strings in document order; figures are plotly figures rendered without their
library, which the page's head holds once, so the file opens offline and without a CDN.
"""

from __future__ import annotations

import base64
import html
import json
import math
import uuid
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from harness.results.leaderboard import cell_text

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1400px; padding: 0 1em;
       color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
nav a { margin-right: 1em; }
.note { color: #666; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
td.num { text-align: right; white-space: nowrap; }
td.reason { min-width: 28em; }
table.sortable th { cursor: pointer; user-select: none; background: #f4f4f4; position: sticky;
                    top: 0; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
tr.completed td:first-child { border-left: 4px solid #2a9d4b; }
tr.pruned td:first-child { border-left: 4px solid #999; }
tr.stopped td:first-child, tr.errored td:first-child { border-left: 4px solid #d62728; }
.flag { color: #d62728; font-weight: 600; }
.listen td { vertical-align: middle; }
.listen audio { width: 260px; display: block; }
"""

# Click a header to sort by it; again to reverse.  Cells with data-v sort as numbers.
SORTER = """
document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("table.sortable")) {
    table.querySelectorAll("th").forEach((th, col) => th.addEventListener("click", () => {
      const down = th.getAttribute("aria-sort") === "ascending";
      table.querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", down ? "descending" : "ascending");
      const key = row => {
        const cell = row.children[col];
        const v = cell.dataset.v;
        return v === undefined ? cell.textContent : (v === "" ? NaN : Number(v));
      };
      const rows = [...table.tBodies[0].rows];
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        if (typeof x === "number") {  // missing numbers last, either way
          if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);
          return down ? y - x : x - y;
        }
        return down ? y.localeCompare(x) : x.localeCompare(y);
      });
      table.tBodies[0].append(...rows);
    }));
  }
});
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


# plotly.js reads arrays in this form (base64, typed); far smaller than JSON number lists
TYPED = {np.dtype(code): code for code in ("f4", "f8", "i1", "i2", "i4")}


def _js_value(value: Any) -> Any:
    """json.dumps ``default``: NumPy arrays as plotly.js typed arrays, scalars as numbers."""
    if isinstance(value, np.ndarray):
        if value.dtype == np.int64:  # steps, counters: float64 holds them exactly to 2**53
            value = value.astype(np.float64)
        if value.dtype == bool:
            value = value.astype(np.int8)
        if value.dtype not in TYPED:
            return value.tolist()
        typed = {"dtype": TYPED[value.dtype], "bdata": base64.b64encode(value.tobytes()).decode()}
        if value.ndim > 1:
            typed["shape"] = ", ".join(str(n) for n in value.shape)
        return typed
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot put {type(value).__name__} in a figure")


def figure(
    fig: go.Figure | dict[str, Any], height: int, width: int | None = None, modebar: bool = True
) -> str:
    """A plotly figure as a div and the script that draws it (the library is in the head).

    Plain ``{"data": [...], "layout": {...}}`` dicts skip plotly.py's validation, which costs
    far more than the drawing; NumPy arrays in them go out as typed arrays.
    """
    if isinstance(fig, go.Figure):
        spec = fig.to_json()
    else:
        spec = json.dumps(fig, default=_js_value, separators=(",", ":"))
    spec = spec.replace("</", "<\\/")  # a "</script>" inside a hover text must not end the script
    div = f"fig-{uuid.uuid4().hex[:12]}"
    size = f"height:{height}px;" + (f"width:{width}px;" if width else "")
    config = json.dumps({"displaylogo": False, "responsive": True, "displayModeBar": modebar})
    return (
        f'<div id="{div}" style="{size}"></div><script>(() => {{const f = {spec};'
        f"f.layout.height = {height};"
        + (f"f.layout.width = {width};" if width else "")
        + f'Plotly.newPlot("{div}", f.data, f.layout, {config});}})();</script>'
    )


def number_text(value: Any) -> str:
    """How a table cell shows a value: 4 significant digits, '-' for missing, 'yes' for a flag."""
    return cell_text(value, yes="yes")


def cell(value: Any, link: str | None = None) -> str:
    """A <td>; numbers carry their value for the sorter and align right."""
    text = esc(number_text(value))
    if link:
        text = f'<a href="{esc(link)}">{text}</a>'
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if is_number:
        sort_value = "" if math.isnan(value) else repr(float(value))
        return f'<td class="num" data-v="{sort_value}">{text}</td>'
    return f"<td>{text}</td>"


def table(header: list[str], rows: list[str], sortable: bool = True) -> str:
    """A table from header names and ready-made ``<tr>`` rows."""
    kind = ' class="sortable"' if sortable else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    return (
        f'<div class="scroll"><table{kind}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def document(title: str, intro: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole page: ``sections`` are (anchor, title, body html), linked from a contents bar."""
    nav = " ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    body = "".join(section(a, t, b) for a, t, b in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script>'
        f"<script>{SORTER}</script></head><body>"
        f"<header><h1>{esc(title)}</h1>{intro}<nav>{nav}</nav></header>{body}</body></html>"
    )
