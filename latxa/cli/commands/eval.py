"""`latxa eval run|aggregate|tasks|log`: lm-eval on a model folder or endpoint, the paper's tables, MLflow."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from latxa.cli.commands._common import OutputFormat, emit_json, example


class TableFormat(str, Enum):
    json = "json"
    md = "md"
    csv = "csv"
    latex = "latex"


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Evaluation with lm-eval: run suites, aggregate results into the paper's tables, log to MLflow.",
                        no_args_is_help=True)

    @group.command(
        "run",
        help="Evaluate a model folder (Hugging Face format) or an OpenAI-compatible endpoint URL on a suite with "
        "lm-eval, writing lm-eval's results JSON and per-sample logs to OUT/<name>/, then print the suite's table. "
        "eu-mini runs offline on the shipped Basque items; chat endpoints take eu-mini-gen. Instruct models "
        "(a chat template) run with the chat template and few-shot as multi-turn."
        + example("latxa eval run --model .latxa/models/tiny --suite eu-mini --limit 20 --out eval-out"),
    )
    def run(
        model: str = typer.Option(..., "--model", help="Model folder, http(s):// endpoint URL, or org/name (cached)."),
        suite: str = typer.Option("eu-mini", "--suite", help="eu-mini, eu-mini-gen, paper, eu, en or es (`latxa eval tasks`)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Output folder; results go to OUT/<name>/results_<time>.json "
                                           "(default: <state>/eval)."),
        limit: Optional[float] = typer.Option(None, "--limit", help="Documents per task (below 1: a fraction). For smoke runs."),
        task: Optional[List[str]] = typer.Option(None, "--task", help="Only these tasks of the suite (repeatable)."),
        name: Optional[str] = typer.Option(None, "--name", help="Name to file results under (default: folder name / served model)."),
        served_model: Optional[str] = typer.Option(None, "--served-model", help="URL models: the model name the endpoint serves."),
        tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="URL models: local tokenizer folder (needed with --no-chat)."),
        chat: Optional[bool] = typer.Option(None, "--chat/--no-chat", help="Apply the chat template (default: yes if the model has one)."),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:0, ..."),
        dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16, float16."),
        batch_size: int = typer.Option(1, "--batch-size", min=1),
        num_fewshot: Optional[int] = typer.Option(None, "--num-fewshot", help="Override the registry's few-shot count for every task."),
        include_path: Optional[Path] = typer.Option(None, "--include-path", help="Extra lm-eval task YAML folder (the study's own tasks)."),
        variant: Optional[str] = typer.Option(None, "--variant", help="Log to MLflow as a nested run of this variant's run (exp_B_CIJ)."),
        mlflow: bool = typer.Option(False, "--mlflow", help="Log to MLflow even without --variant."),
        fmt: TableFormat = typer.Option(TableFormat.md, "--format", help="How to print the suite's table."),
    ) -> None:
        from latxa.components.eval.aggregate import aggregate
        from latxa.components.eval.errors import EvalError
        from latxa.components.eval.runner import run_eval
        from latxa.components.eval.tables import render

        lim = None if limit is None else (int(limit) if limit >= 1 else limit)
        if limit is not None and limit >= 1 and limit != int(limit):
            raise EvalError(f"--limit {limit}: give a whole number of documents, or a fraction below 1.")
        if variant:
            from latxa.components.registry import parse

            parse(variant)
        from latxa.paths import state_dir

        out = out or state_dir() / "eval"
        result = run_eval(model, suite, out, limit=lim, tasks=task or None, name=name, served_model=served_model,
                          chat=chat, device=device, dtype=dtype, batch_size=batch_size, num_fewshot=num_fewshot,
                          include_path=include_path, tokenizer=tokenizer)
        typer.echo(f"results: {result.results_path} ({len(result.samples_paths)} sample logs, {result.seconds:.1f}s)", err=True)
        agg = aggregate([out], suite=suite)
        agg["models"] = {k: v for k, v in agg["models"].items() if k == result.spec.name}
        typer.echo(render(agg, fmt.value))
        if variant or mlflow:
            from latxa.components.eval.mlflow_log import log_evaluation

            run_id = log_evaluation(out, result.spec.name, suite=suite, variant=variant,
                                    params={"eval.limit": lim, "eval.chat": result.spec.chat, "eval.lm_type": result.spec.lm_type})
            typer.echo(f"mlflow run: {run_id}", err=True)

    @group.command(
        "aggregate",
        help="Build the study's tables from lm-eval results folders: each DIR holds one sub-folder per model with "
        "results_*.json files (later files win per task). Prints per-task scores, per-language means (bias "
        "excluded, with the number of tasks each covers), category means and ranks, in percent."
        + example("latxa eval aggregate ../shared/data/latxa_instruct/evaluation/benchmarks/results --format md"),
    )
    def aggregate_cmd(
        dirs: List[Path] = typer.Argument(..., help="Folders with one sub-folder per model."),
        fmt: TableFormat = typer.Option(TableFormat.json, "--format", help="json, md, csv or latex."),
        suite: str = typer.Option("paper", "--suite", help="Which registered tasks count: paper, eu, en, es, eu-mini, eu-mini-gen."),
        fill_groups: bool = typer.Option(False, "--fill-groups", help="Derive a group's score from its subtasks when lm-eval wrote none (the paper leaves it out)."),
        plots: Optional[Path] = typer.Option(None, "--plots", help="Also write languages.png and categories.png into this folder."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the table to this file instead of stdout."),
    ) -> None:
        from latxa.components.eval.aggregate import aggregate
        from latxa.components.eval.tables import render

        agg = aggregate(dirs, suite=suite, fill_groups=fill_groups)
        text = render(agg, fmt.value)
        if output:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
            typer.echo(f"wrote {output} ({len(agg['models'])} models, {agg['files_read']} results files)", err=True)
        else:
            typer.echo(text, nl=False)
        if plots:
            from latxa.components.eval.plots import plot_all

            for p in plot_all(agg, plots):
                typer.echo(f"wrote {p}", err=True)

    @group.command("tasks", help="List the benchmark registry: suites, or the tasks of one suite."
                   + example("latxa eval tasks --suite paper --format json"))
    def tasks(
        suite: Optional[str] = typer.Option(None, "--suite", help="Show this suite's tasks (default: every suite)."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
    ) -> None:
        from latxa.components.eval.registry import default_registry

        reg = default_registry()
        suites = [reg.suite(suite)] if suite else list(reg.suites.values())
        if fmt == OutputFormat.json:
            emit_json({s.name: {"description": s.description, "generative": s.generative, "offline": s.offline,
                                "tasks": [dict(b.as_dict(), task=t) for b, t in zip(s.benchmarks, s.tasks, strict=True)]} for s in suites})
            return
        from rich.console import Console
        from rich.table import Table

        console = Console()
        for s in suites:
            table = Table("task", "lang", "category", "metric", "shots", "in mean", "source",
                          title=f"{s.name}: {s.description}", title_justify="left")
            for b, t in zip(s.benchmarks, s.tasks, strict=True):
                table.add_row(t, b.language, b.category, " | ".join(b.metric_keys), str(b.num_fewshot),
                              "yes" if b.in_mean else "no", b.source)
            console.print(table)

    @group.command("log", help="Log results already on disk (OUT/<name>/results_*.json) to MLflow as a nested run of "
                   "the variant's run: per-task metrics, language and category means, results JSON and plots as artifacts."
                   + example("latxa eval log eval-out --name tiny --suite eu-mini --variant exp_2_101"))
    def log(
        out: Path = typer.Argument(..., help="Results folder (one sub-folder per model)."),
        name: str = typer.Option(..., "--name", help="The model sub-folder to log."),
        suite: str = typer.Option("eu-mini", "--suite"),
        variant: Optional[str] = typer.Option(None, "--variant", help="Variant code whose run the evaluation nests under."),
        tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Default: MLFLOW_TRACKING_URI or the local SQLite store."),
    ) -> None:
        from latxa.components.eval.mlflow_log import log_evaluation

        run_id = log_evaluation(out, name, suite=suite, variant=variant, tracking_uri=tracking_uri)
        typer.echo(run_id)

    app.add_typer(group, name="eval")
