"""The ring recipe with injected faults, for the search tests (imported by the Ray workers
through PYTHONPATH as ``flaky_recipe:FlakyRecipe``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.recipes.ring import RingConfig, RingRecipe


class InjectedFailure(RuntimeError):
    pass


@dataclass
class FlakyConfig(RingConfig):
    fail_at_step: int = 0  # 0 = never fail
    fail_times: int = 0  # validations at fail_at_step that raise before one passes
    poison_at_step: int = 0  # after the validation at this step G's weights are NaN; 0 = never


class FlakyRecipe(RingRecipe):
    """The ring recipe, raising at a chosen validation a chosen number of times per trial, or
    filling the generator's weights with NaN after a chosen validation."""

    name = "flaky"
    config_cls = FlakyConfig

    def validate(self, generator, step, out_dir):
        if self.cfg.fail_at_step and step == self.cfg.fail_at_step:
            marks = Path(out_dir).parent / "failures"  # out_dir is <trial>/samples
            marks.mkdir(exist_ok=True)
            done = len(list(marks.iterdir()))
            if done < self.cfg.fail_times:
                (marks / str(done)).touch()
                raise InjectedFailure(f"injected failure at step {step}")
        scores = super().validate(generator, step, out_dir)
        if self.cfg.poison_at_step and step == self.cfg.poison_at_step:
            with torch.no_grad():
                for weight in generator.parameters():
                    weight.fill_(math.nan)
        return scores
