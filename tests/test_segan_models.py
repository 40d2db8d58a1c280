"""SEGAN networks match santi-pdp/segan's sizes and shapes."""

import pytest
import torch
import torch.nn.functional as F

from harness.models.segan import (
    SeganDiscriminator,
    SeganGenerator,
    VirtualBatchNorm1d,
    scaled_channels,
)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_parameter_counts_match_tensorflow_reference():
    """santi-pdp/segan (model.py, generator.py AEGenerator, discriminator.py) as train_segan.sh
    runs it: --g_nl prelu, convolutions without bias, kernel 31.

    Generator: encoder 31 x (1*16 + 16*32 + ... + 512*1024) = 31 x 785,936 = 24,364,016;
    decoder 31 x (2048*512 + 1024*256 + 512*256 + 512*128 + 256*128 + 256*64 + 128*64 + 128*32
    + 64*32 + 64*16 + 32*1) = 31 x 1,571,872 = 48,728,032; PReLU slopes 2,512 + 1,488 = 4,000.
    Total 73,096,048.  Discriminator on 16,384 samples: convs 31 x 785,952 = 24,364,512; virtual
    batch norm gamma and beta 2 x 2,512 = 5,024; 1x1 conv 1,024; fully connected 8 -> 1: 9.
    Total 24,370,569.
    """
    assert n_params(SeganGenerator()) == 73_096_048
    assert n_params(SeganDiscriminator(16384)) == 24_370_569


def test_generator_maps_a_window_to_a_window_in_unit_range():
    g = SeganGenerator(scaled_channels(1 / 16))
    z = torch.randn(g.latent_shape(2, 4096))
    assert z.shape == (2, 64, 2)
    out = g(torch.randn(2, 1, 4096), z)
    assert out.shape == (2, 1, 4096)
    assert float(out.abs().max()) <= 1.0


def test_latent_shape_rejects_lengths_the_encoder_cannot_halve():
    with pytest.raises(ValueError, match="multiple of 2048"):
        SeganGenerator(scaled_channels(1 / 16)).latent_shape(1, 5000)


def test_discriminator_gives_one_logit_per_pair():
    d = SeganDiscriminator(8192, scaled_channels(1 / 16))
    real, fake = d(torch.randn(3, 2, 8192), torch.randn(2, 2, 8192))
    assert real.shape == (3, 1) and fake.shape == (2, 1)
    assert d(torch.randn(3, 2, 8192))[1] is None


def test_virtual_batch_norm_is_batch_norm_on_the_reference_batch():
    torch.manual_seed(0)
    norm = VirtualBatchNorm1d(4)
    x = torch.randn(8, 4, 100) * 3 + 1
    plain = F.batch_norm(x, None, None, norm.weight, norm.bias, training=True, eps=norm.eps)
    assert torch.allclose(norm(x), plain, atol=1e-5)
    assert torch.allclose(norm(x, reference=x), plain, atol=1e-5)
    # a batch 40 dB quieter: batch norm on its own rescales it to the real batch's output;
    # normalised with the real batch as reference (mixed with its own at 1/9) it stays quiet
    quiet = x * 0.01
    assert torch.allclose(norm(quiet), plain, atol=0.05)  # up to eps
    spread = (norm(quiet, reference=x) - norm.bias.view(1, -1, 1)).std() / plain.std()
    assert 0.005 < float(spread) < 0.05


def test_real_logits_do_not_depend_on_the_generated_batch():
    torch.manual_seed(0)
    d = SeganDiscriminator(4096, scaled_channels(1 / 16))
    real = torch.randn(3, 2, 4096)
    alone, _ = d(real)
    with_fake, fake = d(real, torch.randn(3, 2, 4096))
    assert torch.equal(alone, with_fake)
    _, quiet = d(real, real * 0.01)
    own_stats, _ = d(real * 0.01)  # batch norm on the quiet batch alone
    assert torch.allclose(own_stats, alone, atol=0.05)  # blind to the level, up to eps
    assert not torch.allclose(quiet, alone, atol=0.05)  # virtual batch norm sees it


def test_generator_output_depends_on_the_latent():
    g = SeganGenerator(scaled_channels(1 / 16))
    x = torch.randn(1, 1, 4096)
    a = g(x, torch.randn(g.latent_shape(1, 4096)))
    b = g(x, torch.randn(g.latent_shape(1, 4096)))
    assert not torch.equal(a, b)  # tiny at initialisation, as in the reference, but there


def test_convolutions_start_from_the_reference_truncated_normal():
    g = SeganGenerator()
    weights = torch.cat([m.weight.flatten() for m in [*g.encoder, *g.decoder]])
    assert float(weights.abs().max()) <= 0.04  # truncated at two standard deviations
    assert float(weights.std()) == pytest.approx(0.02 * 0.88, rel=0.02)  # std of N(0,1) cut at 2
    assert all(float(a.weight.abs().max()) == 0.0 for a in g.enc_act)  # PReLU slopes start at 0
