"""MLflow mirrors the results table (DESIGN.md §3): it is a sink, never the source of truth.

One MLflow run per run id: experiment = suite name, run name ``<setting> <algorithm>
seed<seed>``, params = the flattened resolved config, metrics = the numeric result columns per
round (step = round), artifacts = the run's CSV and config JSON, tags = the run's identity and
status plus the command's context (``command_tags``: git commit, package versions, device,
preset). Each ``rabo-bench run`` command is a parent run in every experiment it logs to, and
its runs are children of it. A run id already mirrored (a FINISHED run with the same
``rabo_bench.run_id`` tag) is not logged again: its tags are updated and it is linked to the
latest command.

The default store is ``<out>/../mlflow.db`` (``default_uri``): with the default output folders
``out/<suite>[-preset]`` that is one store, ``out/mlflow.db``, for every suite run from the same
working folder, with artifacts in ``out/mlartifacts/<suite>/``.

mlflow is imported lazily (it takes seconds). Any exception from MLflow prints one warning line
on stderr and switches the sink off; results on disk are unaffected. MLflow's HTTP client retries
an unreachable server for about four minutes by default; the sink lowers that to seconds
(``HTTP_DEFAULTS``, unless those variables are set in the environment), so a wrong URI costs a
warning, not a stalled sweep.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rabo_bench.engine.results import NUMERIC
from rabo_bench.engine.run import RunSpec
from rabo_bench.engine.runner import RunSink

MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limits
MAX_PARAMS_PER_BATCH = 100
RUN_ID_TAG = "rabo_bench.run_id"
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


def default_uri(out: Path) -> str:
    return f"sqlite:///{(out.parent / 'mlflow.db').resolve()}"


def default_artifacts(out: Path) -> Path:
    return out.parent / "mlartifacts"


def browse_command(uri: str) -> str:
    """The shell command that opens the store in MLflow's UI (the mlflow beside this Python,
    so it works without activating the virtual environment)."""
    mlflow = Path(sys.executable).parent / "mlflow"
    return f"{mlflow if mlflow.exists() else 'mlflow'} ui --backend-store-uri {uri}"


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> {"a.b.c": "value"}; lists as JSON."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(list(value))
        else:
            flat[name] = str(value)
    return flat


def _one_line(err: BaseException) -> str:
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= 240 else text[:237] + "..."


class MlflowSink(RunSink):
    """Mirror finished runs into the MLflow tracking store at ``tracking_uri``."""

    def __init__(
        self, tracking_uri: str, artifact_dir: Path, context: Mapping[str, str] | None = None
    ) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_dir = artifact_dir
        self.context = dict(context or {})  # tags of the command, on every run it logs
        self.enabled = True
        self._client = None
        self._experiments: dict[str, str] = {}
        self._parents: dict[str, str] = {}  # experiment id -> this command's parent run

    def log_run(self, spec: RunSpec, rows: list[dict[str, str]], csv_path: Path) -> None:
        self._guarded(self._log_run, spec, rows, csv_path)

    def close(self, status: str = "FINISHED") -> None:
        """End this command's parent runs (``status`` FINISHED, KILLED or FAILED)."""
        parents, self._parents = self._parents, {}
        for run_id in parents.values():
            self._guarded(lambda r: self._client_for().set_terminated(r, status), run_id)

    def _guarded(self, action, *args) -> None:
        if not self.enabled:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                action(*args)
        except Exception as err:
            self.enabled = False
            print(
                f"rabo-bench: warning: MLflow tracking at {self.tracking_uri} failed "
                f"({_one_line(err)}); results on disk are complete; continuing without MLflow",
                file=sys.stderr,
            )

    # -- internals ---------------------------------------------------------------------------
    def _client_for(self):
        if self._client is None:
            from mlflow import MlflowClient

            for name in ("mlflow", "alembic", "sqlalchemy"):
                logging.getLogger(name).setLevel(logging.WARNING)
            for name, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(name, value)
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _experiment_id(self, name: str) -> str:
        if name not in self._experiments:
            client = self._client_for()
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                location = (self.artifact_dir.resolve() / name).as_uri()
                self._experiments[name] = client.create_experiment(name, location)
            else:
                if experiment.lifecycle_stage == "deleted":
                    client.restore_experiment(experiment.experiment_id)
                self._experiments[name] = experiment.experiment_id
        return self._experiments[name]

    def _parent(self, experiment_id: str) -> str:
        if experiment_id not in self._parents:
            name = f"command {time.strftime('%Y-%m-%d %H:%M:%S')}"
            run = self._client_for().create_run(experiment_id, run_name=name, tags=self.context)
            self._parents[experiment_id] = run.info.run_id
        return self._parents[experiment_id]

    def _log_run(self, spec: RunSpec, rows: list[dict[str, str]], csv_path: Path) -> None:
        from mlflow.entities import Metric, Param

        client = self._client_for()
        experiment_id = self._experiment_id(spec.suite)
        tags = {
            **self.context,
            RUN_ID_TAG: spec.run_id,
            "rabo_bench.suite": spec.suite,
            "rabo_bench.setting": spec.setting,
            "rabo_bench.algorithm": spec.algorithm.name,
            "rabo_bench.seed": str(spec.seed),
            "rabo_bench.status": rows[-1].get("status", ""),
            "rabo_bench.reason": rows[-1].get("reason", ""),
            "mlflow.parentRunId": self._parent(experiment_id),
        }
        done = f"tags.`{RUN_ID_TAG}` = '{spec.run_id}' and attributes.status = 'FINISHED'"
        found = client.search_runs([experiment_id], filter_string=done, max_results=1)
        if found:  # mirrored before: update its tags, log nothing twice
            for key, value in tags.items():
                client.set_tag(found[0].info.run_id, key, value)
            return
        name = " ".join(p for p in (spec.setting, spec.algorithm.name, f"seed{spec.seed}") if p)
        run = client.create_run(experiment_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in sorted(flatten(spec.config()).items())]
        for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[start : start + MAX_PARAMS_PER_BATCH])
        stamp = int(time.time() * 1000)
        metrics = [
            Metric(column, float(row[column]), stamp, int(row["round"]))
            for row in rows
            for column in NUMERIC
            if row.get(column, "") != ""
        ]
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])
        client.log_artifact(run_id, str(csv_path))
        config_path = csv_path.with_suffix(".json")
        if config_path.exists():
            client.log_artifact(run_id, str(config_path))
        client.set_terminated(run_id)
