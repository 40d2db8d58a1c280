"""A confirmation in words and as data: its candidates, the verdict, the guard metrics, the
procedure it ran and whether the search's ranking held.

Every verdict names the winner (the confirmed best of the K candidates), the seeds it ran, and
what the test could see: the smallest gain it detects with 80 % power, so "not better" always
reads "not better by more than X".  Gains are in the objective's better direction: positive means
the winner is better, also for a metric where lower is better.
"""

from __future__ import annotations

from typing import Any

from harness.results.confirmation_summary import (
    ConfirmationSummary,
    Confirmed,
    ranking_swaps,
    swap_p_value,
)
from harness.results.sequential import BETTER, BOUNDED, CATCH_UP, POWER, GuardCheck
from harness.results.stats import ALPHA
from harness.scoring.registry import SCORES


def _signed(x: float) -> str:
    return f"{x + 0.0:+.3g}"  # + 0.0: no "-0" for a difference of exactly nothing


def _p(p: float) -> str:
    return f"{p:.2g}"


def verdict_line(summary: ConfirmationSummary) -> str:
    """The winner against the paper default, decided or (while seeds remain) so far."""
    s, best, look = summary, summary.best, summary.progress.look
    if s.default is None:
        return "verdict: no paper default to compare the winner with (the space has no points)"
    if best is None:
        return "verdict: the search's winner is the paper default itself"
    lead = (
        "verdict: "
        if s.finished
        else "verdict so far (more seeds to run; the same command continues): "
    )
    if s.progress.outcome == CATCH_UP:
        return lead + (
            f"{best.label} now has the best confirmed mean, over {best.runs} seeds; it runs up to "
            f"the paper default's {s.progress.seeds} before the two are compared"
        )
    if look is None:
        return (
            lead
            + "too few completed seeds (2 each needed) to compare the winner and the paper default"
        )
    obj, level = s.objective, _p(look.level)
    if look.outcome == BETTER:
        said = (
            f"the winner is better than the paper default on {obj} beyond seed noise: gain "
            f"{_signed(look.stats.gain)}, at least {_signed(look.lower)} "
            f"(p = {_p(look.p_value)} < {level})"
        )
    elif look.outcome == BOUNDED:
        said = (
            f"the winner is not better than the paper default on {obj} by more than "
            f"{look.margin:g}, the margin: gain {_signed(look.stats.gain)}, at most "
            f"{_signed(look.upper)} (p = {_p(look.p_value)} >= {level})"
        )
    elif s.finished:
        said = (
            f"the winner is not better than the paper default on {obj} by more than "
            f"{_signed(look.upper)}, its corrected upper bound (the margin {look.margin:g} is not "
            f"reached at the maximum of {s.design.max_seeds} seeds): gain "
            f"{_signed(look.stats.gain)} (p = {_p(look.p_value)} >= {level})"
        )
    else:
        said = (
            f"the winner is not yet better than the paper default on {obj}: gain "
            f"{_signed(look.stats.gain)}, at most {_signed(look.upper)} "
            f"(p = {_p(look.p_value)} >= {level})"
        )
    k = s.design.candidates
    trial = f" (trial {best.source_trial})" if best.source_trial else ""
    who = (
        f"; the winner: {best.label}{trial}, the best confirmed mean of {k} candidate"
        f"{'s' if k > 1 else ''}, {look.stats.n_a} and {look.stats.n_b} seeds completed; the test "
        f"could detect a gain of {look.detectable:.3g} at {POWER:.0%} power"
    )
    losses = [g.metric for g in s.guards if g.loss]
    cost = ""
    if losses and look.outcome == BETTER:
        cost = f"; but the win costs a significant loss on {', '.join(losses)}"
    elif losses:
        cost = f"; and the winner is significantly worse on {', '.join(losses)}"
    return lead + said + who + cost


def _checks_line(what: str, test: str, checks: list[GuardCheck]) -> str | None:
    """``what``: each check's gain and p-value, then where the winner is significantly worse."""
    if not checks:
        return None
    gains = ", ".join(
        f"{g.metric} {_signed(g.stats.gain)} (p = {_p(g.p_value)}"
        + (f" < {_p(g.level)}, a significant loss)" if g.loss else ")")
        for g in checks
    )
    losses = [g.metric for g in checks if g.loss]
    ending = f"a significant loss on {', '.join(losses)}" if losses else "no significant loss"
    plural = "s" if len(checks) > 1 else ""
    return f"{what} ({test}, alpha {ALPHA} over {len(checks)} metric{plural}): {gains}: {ending}"


def guard_line(summary: ConfirmationSummary) -> str | None:
    """The winner against the default on each guard metric (None: nothing to compare)."""
    what = "guards, gains of the winner over the paper default"
    return _checks_line(what, "two-sided Welch", summary.guards)


def input_line(summary: ConfirmationSummary) -> str | None:
    """An enhancer's winner against its unprocessed input (None: not an enhancer)."""
    what = "against the noisy input (doing nothing), gains of the winner"
    return _checks_line(what, "two-sided one-sample t", summary.against_input)


def procedure_line(summary: ConfirmationSummary) -> str:
    """The sequential procedure and where it stands or stopped."""
    design, seeds = summary.design, summary.progress.seeds
    where = ""
    if seeds in design.looks and len(design.looks) > 1:
        where = f", look {design.looks.index(seeds) + 1} of {len(design.looks)}"
    state = "stopped" if summary.finished else "now"
    return f"procedure: {design.describe()}; {state} at {seeds} seeds each{where}"


