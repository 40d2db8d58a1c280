"""The SEGAN recipe: the reference's settings, pre-emphasis, windowed enhancement, a short run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pair_corpus import write_pair_corpus

from harness.recipes.segan import SeganRecipe, de_emphasis, pre_emphasis
from harness.runs.resolve import resolve_config
from harness.runs.trial import run_trial
from harness.training.config import ConfigError
from harness.training.recipe import DiscriminatorSmoothing

TINY = {
    "width": 1 / 16,
    "segment_size": 4096,
    "batch_size": 2,
    "n_valid": 2,
    "valid_max_seconds": 1.0,
    "score_workers": 1,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_pair_corpus(tmp_path_factory.mktemp("pairs"))


def tiny_config(corpus, **overrides):
    return resolve_config("segan", "smoke", overrides={**TINY, **overrides}, data=str(corpus))


def tiny_recipe(corpus, **overrides) -> SeganRecipe:
    cfg = tiny_config(corpus, **overrides)
    return SeganRecipe(cfg.model, str(corpus), cfg.trainer.seed, cfg.trainer.batch_size)


def test_paper_budget_is_the_reference_configuration():
    cfg = resolve_config("segan", "paper")
    t, m = cfg.trainer, cfg.model
    # RMSprop 2e-4 in the reference; Adam with beta1 0, beta2 0.9 is the trainer's closest
    assert (t.optimizer, t.lr_g, t.lr_d, t.b1_g, t.b2_g, t.b1_d, t.b2_d) == (
        "adam",
        2e-4,
        2e-4,
        0.0,
        0.9,
        0.0,
        0.9,
    )
    assert (t.d_steps, t.g_steps, t.batch_size, t.label_smoothing) == (1, 1, 100, 0.0)
    assert (m.width, m.segment_size, m.preemph, m.lambda_l1, m.sample_rate) == (
        1.0,
        16384,
        0.95,
        100.0,
        16000,
    )


def test_de_emphasis_inverts_pre_emphasis():
    x = torch.randn(3, 1000, dtype=torch.float64)
    assert torch.allclose(de_emphasis(pre_emphasis(x, 0.95), 0.95), x, atol=1e-10)
    assert torch.equal(pre_emphasis(x, 0.0), x)


def test_batches_are_pre_emphasised_and_d_sees_the_noisy_condition(corpus):
    recipe = tiny_recipe(corpus)
    clean, noisy = recipe.train_data().batch(0)
    moved = recipe.batch_to((clean, noisy), torch.device("cpu"))
    assert torch.equal(moved[0], pre_emphasis(clean, 0.95))
    assert torch.equal(moved[1], pre_emphasis(noisy, 0.95))
    pair = recipe._pair(moved[0].unsqueeze(1), moved[1])
    assert pair.shape == (2, 2, 4096) and torch.equal(pair[:, 1], moved[1])


def test_latent_comes_from_the_trainer_seeded_stream(corpus):
    recipe = tiny_recipe(corpus)
    g = recipe.build_generator()
    batch = recipe.batch_to(recipe.train_data().batch(0), torch.device("cpu"))
    torch.manual_seed(5)
    a = recipe.generate(g, batch)
    b = recipe.generate(g, batch)
    torch.manual_seed(5)
    assert torch.equal(recipe.generate(g, batch), a) and not torch.equal(a, b)


def test_enhance_windows_any_length_and_is_deterministic(corpus):
    recipe = tiny_recipe(corpus)
    g = recipe.build_generator().eval()
    noisy = torch.randn(1, 10_000) * 0.1  # two windows and a bit
    with torch.no_grad():
        out = recipe.enhance(g, noisy)
        assert out.shape == (1, 10_000) and torch.equal(out, recipe.enhance(g, noisy))


def test_losses_follow_lsgan_with_l1_weight_100(corpus):
    recipe = tiny_recipe(corpus)
    batch = recipe.batch_to(recipe.train_data().batch(0), torch.device("cpu"))
    perfect = batch[0].unsqueeze(1).clone()
    d = recipe.build_discriminator()
    out = recipe.generator_loss(d, batch, perfect, DiscriminatorSmoothing())
    assert torch.allclose(out.reconstruction, torch.zeros(2))
    noisy_out = recipe.generator_loss(None, batch, batch[1].unsqueeze(1), DiscriminatorSmoothing())
    l1 = (batch[1] - batch[0]).abs().mean(dim=1)
    assert torch.allclose(noisy_out.reconstruction, 100 * l1)
    real, fake = d(recipe._pair(batch[0], batch[1]), recipe._pair(perfect, batch[1]))
    loss = recipe.discriminator_loss(d, batch, perfect, DiscriminatorSmoothing()).loss
    assert float(loss) == pytest.approx(float(((real - 1) ** 2).mean() + (fake**2).mean()))
    # a perfect output is the real batch, its own reference: D cannot tell them apart
    assert torch.allclose(real, fake, atol=1e-5)


def test_short_run_and_exact_resume(tmp_path, corpus):
    def run(out, steps, resume=False):
        cfg = tiny_config(corpus, batches=steps, eval_every=2, log_every=1)
        result = run_trial(cfg, out, resume=resume)
        return result, torch.load(result.checkpoint, weights_only=True)

    result, straight = run(tmp_path / "straight", 4)
    assert result.status == "completed" and result.step == 4
    last = result.last_eval
    for key in ("pesq", "stoi", "si_snr", "csig", "cbak", "covl"):
        assert np.isfinite(last[key]) and np.isfinite(last[f"{key}_noisy"]), key
        assert last[f"{key}_gain"] == pytest.approx(last[key] - last[f"{key}_noisy"], abs=1e-9)
    run(tmp_path / "resumed", 2)
    _, resumed = run(tmp_path / "resumed", 4, resume=True)
    for key, value in straight["generator"].items():
        assert torch.equal(value, resumed["generator"][key]), key


def test_search_space_starts_at_the_paper_and_optimises_pesq():
    from harness.results.space import default_space_file, load_space

    space = load_space(default_space_file("segan"), "segan")
    assert space.objective == "pesq"
    assert {"d_steps", "lr_g", "lr_d", "lambda_l1", "label_smoothing"} <= set(space.swept)
    paper = resolve_config("segan", "paper").flat()
    assert space.points[0] == {key: paper[key] for key in space.swept}


def test_step_rows_weigh_ds_gradient_against_the_l1_terms(tmp_path, corpus):
    """G's L1 term is lambda_l1 x mean |x_hat - x|: its gradient on the generated batch has norm
    lambda_l1 / sqrt(B x T) wherever no sample is exactly right, whatever the networks."""
    from harness.runs.resolve import make_recipe
    from harness.training.trainer import Trainer

    rows: list[dict] = []
    cfg = tiny_config(corpus, log_every=1)
    trainer = Trainer(make_recipe(cfg), cfg.trainer, tmp_path, lambda k, row, c: rows.append(row))
    for _ in range(2):
        trainer._train_step()
    trainer.recipe.close()
    expected = 100.0 / (TINY["batch_size"] * TINY["segment_size"]) ** 0.5
    for row in rows:
        assert row["recon_grad_norm"] == pytest.approx(expected, rel=1e-4)
        assert row["adv_recon_ratio"] == pytest.approx(row["adv_grad_norm"] / expected, rel=1e-4)


@pytest.mark.slow  # DNSMOS: its model loads in the scoring worker
def test_extra_metrics_add_a_guard_to_the_validation_without_a_noisy_baseline(corpus):
    """A confirmation measures an enhancer's guard its validation leaves out (MetricGAN+'s and
    SEGAN's DNSMOS) through ``extra_metrics``: scored on the enhanced clips only."""
    plain = tiny_config(corpus)
    assert SeganRecipe.measuring(plain.model, ("pesq", "stoi")) == {}  # reported already
    wanted = SeganRecipe.measuring(plain.model, ("stoi", "dnsmos_ovrl"))
    assert wanted == {"extra_metrics": ("dnsmos_ovrl",)}
    cfg = tiny_config(corpus, **wanted)
    assert SeganRecipe.reports(cfg.model)[-1] == "dnsmos_ovrl"
    recipe = SeganRecipe(cfg.model, str(corpus), cfg.trainer.seed, cfg.trainer.batch_size)
    try:
        with torch.no_grad():
            row = recipe.validate(recipe.build_generator(), 0, None)
    finally:
        recipe.close()
    assert 0.5 < row["dnsmos_ovrl"] < 5.5 and "dnsmos_ovrl_noisy" not in row
    assert row["pesq_gain"] == pytest.approx(row["pesq"] - row["pesq_noisy"])
    with pytest.raises(ConfigError, match=r"^extra_metrics: \['pesq'\] not among mel_l1"):
        tiny_recipe(corpus, extra_metrics="[pesq]")
