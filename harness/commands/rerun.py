"""`run.py rerun [NAME]`: train a searched configuration again, through the same trial code path.

The trial's stored resolved configuration is run as it was (same seed, same budget), so a CPU
trial reproduces its recorded scores; ``--seeds`` adds seeds, ``--budget``/``--batches`` train
longer, ``--data`` trains on another corpus.  Output: ``results/<name>/reruns/<trial>-<time>/``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from harness.commands import renamed_option
from harness.results.stats import summarise
from harness.runs.resolve import BUDGETS


class RerunError(ValueError):
    """A rerun option names no trial, or a trial that cannot be rerun; one line."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rerun",
        help="train a searched configuration again (more seeds, longer, other data)",
        description="Rerun a trial of a search with its stored configuration through the same "
        "trial code as the search; prints per-seed and mean ± std scores beside the score the "
        "search recorded.",
    )
    p.add_argument("name", nargs="?", help="search name (default: the most recent search)")
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--rank", type=int, default=1, help="leaderboard rank to rerun (default 1)")
    pick.add_argument("--trial", help="trial id to rerun")
    p.add_argument("--seeds", type=int, default=1, help="seeds: the trial's own, then +1, +2...")
    p.add_argument("--budget", choices=BUDGETS, help="another budget preset (default: as searched)")
    p.add_argument("--batches", type=int, help="training batches (default: as searched)")
    p.add_argument("--steps", dest="batches", type=int, action=renamed_option("--batches"))
    p.add_argument("--data", help="train on another corpus folder")
    p.add_argument("--results", help="results root (default $GAN_HARNESS_RESULTS or ./results)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.console import print_line
    from harness.results.folder import find_search, results_root
    from harness.results.leaderboard import rank
    from harness.results.plan import SearchPlan
    from harness.results.trials import read_trials

    folder = find_search(results_root(args.results), args.name)
    plan = SearchPlan.load(folder)
    if args.seeds < 1:
        raise RerunError(f"--seeds {args.seeds}: must be >= 1")
    if args.batches is not None and args.batches < 1:
        raise RerunError(f"--batches {args.batches}: must be >= 1")
    row = pick_trial(rank(read_trials(folder), plan), args.rank, args.trial, folder.name)
    configs = rerun_configs(row, args.seeds, args.budget, args.batches, args.data)
    out = fresh_folder(folder.reruns, f"{row['trial_id']}-{time.strftime('%Y%m%d-%H%M%S')}")
    first = configs[0]
    print_line(
        f"rerun {folder.name}/{row['trial_id']} ({row['status']}, rank {row['rank']}): "
        f"{first.budget} budget, {first.trainer.batches} batches, seeds "
        f"{', '.join(str(c.trainer.seed) for c in configs)} -> {out}"
    )
    results = [run_seed(cfg, out, folder.name, row["trial_id"]) for cfg in configs]
    print_line("")
    same_step = recorded_at(folder, row["trial_id"], results[0]["step"])
    print_line(summary_table(plan, row, results, same_step))
    doc = {
        "search": folder.name,
        "trial_id": row["trial_id"],
        "recorded": {m: _float(row.get(m)) for m in _metrics(plan, row, results)},
        "recorded_at_same_step": same_step,
        "seeds": results,
    }
    (out / "summary.json").write_text(json.dumps(doc, indent=2))
    return 0 if all(r["status"] == "completed" for r in results) else 1


def fresh_folder(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``... if taken; created."""
    out, k = parent / name, 1
    while out.exists():
        k += 1
        out = parent / f"{name}-{k}"
    out.mkdir(parents=True)
    return out


def pick_trial(ranked: Any, rank_k: int, trial_id: str | None, search: str) -> dict[str, Any]:
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
) -> list:
    """The trial's resolved config (or its sample under another budget), one per seed."""
    from harness.runs.resolve import config_from_flat, resolve_config

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


def run_seed(cfg: Any, out: Path, search: str, trial_id: str) -> dict[str, Any]:
    """Train one seed; a line per validation, then its final scores."""
    from harness.console import print_line
    from harness.runs.trial import run_trial

    seed = cfg.trainer.seed
    t0 = time.perf_counter()
    result = run_trial(
        cfg,
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


def _metrics(plan: Any, row: dict[str, Any], results: list[dict[str, Any]]) -> list[str]:
    from harness.scoring.registry import SCORES

    found = {k for r in results for k in r["scores"]}
    ordered = [plan.objective] + [m for m in SCORES if m != plan.objective]
    return [m for m in ordered if m in found]


def recorded_at(folder: Any, trial_id: str, step: int) -> dict[str, float] | None:
    """The trial's validation scores at ``step`` during the search, if it validated there."""
    from harness.diagnostics.telemetry import read_diagnostics

    evals = read_diagnostics(folder.diagnostics, trial_id=trial_id, kind="eval")
    found = evals[evals["step"] == step]
    if found.empty:
        return None
    return {k: float(v) for k, v in found.iloc[-1].items() if _score(k, v)}


def summary_table(
    plan: Any,
    row: dict[str, Any],
    results: list[dict[str, Any]],
    same_step: dict[str, float] | None = None,
) -> str:
    """Per-seed scores, mean ± std, and what the search recorded for this trial (at its end,
    and at the step the rerun stopped at when that differs)."""
    metrics = _metrics(plan, row, results)
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
    from harness.files import finite
    from harness.scoring.registry import SCORES

    return key in SCORES and finite(value)


def _float(value: Any) -> float | None:
    return None if value is None or _nan(value) else float(value)


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
