"""MLflow conventions, in one place, so the UI's compare view lines variants up.

- one experiment per study (default ``latxa-instruct``),
- one run per variant (run name = variant code), nested runs for evaluations,
- a run per sweep, tagged ``latxa.sweep``; its variant runs point at it with ``latxa.sweep_run`` rather than
  MLflow's parent link, so the UI lists every variant as a visible top-level run (a nested run is hidden under a
  collapsed parent),
- the experiment opens in MLflow's training view with the study's columns and charts: the saved view
  ``latxa-study`` (:func:`publish_study_view`) and :func:`experiment_url`,
- the same tag and param names everywhere (below),
- one registered model per variant: ``latxa-<code>`` (e.g. ``latxa-exp_2_101``).

The embedded default is a SQLite store and a local artifact folder under the state
folder; set MLFLOW_TRACKING_URI (or pass a URI) for an HTTP tracking server.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from latxa.errors import LatxaError
from latxa.paths import state_dir

DEFAULT_EXPERIMENT = "latxa-instruct"

# Tags every variant run carries (the compare view's columns).
TAG_VARIANT = "variant"
TAG_PAPER_NAME = "paper_name"
TAG_BACKBONE = "backbone"
TAG_CORPUS_EU = "corpus_eu"
TAG_INST_EU = "inst_eu"
TAG_INST_EN = "inst_en"
TAG_DATA_HASH = "data_hash"
TAG_GIT_COMMIT = "git_commit"
TAG_STAGE = "latxa.stage"          # prepare | train | eval | sweep
TAG_SWEEP = "latxa.sweep"
TAG_SWEEP_RUN = "latxa.sweep_run"  # on a variant run: the id of its sweep's run
TAG_KFP_RUN = "kfp.run_id"
TAG_KFP_TASK = "kfp.task"
TAG_SLURM_JOB = "slurm.job_id"
TAG_MODEL_SIZE = "model_size"      # 8b | 70b
TAG_BACKBONE_MODEL = "backbone_model"   # the HF name (and @revision) or folder the run started from


def registered_model_name(variant_code: str) -> str:
    """``latxa-<key>``: ``latxa-exp_2_101`` (8B), ``latxa-70b-exp_2_101`` (70B: the key carries the size)."""
    from latxa.components.registry import parse

    return f"latxa-{parse(variant_code).key}"


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else SQLite under the state folder."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{state_dir() / 'mlflow' / 'mlflow.db'}"


def default_artifact_root() -> Path:
    path = state_dir() / "mlflow" / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def variant_tags(variant_code: str) -> dict[str, str]:
    """The tags that identify a variant run (string values, as MLflow stores them)."""
    from latxa.components.registry import parse

    v = parse(variant_code)
    return {
        TAG_VARIANT: v.key,
        TAG_MODEL_SIZE: v.size,
        TAG_PAPER_NAME: v.paper_name,
        TAG_BACKBONE: v.backbone_info.paper,
        TAG_CORPUS_EU: str(int(v.corpus_eu)),
        TAG_INST_EU: str(int(v.inst_eu)),
        TAG_INST_EN: str(int(v.inst_en)),
    }


def git_commit() -> str:
    """The project's commit, or 'unknown' outside a checkout."""
    import subprocess

    from latxa.paths import CHECKOUT

    if CHECKOUT is None:
        return "unknown"
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=CHECKOUT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --------------------------------------------------------------------------------------------
# Metric and param names (the compare view and `latxa compare` read these).
# --------------------------------------------------------------------------------------------
METRIC_LOSS = "loss"                    # training loss, per logging step
METRIC_FINAL_LOSS = "final_loss"        # last training loss (one value)
METRIC_TOKENS_SEEN = "tokens_seen"      # trainable tokens seen by the end of training
METRIC_EVAL_PREFIX = "eval"             # eval.<suite>.<task> and eval.<suite>.mean_<lang>
LANGUAGES = ("eu", "en", "es")
TAG_PIPELINE = "latxa.pipeline"         # study | sweep
TAG_PROFILE = "latxa.profile"
TAG_TRACKING_BUFFERED = "latxa.tracking.buffered"  # how many records were buffered while the server was away
TAG_TRACKING_NOTE = "latxa.tracking.note"
TAG_MODEL_PATH = "latxa.model_path"
TAG_KFP_TASK_PREFIX = "kfp.task."       # kfp.task.<step> = KFP task name of that step


def eval_task_metric(suite: str, task: str) -> str:
    return f"{METRIC_EVAL_PREFIX}.{suite}.{task}"


