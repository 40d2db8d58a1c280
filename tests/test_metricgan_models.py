"""MetricGAN+ networks match SpeechBrain's sizes and shapes; the slope clamp holds."""

import math

import pytest
import torch

from harness.models.metricgan import EnhancementGenerator, LearnableSigmoid, MetricDiscriminator


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_parameter_counts_match_speechbrain_reference():
    """speechbrain/lobes/models/MetricGAN.py with recipes/Voicebank/enhance/MetricGAN defaults.

    Generator: BLSTM 257 -> 2 x 200, two layers: 2 * (4*200*(257+200) + 8*200)
    + 2 * (4*200*(400+200) + 8*200) = 1,697,600; Linear 400->300: 120,300; Linear 300->257:
    77,357; Learnable_sigmoid slopes: 257.  Total 1,895,514.
    Discriminator: BatchNorm2d(2): 4; conv 2->15 5x5: 765; three conv 15->15 5x5: 3 x 5,640;
    Linear 15->50: 800, 50->10: 510, 10->1: 11.  Total 19,010.
    """
    assert n_params(EnhancementGenerator()) == 1_895_514
    assert n_params(MetricDiscriminator()) == 19_010


def test_generator_mask_lies_in_zero_to_1_2_and_keeps_shape():
    g = EnhancementGenerator(hidden=16, linear=24)
    with torch.no_grad():
        mask = g(torch.randn(3, 40, 257) * 3)
    assert mask.shape == (3, 40, 257)
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.2


def test_discriminator_scores_one_value_per_pair():
    d = MetricDiscriminator()
    assert d(torch.rand(4, 2, 63, 257)).shape == (4, 1)


def test_slope_clamp_caps_and_resets_nan_after_a_step_past_the_limit():
    """A real optimizer step drives slopes past 3.5; clamp_slopes brings them back."""
    g = EnhancementGenerator(hidden=8, linear=8)
    opt = torch.optim.SGD([g.sigmoid.slope], lr=100.0)
    x = torch.randn(2, 10, 257)
    (-g(x).sum()).backward()  # pushing every mask towards 1.2 raises slopes where x > 0
    opt.step()
    with torch.no_grad():
        g.sigmoid.slope[0] = math.nan
    assert float(g.sigmoid.slope[1:].nan_to_num().max()) > 3.5
    g.clamp_slopes(3.5)
    slope = g.sigmoid.slope
    assert torch.isfinite(slope).all()
    assert float(slope.max()) <= 3.5
    assert float(slope[0]) == 3.5


def test_learnable_sigmoid_starts_as_1_2_times_sigmoid():
    x = torch.linspace(-4, 4, 9)
    torch.testing.assert_close(LearnableSigmoid(9)(x), 1.2 * torch.sigmoid(x))
