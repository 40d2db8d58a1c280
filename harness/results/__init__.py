"""What a search leaves on disk and what it means, without Ray: the results folder, the search's
plan and space, the leaderboard, the confirmation's statistics, and the seeds.

``SearchFolder``, ``SearchPlan`` and ``Resources`` are importable from here because Ray pickles
them into an experiment's ``tuner.pkl`` under this name: experiments written by any version of
the harness restore.
"""

from harness.results.folder import Resources, SearchFolder, SearchPlan

__all__ = ["Resources", "SearchFolder", "SearchPlan"]
