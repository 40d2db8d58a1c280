"""Seeded English sentences for the built-in corpus: clauses of names, nouns, verbs and places
joined by links, varied enough that no two clips say the same thing."""

from __future__ import annotations

import random

_NAMES = (
    "Anna", "Peter", "Maria", "Tom", "Grace", "Oliver", "Lucy", "Daniel", "Emma", "Samuel",
    "Clara", "Henry", "Julia", "Martin", "Sophie", "Edward", "Alice", "George", "Rose", "Victor",
)  # fmt: skip
_ADJECTIVES = (
    "old", "quiet", "bright", "small", "heavy", "yellow", "narrow", "gentle", "broken", "golden",
    "silver", "careful", "busy", "ancient", "empty", "tired", "clever", "wooden", "distant",
    "purple", "sudden", "warm", "cold", "famous", "simple", "strange", "happy", "nervous",
)  # fmt: skip
_NOUNS = (
    "farmer", "teacher", "river", "window", "garden", "letter", "engine", "painter", "village",
    "basket", "doctor", "lantern", "ship", "mountain", "kitchen", "bicycle", "sailor", "museum",
    "bridge", "orchard", "violin", "market", "captain", "blanket", "station", "neighbour",
    "library", "forest", "candle", "bakery", "pilot", "compass", "island", "merchant", "tower",
)  # fmt: skip
_VERBS = (
    "found", "painted", "carried", "opened", "watched", "followed", "repaired", "visited",
    "remembered", "described", "noticed", "borrowed", "cleaned", "discovered", "measured",
    "answered", "packed", "crossed", "ordered", "admired", "moved", "counted", "built", "sold",
)  # fmt: skip
_ADVERBS = (
    "slowly", "quickly", "quietly", "carefully", "happily", "suddenly", "gently", "early",
    "again", "proudly", "eagerly", "silently",
)  # fmt: skip
_PLACES = (
    "near the harbour", "behind the old church", "in the morning market", "across the valley",
    "under the bridge", "beside the railway station", "at the edge of the forest",
    "in the little kitchen", "on the top floor", "along the river bank", "inside the museum",
)  # fmt: skip
_TIMES = (
    "yesterday", "last winter", "every Sunday", "after dinner", "before sunrise",
    "on Tuesday evening", "during the storm", "at noon", "later that week", "in the spring",
)  # fmt: skip
_LINKS = ("and", "but", "while", "because", "so", "although", "and then", "until")


def _noun_phrase(rng: random.Random) -> list[str]:
    if rng.random() < 0.25:
        return [rng.choice(_NAMES)]
    words = [rng.choice(("the", "a", "my", "our", "that", "every"))]
    if rng.random() < 0.6:
        words.append(rng.choice(_ADJECTIVES))
    words.append(rng.choice(_NOUNS))
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return words


def _clause(rng: random.Random) -> list[str]:
    words = _noun_phrase(rng)
    if rng.random() < 0.3:
        words.append(rng.choice(_ADVERBS))
    words += [rng.choice(_VERBS), *_noun_phrase(rng)]
    extra = rng.random()
    if extra < 0.35:
        words += rng.choice(_PLACES).split()
    elif extra < 0.6:
        words += rng.choice(_TIMES).split()
    return words


def make_sentence(rng: random.Random, n_words: int, n_candidates: int = 8) -> str:
    """A grammatical English sentence of about ``n_words`` words: clauses joined by links,
    the closest in length of a few candidates."""
    candidates = []
    for _ in range(n_candidates):
        words = _clause(rng)
        while len(words) < n_words - 2:
            words += [rng.choice(_LINKS), *_clause(rng)]
        candidates.append(words)
    words = min(candidates, key=lambda c: abs(len(c) - n_words))
    sentence = " ".join(words)
    ending = "?" if rng.random() < 0.1 else "."
    return sentence[0].upper() + sentence[1:] + ending