def eval_mean_metric(suite: str, language: str) -> str:
    return f"{METRIC_EVAL_PREFIX}.{suite}.mean_{language}"


def kfp_tags(run_id: str | None, task: str | None, step: str | None = None) -> dict[str, str]:
    """Tags that tie an MLflow run (or model version) to a KFP run and task."""
    tags: dict[str, str] = {}
    if run_id:
        tags[TAG_KFP_RUN] = str(run_id)
    if task:
        tags[TAG_KFP_TASK] = str(task)
        if step:
            tags[TAG_KFP_TASK_PREFIX + step] = str(task)
    return tags


# --------------------------------------------------------------------------------------------
# The local tracking server (`latxa mlflow up`) and fail-fast reachability.
# --------------------------------------------------------------------------------------------
class TrackingUnavailable(LatxaError):
    """The tracking store cannot be reached at the start of a run (one readable sentence)."""


def _latxa_error(message: str) -> Exception:
    return TrackingUnavailable(message)


def server_state_file() -> Path:
    return state_dir() / "mlflow" / "server.json"


def local_server_uri() -> str | None:
    """URI of the server started by `latxa mlflow up`, if its state file names a live process."""
    import json

    path = server_state_file()
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return info.get("uri")


def resolve_tracking_uri(uri: str | None = None) -> str:
    """An explicit URI, else MLFLOW_TRACKING_URI, else the running local server, else SQLite."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return local_server_uri() or default_tracking_uri()


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def server_healthy(uri: str, timeout: float = 2.0) -> bool:
    """True when an HTTP tracking server answers its /health endpoint."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def check_reachable(uri: str | None = None, timeout: float = 5.0) -> str:
    """Fail fast, before any work: return the URI if the tracking store answers, else raise a LatxaError.

    HTTP servers must answer /health and the REST API; SQLite stores must have a writable folder.
    """
    uri = resolve_tracking_uri(uri)
    if is_http(uri):
        if not server_healthy(uri, timeout):
            raise _latxa_error(
                f"The MLflow tracking server at {uri} is unreachable; start it with `latxa mlflow up` "
                f"or point MLFLOW_TRACKING_URI at a running server before starting the run."
            )
        return uri
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _latxa_error(f"The MLflow SQLite store folder {folder} cannot be created ({err.strerror}).") from None
        if not os.access(folder, os.W_OK):
            raise _latxa_error(f"The MLflow SQLite store folder {folder} is not writable.")
    return uri


def local_artifact_location(experiment: str, uri: str) -> str | None:
    """Where a new experiment of a local store keeps its artifacts: under the state folder. None for a remote
    server (it decides). Without it a SQLite store puts them in ``./mlruns`` of whatever the working directory is."""
    if uri.startswith("sqlite:") or (is_http(uri) and local_server_uri() == uri):
        return (default_artifact_root() / experiment).as_uri()
    return None


def ensure_experiment(name: str = DEFAULT_EXPERIMENT, uri: str | None = None) -> str:
    """Create the study's experiment if needed (artifacts under the state folder for local stores) and make sure it
    opens as a training study in the MLflow UI (:func:`present_experiment`); remember it as the last experiment
    used (`latxa compare` with no option reads it back); return its id."""
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            client.create_experiment(name, artifact_location=local_artifact_location(name, uri))
        except Exception:  # created concurrently by another step
            pass
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise TrackingUnavailable(f"The MLflow experiment '{name}' could not be created at {uri}.")
    present_experiment(client, exp)
    remember_experiment(name, uri)
    return exp.experiment_id


# --------------------------------------------------------------------------------------------
# How the experiment looks in the MLflow UI (3.x): the training view, the study's columns and charts.
# --------------------------------------------------------------------------------------------
# MLflow 3 classifies experiments as GenAI ("genai_development": traces, sessions, judges) or classic model
# training ("custom_model_development": runs table, charts, models). The tag below records the study as the latter.
# The 3.17 UI itself follows its global GenAI / Model training switch (browser-local, GenAI by default), which
# a link overrides with ?workflowType=machine_learning: experiment_url() always carries it.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
TAG_NOTE = "mlflow.note.content"           # the experiment's (and a run's) description in the UI
# A saved view of the runs page is the experiment tag mlflow.sharedViewState.<id> = {"name", "createdAt",
# "updatedAt", "state": <the page's UI state as JSON>} and opens with ?viewStateShareKey=<id>; it is listed in the
# page's "Views" menu. The study's view selects the columns that compare variants and shows every run in the charts.
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
STUDY_VIEW_ID = "latxa-study"
STUDY_VIEW_NAME = "Latxa study: variants side by side"
_MEAN_KEY = re.compile(r"^eval\.(?P<suite>[^.]+)\.mean_(?P<lang>[a-z]+)$")


