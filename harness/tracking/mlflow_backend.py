"""MLflow: one experiment per search (``train`` runs share the experiment ``train``), one run per
trial, through MLflow's own client.

The store is ``--track-uri``, else ``$MLFLOW_TRACKING_URI``, else ``results/mlruns/``: an SQLite
store (``mlflow.db``, MLflow's local default since its file store went into maintenance) with the
artifacts beside it.  Browse it with ``uv run mlflow ui --backend-store-uri
sqlite:///results/mlruns/mlflow.db``.  A run's status: FINISHED (completed), KILLED (pruned,
interrupted) or FAILED (stopped, errored, lost); the harness's own status and reason are its
tags ``harness.status`` and ``harness.reason``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.status import Status
from harness.tracking import TrackedRun, Tracker, TrackingError, first_line

KEY_TAG = "harness.key"
MLFLOW_STATUS = {
    Status.COMPLETED: "FINISHED",
    Status.PRUNED: "KILLED",
    Status.INTERRUPTED: "KILLED",
}  # every other ending: FAILED
PARAM_CHARS = 6000  # MLflow's limit on a parameter's value
TAG_CHARS = 5000
BATCH = 100  # parameters per log_batch call (MLflow's limit)


def local_store(results: Path) -> tuple[str, str]:
    """(tracking URI, artifact folder) of the store under the results folder."""
    folder = Path(results).resolve() / "mlruns"
    return f"sqlite:///{folder / 'mlflow.db'}", str(folder / "artifacts")


class MlflowTracker(Tracker):
    def __init__(self, uri: str | None, experiment: str, results: Path) -> None:
        for name in ("mlflow", "alembic"):  # schema set-up and store notices stay off the console
            logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        artifacts = None
        uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri is None:
            uri, artifacts = local_store(results)
            Path(artifacts).parent.mkdir(parents=True, exist_ok=True)
        self.uri = uri
        try:
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                found.experiment_id
                if found is not None
                else self.client.create_experiment(experiment, artifact_location=artifacts)
            )
        except Exception as err:
            raise TrackingError(
                f"--track mlflow: cannot use the store {uri}: {first_line(err)}"
            ) from None

    def where(self) -> str:
        return f"MLflow: {self.uri} (uv run mlflow ui --backend-store-uri {self.uri})"

    def start(
        self, name: str, params: Mapping[str, Any], tags: Mapping[str, str], key: str | None = None
    ) -> TrackedRun:
        try:
            run_id = self._existing(key) if key is not None else None
            if run_id is not None:
                self.client.update_run(run_id, status="RUNNING")
                return MlflowRun(self.client, run_id, name)
            run_tags = {**tags, **({KEY_TAG: key} if key is not None else {})}
            info = self.client.create_run(self.experiment_id, run_name=name, tags=run_tags).info
        except Exception as err:
            raise TrackingError(
                f"--track mlflow: cannot start a run in {self.uri}: {first_line(err)}"
            ) from None
        run = MlflowRun(self.client, info.run_id, name)
        run.log_params(params)
        return run

    def _existing(self, key: str) -> str | None:
        found = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'", max_results=1
        )
        return found[0].info.run_id if found else None


class MlflowRun(TrackedRun):
    def __init__(self, client: Any, run_id: str, name: str) -> None:
        super().__init__(name)
        self.client = client
        self.run_id = run_id

    def _log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(key, value, now, step) for key, value in metrics.items()]
        for start in range(0, len(entries), 1000):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, metrics=entries[start : start + 1000])

    def _params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        entries = [Param(key, str(value)[:PARAM_CHARS]) for key, value in params.items()]
        for start in range(0, len(entries), BATCH):
            self.client.log_batch(self.run_id, params=entries[start : start + BATCH])

    def _finish(self, status: Status, reason: str) -> None:
        self.client.set_tag(self.run_id, "harness.status", status.value)
        self.client.set_tag(self.run_id, "harness.reason", reason[:TAG_CHARS])
        self.client.set_terminated(self.run_id, MLFLOW_STATUS.get(status, "FAILED"))
