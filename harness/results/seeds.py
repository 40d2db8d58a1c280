"""Training seeds derived from a search's seed, so one ``--seed`` reproduces a whole search.

Each use draws from its own stream (the search's trials, the confirmation runs, the draws of a
population-based search), so a confirmation never reuses the seed that made a trial look good in
the search.
"""

from __future__ import annotations

import numpy as np

TRIALS = 0  # stream of the search's trials, indexed by Optuna trial number
CONFIRMATION = 1  # stream of the confirmation runs, indexed by replicate
POPULATION = 2  # a population-based search: its random members (0) and perturbations (1)


def derive_seed(search_seed: int, stream: int, index: int) -> int:
    """A seed in [0, 2**31) that depends on all three numbers and on nothing else."""
    sequence = np.random.SeedSequence([search_seed, stream, index])
    return int(sequence.generate_state(1)[0] % 2**31)