def _column(kind: str, name: str) -> str:
    """A runs-table column id, as the MLflow UI spells it (``metrics.`final_loss```)."""
    return f"{kind}.`{name}`"


def study_view_columns(metric_keys: list[str] | set[str] = ()) -> list[str]:
    """The columns of the study view: paper name and flags, each eval mean present (suite by suite, eu en es first),
    final loss, tokens seen."""
    means = sorted((m["suite"], LANGUAGES.index(m["lang"]) if m["lang"] in LANGUAGES else 9, m["lang"], key)
                   for key in metric_keys if (m := _MEAN_KEY.match(key)))
    return ([_column("tags", TAG_PAPER_NAME), _column("tags", TAG_CORPUS_EU), _column("tags", TAG_INST_EU),
             _column("tags", TAG_INST_EN)]
            + [_column("metrics", key) for *_, key in means]
            + [_column("metrics", METRIC_FINAL_LOSS), _column("metrics", METRIC_TOKENS_SEEN)])


def _chart(kind: str, metric: str, section: str, runs: int) -> dict:
    """One chart card of the runs page's chart view (the fields the UI's own cards carry)."""
    card = {"uuid": f"latxa-{metric}", "type": kind, "runsCountToCompare": runs, "metricSectionId": section,
            "deleted": False, "isGenerated": False, "displayName": metric, "metricKey": metric}
    if kind == "LINE":
        card.update({"lineSmoothness": 0, "xAxisScaleType": "linear", "scaleType": "linear", "range": {},
                     "xAxisKey": "step", "selectedXAxisMetricKey": "", "yAxisKey": "metric", "yAxisExpressions": [],
                     "ignoreOutliers": False, "useGlobalXaxisKey": True, "useGlobalLineSmoothing": True})
    return card


# Chart sections of the study view, in this order; the UI files every other metric under its own "Model metrics"
# and "System metrics" sections (after ours) by itself.
SECTION_TRAINING, SECTION_EVAL = "latxa-training", "latxa-eval"


def study_view_charts(metric_keys: list[str] | set[str] = (), runs: int = 50) -> tuple[list[dict], list[dict]]:
    """(cards, sections): the training curves across variants first (loss, learning rate, gradient norm), then the
    evaluation means and the final loss as bars, one bar per variant."""
    means = [c.split("`")[1] for c in study_view_columns(metric_keys) if c.startswith("metrics.`eval.")]
    cards = [_chart("LINE", key, SECTION_TRAINING, runs) for key in (METRIC_LOSS, "lr", "grad_norm")]
    cards += [_chart("BAR", key, SECTION_EVAL, runs) for key in (*means, METRIC_FINAL_LOSS, METRIC_TOKENS_SEEN)]
    sections = [{"uuid": SECTION_TRAINING, "name": "Training: loss curves across variants", "display": True,
                 "isReordered": True, "deleted": False, "isGenerated": False},
                {"uuid": SECTION_EVAL, "name": "Evaluation means and final loss per variant", "display": True,
                 "isReordered": True, "deleted": False, "isGenerated": False},
                {"uuid": "latxa-model-metrics", "name": "Model metrics", "display": True, "isReordered": False,
                 "deleted": False, "isGenerated": True},
                {"uuid": "latxa-system-metrics", "name": "System metrics", "display": False, "isReordered": False,
                 "deleted": False, "isGenerated": True}]
    return cards, sections


def study_view_state(metric_keys: list[str] | set[str] = ()) -> dict:
    """The runs page's UI state of the study view: the comparison columns, every run in the charts, and the chart
    sections of :func:`study_view_charts` (empty charts hidden: a metric no run has yet draws nothing). Which runs
    are expanded, pinned or hidden is not part of a saved view in the UI, so the sweep runs stay listed."""
    cards, sections = study_view_charts(metric_keys)
    return {
        # oldest first (the sweep run, then the variants in the order they ran); the UI nests the evaluation runs
        # under their variant run only when the table is sorted by start time
        "searchFilter": "", "orderByKey": "attributes.start_time", "orderByAsc": True, "startTime": "ALL",
        "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs",
        "selectedColumns": study_view_columns(metric_keys), "columnOrder": [], "columnWidths": {},
        # every run in the charts (the UI's default is the first 10: the 8B grid has 17 variants)
        "runsHiddenMode": "SHOW_ALL", "viewMaximized": False, "runListHidden": False,
        "compareRunCharts": cards, "compareRunSections": sections, "isAccordionReordered": True,
        "useGroupedValuesInCharts": True, "hideEmptyCharts": True, "groupBy": None, "groupsExpanded": {},
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
    }


