"""`latxa compare`: variants side by side, read back from MLflow (one row per variant's latest run)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from latxa.components import tracking
from latxa.errors import LatxaError

_MEAN = re.compile(r"^eval\.(?P<suite>[^.]+)\.mean_(?P<lang>[a-z]+)$")


class CompareError(LatxaError):
    """Nothing to compare (no experiment or no runs)."""


def default_experiment(uri: str | None = None) -> tuple[str, str | None, str]:
    """(experiment, tracking URI, why): what `latxa compare` reads when no --experiment is given: the experiment the
    last run on this machine used (`latxa demo`, `latxa pipeline run`, training, evaluation), else the study's
    default. The last run's store is used when no URI is given and that store still answers."""
    last = tracking.last_experiment()
    if not last:
        return tracking.DEFAULT_EXPERIMENT, uri, "the default experiment"
    recorded = last.get("tracking_uri")
    if uri is None and recorded and not os.environ.get("MLFLOW_TRACKING_URI"):
        alive = (tracking.server_healthy(recorded) if tracking.is_http(recorded)
                 else recorded.startswith("sqlite:///") and Path(recorded[len("sqlite:///"):]).is_file())
        if alive:
            uri = recorded
    return last["experiment"], uri, "the experiment of the last run"


def collect(experiment: str | None = None, uri: str | None = None, kfp_run_id: str | None = None,
            why: str = "") -> list[dict]:
    """One row per variant: flags, final loss, tokens seen, eval means per language (percent), run id.

    ``experiment`` None: :func:`default_experiment`. ``kfp_run_id``: only the variant runs of that KFP run. ``why``:
    how the experiment was chosen, for the error message."""
    from mlflow.tracking import MlflowClient

    if experiment is None:
        experiment, uri, why = default_experiment(uri)
    uri = tracking.check_reachable(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        known = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
        chosen = f" ({why}; pass --experiment NAME)" if why else ""
        raise CompareError(f"No MLflow experiment named '{experiment}'{chosen} at {uri} (experiments: {known}).")
    query = f"tags.`{tracking.TAG_STAGE}` = 'train'"
    if kfp_run_id:
        query += f" and tags.`{tracking.TAG_KFP_RUN}` = '{kfp_run_id}'"
    runs = client.search_runs([exp.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"],
                              max_results=5000)
    rows: list[dict] = []
    seen: set[str] = set()
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        code = tags.get(tracking.TAG_VARIANT)
        if not code or code in seen or "mlflow.parentRunId" in tags and tags.get(tracking.TAG_STAGE) != "train":
            continue
        seen.add(code)
        row = {
            "variant": code,
            "paper_name": tags.get(tracking.TAG_PAPER_NAME, ""),
            "backbone": tags.get(tracking.TAG_BACKBONE, ""),
            "corpus_eu": tags.get(tracking.TAG_CORPUS_EU, ""),
            "inst_eu": tags.get(tracking.TAG_INST_EU, ""),
            "inst_en": tags.get(tracking.TAG_INST_EN, ""),
            "final_loss": metrics.get(tracking.METRIC_FINAL_LOSS, metrics.get(tracking.METRIC_LOSS)),
            "tokens_seen": metrics.get(tracking.METRIC_TOKENS_SEEN),
            "means": {},
            "suite": None,
            "status": run.info.status,
            "run_id": run.info.run_id,
            "kfp_task": tags.get(tracking.TAG_KFP_TASK),
            "tracking_note": tags.get(tracking.TAG_TRACKING_NOTE),
        }
        for key, value in sorted(metrics.items()):
            m = _MEAN.match(key)
            if m:
                row["means"][m["lang"]] = value
                row["suite"] = m["suite"]
        rows.append(row)
    if not rows:
        which = f" from KFP run {kfp_run_id}" if kfp_run_id else ""
        raise CompareError(f"Experiment '{experiment}' at {uri} has no variant runs{which} yet; run `latxa demo` or "
                           "`latxa pipeline run` first.")
    rows.sort(key=lambda r: r["variant"])
    return rows


def mlflow_links(experiment: str, uri: str) -> tuple[str, str] | None:
    """(runs table, chart view) of the experiment's study view in the MLflow UI, or None without a UI (SQLite)."""
    from mlflow.tracking import MlflowClient

    if not tracking.is_http(uri):
        return None
    exp = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    if exp is None:
        return None
    return tracking.experiment_url(uri, exp.experiment_id), tracking.experiment_url(uri, exp.experiment_id, charts=True)


def languages(rows: list[dict]) -> list[str]:
    found = {lang for r in rows for lang in r["means"]}
    return [lang for lang in tracking.LANGUAGES if lang in found] + sorted(found - set(tracking.LANGUAGES))


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    return str(value)


def header_and_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    langs = languages(rows)
    header = ["variant", "paper name", "C_EU", "I_EU", "I_EN"] + [f"mean {lang.upper()}" for lang in langs] + [
        "final loss", "tokens seen", "status"]
    cells = []
    for r in rows:
        cells.append([r["variant"], r["paper_name"], r["corpus_eu"], r["inst_eu"], r["inst_en"]]
                     + [_fmt(r["means"].get(lang)) for lang in langs]
                     + [_fmt(r["final_loss"], 4), _fmt(r["tokens_seen"]), r["status"]])
    return header, cells


def to_markdown(rows: list[dict]) -> str:
    header, cells = header_and_cells(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines) + "\n"


def to_json(rows: list[dict]) -> str:
    return json.dumps({"variants": rows}, indent=2, ensure_ascii=False)


def print_table(rows: list[dict], title: str = "") -> None:
    from rich.console import Console
    from rich.table import Table

    header, cells = header_and_cells(rows)
    table = Table(*header, title=title or None)
    for c in cells:
        table.add_row(*c)
    Console(width=max(120, sum(len(h) + 3 for h in header))).print(table)


def plot(rows: list[dict], path: str | Path) -> Path:
    """PNG: benchmark means per language (grouped bars) and final training loss, one bar group per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    langs = languages(rows)
    names = [r["variant"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(rows) + 4), 4.2),
                                   gridspec_kw={"width_ratios": [2, 1]})
    width = 0.8 / max(1, len(langs))
    for i, lang in enumerate(langs):
        xs = [j + i * width for j in range(len(rows))]
        ax1.bar(xs, [r["means"].get(lang) or 0 for r in rows], width, label=lang.upper())
    ax1.set_xticks([j + width * (len(langs) - 1) / 2 for j in range(len(rows))], names, rotation=30, ha="right")
    ax1.set_ylabel("benchmark mean (%)")
    suite = next((r["suite"] for r in rows if r["suite"]), "")
    ax1.set_title(f"Evaluation means ({suite})" if suite else "Evaluation means")
    if langs:
        ax1.legend()
    ax2.bar(names, [r["final_loss"] or 0 for r in rows], color="tab:gray")
    ax2.set_title("Final training loss")
    ax2.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