def ranking_line(summary: ConfirmationSummary) -> str | None:
    """Whether the confirmed order keeps the search's order, and whether a reversal is beyond
    seed noise (one-sided Welch, Bonferroni over the pairs compared)."""
    swaps, pairs = ranking_swaps(summary)
    if pairs == 0:
        return None
    where = f"ranking at {summary.setting.describe()}"
    if not swaps:
        return f"{where}: the search's order held"
    level = ALPHA / pairs
    parts = []
    beyond = False
    for above, below in swaps:
        p = swap_p_value(summary, above, below)
        beyond |= p < level
        parts.append(f"{_name(below)} above {_name(above)} (p = {_p(p)})")
    how = "beyond" if beyond else "within"
    return (
        f"{where}: the search's order changed {how} seed noise (one-sided Welch, alpha {ALPHA} "
        f"over {pairs} pair{'s' if pairs > 1 else ''}: p < {_p(level)}): {'; '.join(parts)}"
    )


def _name(c: Confirmed) -> str:
    return f"{c.label} (search #{c.search_rank})"


def candidate_lines(summary: ConfirmationSummary) -> list[str]:
    """A small table, best confirmed mean first: each candidate's search rank and score beside
    its confirmed mean ± std [95% t-interval] and the seeds that completed of those run."""
    moves = rank_changes(summary)
    rows = [["", "candidate", "trial", "search", f"confirmed {summary.objective}", "seeds", "rank"]]
    for c in summary.candidates:
        search = "-" if c.search_rank is None else f"#{c.search_rank}"
        if c.search_score is not None:
            search += f" {c.search_score:.4g}"
        shown = c.objective.format() if c.objective else "-"
        move = moves.get(c.label)
        moved = (
            "-"
            if move is None
            else "="
            if move == 0
            else f"up {move}"
            if move > 0
            else f"down {-move}"
        )
        rows.append(
            [
                f"{c.rank}.",
                c.label,
                c.source_trial or "-",
                search,
                shown,
                f"{c.completed}/{c.runs}",
                moved,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def rank_changes(summary: ConfirmationSummary) -> dict[str, int]:
    """Per candidate with a search rank, how many places it moved between the search's order of
    the candidates and their confirmed order (positive: up)."""
    ranked = [c for c in summary.candidates if c.search_rank is not None]
    by_search = sorted(ranked, key=lambda c: c.search_rank)
    by_confirmed = sorted(ranked, key=lambda c: c.rank)
    return {c.label: by_search.index(c) - by_confirmed.index(c) for c in ranked}


def summary_lines(summary: ConfirmationSummary) -> list[str]:
    """The leaderboard's section for one confirmation."""
    runs = sorted({c.runs for c in summary.candidates})
    seeds = str(runs[0]) if len(runs) == 1 else f"{runs[0]}-{runs[-1]}"
    at = "" if summary.setting.search else f" at {summary.setting.describe()}"
    higher = SCORES[summary.objective].higher_is_better
    head = (
        f"confirmation{at}: {summary.objective} over {seeds} fresh seeds per configuration "
        "(mean ± std [95% t-interval]; completed/run), best confirmed mean first; gains are "
        f"improvements over the paper default ({'higher' if higher else 'lower'} is better)"
    )
    if not summary.setting.search:
        head += f"; the search trained {summary.search_batches} batches"
    optional = [guard_line(summary), input_line(summary), ranking_line(summary)]
    return [
        head,
        *candidate_lines(summary),
        verdict_line(summary),
        *[line for line in optional if line],
        procedure_line(summary),
    ]


def summary_dict(summary: ConfirmationSummary) -> dict[str, Any]:
    """The same as data (``run.py leaderboard --format json``)."""
    look = summary.progress.look
    swaps, pairs = ranking_swaps(summary)
    moves = rank_changes(summary)
    return {
        "objective": summary.objective,
        "budget": summary.setting.budget,
        "batches": summary.setting.batches,
        "search_batches": summary.search_batches,
        "seeds": summary.seeds,
        "finished": summary.finished,
        "design": summary.design.as_dict() | {"level": summary.design.level},
        "candidates": [
            {
                "label": c.label,
                "source_trial": c.source_trial,
                "runs": c.runs,
                "completed": c.completed,
                "values": list(c.values),
                "search_rank": c.search_rank,
                "search_score": c.search_score,
                "confirmed_rank": c.rank,
                "rank_change": moves.get(c.label),
                **(
                    {
                        "mean": c.objective.mean,
                        "std": c.objective.std,
                        "ci95": [c.objective.low, c.objective.high],
                    }
                    if c.objective
                    else {}
                ),
            }
            for c in summary.candidates
        ],
        "winner": summary.best.label if summary.best else None,
        "outcome": summary.progress.outcome or None,
        "p_value": look.p_value if look else None,
        "difference": look.stats.difference if look else None,
        "gain": look.stats.gain if look else None,
        "gain_bounds": [look.lower, look.upper] if look else None,
        "detectable": look.detectable if look else None,
        "guards": _checks_data(summary.guards),
        "against_input": _checks_data(summary.against_input),
        "ranking": {
            "pairs": pairs,
            "held": not swaps,
            "reversed": [[above.label, below.label] for above, below in swaps],
        },
        "verdict": verdict_line(summary),
    }


def _checks_data(checks: list[GuardCheck]) -> list[dict[str, Any]]:
    return [
        {
            "metric": g.metric,
            "gain": g.stats.gain,
            "p_value": g.p_value,
            "level": g.level,
            "significant_loss": g.loss,
        }
        for g in checks
    ]
