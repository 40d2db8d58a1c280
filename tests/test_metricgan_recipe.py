"""The MetricGAN+ recipe: PESQ targets, the replay set, the slope clamp, a short run, exact resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pair_corpus import write_pair_corpus

from harness.recipes.metric_targets import ReplayBuffer, normalised_pesq
from harness.recipes.metricgan import MetricganRecipe
from harness.runs.resolve import resolve_config
from harness.runs.trial import run_trial
from harness.scoring.utterance import score_pair
from harness.training.trainer import Trainer

TINY = {
    "generator": "tiny",
    "d_channels": 4,
    "segment_size": 16000,
    "batch_size": 2,
    "n_valid": 2,
    "valid_max_seconds": 1.0,
    "score_workers": 1,
    "replay_size": 8,
    "pesq_lag": 0,
    "pesq_every": 1,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_pair_corpus(tmp_path_factory.mktemp("pairs"))


def tiny_config(corpus, **overrides):
    return resolve_config("metricgan", "smoke", overrides={**TINY, **overrides}, data=str(corpus))


def tiny_recipe(corpus, **overrides) -> MetricganRecipe:
    cfg = tiny_config(corpus, **overrides)
    return MetricganRecipe(cfg.model, str(corpus), cfg.trainer.seed, cfg.trainer.batch_size)


def test_paper_budget_is_speechbrains_configuration():
    cfg = resolve_config("metricgan", "paper")
    t, m = cfg.trainer, cfg.model
    assert (t.optimizer, t.lr_g, t.lr_d, t.scheduler) == ("adam", 5e-4, 5e-4, "constant")
    assert (t.b1_g, t.b2_g, t.b1_d, t.b2_d) == (0.9, 0.999, 0.9, 0.999)
    assert (t.d_steps, t.g_steps, t.clip_grad_g, t.clip_grad_d) == (2, 1, 5.0, 5.0)
    assert (t.batch_size, t.batches, t.label_smoothing) == (1, 120_000, 0.0)  # batches drawn
    assert (m.generator, m.d_channels, m.min_mask, m.max_slope) == ("paper", 15, 0.05, 3.5)
    assert (m.replay_ratio, m.pesq_every, m.pesq_lag) == (0.2, 2, 0)
    assert (m.lambda_mse, m.sample_rate) == (0.0, 16000)


def test_discriminator_targets_are_the_pesq_of_the_pairs_it_sees(corpus):
    recipe = tiny_recipe(corpus)
    try:
        batch = recipe.train_data().batch(0)
        fake = recipe.generate(recipe.build_generator(), batch).detach()
        groups = recipe.discriminator_batches(batch, fake)
        assert set(groups) == {"clean", "enhanced", "noisy"}  # no history yet
        clean, noisy = batch
        for name, signal in (("enhanced", fake), ("noisy", noisy)):
            estimate, reference, target = groups[name]
            assert torch.equal(estimate, signal) and torch.equal(reference, clean)
            for i in range(len(clean)):
                pesq = score_pair(clean[i].numpy(), signal[i].numpy(), 16000, metrics=("pesq",))
                assert float(target[i]) == pytest.approx(normalised_pesq(pesq["pesq"]), abs=1e-6)
        assert torch.equal(groups["clean"][2], torch.ones(2))
    finally:
        recipe.close()


def test_with_a_lag_d_learns_the_batch_scored_that_many_steps_ago(corpus):
    recipe = tiny_recipe(corpus, pesq_lag=1)
    try:
        source, g = recipe.train_data(), recipe.build_generator()
        first, second = source.batch(0), source.batch(1)
        fake0 = recipe.generate(g, first).detach()
        assert set(recipe.discriminator_batches(first, fake0)) == {"clean"}  # warm-up
        groups = recipe.discriminator_batches(second, recipe.generate(g, second).detach())
        assert torch.equal(groups["clean"][0], second[0])
        assert torch.equal(groups["enhanced"][0], fake0) and torch.equal(
            groups["noisy"][0], first[1]
        )
    finally:
        recipe.close()


def test_a_scored_batch_is_learnt_pesq_every_updates_and_joins_the_history_once(corpus):
    recipe = tiny_recipe(corpus, pesq_every=2)
    try:
        source, g = recipe.train_data(), recipe.build_generator()
        batches = [source.batch(i) for i in range(3)]
        groups = [recipe.discriminator_batches(b, recipe.generate(g, b).detach()) for b in batches]
        assert all(torch.equal(x["clean"][0], b[0]) for x, b in zip(groups, batches, strict=True))
        assert torch.equal(groups[1]["enhanced"][0], groups[0]["enhanced"][0])  # learnt again
        assert torch.equal(groups[1]["noisy"][0], batches[0][1])
        assert torch.equal(groups[2]["noisy"][0], batches[2][1])  # the next scored batch
        assert recipe.replay.seen == 4  # batches 0 and 2, two examples each
    finally:
        recipe.close()


def test_reservoir_keeps_a_uniform_sample_of_everything_it_was_offered():
    buffer = ReplayBuffer(capacity=50, seed=0)
    for start in range(0, 1000, 4):
        index = torch.arange(start, start + 4, dtype=torch.float32)
        buffer.add(index[:, None], -index[:, None], index / 1000)
    buffer.add(torch.zeros(2, 1), torch.zeros(2, 1), torch.tensor([math.nan, math.nan]))
    assert len(buffer) == 50 and buffer.seen == 1000  # NaN scores are never kept
    kept = torch.cat(buffer.enhanced)
    assert torch.equal(torch.cat(buffer.clean), -kept)  # pairs stay together
    assert torch.allclose(torch.tensor(buffer.score), kept / 1000)
    # uniform over 0..999: mean 499.5, std of a 50-sample mean ~41; old and new both present
    assert abs(float(kept.mean()) - 499.5) < 125
    assert float(kept.min()) < 250 and float(kept.max()) > 750
    enhanced, clean, score = buffer.sample(5)
    assert len(set(enhanced.flatten().tolist())) == 5 and torch.equal(clean, -enhanced)


def test_replay_state_round_trip_continues_identically():
    a = ReplayBuffer(capacity=4, seed=3)
    for i in range(10):
        a.add(torch.full((1, 2), float(i)), torch.zeros(1, 2), torch.tensor([0.5]))
    b = ReplayBuffer(capacity=4, seed=99)
    b.load_state_dict(a.state_dict())
    for buffer in (a, b):
        buffer.add(torch.full((3, 2), 7.0), torch.zeros(3, 2), torch.tensor([0.1, 0.2, 0.3]))
    assert all(torch.equal(x, y) for x, y in zip(a.sample(3), b.sample(3), strict=True))


def test_replay_group_is_the_ratio_of_the_batch_drawn_from_earlier_steps(corpus):
    recipe = tiny_recipe(corpus, replay_ratio=0.5, batch_size=4)
    history: dict[tuple, tuple] = {}  # enhanced example -> (its score, its clean reference)
    replayed = 0
    try:
        source, g = recipe.train_data(), recipe.build_generator()
        for index in range(3):
            batch = source.batch(index)
            groups = recipe.discriminator_batches(batch, recipe.generate(g, batch).detach())
            if index == 0:
                assert "replay" not in groups  # nothing learnt yet
            else:  # drawn before this step's enhanced batch joined the history
                estimate, reference, target = groups["replay"]
                assert len(target) == 2  # round(0.5 x 4)
                for x, ref, score in zip(estimate, reference, target, strict=True):
                    assert history[tuple(x.tolist())] == (float(score), tuple(ref.tolist()))
                replayed += 1
            for x, ref, score in zip(*groups["enhanced"], strict=True):
                history[tuple(x.tolist())] = (float(score), tuple(ref.tolist()))
        assert replayed == 2 and len(recipe.replay) == 8  # capacity 8 of the 12 offered
    finally:
        recipe.close()


def test_slopes_are_clamped_and_nan_reset_after_a_generator_step(corpus, tmp_path):
    cfg = tiny_config(corpus, lr_g=10.0, batches=1, clip_grad_g=0.0)
    recipe = MetricganRecipe(cfg.model, str(corpus), 0, cfg.trainer.batch_size)
    trainer = Trainer(recipe, cfg.trainer, tmp_path)
    slope = trainer.G.sigmoid.slope.detach()  # a view: follows the parameter

    def corrupt(*_):  # a step that leaves a NaN behind, as a numerical blow-up would
        with torch.no_grad():
            slope[0] = math.nan

    trainer.opt_g.register_step_post_hook(corrupt)
    try:
        trainer._iteration(logging=False)
    finally:
        recipe.close()
    assert torch.isfinite(slope).all() and float(slope.max()) <= 3.5
    assert float(slope[0]) == 3.5
    assert int((slope == 3.5).sum()) > 1  # Adam at lr 10 drove others past 3.5 too


def test_health_reports_the_share_of_the_mask_at_its_floor(corpus):
    recipe = tiny_recipe(corpus)
    try:
        generator = recipe.build_generator()
        batch = recipe.train_data().batch(0)
        with torch.no_grad():
            mask = generator(torch.log1p(recipe.spectrogram.stft(batch[1]).abs()).transpose(1, 2))
            fake = recipe.generate(generator, batch)
            share = recipe.health(batch, fake)["mask_floor_share"]
            assert share == pytest.approx(float((mask <= 0.05).float().mean()))
            assert share < 0.5  # an untrained estimator: its mask starts near the middle
            recipe.generate(lambda features: generator(features) * 0.0, batch)  # stuck
            assert recipe.health(batch, fake)["mask_floor_share"] == 1.0
    finally:
        recipe.close()


def test_short_run_reports_scores_against_the_noisy_input(tmp_path, corpus):
    # budgets count batches drawn: two iterations of the paper's 2 D passes draw 4
    cfg = tiny_config(corpus, batches=4, eval_every=4, log_every=1, pesq_lag=1)
    result = run_trial(cfg, tmp_path / "run", search="s", trial_id="t1")
    assert result.status == "completed" and result.step == 2
    last = result.last_eval
    for key in ("pesq", "stoi", "estoi", "si_snr", "csig", "cbak", "covl"):
        assert np.isfinite(last[key]) and np.isfinite(last[f"{key}_noisy"]), key
        assert last[f"{key}_gain"] == pytest.approx(last[key] - last[f"{key}_noisy"], abs=1e-9)
    assert last["n_valid"] == 2
    samples = tmp_path / "run" / "samples"
    assert len(list((samples / "noisy").glob("*.wav"))) == 2


def test_resume_with_scores_in_flight_is_exact(tmp_path, corpus):
    def params(out, steps, resume=False):
        cfg = tiny_config(
            corpus, steps=steps, eval_every=2, log_every=1, pesq_lag=1, pesq_every=2, d_steps=2
        )
        result = run_trial(cfg, out, resume=resume)
        return torch.load(result.checkpoint, weights_only=True)

    straight = params(tmp_path / "straight", 4)
    params(tmp_path / "resumed", 2)
    resumed = params(tmp_path / "resumed", 4, resume=True)
    for net in ("generator", "discriminator"):
        for key, value in straight[net].items():
            assert torch.equal(value, resumed[net][key]), (net, key)
    assert len(straight["recipe"]["targets"]) == 1  # the batch in flight was checkpointed


def test_search_space_starts_at_the_paper_and_optimises_pesq():
    from harness.results.space import default_space_file, load_space

    space = load_space(default_space_file("metricgan"), "metricgan")
    assert space.objective == "pesq"
    assert {"d_steps", "lr_g", "lr_d", "b1_g", "b1_d", "replay_ratio", "label_smoothing"} <= set(
        space.swept
    )
    paper = resolve_config("metricgan", "paper").flat()
    assert space.points[0] == {key: paper[key] for key in space.swept}
