"""Rerun a trial of a search: its stored configuration trained again through the same trial code
path, with its per-seed scores beside those the search recorded.

The trial's stored resolved configuration is run as it was (same seed, same budget), so a CPU
trial reproduces its recorded scores; more seeds, another budget or batch count, or another
corpus change it.  A trial of a population-based search is replayed from scratch along its
schedule (harness/runs/schedule.py): each segment's values from the batch it starts at, as the
search's trials trained them, so its final scores are reproduced too.  Output: ``results/<name>/reruns/<trial>-<time>/`` (``summary.json``, and per
seed the trial's folder and diagnostics).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from harness.console import print_line
from harness.diagnostics.telemetry import read_diagnostics
from harness.files import finite, results_root
from harness.results.folder import SearchFolder, find_search
from harness.results.leaderboard import rank
from harness.results.lineage import schedule_of
from harness.results.plan import SearchPlan
from harness.results.stats import summarise
from harness.results.trials import read_trials
from harness.runs.resolve import check_data, config_from_flat, resolve_config
from harness.runs.schedule import Segment, Stage, describe, run_schedule
from harness.scoring.registry import SCORES
from harness.training.config import TrialConfig
from harness.training.setup import pick_device


class RerunError(ValueError):
    """A rerun option names no trial, or a trial that cannot be rerun; one line."""


def rerun(
    results: str | None,
    name: str | None,
    *,
    rank_k: int = 1,
    trial_id: str | None = None,
    seeds: int = 1,
    budget: str | None = None,
    batches: int | None = None,
    data: str | None = None,
) -> int:
    """Rerun the trial ``trial_id`` (or the one at leaderboard rank ``rank_k``) of the search
    ``name`` (None: the most recent) under the results root ``results``, with ``seeds`` seeds:
    the trial's own, then +1, +2...  Exit status 0 when every seed completed, else 1."""
    folder = find_search(results_root(results), name)
    plan = SearchPlan.load(folder)
    if seeds < 1:
        raise RerunError(f"--seeds {seeds}: must be >= 1")
    if batches is not None and batches < 1:
        raise RerunError(f"--batches {batches}: must be >= 1")
    row = pick_trial(rank(read_trials(folder), plan), rank_k, trial_id, folder.name)
    segments = schedule_of(row)
    if segments is not None:
        check_replayable(segments, row, budget, batches)
    configs = rerun_configs(row, seeds, budget, batches, data)
    pick_device(configs[0].trainer.device)  # refused here, before its folder is made
    check_data(configs[0])
    out = fresh_folder(folder.reruns, f"{row['trial_id']}-{time.strftime('%Y%m%d-%H%M%S')}")
    first = configs[0]
    print_line(
        f"rerun {folder.name}/{row['trial_id']} ({row['status']}, rank {row['rank']}): "
        f"{first.budget} budget, {first.trainer.batches} batches, seeds "
        f"{', '.join(str(c.trainer.seed) for c in configs)} -> {out}"
    )
    if segments is not None and len(segments) > 1:
        print_line(f"replaying its schedule: {describe(segments)}")
    runs = [run_seed(cfg, out, folder.name, row["trial_id"], segments) for cfg in configs]
    print_line("")
    same_step = recorded_at(folder, row["trial_id"], runs[0]["step"])
    print_line(summary_table(plan, row, runs, same_step))
    doc = {
        "search": folder.name,
        "trial_id": row["trial_id"],
        "recorded": {m: _float(row.get(m)) for m in _metrics(plan, runs)},
        "recorded_at_same_step": same_step,
        "seeds": runs,
    }
    (out / "summary.json").write_text(json.dumps(doc, indent=2))
    return 0 if all(r["status"] == "completed" for r in runs) else 1


