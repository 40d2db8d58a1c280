"""HiFi-GAN networks match jik876/hifi-gan's sizes, map the right shapes, and the losses behave."""

import math

import pytest
import torch

from harness.models.hifigan import (
    GENERATOR_PRESETS,
    Generator,
    GeneratorConfig,
    HifiganDiscriminator,
    ModelConfigError,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    generator_preset,
)
from harness.training.losses import (
    bce_d_loss,
    bce_g_loss,
    decision_accuracy,
    feature_matching_loss,
    lsgan_d_loss,
    lsgan_g_loss,
)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# Reference counts: (with weight norm, after remove_weight_norm), from jik876/hifi-gan's models.
@pytest.mark.parametrize(
    ("preset", "with_norm", "without_norm"),
    [("v1", 13_936_130, 13_926_017), ("v2", 928_514, 925_985), ("v3", 1_464_322, 1_462_273)],
)
def test_generator_parameter_counts_match_reference(preset, with_norm, without_norm):
    g = Generator(GENERATOR_PRESETS[preset])
    assert n_params(g) == with_norm
    g.remove_weight_norm()
    assert n_params(g) == without_norm
    assert not any("parametrizations" in name for name, _ in g.named_parameters())


@pytest.mark.parametrize("preset", ["tiny", "v2"])
def test_a_dc_free_generator_starts_without_the_default_inits_dc_offset(preset):
    """Seed 0's untrained tiny G puts out mostly DC: 0.26 against 0.014 RMS of the rest on
    speech; with ``dc_free`` only ``conv_post`` changes and its output has no DC."""
    mel = torch.randn(2, 80, 32) - 5.0  # log-mel-like: well below 0 with spread
    offsets = {}
    for dc_free in (False, True):
        torch.manual_seed(0)
        g = Generator(GENERATOR_PRESETS[preset], dc_free=dc_free)
        with torch.no_grad():
            audio = g(mel).squeeze(1)
        offsets[dc_free] = audio.mean(dim=-1).abs().max().item()
        taps = g.conv_post.weight.detach().sum(dim=-1)
        if dc_free:
            assert taps.abs().max() < 1e-6 and g.conv_post.bias.abs().max() == 0
            ac = (audio - audio.mean(dim=-1, keepdim=True)).pow(2).mean().sqrt().item()
            assert offsets[True] < 0.02 * ac  # edge effects of the zero padding only
    assert offsets[False] > 0.01 > 50 * offsets[True]
    g.remove_weight_norm()  # the DC-free weights live in weight norm's g and v
    assert g.conv_post.weight.sum(dim=-1).abs().max() < 1e-6


def test_discriminator_parameter_counts_match_reference():
    assert n_params(MultiPeriodDiscriminator()) == 41_105_770
    assert n_params(MultiScaleDiscriminator()) == 29_618_821


def test_tiny_generator_maps_frames_to_hop_samples_in_unit_range():
    cfg = GENERATOR_PRESETS["tiny"]
    assert cfg.hop_length == 256
    audio = Generator(cfg)(torch.randn(2, 80, 16))
    assert audio.shape == (2, 1, 4096)
    assert audio.abs().max() <= 1.0


def test_v3_generator_upsamples_by_256():
    audio = Generator(GENERATOR_PRESETS["v3"])(torch.randn(1, 80, 3))
    assert audio.shape == (1, 1, 3 * 256)


def test_remove_weight_norm_keeps_the_output():
    g = Generator(GENERATOR_PRESETS["tiny"]).eval()
    mel = torch.randn(1, 80, 8)
    with torch.no_grad():
        before = g(mel)
        g.remove_weight_norm()
        after = g(mel)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-6)


def test_discriminators_return_one_entry_per_sub_discriminator():
    x = torch.randn(2, 1, 1000)  # not a multiple of any period: exercises reflect padding
    d = HifiganDiscriminator({"width": 1 / 16}, {"width": 1 / 16, "scales": 2})
    out = d(x)
    assert set(out) == {"mpd", "msd"}
    (mpd_logits, mpd_fmaps), (msd_logits, msd_fmaps) = out["mpd"], out["msd"]
    assert len(mpd_logits) == len(mpd_fmaps) == 5
    assert len(msd_logits) == len(msd_fmaps) == 2
    assert all(len(f) == 6 for f in mpd_fmaps)  # 5 convs + conv_post
    assert all(len(f) == 8 for f in msd_fmaps)  # 7 convs + conv_post
    assert all(t.shape[0] == 2 and t.dim() == 2 for t in mpd_logits + msd_logits)
    # each MSD scale sees the input average-pooled once more, so its logits get shorter
    assert msd_logits[1].shape[1] < msd_logits[0].shape[1]


def test_width_scales_channels_and_keeps_msd_groups_valid():
    mpd = MultiPeriodDiscriminator(periods=(2, 3), width=0.25)
    assert [c.out_channels for c in mpd.discriminators[0].convs] == [8, 32, 128, 256, 256]
    msd = MultiScaleDiscriminator(scales=1, width=0.1)
    channels = [c.out_channels for c in msd.discriminators[0].convs]
    assert channels == [16, 16, 32, 48, 96, 96, 96]
    assert [c.groups for c in msd.discriminators[0].convs] == [1, 4, 16, 16, 16, 16, 1]
    logits, _ = msd(torch.randn(1, 1, 512))
    assert logits[0].shape[0] == 1


