"""The YAML search-space grammar: shipped spaces load, bad spaces fail with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.results.space import SpaceError, default_space_file, load_space, parse_space
from harness.text import NotUtf8

ROOT = Path(__file__).resolve().parents[1]

GOOD = {
    "objective": "reverse_kl",
    "space": {
        "lr_g": {"loguniform": [1.0e-4, 3.0e-3]},
        "d_steps": {"int": [1, 3]},
        "label_smoothing": {"uniform": [0.0, 0.2]},
        "loss": {"choice": ["bce", "lsgan"]},
        "g_hidden": 64,
    },
    "points_to_evaluate": [{"lr_g": 1e-3, "d_steps": 1, "label_smoothing": 0.0, "loss": "bce"}],
}


def with_space(**entries) -> dict:
    return {**GOOD, "space": {**GOOD["space"], **entries}, "points_to_evaluate": []}


@pytest.mark.parametrize("recipe", ["ring", "grid", "hifigan"])
def test_shipped_spaces_load(recipe):
    space = load_space(default_space_file(recipe), recipe)
    assert space.params and space.points
    for point in space.points:
        assert all(space.params[k].contains(v) for k, v in point.items())


def test_hifigan_space_sweeps_the_issue_keys_and_starts_at_the_paper():
    space = load_space(default_space_file("hifigan"), "hifigan")
    required = {"d_steps", "g_steps", "lr_g", "lr_d", "b1_g", "b2_g", "b1_d", "b2_d"}
    required |= {"label_smoothing", "lambda_fm", "lambda_mel", "disc_start_step"}
    assert required <= set(space.swept)
    paper = space.points[0]
    assert paper["lr_g"] == paper["lr_d"] == 2e-4
    assert (paper["b1_g"], paper["b2_g"], paper["lambda_fm"], paper["lambda_mel"]) == (
        0.8,
        0.99,
        2.0,
        45.0,
    )
    assert paper["d_steps"] == paper["g_steps"] == 1 and paper["label_smoothing"] == 0.0


def test_parse_good_space():
    space = parse_space(GOOD, "ring", "good.yaml")
    assert space.swept == ["lr_g", "d_steps", "label_smoothing", "loss"]
    assert space.fixed == {"g_hidden": 64}
    assert space.params["d_steps"].kind == "int" and space.params["d_steps"].high == 3
    assert space.points == [{"lr_g": 1e-3, "d_steps": 1, "label_smoothing": 0.0, "loss": "bce"}]
    assert space.objective == "reverse_kl" and space.cost == "params_g"


def test_a_space_without_objective_takes_the_recipes_default():
    """The shipped space's objective (a user's space may leave it out; --objective still wins)."""
    doc = {key: value for key, value in GOOD.items() if key != "objective"}
    assert parse_space(doc, "ring", "mine.yaml").objective == "reverse_kl"
    hifigan = {"space": {"lr_g": {"loguniform": [1e-4, 1e-3]}}}
    assert parse_space(hifigan, "hifigan", "mine.yaml").objective == "stoi"


def test_exponent_strings_are_numbers():
    """PyYAML reads `1e-4` (no dot) as text; the grammar accepts it as a number."""
    doc = yaml.safe_load("objective: reverse_kl\nspace:\n  lr_g: {loguniform: [1e-4, 1e-2]}\n")
    space = parse_space(doc, "ring")
    assert (space.params["lr_g"].low, space.params["lr_g"].high) == (1e-4, 1e-2)


BAD = [
    ({**GOOD, "sapce": {}}, "sapce: unknown key; valid keys: objective, cost, space"),
    (with_space(lr_gg={"uniform": [0, 1]}), "space.lr_gg: unknown config key for recipe 'ring'"),
    (with_space(lr_g={"loguniform": [1e-2, 1e-4]}), "lower bound 0.01 must be < upper bound"),
    (with_space(label_smoothing={"uniform": [0.1, 0.1]}), "lower bound 0.1 must be < upper"),
    (with_space(d_steps={"int": [3, 1]}), "space.d_steps: int lower bound 3 must be < upper"),
    (with_space(lr_g={"loguniform": [0, 1e-2]}), "loguniform bounds must be > 0"),
    (with_space(lr_g={"loguniform": [-1, 1e-2]}), "loguniform bounds must be > 0"),
    (with_space(loss={"choice": []}), "space.loss: choice needs a non-empty list"),
    (with_space(d_steps={"uniform": [1, 3]}), "d_steps is a int setting; use int: [lo, hi]"),
    (with_space(loss={"int": [1, 3]}), "space.loss: int distribution for a str setting"),
    (with_space(loss={"choice": ["bce", 3]}), "space.loss: expected a string, got 3"),
    (with_space(loss={"choice": ["bce", "wgan"]}), "'wgan' is not one of bce, lsgan"),
    (with_space(d_steps="three"), "space.d_steps: expected an integer, got 'three'"),
    (with_space(lr_g={"loguniform": ["a", 1]}), "loguniform bounds must be numbers"),
    (with_space(lr_g={"normal": [0, 1]}), "expected one of loguniform, uniform, int, choice"),
    (with_space(keep_checkpoints=0), "space.keep_checkpoints: must be >= 1, got 0"),
    (with_space(device="tpu"), "space.device: 'tpu' is not one of auto, cpu, cuda, cuda:N"),
    (with_space(b1_g={"uniform": [0.5, 1.5]}), "b1_g: uniform [0.5, 1.5]: must be in [0, 1)"),
    (with_space(weight_decay={"uniform": [-1, 0]}), "uniform [-1, 0]: must be >= 0, got -1.0"),
    (with_space(label_smoothing={"uniform": [0, 0.5]}), "must be in [0, 0.5), got 0.5"),
    (with_space(d_steps={"choice": [0, 1]}), "space.d_steps: must be >= 1, got 0"),
    (with_space(eval_samples={"int": [0, 100]}), "eval_samples: int [0, 100]: must be >= 1"),
    (with_space(recipe={"choice": ["ring"]}), "space.recipe: unknown config key"),
    ({**GOOD, "objective": "accuracy"}, "objective: 'accuracy' is not one of pesq"),
    ({**GOOD, "space": {"g_hidden": 64}}, "nothing is swept"),
    (
        {**GOOD, "points_to_evaluate": [{"lr_g": 1e-3, "d_steps": 1, "loss": "bce"}]},
        "points_to_evaluate[0]: missing swept keys label_smoothing",
    ),
    (
        {**GOOD, "points_to_evaluate": [{**GOOD["points_to_evaluate"][0], "d_steps": 9}]},
        "points_to_evaluate[0].d_steps: 9 is outside int [1, 3]",
    ),
    (
        {**GOOD, "points_to_evaluate": [{**GOOD["points_to_evaluate"][0], "g_hidden": 8}]},
        "points_to_evaluate[0].g_hidden: is fixed in space, not swept",
    ),
]


@pytest.mark.parametrize("doc,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_spaces_give_one_line_errors(doc, message):
    with pytest.raises(SpaceError) as err:
        parse_space(doc, "ring", "bad.yaml")
    text = str(err.value)
    assert text.startswith("bad.yaml: ") and "\n" not in text
    assert message in text


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(SpaceError, match="valid keys: .*d_steps.*lr_g.*pack"):
        parse_space(with_space(lr_gg={"uniform": [0, 1]}), "ring", "bad.yaml")


def test_missing_file_and_broken_yaml(tmp_path):
    with pytest.raises(SpaceError, match="search space file not found"):
        load_space(tmp_path / "nope.yaml", "ring")
    broken = tmp_path / "broken.yaml"
    broken.write_text("space: {lr_g: [1,\n")
    with pytest.raises(SpaceError, match=r"broken.yaml: not valid YAML") as err:
        load_space(broken, "ring")
    assert "\n" not in str(err.value)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("# r\xe9glages\nobjective: reverse_kl\n".encode("latin-1"))
    with pytest.raises(NotUtf8, match=r"latin1.yaml:1: not valid UTF-8 \(byte 0xe9\)"):
        load_space(latin1, "ring")


def test_cli_reports_a_bad_space_in_one_line_before_starting(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_space(lr_g={"loguniform": [0, 1e-2]})))
    run = subprocess.run(
        [sys.executable, "run.py", "search", "ring", "--space", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"GAN_HARNESS_RESULTS": str(tmp_path / "results"), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0
    assert "bad.yaml: space.lr_g: loguniform bounds must be > 0" in run.stderr
    assert not (tmp_path / "results").exists()  # nothing started, nothing written


def test_asha_grace_waits_for_the_latest_discriminator_start():
    from harness.results.request import asha_window

    doc = {
        "objective": "reverse_kl",
        "space": {
            "disc_start_step": {"int": [0, 250]},
            "lr_g": {"loguniform": [1e-4, 1e-2]},
            "batches": 1000,
            "eval_every": 100,
        },
    }
    grace, max_t = asha_window(parse_space(doc, "ring"), "ring", "smoke")
    assert (grace, max_t) == (300, 1000)  # first validation after step 250


def test_asha_grace_counts_the_batches_drawn_before_the_discriminator_starts():
    from harness.results.request import asha_window

    doc = {
        "objective": "reverse_kl",
        "space": {
            "disc_start_step": {"int": [0, 250]},
            "g_steps": {"int": [1, 2]},  # before D starts an iteration draws g_steps batches
            "batches": 1000,
            "eval_every": 100,
        },
    }
    assert asha_window(parse_space(doc, "ring"), "ring", "smoke") == (600, 1000)


def test_the_old_budget_key_steps_is_read_as_batches_with_one_warning():
    from harness.training.config import DeprecatedKey

    doc = {**with_space(steps=700), "points_to_evaluate": []}
    with pytest.warns(DeprecatedKey, match="'steps' is now called 'batches'"):
        space = parse_space(doc, "ring")
    assert space.fixed["batches"] == 700 and "steps" not in space.fixed


def test_the_old_budget_key_steps_is_read_from_set_and_old_configs():
    from harness.runs.resolve import config_from_flat, resolve_config
    from harness.training.config import DeprecatedKey

    with pytest.warns(DeprecatedKey):
        cfg = resolve_config("ring", "smoke", overrides={"steps": "120"})
    assert cfg.trainer.batches == 120
    old = {k: v for k, v in cfg.flat().items() if k != "batches"} | {"steps": 120}
    with pytest.warns(DeprecatedKey):
        assert config_from_flat(old) == cfg


def test_rerun_takes_the_old_option_steps_as_batches(capsys):
    from harness.cli import build_parser

    with pytest.warns(UserWarning, match="--steps is now called --batches"):
        args = build_parser().parse_args(["rerun", "some-search", "--steps", "300"])
    assert args.batches == 300