def fresh_folder(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``... if taken; created."""
    out, k = parent / name, 1
    while out.exists():
        k += 1
        out = parent / f"{name}-{k}"
    out.mkdir(parents=True)
    return out


def pick_trial(
    ranked: pd.DataFrame, rank_k: int, trial_id: str | None, search: str
) -> dict[str, Any]:
    """The leaderboard row to rerun, by id or by rank."""
    if trial_id is not None:
        found = ranked[ranked["trial_id"] == trial_id]
        if found.empty:
            raise RerunError(f"search {search!r} has no trial {trial_id!r}")
        row = found.iloc[0]
    else:
        if not 1 <= rank_k <= len(ranked):
            raise RerunError(f"--rank {rank_k}: search {search!r} has {len(ranked)} trials")
        row = ranked.iloc[rank_k - 1]
    row = {k: v for k, v in row.items() if not _nan(v)}
    if not row.get("resolved_config"):
        raise RerunError(f"trial {row['trial_id']!r} has no recorded configuration")
    return row


def rerun_configs(
    row: dict[str, Any], seeds: int, budget: str | None, batches: int | None, data: str | None
) -> list[TrialConfig]:
    """The trial's resolved config (or its sample under another budget), one per seed."""
    flat = json.loads(row["resolved_config"])
    overrides: dict[str, Any] = {}
    if batches is not None:
        overrides["batches"] = batches
    if data is not None:
        if not Path(data).is_dir():
            raise RerunError(f"--data {data}: no such folder")
        overrides["data"] = str(Path(data).resolve())
    base_seed = int(flat["seed"])
    configs = []
    for k in range(seeds):
        if budget is not None and budget != flat["budget"]:
            sample = {"threads": flat["threads"], **json.loads(row["sample"])}
            cfg = resolve_config(
                flat["recipe"],
                budget,
                sample=sample,
                overrides={**overrides, "seed": base_seed + k},
                data=overrides.get("data", flat.get("data")),
            )
        else:
            cfg = config_from_flat({**flat, **overrides, "seed": base_seed + k})
        configs.append(cfg)
    return configs


def check_replayable(
    segments: list[Segment], row: dict[str, Any], budget: str | None, batches: int | None
) -> None:
    """A schedule replays at the budget it was searched at, for at least its last change."""
    flat = json.loads(row["resolved_config"])
    if budget is not None and budget != flat["budget"]:
        raise RerunError(
            f"--budget {budget}: trial {row['trial_id']!r} follows a schedule of the "
            f"{flat['budget']} budget (its values change at given batches); use --batches"
        )
    if batches is not None and batches <= segments[-1].batches:
        raise RerunError(
            f"--batches {batches}: trial {row['trial_id']!r}'s schedule changes at batch "
            f"{segments[-1].batches}; give more batches than that"
        )


def replay_stages(cfg: TrialConfig, segments: list[Segment] | None) -> list[Stage]:
    """``cfg`` as one stage, or along ``segments``: each segment's values over ``cfg``."""
    if not segments:
        return [(0, cfg)]
    return [(s.batches, config_from_flat({**cfg.flat(), **s.params})) for s in segments]


def run_seed(
    cfg: TrialConfig,
    out: Path,
    search: str,
    trial_id: str,
    segments: list[Segment] | None = None,
) -> dict[str, Any]:
    """Train one seed (along ``segments``, a population-based trial's schedule); a line per
    validation, then its final scores."""
    seed = cfg.trainer.seed
    t0 = time.perf_counter()
    result = run_schedule(
        replay_stages(cfg, segments),
        out / f"seed{seed}",
        search=search,
        trial_id=f"{trial_id}-rerun-seed{seed}",
        diagnostics_root=out / "diagnostics",
        echo=lambda line: print_line(line) if line.startswith("[eval]") else None,
    )
    scores = {k: float(v) for k, v in result.last_eval.items() if _score(k, v)}
    return {
        "seed": seed,
        "status": result.status,
        "reason": result.reason,
        "step": result.step,
        "wall_s": time.perf_counter() - t0,
        "scores": scores,
    }


def _metrics(plan: SearchPlan, results: list[dict[str, Any]]) -> list[str]:
    """The scores the rerun measured, the objective first."""
    found = {k for r in results for k in r["scores"]}
    ordered = [plan.objective] + [m for m in SCORES if m != plan.objective]
    return [m for m in ordered if m in found]


def recorded_at(folder: SearchFolder, trial_id: str, step: int) -> dict[str, float] | None:
    """The trial's validation scores at ``step`` during the search, if it validated there."""
    evals = read_diagnostics(folder.diagnostics, trial_id=trial_id, kind="eval")
    found = evals[evals["step"] == step]
    if found.empty:
        return None
    return {k: float(v) for k, v in found.iloc[-1].items() if _score(k, v)}


def summary_table(
    plan: SearchPlan,
    row: dict[str, Any],
    results: list[dict[str, Any]],
    same_step: dict[str, float] | None = None,
) -> str:
    """Per-seed scores, mean ± std, and what the search recorded for this trial (at its end,
    and at the step the rerun stopped at when that differs)."""
    metrics = _metrics(plan, results)
    header = ["", *metrics]
    lines = [header]
    for r in results:
        lines.append([f"seed {r['seed']}", *(_fmt(r["scores"].get(m)) for m in metrics)])
    if len(results) > 1:
        cells = ["mean ± std [95% CI]"]
        for m in metrics:
            values = [r["scores"][m] for r in results if m in r["scores"]]
            cells.append(summarise(values).format() if values else "-")
        lines.append(cells)
    step = row.get("step")
    if same_step is not None and results[0]["step"] != step:
        label = f"search (step {results[0]['step']})"
        lines.append([label, *(_fmt(same_step.get(m)) for m in metrics)])
    lines.append([f"search (step {step})", *(_fmt(_float(row.get(m))) for m in metrics)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        cells = [line[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=False)
        ]
        out.append("  ".join(cells))
    return "\n".join(out)


def _score(key: str, value: Any) -> bool:
    return key in SCORES and finite(value)


def _float(value: Any) -> float | None:
    return None if value is None or _nan(value) else float(value)


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