def test_msd_spectral_norm_on_first_scale_weight_norm_elsewhere():
    msd = MultiScaleDiscriminator(width=1 / 8)
    first, second = msd.discriminators[0].convs[0], msd.discriminators[1].convs[0]
    assert hasattr(first.parametrizations.weight, "original")  # spectral norm: one tensor
    assert hasattr(second.parametrizations.weight, "original1")  # weight norm: g and v


@pytest.mark.parametrize(
    "change",
    [
        {"resblock": "3"},
        {"upsample_kernel_sizes": (16, 16, 4)},
        {"upsample_kernel_sizes": (16, 16, 4, 5)},
        {"upsample_initial_channel": 20},
        {"resblock_kernel_sizes": (3, 4)},
        {"resblock_dilation_sizes": ((1, 3, 5),)},
    ],
)
def test_bad_generator_config_is_a_one_line_error_naming_the_key(change):
    fields = {**GENERATOR_PRESETS["tiny"].__dict__, **change}
    with pytest.raises(ModelConfigError, match=next(iter(change))) as err:
        GeneratorConfig(**fields)
    assert "\n" not in str(err.value)


def test_config_accepts_lists_and_bad_names_and_widths_are_errors():
    cfg = GeneratorConfig([8, 8, 4], [16, 16, 8], 256, "2", [3, 5, 7], [[1, 2], [2, 6], [3, 12]])
    assert cfg == GENERATOR_PRESETS["v3"]
    with pytest.raises(ModelConfigError, match="'v9'"):
        generator_preset("v9")
    with pytest.raises(ModelConfigError, match="width"):
        MultiPeriodDiscriminator(width=0.0)
    with pytest.raises(ModelConfigError, match="channels"):
        MultiScaleDiscriminator(channels=(16, 16))


def test_lsgan_losses_are_zero_at_their_targets_and_smoothing_moves_the_real_target():
    ones, zeros = [torch.ones(2, 5), torch.ones(2, 3)], [torch.zeros(2, 5), torch.zeros(2, 3)]
    loss, real, fake = lsgan_d_loss(ones, zeros)
    assert loss.item() == real.item() == fake.item() == 0.0
    loss, real, fake = lsgan_d_loss(ones, zeros, real_target=0.9)
    assert real.item() == pytest.approx(2 * 0.1**2)  # two sub-discriminators
    assert fake.item() == 0.0 and loss.item() == pytest.approx(real.item())
    smoothed = [t * 0.9 for t in ones]
    assert lsgan_d_loss(smoothed, zeros, real_target=0.9)[0].item() == pytest.approx(0.0)
    assert lsgan_d_loss(zeros, ones)[0].item() == pytest.approx(4.0)
    assert lsgan_g_loss(ones).item() == 0.0
    assert lsgan_g_loss(zeros).item() == pytest.approx(2.0)


def test_bce_losses_match_the_formula_and_smoothing_moves_the_minimum():
    logit = torch.tensor([[2.0, -1.0]])
    _, real, fake = bce_d_loss([logit], [logit])
    p = torch.sigmoid(logit)
    assert real.item() == pytest.approx(-torch.log(p).mean().item(), rel=1e-5)
    assert fake.item() == pytest.approx(-torch.log(1 - p).mean().item(), rel=1e-5)
    # with target 0.9 the real term is smallest at logit(0.9), not at ever larger logits
    at = math.log(0.9 / 0.1)
    smoothed = [bce_d_loss([torch.full((1, 4), x)], [], 0.9)[1].item() for x in (at, at + 3)]
    assert smoothed[0] < smoothed[1]
    assert (
        bce_d_loss([torch.full((1, 4), at + 3)], [])[1]
        < bce_d_loss([torch.full((1, 4), at)], [])[1]
    )
    assert bce_g_loss([logit]).item() == pytest.approx(real.item())


def test_feature_matching_sums_l1_and_only_pulls_the_fake_side():
    real = [[torch.zeros(2, 3, requires_grad=True), torch.ones(4, requires_grad=True)]]
    fake = [
        [torch.full((2, 3), 0.5, requires_grad=True), torch.full((4,), 3.0, requires_grad=True)]
    ]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(0.5 + 2.0)
    loss.backward()
    assert real[0][0].grad is None and real[0][1].grad is None
    assert fake[0][0].grad is not None


def test_decision_accuracy_counts_real_above_and_fake_below_threshold():
    real = [torch.tensor([0.9, 0.2]), torch.tensor([[0.7]])]
    fake = [torch.tensor([0.1, 0.6, 0.4])]
    assert decision_accuracy(real, fake, threshold=0.5) == pytest.approx(4 / 6)
    assert decision_accuracy(real, fake, threshold=0.0) == pytest.approx(3 / 6)