def publish_study_view(client, experiment_id: str, metric_keys: list[str] | set[str] = ()) -> bool:
    """Write (or refresh) the study's saved view on the experiment; True when the tag changed. Users' own views are
    left alone; only the ``latxa-study`` view is ours."""
    import json
    import time

    state = json.dumps(study_view_state(metric_keys), separators=(",", ":"))
    key = VIEW_TAG_PREFIX + STUDY_VIEW_ID
    current = client.get_experiment(experiment_id).tags.get(key)
    created = now = int(time.time() * 1000)
    if current:
        try:
            old = json.loads(current)
            if old.get("state") == state and old.get("name") == STUDY_VIEW_NAME:
                return False
            created = int(old.get("createdAt") or now)
        except (ValueError, TypeError, AttributeError):
            pass
    envelope = {"name": STUDY_VIEW_NAME, "createdAt": created, "updatedAt": now, "state": state}
    client.set_experiment_tag(experiment_id, key, json.dumps(envelope, separators=(",", ":")))
    return True


def experiment_note(name: str) -> str:
    return (f"Latxa-Instruct study `{name}`: one run per variant (run name = variant code, e.g. exp_2_101), with its "
            "paper name, data flags, training loss per step and evaluation means per language; evaluations are "
            "nested under their variant run, sweeps are the `sweep-*` runs (comparison table and plot under "
            "`compare/`). Open the view \"" + STUDY_VIEW_NAME + "\" (Views menu) to compare variants; "
            "`latxa compare` prints the same table.")


def present_experiment(client, exp) -> None:
    """Tag the experiment as classic model training, give it a description and the study view (only what is missing,
    so a user's edits stay). Presentation never fails a run: a store that refuses the tags gets a note in the log."""
    tags = exp.tags or {}
    try:
        if tags.get(TAG_EXPERIMENT_KIND) != EXPERIMENT_KIND_TRAINING:
            client.set_experiment_tag(exp.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND_TRAINING)
        if not tags.get(TAG_NOTE):
            client.set_experiment_tag(exp.experiment_id, TAG_NOTE, experiment_note(exp.name))
        if VIEW_TAG_PREFIX + STUDY_VIEW_ID not in tags:
            publish_study_view(client, exp.experiment_id)
    except Exception as err:  # e.g. a server where this user may log runs but not edit the experiment
        print(f"[tracking] could not set the MLflow UI settings of experiment '{exp.name}': {err}", flush=True)


