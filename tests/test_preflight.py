"""Preflight: G alone on one fixed batch, over a grid of generator learning rates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from harness import cli
from harness.recipes import RECIPES
from harness.recipes.ring import RingRecipe
from harness.results.space import SpaceError, default_space_file, load_space, write_lr_range
from harness.runs.preflight import run_preflight, suggest_range
from harness.runs.resolve import resolve_config

SMALL = {"batch_size": 32, "g_hidden": 32, "g_layers": 2}


class FitRing(RingRecipe):
    """The ring with a reconstruction loss: G must map each latent code onto its real sample."""

    def generator_loss(self, discriminator, batch, fake, smoothing):
        out = super().generator_loss(discriminator, batch, fake, smoothing)
        out.reconstruction = (fake - batch[0]).pow(2).sum(-1)
        return out


class FrozenRing(FitRing):
    """A broken generator: its output does not depend on its weights in any useful way."""

    def generate(self, generator, batch):
        return 0 * generator(batch[1]) + 0.5


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(RECIPES, "fit_ring", f"{__name__}:FitRing")
    monkeypatch.setitem(RECIPES, "frozen_ring", f"{__name__}:FrozenRing")


def test_learning_rates_are_sorted_into_learns_stalls_diverges(registered):
    cfg = resolve_config("fit_ring", "smoke", overrides=SMALL)
    lines: list[str] = []
    results = run_preflight(cfg, [1e-7, 1e-2, 30.0], steps=40, echo=lines.append)
    assert [r.verdict for r in results] == ["stalls", "learns", "diverges"]
    learned = results[1]
    assert learned.end < 0.5 * learned.start and learned.best <= learned.end
    # one rate learns: the range reaches halfway (geometrically) to its neighbours
    assert suggest_range(results) == pytest.approx((math.sqrt(1e-7 * 1e-2), math.sqrt(1e-2 * 30)))
    assert len(lines) == 2 + 3 and "stalls" in lines[2] and "learns" in lines[3]


def test_every_rate_starts_from_the_same_generator(registered):
    cfg = resolve_config("fit_ring", "smoke", overrides=SMALL)
    once = run_preflight(cfg, [1e-3], steps=5)
    again = run_preflight(cfg, [1e-4, 1e-3], steps=5)
    assert again[0].start == again[1].start == once[0].start
    assert again[1].losses == once[0].losses


def test_a_generator_that_cannot_fit_is_reported_plainly(registered, capsys):
    code = cli.main(["preflight", "frozen_ring", "--steps", "5", "--set", "batch_size=16"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.count("stalls") == 7  # the default grid: lr_g/100 ... lr_g*10
    assert "could not fit one fixed batch at any learning rate" in out
    assert "will not train adversarially" in out


def test_ring_has_no_reconstruction_objective(capsys):
    assert cli.main(["preflight", "ring", "--steps", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: preflight ring: the recipe has no reconstruction loss")
    assert "\n" not in err


def test_write_lr_range_sets_lr_g_and_keeps_the_rest(registered, tmp_path, capsys):
    target = tmp_path / "ring.yaml"
    write_lr_range(target, "ring", 2e-4, 5e-3)
    text = target.read_text()
    assert text.startswith(default_space_file("ring").read_text().splitlines()[0])  # comments
    space = load_space(target, "ring")
    assert (space.params["lr_g"].low, space.params["lr_g"].high) == (2e-4, 5e-3)
    assert space.params["lr_g"].kind == "loguniform"
    before = yaml.safe_load(default_space_file("ring").read_text())["space"]
    after = yaml.safe_load(text)["space"]
    assert {k: v for k, v in after.items() if k != "lr_g"} == {
        k: v for k, v in before.items() if k != "lr_g"
    }
    with pytest.raises(SpaceError, match="points_to_evaluate"):
        write_lr_range(tmp_path / "narrow.yaml", "ring", 1e-5, 2e-5)  # excludes the known points
    assert not (tmp_path / "narrow.yaml").exists()


def test_cli_writes_the_suggested_space(registered, tmp_path, capsys):
    target = Path(tmp_path / "space.yaml")
    target.write_text(default_space_file("ring").read_text())
    args = ["preflight", "fit_ring", "--lrs", "1e-3", "3e-3", "--steps", "20"]
    settings = [a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]
    assert cli.main([*args, *settings, "--write-space", str(target)]) == 0
    out = capsys.readouterr().out
    assert "suggested lr_g range: loguniform [0.001, 0.003]" in out
    assert load_space(target, "ring").params["lr_g"].high == pytest.approx(3e-3)
