"""One trial's diagnostics over training steps, from its Parquet step and eval rows.

Panels (only those with data), stacked on one step axis: the objective at each validation;
loss_d / loss_g; D(real) and D(fake) per discriminator group; D accuracy with the overpowering
threshold; gradient norms; the health scores with the line where a condition holds and the
steps where a flag fired; the learning rates; the skip counters.  Long runs are thinned to at
most :data:`MAX_POINTS` step rows.  Figures are plain plotly dicts (see ``page.figure``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.diagnostics.detectors import HealthConfig

MAX_POINTS = 2000
PANEL_HEIGHT = 170  # pixels per panel
GAP = 0.04  # share of the figure's height between two panels
HEALTH = {"collapse": "collapse_score", "overpower": "overpower_score"}
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")


@dataclass
class Panel:
    title: str
    traces: list[dict[str, Any]] = field(default_factory=list)
    log_y: bool = False
    lines: list[tuple[float, str]] = field(default_factory=list)  # horizontal: (y, label)
    marks: list[tuple[int, str]] = field(default_factory=list)  # vertical: (step, label)


def thin(rows: pd.DataFrame, limit: int = MAX_POINTS) -> pd.DataFrame:
    """Every n-th row so that at most ``limit`` (+1: the last row is always kept) remain."""
    if len(rows) <= limit:
        return rows
    keep = list(range(0, len(rows), -(-len(rows) // limit)))
    if keep[-1] != len(rows) - 1:
        keep.append(len(rows) - 1)
    return rows.iloc[keep]


def _trace(x: Any, y: Any, name: str, **style: Any) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines",
        "x": np.asarray(x, dtype=float),
        "y": np.asarray(y, dtype=float),
        "name": name,
        **style,
    }


def _lines(rows: pd.DataFrame, *columns: str, **style: Any) -> list[dict[str, Any]]:
    """One line per column that has any value, over the training step."""
    present = [c for c in columns if c in rows and rows[c].notna().any()]
    return [_trace(rows["step"], rows[c], c, **style) for c in present]


def group_traces(steps: pd.DataFrame) -> list[dict[str, Any]]:
    """D(real) solid and D(fake) dashed, one colour per discriminator group."""
    maps = steps["d_real_by_group"].dropna() if "d_real_by_group" in steps else []
    groups = sorted({g for m in maps for g in m})
    if not groups:  # no per-group map: the means over groups
        return _lines(steps, "d_real_mean", "d_fake_mean")
    traces = []
    for i, group in enumerate(groups):
        colour = COLOURS[i % len(COLOURS)]
        for side, dash in (("real", "solid"), ("fake", "dash")):
            values = [(m or {}).get(group, np.nan) for m in steps[f"d_{side}_by_group"]]
            style = {"line": {"color": colour, "dash": dash}}
            traces.append(_trace(steps["step"], values, f"D({side}) {group}", **style))
    return traces


def flag_marks(rows: pd.DataFrame) -> list[tuple[int, str]]:
    """(step, label) where each health flag was first raised, with the first step of its window."""
    marks = []
    for flag in HEALTH:
        column = f"flag_{flag}"
        if column not in rows:
            continue
        raised = rows[rows[column].fillna(False).astype(bool)]
        if raised.empty:
            continue
        first = raised.iloc[0]
        since = first.get(f"{flag}_since")
        label = f"{flag} flagged" + ("" if pd.isna(since) else f" (since step {int(since)})")
        marks.append((int(first["step"]), label))
    return marks


def panels(steps: pd.DataFrame, evals: pd.DataFrame, objective: str, window: int) -> list[Panel]:
    """The panels that have data, top to bottom; ``window``: the trial's flag window."""
    health = HealthConfig(window=window)
    both = pd.concat([steps, evals]).sort_values("step", kind="stable")
    out = [
        Panel(f"validation {objective}", _lines(evals, objective, mode="lines+markers")),
        Panel("losses", _lines(steps, "loss_d", "loss_g")),
        Panel("discriminator outputs (raw): real solid, fake dashed", group_traces(steps)),
        Panel(
            "D accuracy",
            _lines(steps, "d_acc"),
            lines=[(health.acc_high, f"overpowering needs d_acc >= {health.acc_high}")],
        ),
        Panel(
            "gradient norms (before clipping)",
            _lines(steps, "grad_norm_g", "grad_norm_d", "adv_grad_norm"),
            log_y=True,
        ),
        Panel(
            "health scores",
            _lines(both, *HEALTH.values(), mode="lines+markers", connectgaps=True),
            lines=[(1.0, f"condition holds; flagged after {health.window} windows in a row")],
            marks=flag_marks(both),
        ),
        Panel("learning rates", _lines(steps, "lr_g", "lr_d"), log_y=True),
        Panel(
            "skipped updates (cumulative)",
            _lines(steps, "nonfinite_skips", "oom_skips", "scaler_skips", "threshold_skips"),
        ),
    ]
    return [p for p in out if p.traces]


