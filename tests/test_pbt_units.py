"""Population-based training's parts, each on its own (seconds): the bounded perturbation, the
space's ``pbt:`` section, the health-aware ranking, the lineage a checkpoint must match, the
pinned donor checkpoint, and a checkpoint continued under a new configuration."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_RING
from ray import tune
from ray.tune.schedulers.pbt import _explore as ray_explore

from harness.recipes.ring import RingRecipe
from harness.results.population import (
    PopulationSettings,
    initial_population,
    perturb,
    population_settings,
)
from harness.results.request import PlanError, SearchRequest, plan_search
from harness.results.seeds import TRIALS, derive_seed
from harness.results.space import SpaceError, parse_space
from harness.runs.resolve import resolve_config
from harness.runs.schedule import (
    ScheduleError,
    Segment,
    lineage_problem,
    lineage_record,
    read_lineage,
    run_schedule,
)
from harness.search.pbt import KEPT_PINS, health_quantiles, pin_checkpoint
from harness.training.trainer import Trainer

SPACE = {
    "objective": "reverse_kl",
    "space": {
        "lr_g": {"loguniform": [3e-4, 1e-2]},
        "lr_d": {"loguniform": [3e-4, 1e-2]},
        "label_smoothing": {"uniform": [0.0, 0.2]},
        "d_steps": {"int": [1, 3]},
        "loss": {"choice": ["bce", "lsgan"]},
        "pack": {"choice": [1, 2]},
        **TINY_RING,
    },
    "points_to_evaluate": [
        {"lr_g": 3e-3, "lr_d": 3e-3, "label_smoothing": 0.0, "d_steps": 1, "loss": "bce", "pack": 1}
    ],
}
MUTABLE = ("lr_g", "lr_d", "label_smoothing", "d_steps")


def space_with(pbt: dict | None = None):
    return parse_space({**SPACE, "pbt": pbt or {}}, "ring", "pbt.yaml")


# ---------------------------------------------------------------- bounded perturbation
def test_a_bounded_perturbation_never_leaves_the_space():
    space = space_with()
    settings = PopulationSettings(MUTABLE, interval=100, quantile=0.25, resample=0.25)
    rng = random.Random(0)
    values = {"lr_g": 1e-2, "lr_d": 3e-4, "label_smoothing": 0.2, "d_steps": 3}  # on the edges
    operations = []
    for _ in range(3000):
        values, done = perturb(values, space.params, settings, rng)
        assert all(space.params[k].contains(v) for k, v in values.items()), values
        assert isinstance(values["d_steps"], int)
        operations += done.values()
    assert any("clamped" in op for op in operations)  # the walk hit the bounds and stayed in
    # Ray's own exploration multiplies past the bound: the reason for the clamp
    ray_config, _ = ray_explore(
        {"lr_g": 1e-2},
        {"lr_g": tune.loguniform(3e-4, 1e-2)},
        resample_probability=0.0,
        perturbation_factors=(1.2, 1.2),
        custom_explore_fn=None,
    )
    assert ray_config["lr_g"] > 1e-2


def test_integers_and_choices_change_only_when_resampled_and_a_zero_still_moves():
    space = space_with()
    keep = PopulationSettings((*MUTABLE, "loss"), interval=100, resample=0.0)
    values = {"lr_g": 1e-3, "lr_d": 1e-3, "label_smoothing": 0.0, "d_steps": 2, "loss": "bce"}
    moved = set()
    for seed in range(40):
        new, done = perturb(values, space.params, keep, random.Random(seed))
        assert (new["d_steps"], new["loss"]) == (2, "bce") and done["d_steps"] == "kept"
        assert new["lr_g"] in (pytest.approx(0.8e-3), pytest.approx(1.2e-3))
        moved.add(round(new["label_smoothing"], 12))
    assert moved == {0.0, 0.04}  # +20 % of the range, or -20 % clamped to 0
    redraw = PopulationSettings((*MUTABLE, "loss"), interval=100, resample=1.0)
    drawn = [perturb(values, space.params, redraw, random.Random(s))[0] for s in range(60)]
    assert {d["d_steps"] for d in drawn} == {1, 2, 3} and {d["loss"] for d in drawn} == {
        "bce",
        "lsgan",
    }


# ---------------------------------------------------------------- the pbt: section
def test_the_pbt_section_defaults_to_the_swept_keys_that_may_change_mid_run():
    settings = population_settings(space_with(), "smoke")
    assert settings.mutable == MUTABLE  # loss and pack shape the networks: fixed per lineage
    assert (settings.interval, settings.quantile, settings.resample) == (100, 0.25, 0.25)
    given = population_settings(space_with({"mutable": ["lr_d"], "interval": 300}), "smoke")
    assert given.mutable == ("lr_d",) and given.interval == 300


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"mutable": ["pack"]}, "pbt.mutable: pack cannot change while a trial trains; can: lr_g"),
        ({"mutable": ["b1_g"]}, "pbt.mutable: b1_g is not swept"),
        ({"interval": 0}, "pbt.interval: expected a number of batches >= 1, got 0"),
        ({"quantile": 0.6}, "pbt.quantile: expected a number in [0, 0.5], got 0.6"),
        ({"resample": "often"}, "pbt.resample: expected a number in [0, 1.0]"),
        ({"synch": True}, "pbt.synch: unknown key; valid keys: mutable, interval, quantile"),
    ],
)
def test_a_bad_pbt_section_is_one_line_naming_the_key(section, message):
    with pytest.raises(SpaceError) as err:
        population_settings(space_with(section), "smoke")
    assert str(err.value).startswith(f"pbt.yaml: {message}")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("options", "space", "message"),
    [
        ({"multi_objective": True}, SPACE, "population-based training ranks trials on one"),
        ({"max_concurrent": 1}, SPACE, "--max-concurrent: --scheduler pbt trains its population"),
        ({}, {**SPACE, "pbt": {"mutable": []}}, "sweeps no key that may change while a trial"),
        ({}, {**SPACE, "space": {**SPACE["space"], "checkpoint_every": 50}}, "checkpoint_every 50"),
    ],
)
def test_a_search_pbt_cannot_run_is_refused_before_it_starts(tmp_path, options, space, message):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    request = SearchRequest(recipe="ring", space=path, scheduler="pbt", **options)
    with pytest.raises(PlanError, match=message):
        plan_search(request, tmp_path)
    assert not (tmp_path / "ring-smoke").exists()


def test_the_initial_population_is_the_points_then_seeded_draws():
    space = space_with()
    members = initial_population(space, 5, seed=3)
    assert {k: members[0][k] for k in space.points[0]} == space.points[0]
    assert [m["seed"] for m in members] == [derive_seed(3, TRIALS, n) for n in range(5)]
    assert all(space.params[k].contains(m[k]) for m in members for k in space.params)
    assert initial_population(space, 5, seed=3) == members
    assert initial_population(space, 5, seed=4)[1:] != members[1:]


# ---------------------------------------------------------------- ranking
def test_flagged_trials_rank_in_the_bottom_and_never_donate():
    four = [("a", 4.0, False), ("b", 3.0, False), ("c", 2.0, False), ("d", 1.0, False)]
    assert health_quantiles(four, 0.25) == (["d"], ["a"])
    best_but_flagged = [("a", 9.0, True), *four[1:]]
    assert health_quantiles(best_but_flagged, 0.25) == (["a", "d"], ["b"])
    # quantile 0: only the flagged are replaced, the best healthy trial keeps a checkpoint
    assert health_quantiles(four, 0.0) == ([], ["a"])
    assert health_quantiles([("a", 1.0, True), ("b", 0.0, False)], 0.0) == (["a"], ["b"])
    assert health_quantiles([("a", 1.0, True), ("b", 0.0, True)], 0.25) == (["a", "b"], [])
    assert health_quantiles([("a", 1.0, False)], 0.25) == ([], [])


# ---------------------------------------------------------------- lineage
def test_a_checkpoint_is_continued_only_under_the_schedule_it_was_trained_under():
    donor_sample = {"lr_g": 1e-3, "pack": 1, "seed": 5}
    donor = [Segment(0, {"lr_g": 1e-3}, trial="A")]
    at_300 = lineage_record("A", donor_sample, donor, batches=300, step=300)
    copied = [*donor, Segment(300, {"lr_g": 1.2e-3}, trial="B", donor="A")]
    receiver_sample = {**donor_sample, "lr_g": 1.2e-3}
    assert lineage_problem(at_300, receiver_sample, copied) is None
    later = lineage_record("B", receiver_sample, copied, batches=400, step=400)
    assert lineage_problem(later, receiver_sample, copied) is None  # its own, after the copy

    # the receiver's own weights with the donor's configuration
    own = lineage_record("B", {"lr_g": 3e-4, "pack": 1, "seed": 7}, [Segment(0, {"lr_g": 3e-4})],
                         batches=300, step=300)  # fmt: skip
    assert "was trained under [0: lr_g=0.0003]" in lineage_problem(own, receiver_sample, copied)
    # the donor's weights with the receiver's own configuration
    before = {"lr_g": 3e-4, "pack": 1, "seed": 7}
    assert lineage_problem(at_300, before, [Segment(0, {"lr_g": 3e-4}, trial="B")])
    # another fixed value (a network size) is another model
    assert "has other pack" in lineage_problem(at_300, {**receiver_sample, "pack": 2}, copied)


def test_a_pinned_donor_checkpoint_outlives_the_donors_own_copy(tmp_path):
    """Ray's num_to_keep deletes a donor's checkpoint once it has newer ones; the receiver's
    pinned hard links keep the bytes it will load."""
    donor = tmp_path / "tune" / "A" / "checkpoint_000003"
    donor.mkdir(parents=True)
    torch.save({"generator": {"w": torch.arange(4.0)}}, donor / "step_00000300.pt")
    record = lineage_record("A", {"seed": 1}, [Segment(0, {"lr_g": 1e-3})], 300, 300)
    (donor / "lineage.json").write_text(json.dumps(record))
    pins = tmp_path / "trials" / "B" / "donors"
    pinned = pin_checkpoint(tune.Checkpoint.from_directory(str(donor)), pins, "A")
    assert os.stat(pinned / "step_00000300.pt").st_nlink == 2  # one inode, no second copy
    shutil.rmtree(donor)  # what num_to_keep does
    assert torch.load(pinned / "step_00000300.pt")["generator"]["w"].sum() == 6
    assert read_lineage(pinned)["trial"] == "A"

    gone = tune.Checkpoint.from_directory(str(donor))  # a donor that no longer has it
    assert pin_checkpoint(gone, pins, "A") is None
    assert pin_checkpoint(None, pins, "A") is None  # one that never checkpointed
    no_lineage = tmp_path / "plain"
    no_lineage.mkdir()
    (no_lineage / "step_00000100.pt").write_bytes(b"x")
    assert pin_checkpoint(tune.Checkpoint.from_directory(str(no_lineage)), pins, "A") is None
    template = shutil.copytree(pinned, tmp_path / "template")
    for _ in range(3):
        shutil.copytree(template, donor)
        pin_checkpoint(tune.Checkpoint.from_directory(str(donor)), pins, "A")
        shutil.rmtree(donor)
    assert len(list(pins.iterdir())) == KEPT_PINS  # no staging folder left either


# ---------------------------------------------------------------- a checkpoint under a new config
SMALL = {**TINY_RING, "batches": 40, "eval_every": 20, "log_every": 10}


def trainer(tmp_path: Path, rows: list | None = None, **overrides) -> Trainer:
    cfg = resolve_config("ring", "smoke", overrides={**SMALL, **overrides})
    recipe = RingRecipe(cfg.model, None, cfg.trainer.seed, cfg.trainer.batch_size)
    report = (lambda k, r, c: rows.append((k, r))) if rows is not None else None
    return Trainer(recipe, cfg.trainer, tmp_path, report)


def test_a_continued_checkpoint_trains_with_the_new_learning_rates_betas_and_decay(tmp_path):
    first = trainer(tmp_path / "a", lr_g=1e-3, lr_decay=0.99, optimizer="adamw", weight_decay=0.01)
    first.fit()
    state = first.state_dict()
    stored_lr_d = first.opt_d.param_groups[0]["lr"]
    decayed = first.opt_g.param_groups[0]["lr"] / 1e-3  # the schedule's factor so far

    rows: list = []
    second = trainer(tmp_path / "b", rows, lr_g=2e-3, b1_g=0.3, lr_decay=0.9,
                     optimizer="adamw", weight_decay=0.05, batches=60)  # fmt: skip
    second.load_state_dict(state)
    group = second.opt_g.param_groups[0]
    assert group["lr"] == pytest.approx(2e-3 * decayed, rel=1e-12)
    assert group["betas"] == (0.3, 0.999) and group["weight_decay"] == 0.05
    assert second.sched_g.base_lrs == [2e-3] and second.sched_g.gamma == 0.9
    assert second.opt_d.param_groups[0]["lr"] == stored_lr_d  # unchanged: exactly as loaded
    assert second.sched_d.gamma == 0.9  # the decay rate is one key for both networks
    second.fit()
    (first_row, *_) = [r for kind, r in rows if kind == "step"]
    steps = first_row["step"] - state["step"]
    assert first_row["lr_g"] == pytest.approx(2e-3 * decayed * 0.9**steps, rel=1e-9)


def test_a_schedule_whose_change_is_not_at_a_validation_cannot_be_followed(tmp_path):
    cfg = resolve_config("ring", "smoke", overrides={**SMALL, "scheduler": "constant"})
    other = resolve_config("ring", "smoke", overrides={**SMALL, "lr_g": 1e-3})
    with pytest.raises(ScheduleError, match="changes at batch 30, but this run validated"):
        run_schedule([(0, cfg), (30, other)], tmp_path)
