"""Copy an MLflow file store (what Leonardo's jobs log to: no server is reachable from compute nodes, and SQLite
does not belong on a parallel filesystem) into a tracking server: `latxa mlflow sync --from file:...`.

Runs keep their names, tags, params, the full history of every metric, status, times and (unless asked not to)
their artifacts; nested runs keep their parent (evaluations under the variant run); registered model versions are
recreated against the copied artifacts. Idempotent: each copied run and model version is tagged
``latxa.synced_from = <source uri>#<id>``, and a second sync copies only what is new.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from latxa.components import tracking
from latxa.errors import LatxaError

TAG_SYNCED_FROM = "latxa.synced_from"
_SKIP_TAGS = ("mlflow.parentRunId",)


class SyncError(LatxaError):
    """A store that cannot be synced (one sentence)."""


@dataclass
class SyncReport:
    experiments: int = 0
    runs_copied: int = 0
    runs_skipped: int = 0
    metrics: int = 0
    versions_copied: int = 0
    versions_skipped: int = 0
    run_ids: dict[str, str] = field(default_factory=dict)     # source run id -> destination run id

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def sync_store(source_uri: str, dest_uri: str, *, artifacts: bool = True, experiments: list[str] | None = None,
               progress=None) -> SyncReport:
    """Copy every run (and registered model version) of ``source_uri`` that ``dest_uri`` does not have yet."""
    from mlflow.entities import Metric, Param

    if not source_uri.startswith("file:"):
        raise SyncError(f"--from takes a file store URI (file:/path/mlruns), not '{source_uri}'.")
    path = source_uri[len("file:"):].removeprefix("//")
    if not os.path.isdir(path):
        raise SyncError(f"The MLflow file store {path} does not exist.")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")     # MLflow keeps file stores behind this switch
    src, dst = _client(source_uri), _client(dest_uri)
    report = SyncReport()
    for exp in src.search_experiments():
        if experiments and exp.name not in experiments:
            continue
        runs = src.search_runs([exp.experiment_id], max_results=50000)
        if not runs:
            continue
        report.experiments += 1
        dest_exp = dst.get_experiment_by_name(exp.name)
        dest_exp_id = dest_exp.experiment_id if dest_exp else dst.create_experiment(
            exp.name, artifact_location=tracking.local_artifact_location(exp.name, dest_uri), tags=exp.tags)
        done = {r.data.tags[TAG_SYNCED_FROM]: r.info.run_id
                for r in dst.search_runs([dest_exp_id], filter_string=f"tags.`{TAG_SYNCED_FROM}` LIKE '{source_uri}#%'",
                                         max_results=50000)}
        # parents first, so children can point at their copied parent
        runs.sort(key=lambda r: ("mlflow.parentRunId" in r.data.tags, r.info.start_time or 0))
        for run in runs:
            origin = f"{source_uri}#{run.info.run_id}"
            if origin in done:
                report.run_ids[run.info.run_id] = done[origin]
                report.runs_skipped += 1
                continue
            tags = {k: v for k, v in run.data.tags.items() if k not in _SKIP_TAGS}
            parent = run.data.tags.get("mlflow.parentRunId")
            if parent:
                tags["mlflow.parentRunId"] = report.run_ids.get(parent, parent)
            tags[TAG_SYNCED_FROM] = origin
            new = dst.create_run(dest_exp_id, start_time=run.info.start_time, tags=tags, run_name=run.info.run_name)
            new_id = new.info.run_id
            params = [Param(k, v) for k, v in run.data.params.items()]
            for i in range(0, len(params), 100):
                dst.log_batch(new_id, params=params[i:i + 100])
            history = []
            for key in run.data.metrics:
                history += [Metric(m.key, m.value, m.timestamp, m.step) for m in src.get_metric_history(run.info.run_id, key)]
            for i in range(0, len(history), 900):
                dst.log_batch(new_id, metrics=history[i:i + 900])
            report.metrics += len(history)
            if artifacts and src.list_artifacts(run.info.run_id):
                with tempfile.TemporaryDirectory() as tmp:
                    local = src.download_artifacts(run.info.run_id, "", tmp)
                    dst.log_artifacts(new_id, local)
            dst.set_terminated(new_id, status=run.info.status, end_time=run.info.end_time)
            report.run_ids[run.info.run_id] = new_id
            report.runs_copied += 1
            if progress:
                progress(f"run {run.info.run_name} ({run.info.run_id} -> {new_id})")
    _sync_versions(src, dst, source_uri, report, artifacts)
    return report


def _sync_versions(src, dst, source_uri: str, report: SyncReport, artifacts: bool) -> None:
    for model in src.search_registered_models(max_results=1000):
        try:
            dst.get_registered_model(model.name)
        except Exception:  # absent (MLflow raises RestException/MlflowException depending on the store)
            dst.create_registered_model(model.name, tags=model.tags, description=model.description)
        existing = {v.tags.get(TAG_SYNCED_FROM) for v in dst.search_model_versions(f"name='{model.name}'")}
        for v in sorted(src.search_model_versions(f"name='{model.name}'"), key=lambda v: int(v.version)):
            origin = f"{source_uri}#{model.name}/{v.version}"
            if origin in existing:
                report.versions_skipped += 1
                continue
            new_run = report.run_ids.get(v.run_id)
            source = v.source
            if new_run and artifacts:
                run_root = src.get_run(v.run_id).info.artifact_uri.rstrip("/")
                rel = v.source[len(run_root):].lstrip("/") if v.source.startswith(run_root) else "model"
                source = dst.get_run(new_run).info.artifact_uri.rstrip("/") + "/" + rel
            dst.create_model_version(model.name, source=source, run_id=new_run,
                                     tags={**v.tags, TAG_SYNCED_FROM: origin}, description=v.description)
            report.versions_copied += 1