def trial_figure(
    steps: pd.DataFrame, evals: pd.DataFrame, objective: str, window: int
) -> tuple[dict[str, Any], int] | None:
    """(plotly dict, height in pixels) of all panels of one trial, each panel with its own
    legend beside it; None if the trial has no rows."""
    drawn = panels(thin(steps.sort_values("step")), evals.sort_values("step"), objective, window)
    if not drawn:
        return None
    n = len(drawn)
    span = (1 - GAP * (n - 1)) / n
    layout: dict[str, Any] = {"showlegend": True, "margin": {"t": 30, "r": 260}}
    data, shapes, notes = [], [], []
    for i, panel in enumerate(drawn):
        top = 1 - i * (span + GAP)
        k = "" if i == 0 else str(i + 1)
        layout[f"xaxis{k}"] = {"anchor": f"y{k}", "showticklabels": i == n - 1}
        if k:
            layout[f"xaxis{k}"]["matches"] = "x"  # one step axis: zoom one panel, zoom all
        layout[f"yaxis{k}"] = {"domain": [top - span, top], "type": "log" if panel.log_y else "-"}
        layout[f"legend{k}"] = {"y": top, "yanchor": "top", "x": 1.01, "font": {"size": 11}}
        notes.append(_text(0, f"x{k} domain", top, "paper", f"<b>{panel.title}</b>", "bottom"))
        axes = {"xaxis": f"x{k}", "yaxis": f"y{k}", "legend": f"legend{k}"}
        for j, trace in enumerate(panel.traces):  # the same colours in every panel and trial
            line = {"color": COLOURS[j % len(COLOURS)], **trace.get("line", {})}
            data.append({**trace, **axes, "line": line, "marker": {"color": line["color"]}})
        for y, label in panel.lines:
            shapes.append(_rule("y", y, f"x{k} domain", f"y{k}", "#888"))
            notes.append(_text(1, f"x{k} domain", y, f"y{k}", label, "bottom", "right"))
        for step, label in panel.marks:
            shapes.append(_rule("x", step, f"x{k}", f"y{k} domain", "#d62728"))
            notes.append(_text(step, f"x{k}", 1, f"y{k} domain", label, "top", "left", "#d62728"))
    layout[f"xaxis{'' if n == 1 else n}"]["title"] = {"text": "training step"}
    layout.update(shapes=shapes, annotations=notes)
    return {"data": data, "layout": layout}, PANEL_HEIGHT * n + 80


def _rule(axis: str, at: float, xref: str, yref: str, colour: str) -> dict[str, Any]:
    """A dotted line across a panel: vertical at x = ``at`` or horizontal at y = ``at``."""
    x0, x1, y0, y1 = (at, at, 0, 1) if axis == "x" else (0, 1, at, at)
    line = {"dash": "dot", "color": colour}
    return {
        "type": "line",
        "xref": xref,
        "yref": yref,
        "x0": x0,
        "x1": x1,
        "y0": y0,
        "y1": y1,
        "line": line,
    }


def _text(
    x: float,
    xref: str,
    y: float,
    yref: str,
    text: str,
    yanchor: str,
    xanchor: str = "left",
    colour: str = "#444",
) -> dict[str, Any]:
    """A label placed at (x, y) in the given axis or domain coordinates."""
    font = {"color": colour, "size": 11}
    return {
        "x": x,
        "xref": xref,
        "y": y,
        "yref": yref,
        "text": text,
        "showarrow": False,
        "xanchor": xanchor,
        "yanchor": yanchor,
        "font": font,
    }
