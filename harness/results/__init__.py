"""What a search leaves on disk and what it means, without Ray: the results folder, the search's
plan and space, the trials table, the leaderboard, the confirmation's sequential procedure,
statistics and verdict, the seeds.

``SearchFolder``, ``SearchPlan`` and ``Resources`` are importable from here because Ray pickles
them into an experiment's ``tuner.pkl`` under this name, and a search restores from that file.
"""

from harness.results.folder import SearchFolder
from harness.results.plan import Resources, SearchPlan

__all__ = ["Resources", "SearchFolder", "SearchPlan"]
