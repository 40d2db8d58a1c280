"""DNSMOS P.835: a non-intrusive predictor of speech (SIG), background (BAK) and overall (OVRL) MOS.

Reddy et al. 2022, "DNSMOS P.835: a non-intrusive perceptual objective speech quality metric to
evaluate noise suppressors".  Microsoft's ONNX model as the ``speechmos`` wheel ships it
(``speechmos/dnsmos_models/sig_bak_ovr.onnx``; nothing is downloaded), scored as Microsoft's
reference script (DNS-Challenge ``dnsmos_local.py``, and ``speechmos.dnsmos``) scores it:

- 16 kHz audio; a clip shorter than 9.01 s is doubled (appended to itself) until it is at
  least that long, so a 3 s clip is scored as 12 s of repeats;
- 9.01 s windows every second, each mapped through the P.835 calibration polynomials, averaged.

Three differences: no P.808 score is computed (it is not reported here, and its mel front end
adds time); samples beyond [-1, 1] are clipped (what a PCM file would hold) where speechmos
refuses them; and the ONNX session is built once per process with one thread, as the scoring
pool already runs one process per core.  Only the model file is taken from speechmos: its code
imports librosa and requests, which its wheel does not declare.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import numpy as np

SAMPLE_RATE = 16000  # the model's rate; callers resample
WINDOW_SECONDS = 9.01  # the model's input length (INPUT_LENGTH in the reference script)
# raw model outputs (SIG, BAK, OVRL, in this order) -> MOS: the reference script's polynomials
# for the non-personalised model (tests check them against speechmos.dnsmos)
CALIBRATION = {
    "dnsmos_sig": np.poly1d([-0.08397278, 1.22083953, 0.0052439]),
    "dnsmos_bak": np.poly1d([-0.13166888, 1.60915514, -0.39604546]),
    "dnsmos_ovrl": np.poly1d([-0.06766283, 1.11546468, 0.04602535]),
}
NAMES = tuple(CALIBRATION)


@cache
def _session() -> Any:
    """The P.835 ONNX session of this process: one intra- and inter-op thread, CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    model = resources.files("speechmos") / "dnsmos_models" / "sig_bak_ovr.onnx"
    with resources.as_file(model) as path:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def windows(audio: np.ndarray) -> np.ndarray:
    """The [n, 9.01 s] model inputs the reference script cuts from 16 kHz ``audio``.

    Index arithmetic is the script's own, float rounding included: from the eighth window on,
    ``int((i + 9.01) * 16000)`` lands one sample short and the script drops the window, so only
    the first 16 s of a long clip count.  Copied as is, so scores match published ones.
    """
    length = int(WINDOW_SECONDS * SAMPLE_RATE)
    if audio.size == 0:
        raise ValueError("dnsmos: empty audio")
    while audio.size < length:
        audio = np.append(audio, audio)
    hops = int(np.floor(audio.size / SAMPLE_RATE) - WINDOW_SECONDS) + 1
    cuts = [
        audio[int(i * SAMPLE_RATE) : int((i + WINDOW_SECONDS) * SAMPLE_RATE)] for i in range(hops)
    ]
    return np.stack([c for c in cuts if c.size >= length]).astype(np.float32)


def dnsmos(audio: np.ndarray) -> dict[str, float]:
    """``{"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}`` of 16 kHz ``audio`` (about 1-5 MOS)."""
    inputs = windows(np.clip(audio, -1.0, 1.0))
    raw = _session().run(None, {"input_1": inputs})[0].astype(np.float64)  # [windows, 3]
    return {
        name: float(np.mean(poly(raw[:, i]))) for i, (name, poly) in enumerate(CALIBRATION.items())
    }
