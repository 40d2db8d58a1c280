"""Babble talkers: espeak-ng speakers held out of the built-in clean corpus, for babble noise.

Each talker is an espeak-ng voice variant the clean corpus never uses (:data:`TALKER_VARIANTS`
against ``corpus.MALE_VARIANTS`` / ``FEMALE_VARIANTS``) on one of its accents, speaking sentences
from RNGs seeded apart from the clean clips'.  Like the clean corpus they are spoken in a fresh
process (espeak-ng keeps state across calls); this module imports no torch, so that process
starts in well under a second.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from harness.audio import corpus
from harness.audio.sentences import make_sentence

TALKER_VARIANTS = (
    "m8", "Andy", "Lee", "Michael", "benjamin", "david", "john",
    "Alicia", "Annie", "belinda", "linda", "steph",
)  # fmt: skip
SENTENCES = 2  # per talker, concatenated into the talker's track
WORDS = (6, 14)
TALKERS_CSV = "talkers.csv"


def speak_talkers(folder: Path, seed: int) -> None:
    """Write ``talker-NN.wav`` (22050 Hz PCM_16) per talker and :data:`TALKERS_CSV` (how each
    was spoken) into ``folder``, in a fresh process."""
    corpus.check_voices(corpus.espeak_data_path(), TALKER_VARIANTS)
    args = (folder, seed)
    corpus.run_fresh("harness.audio.babble", "_worker_main", args, "espeak-ng babble synthesis")


def _worker_main() -> None:
    folder, seed = sys.argv[1:3]
    try:
        write_talkers(Path(folder), int(seed))
    except corpus.CorpusError as exc:
        print(exc, flush=True)
        sys.exit(2)


def write_talkers(folder: Path, seed: int) -> None:
    """Speak every talker into ``folder``; call it in a fresh process (see module docstring)."""
    espeak = corpus.Espeak()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for number, variant in enumerate(TALKER_VARIANTS):
        rng = random.Random(f"gan-harness-babble:{seed}:{number}")
        voice = f"{rng.choice(corpus.ACCENTS)}+{variant}"
        rate, pitch = rng.randint(*corpus.RATE_WPM), rng.randint(*corpus.PITCH)
        pitch_range = rng.randint(*corpus.PITCH_RANGE)
        texts, clips = [], []
        for _ in range(SENTENCES):
            texts.append(make_sentence(rng, rng.randint(*WORDS)))
            spoken = espeak.speak(texts[-1], voice, rate, pitch, pitch_range, rng.randrange(2**31))
            clips.append(corpus.fit_margins(spoken))
        track = np.concatenate(clips)
        sf.write(folder / f"talker-{number:02d}.wav", track, corpus.SAMPLE_RATE, subtype="PCM_16")
        rows.append([number, voice, rate, pitch, pitch_range, " / ".join(texts)])
    with open(folder / TALKERS_CSV, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["talker", "voice", "rate", "pitch", "range", "text"])
        writer.writerows(rows)
