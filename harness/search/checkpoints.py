"""One copy of each checkpoint on disk.

Ray copies every checkpoint a trial reports into its storage (``tune/<trial>/checkpoint_*``),
a second full copy of the trainer's file in ``trials/<trial>/checkpoints/``.  As Ray registers
each one, :class:`OneCopyPerCheckpoint` swaps that copy for a hard link to the trainer's file:
one inode, two names.  Ray's ``num_to_keep`` and the trainer's ``keep_checkpoints`` then each
drop only their own name, and the bytes go when neither keeps them.  Ray's checkpoint stays a
complete checkpoint, so a retry or a resumed search reads it as before; in storage on another
file system (``--storage s3://...``) the copy is left as it is.
"""

from __future__ import annotations

from pathlib import Path

from pyarrow.fs import LocalFileSystem
from ray import tune
from ray.tune.experiment import Trial

from harness.files import link_in_place_of
from harness.results.folder import SearchFolder

KEPT_CHECKPOINTS = 2
"""Checkpoints a search trial keeps, Ray's ``num_to_keep`` and the trainer's
``keep_checkpoints`` alike (the same files, one inode each).  Two, not one: Tune's experiment
snapshot can lag the newest checkpoint by a few seconds, and a driver killed in that gap restores
the trial from the checkpoint before it; with one kept, that one is gone and every restore of the
trial fails (tests/test_faults.py, the mid-trial kill)."""


class OneCopyPerCheckpoint(tune.Callback):
    """On the driver, as Ray registers a trial's checkpoint (also the last one of a trial that
    ASHA or the HealthStopper ends): its files become hard links to the trainer's."""

    def __init__(self, folder: SearchFolder) -> None:
        self.folder = folder

    def on_checkpoint(
        self, iteration: int, trials: list[Trial], trial: Trial, checkpoint: tune.Checkpoint, **info
    ) -> None:
        if not isinstance(checkpoint.filesystem, LocalFileSystem):
            return
        trainer_dir = self.folder.trial_dir(trial.trial_id) / "checkpoints"
        for copy in Path(checkpoint.path).glob("step_*.pt"):
            # False, leaving Ray's copy, if the trainer has moved on and pruned its file
            link_in_place_of(trainer_dir / copy.name, copy)
