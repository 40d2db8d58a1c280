"""A population-based trial's schedule: its mutable keys over the batches its weights trained,
coloured by the trial that trained each stretch, with a line where it continued a donor's
checkpoint (red where that copy rescued a trial from a health flag).  Plain plotly dicts, as
harness/report/trial_plots.py draws them."""

from __future__ import annotations

import html
from typing import Any

from harness.runs.schedule import RESCUE_PREFIX, Segment

PANEL_HEIGHT = 150
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def schedule_figure(segments: list[Segment], reached: int) -> tuple[dict[str, Any], int]:
    """(plotly dict, height): one panel per mutable key, from batch 0 to ``reached``."""
    keys = sorted({key for s in segments for key in s.params})
    trainers = list(dict.fromkeys(s.trial or "?" for s in segments))
    colour = {t: COLOURS[i % len(COLOURS)] for i, t in enumerate(trainers)}
    n = len(keys)
    gap = 0.06
    span = (1 - gap * (n - 1)) / n
    layout: dict[str, Any] = {"margin": {"t": 30, "r": 30}, "showlegend": True}
    data, shapes, notes = [], [], []
    legend_done: set[str] = set()
    for i, key in enumerate(keys):
        top = 1 - i * (span + gap)
        k = "" if i == 0 else str(i + 1)
        layout[f"xaxis{k}"] = {"anchor": f"y{k}", "showticklabels": i == n - 1}
        if k:
            layout[f"xaxis{k}"]["matches"] = "x"
        layout[f"yaxis{k}"] = {"domain": [top - span, top], "title": {"text": key}}
        for j, segment in enumerate(segments):
            end = segments[j + 1].batches if j + 1 < len(segments) else reached
            trainer = segment.trial or "?"
            value = segment.params.get(key)
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": [segment.batches, end],
                    "y": [value, value],
                    "xaxis": f"x{k}",
                    "yaxis": f"y{k}",
                    "line": {"color": colour[trainer], "width": 3},
                    "name": f"trained by {trainer}",
                    "legendgroup": trainer,
                    "showlegend": trainer not in legend_done,
                }
            )
            legend_done.add(trainer)
            if segment.donor is not None:
                shapes.append(copy_line(segment, k))
                if i == 0:
                    notes.append(copy_note(segment, copy_colour(segment)))
    layout[f"xaxis{'' if n == 1 else n}"]["title"] = {"text": "training batches"}
    layout.update(shapes=shapes, annotations=notes)
    return {"data": data, "layout": layout}, PANEL_HEIGHT * n + 90


def copy_colour(segment: Segment) -> str:
    """Red for a rescue of an unhealthy trial, grey for an ordinary exploit."""
    return "#d62728" if segment.reason.startswith(RESCUE_PREFIX) else "#888"


def copy_line(segment: Segment, axis: str) -> dict[str, Any]:
    """A dotted vertical line across the panel of ``axis`` where ``segment`` began as a copy."""
    return {
        "type": "line",
        "xref": f"x{axis}",
        "yref": f"y{axis} domain",
        "x0": segment.batches,
        "x1": segment.batches,
        "y0": 0,
        "y1": 1,
        "line": {"dash": "dot", "color": copy_colour(segment)},
    }


def copy_note(segment: Segment, colour: str) -> dict[str, Any]:
    """The words over the top panel at a copy: who copied whom, and whether it was a rescue."""
    rescue = segment.reason.startswith(RESCUE_PREFIX)
    label = f"{segment.trial} copies {segment.donor}" + (" (rescue)" if rescue else "")
    return {
        "x": segment.batches,
        "xref": "x",
        "y": 1,
        "yref": "y domain",
        "text": html.escape(label),
        "showarrow": False,
        "xanchor": "left",
        "yanchor": "bottom",
        "font": {"size": 10, "color": colour},
    }


def copies_text(copies: list[dict[str, Any]]) -> str:
    """One line for the copies a trial made itself (its own exploits), or ''."""
    if not copies:
        return ""
    parts = []
    for copy in copies:
        left = copy.get("left_at")
        where = f" (it was at batch {left})" if left is not None else ""
        parts.append(f"at batch {copy['batches']} from {copy['donor']}{where}: {copy['reason']}")
    return "copies this trial made: " + "; ".join(parts)
