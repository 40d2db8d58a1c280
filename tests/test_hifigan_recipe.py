"""The HiFi-GAN recipe end to end on a small synthetic corpus, and the train command's errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow.dataset as ds
import pytest
import soundfile as sf
import torch
import yaml
from weights_digest import digests_with_and_without_freezing

from harness.cli import main
from harness.diagnostics.telemetry import read_diagnostics
from harness.runs.resolve import config_from_flat, make_recipe, resolve_config
from harness.runs.trial import run_trial
from harness.training.config import ConfigError
from harness.training.trainer import Trainer

SR = 22050
TINY = {
    "generator": "tiny",
    "d_width": 0.125,
    "segment_size": 1024,
    "batch_size": 2,
    "n_valid": 2,
    "valid_max_seconds": 1.0,
    "score_workers": 1,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six 1.5 s harmonic 'voices' with a moving pitch, in a plain WAV folder."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * SR)) / SR
    for i in range(6):
        f0 = 110 + 30 * i + 20 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / SR
        wave = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(3 * t))
        wave = 0.3 * wave / np.abs(wave).max() + 0.003 * rng.standard_normal(t.size)
        sf.write(root / f"utt{i}.wav", wave.astype(np.float32), SR)
    return root


def test_paper_budget_is_the_paper_configuration():
    cfg = resolve_config("hifigan", "paper")
    t, m = cfg.trainer, cfg.model
    assert (t.optimizer, t.lr_g, t.lr_d) == ("adamw", 2e-4, 2e-4)
    assert (t.b1_g, t.b2_g, t.b1_d, t.b2_d) == (0.8, 0.99, 0.8, 0.99)
    assert (t.scheduler, t.lr_decay, t.scheduler_interval) == ("exponential", 0.999, "per_epoch")
    assert (t.batch_size, t.d_steps, t.g_steps, t.label_smoothing) == (16, 1, 1, 0.0)
    assert (m.generator, m.d_width, m.segment_size, m.loss) == ("v1", 1.0, 8192, "lsgan")
    assert (m.lambda_fm, m.lambda_mel, m.sample_rate) == (2.0, 45.0, 22050)


def test_smoke_budget_shrinks_and_says_how():
    cfg = resolve_config("hifigan", "smoke").flat()
    assert cfg["generator"] == "tiny" and cfg["d_width"] < 1 and cfg["segment_size"] < 8192


def test_short_training_run_writes_everything(tmp_path, corpus):
    cfg = resolve_config(
        "hifigan",
        "smoke",
        overrides={**TINY, "batches": 4, "eval_every": 2, "log_every": 2},
        data=str(corpus),
    )
    result = run_trial(cfg, tmp_path / "run", search="s", trial_id="t1")
    assert result.status == "completed" and result.step == 4
    for key in ("mel_l1", "pesq", "stoi", "estoi", "si_snr", "mrstft"):
        assert np.isfinite(result.last_eval[key]), key
    assert result.last_eval["n_valid"] == 2 and result.last_eval["n_skipped"] == 0

    rows = ds.dataset(tmp_path / "run" / "diagnostics", partitioning="hive").to_table().to_pandas()
    assert sorted(rows.query("kind == 'eval'")["step"]) == [0, 2, 4]
    steps = rows.query("kind == 'step'")
    assert sorted(steps["step"]) == [2, 4]
    by_group = read_diagnostics(tmp_path / "run" / "diagnostics", kind="step")["d_real_by_group"]
    assert set(by_group.iloc[0]) == {"mpd", "msd"}
    assert steps[["loss_d", "loss_g", "loss_fm", "loss_mel", "grad_norm_g"]].notna().all().all()

    samples = tmp_path / "run" / "samples"
    assert len(list((samples / "reference").glob("*.wav"))) == 2
    generated = sorted(samples.glob("step_*"))
    assert [p.name for p in generated] == ["step_00000000", "step_00000002", "step_00000004"]
    audio, sr = sf.read(next(generated[-1].glob("*.wav")))
    assert sr == SR and audio.size == SR // 256 * 256  # whole utterance (1 s cap), hop-aligned

    saved = config_from_flat(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()))
    assert dataclasses.asdict(saved.model) == dataclasses.asdict(cfg.model)
    assert saved.trainer == cfg.trainer and saved.data == str(corpus)


def test_training_batches_are_raw_audio_and_mel_is_computed_on_device(corpus):
    from harness.recipes.hifigan import HifiganRecipe

    cfg = resolve_config("hifigan", "smoke", overrides=TINY, data=str(corpus))
    recipe = HifiganRecipe(cfg.model, str(corpus), 0, 2)
    (audio,) = recipe.train_data().batch(0)
    assert audio.shape == (2, 1024) and audio.dtype == torch.float32
    g = recipe.build_generator()
    assert recipe.generate(g, (audio,)).shape == (2, 1, 1024)


def test_mel_loss_is_per_example_and_weighted(corpus):
    from harness.recipes.hifigan import HifiganRecipe
    from harness.training.recipe import DiscriminatorSmoothing

    cfg = resolve_config("hifigan", "smoke", overrides=TINY, data=str(corpus))
    recipe = HifiganRecipe(cfg.model, str(corpus), 0, 2)
    batch = recipe.train_data().batch(0)
    out = recipe.generator_loss(
        None, batch, batch[0].unsqueeze(1).clone(), DiscriminatorSmoothing()
    )
    assert out.reconstruction.shape == (2,)
    assert torch.allclose(out.reconstruction, torch.zeros(2), atol=1e-6)  # perfect estimate
    assert float(out.through_d) == 0.0


def test_eval_metrics_choose_what_a_validation_scores(corpus):
    from harness.recipes.hifigan import HifiganRecipe

    chosen = "[stoi, dnsmos_ovrl, vuv_f1]"  # as `--set eval_metrics=...` gives it: YAML text
    overrides = {**TINY, "eval_metrics": chosen}
    cfg = resolve_config("hifigan", "smoke", overrides=overrides, data=str(corpus))
    assert cfg.model.eval_metrics == ("stoi", "dnsmos_ovrl", "vuv_f1")
    recipe = HifiganRecipe(cfg.model, str(corpus), 0, 2)
    try:
        with torch.no_grad():  # as the trainer validates
            row = recipe.validate(recipe.build_generator(), 0, None)
    finally:
        recipe.close()
    assert set(row) == {"mel_l1", "stoi", "dnsmos_ovrl", "vuv_f1", "n_valid", "n_skipped"}
    assert row["n_valid"] == 2 and 0.5 < row["dnsmos_ovrl"] < 5.5 and 0 <= row["vuv_f1"] <= 1
    with pytest.raises(ConfigError, match=r"^eval_metrics: \['mel_l1'\] not among pesq, stoi"):
        HifiganRecipe(dataclasses.replace(cfg.model, eval_metrics=("mel_l1",)), None, 0, 2)


def test_unknown_config_key_is_one_line_error_listing_valid_keys(capsys):
    with pytest.raises(ConfigError, match=r"unknown config key 'lr_gen'; valid keys: .*lr_g"):
        resolve_config("hifigan", "smoke", overrides={"lr_gen": "1e-4"})
    assert main(["train", "hifigan", "--set", "lr_gen=1e-4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown config key 'lr_gen'") and "\n" not in err


def test_wrongly_typed_value_is_rejected(capsys):
    assert main(["train", "hifigan", "--set", "d_steps=three"]) == 2
    assert "d_steps: expected an integer, got 'three'" in capsys.readouterr().err
    assert main(["train", "hifigan", "--set", "generator=v9"]) == 2
    assert "generator: 'v9' is not one of v1, v2, v3, tiny" in capsys.readouterr().err


def test_missing_data_folder_is_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nope"
    code = main(["train", "hifigan", "--data", str(missing), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and str(missing) in err and "\n" not in err


def _trainer(tmp_path, corpus, rows=None, **overrides):
    cfg = resolve_config("hifigan", "smoke", overrides={**TINY, **overrides}, data=str(corpus))
    report = None if rows is None else lambda kind, row, ckpt: rows.append(row)
    return Trainer(make_recipe(cfg), cfg.trainer, tmp_path, report)


@pytest.mark.parametrize("reevaluate", [True, False])
def test_freezing_d_during_the_g_step_changes_no_bit(tmp_path, monkeypatch, corpus, reevaluate):
    """4 iterations with R1 on, torch's for-loop AdamW."""

    def train(name: str) -> Trainer:
        trainer = _trainer(
            tmp_path / name, corpus, r1_gamma=1.0, reevaluate_d=reevaluate, fused_optimizer=False
        )
        for _ in range(4):
            trainer._train_step()
        trainer.recipe.close()
        return trainer

    frozen, unfrozen = digests_with_and_without_freezing(train, monkeypatch)
    assert frozen == unfrozen


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_mixed_precision_step_on_cuda_has_finite_losses(tmp_path, corpus, precision):
    rows: list[dict] = []
    trainer = _trainer(tmp_path, corpus, rows, device="cuda", precision=precision, log_every=1)
    assert torch.backends.cudnn.benchmark and trainer.opt_g.defaults["fused"]
    assert trainer._next_batch()[0].is_cuda  # through pinned memory, asynchronously
    for _ in range(4):
        trainer._train_step()
    trainer.recipe.close()
    assert len(rows) == 4
    for row in rows:
        for key in ("loss_d", "loss_g", "loss_mel"):
            assert math.isfinite(row[key]), (precision, key, row[key])
    # a norm is missing only where fp16's GradScaler skipped the step, and then it is counted
    updates = sum("grad_norm_g" in row for row in rows) + sum("grad_norm_d" in row for row in rows)
    assert updates + rows[-1]["scaler_skips"] == 8
    if precision == "bf16":
        assert rows[-1]["scaler_skips"] == 0


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_an_fp16_overflow_is_skipped_by_the_scaler_and_counted(tmp_path, corpus, device):
    rows: list[dict] = []
    trainer = _trainer(tmp_path, corpus, rows, device=device, precision="fp16", log_every=1)
    trainer._train_step()
    nets = (trainer.G, trainer.D)
    weights = [{k: v.detach().clone() for k, v in net.named_parameters()} for net in nets]
    skips = trainer.counters.scaler_skips
    for scaler in (trainer.scaler_g, trainer.scaler_d):
        scaler.update(2.0**60)  # every fp16 gradient overflows at this scale
    trainer._train_step()
    trainer.recipe.close()
    assert trainer.counters.scaler_skips == skips + 2 == rows[-1]["scaler_skips"]
    assert trainer.counters.nonfinite_skips == 0  # the scaler's own skip, not a guard's
    assert trainer.scaler_g.get_scale() == trainer.scaler_d.get_scale() == 2.0**59
    assert math.isfinite(rows[-1]["loss_d"]) and math.isfinite(rows[-1]["loss_g"])
    for before, net in zip(weights, nets, strict=True):  # (spectral norm's buffers do move)
        assert all(torch.equal(before[k], v) for k, v in net.named_parameters())


@pytest.fixture
def cuda_memory_cap():
    """Sets this process's CUDA allocator cap for a test; the whole device again after it."""
    yield torch.cuda.set_per_process_memory_fraction
    torch.cuda.set_per_process_memory_fraction(1.0)
    torch.cuda.empty_cache()


@pytest.mark.gpu
def test_a_real_cuda_out_of_memory_batch_is_skipped_and_counted(tmp_path, corpus, cuda_memory_cap):
    trainer = _trainer(tmp_path, corpus, device="cuda", segment_size=8192, batch_size=8)
    trainer._train_step()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    cuda_memory_cap((torch.cuda.memory_allocated() + 8 * 2**20) / total)  # 8 MiB to spare
    step = trainer.step
    trainer._train_step()  # the allocator refuses this batch's activations
    assert trainer.counters.oom_skips == 1 and trainer.step == step + 1
    cuda_memory_cap(1.0)
    trainer._train_step()
    trainer.recipe.close()
    assert trainer.counters.oom_skips == 1 and trainer.counters.consecutive_oom == 0