def refresh_study_view(experiment: str, uri: str | None = None) -> bool:
    """Refresh the study view's columns from the metrics the variant runs carry now (eval means of every suite)."""
    import sys

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=resolve_tracking_uri(uri))
    try:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return False
        runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_STAGE}` = 'train'", max_results=1000)
        return publish_study_view(client, exp.experiment_id, {k for r in runs for k in r.data.metrics})
    except Exception as err:  # presentation only: never fail a comparison over it
        print(f"[tracking] could not refresh the study view of '{experiment}': {err}", file=sys.stderr, flush=True)
        return False


def experiment_url(uri: str, experiment_id: str, charts: bool = False) -> str | None:
    """The study view of the experiment in the MLflow UI (runs table, or with ``charts`` the chart view); None for a
    store without a UI (SQLite: `latxa mlflow up` serves it)."""
    if not is_http(uri):
        return None
    query = f"workflowType=machine_learning&viewStateShareKey={STUDY_VIEW_ID}"
    if charts:
        query += "&compareRunsMode=CHART"
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def sweep_member_tags(sweep_run_id: str | None) -> dict[str, str]:
    """Tags that tie a variant run to its sweep's run (not MLflow's parent link: see the module docstring)."""
    return {TAG_SWEEP_RUN: str(sweep_run_id)} if sweep_run_id else {}


# --------------------------------------------------------------------------------------------
# The last experiment used on this machine (`latxa compare` with no --experiment).
# --------------------------------------------------------------------------------------------
def last_experiment_file() -> Path:
    return state_dir() / "mlflow" / "last_experiment.json"


def remember_experiment(name: str, uri: str) -> None:
    """Record the experiment (and store) a run is writing to; best effort (a read-only state folder is no error)."""
    import json

    path = last_experiment_file()
    record = {"experiment": name, "tracking_uri": uri}
    try:
        if path.is_file() and json.loads(path.read_text(encoding="utf-8")) == record:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass


def last_experiment() -> dict | None:
    """``{"experiment", "tracking_uri"}`` of the last run on this machine, or None."""
    import json

    try:
        record = json.loads(last_experiment_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("experiment") else None


# --------------------------------------------------------------------------------------------
# Buffered logging: metrics survive a tracking-server outage and are synced when it returns.
# --------------------------------------------------------------------------------------------
def buffer_dir() -> Path:
    path = state_dir() / "mlflow" / "buffer"
    path.mkdir(parents=True, exist_ok=True)
    return path


class BufferedRunLogger:
    """Log to one MLflow run; while the server is away, append records to a local JSONL file.

    Each call first flushes what is buffered (when the server answers), so order is kept and
    nothing is lost. ``close()`` flushes and, if anything was buffered, tags the run with
    ``latxa.tracking.buffered=<count>`` and a note, so the run says it lived through an outage.
    ``latxa mlflow sync`` pushes buffers left behind by a process that ended during an outage.
    """

    def __init__(self, run_id: str, uri: str | None = None, probe_timeout: float = 1.0):
        self.run_id = run_id
        self.uri = resolve_tracking_uri(uri)
        self.probe_timeout = probe_timeout
        self.buffer_path = buffer_dir() / f"{run_id}.jsonl"
        self.buffered_total = 0
        self._client = None

    # -- internals --
    def _client_(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _up(self) -> bool:
        return not is_http(self.uri) or server_healthy(self.uri, self.probe_timeout)

    def _append(self, records: list[dict]) -> None:
        import json

        with self.buffer_path.open("a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec) + "\n")
        self.buffered_total += len(records)

    def _send(self, records: list[dict]) -> None:
        import time

        from mlflow.entities import Metric, Param, RunTag

        metrics = [Metric(r["key"], float(r["value"]), int(r.get("ts") or time.time() * 1000), int(r.get("step") or 0))
                   for r in records if r["kind"] == "metric"]
        params = [Param(r["key"], str(r["value"])) for r in records if r["kind"] == "param"]
        tags = [RunTag(r["key"], str(r["value"])) for r in records if r["kind"] == "tag"]
        client = self._client_()
        for i in range(0, max(len(metrics), 1), 900):  # MLflow's batch limit is 1000 metrics
            chunk = metrics[i:i + 900]
            first = i == 0
            if chunk or (first and (params or tags)):
                client.log_batch(self.run_id, metrics=chunk, params=params if first else [], tags=tags if first else [])

    def pending(self) -> int:
        if not self.buffer_path.is_file():
            return 0
        with self.buffer_path.open(encoding="utf-8") as fh:
            return sum(1 for line in fh if line.strip())

    def flush(self) -> int:
        """Send buffered records if the server answers; return how many were sent."""
        import json

        if not self.buffer_path.is_file() or not self._up():
            return 0
        records = [json.loads(line) for line in self.buffer_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if records:
            self._send(records)
        self.buffer_path.unlink()
        return len(records)

    def _log(self, records: list[dict]) -> bool:
        """Send now (True) or buffer (False)."""
        if self._up():
            try:
                self.flush()
                self._send(records)
                return True
            except Exception:
                if is_http(self.uri) and not server_healthy(self.uri, self.probe_timeout):
                    self._append(records)
                    return False
                raise
        self._append(records)
        return False

    # -- public API --
    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> bool:
        import time

        ts = int(time.time() * 1000)
        return self._log([{"kind": "metric", "key": k, "value": float(v), "step": int(step), "ts": ts} for k, v in metrics.items()])

    def set_tags(self, tags: dict) -> bool:
        return self._log([{"kind": "tag", "key": k, "value": str(v)} for k, v in tags.items()])

    def close(self) -> int:
        """Flush; mark the run if anything went through the buffer. Returns records still pending."""
        self.flush()
        left = self.pending()
        if self.buffered_total and not left:
            self._send([
                {"kind": "tag", "key": TAG_TRACKING_BUFFERED, "value": str(self.buffered_total)},
                {"kind": "tag", "key": TAG_TRACKING_NOTE, "value": (
                    f"the tracking server was unreachable during this run; {self.buffered_total} records were "
                    f"buffered locally and synced when it returned")},
            ])
        return left


def sync_buffers(uri: str | None = None) -> dict[str, int]:
    """Push every buffered run file to the tracking server (`latxa mlflow sync`); returns sent counts per run."""
    out: dict[str, int] = {}
    for path in sorted(buffer_dir().glob("*.jsonl")):
        logger = BufferedRunLogger(path.stem, uri)
        n = logger.pending()
        logger.buffered_total = n
        if logger.close() == 0:
            out[path.stem] = n
    return out
