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


def _run_one(model: str, opts: dict, fmt: str) -> None:
    """Evaluate one model with the run options, print its table, log it to MLflow when asked."""
    from latxa.components.eval.aggregate import aggregate
    from latxa.components.eval.runner import run_eval
    from latxa.components.eval.tables import render

    out = opts["out"]
    result = run_eval(model, opts["suite"], out, limit=opts["limit"], tasks=opts["task"] or None, name=opts["name"],
                      served_model=opts["served_model"], chat=opts["chat"], kind=opts["kind"], device=opts["device"],
                      dtype=opts["dtype"], batch_size=opts["batch_size"], max_length=opts["max_length"],
                      num_fewshot=opts["num_fewshot"], include_path=opts["include_path"], tokenizer=opts["tokenizer"],
                      revision=opts["revision"], backend=opts["backend"],
                      tensor_parallel_size=opts["tensor_parallel_size"], parallelize=opts["parallelize"],
                      attn_implementation=opts["attn_implementation"], datasets=opts["datasets"],
                      bias_data=opts["bias_data"], mcq_to_generative=opts["mcq_to_generative"], resume=opts["resume"])
    typer.echo(f"results: {result.spec.name}: {len(result.results_paths)} results files in {out / result.spec.name} "
               f"({len(result.resumed)} tasks resumed, {len(result.samples_paths)} sample logs, {result.seconds:.1f}s)",
               err=True)
    agg = aggregate([out], suite=opts["suite"])
    agg["models"] = {k: v for k, v in agg["models"].items() if k == result.spec.name}
    typer.echo(render(agg, fmt))
    variant = opts["variant"] or result.spec.variant
    if opts["variant"] or opts["mlflow"]:
        from latxa.components.eval.mlflow_log import log_evaluation

        run_id = log_evaluation(out, result.spec.name, suite=opts["suite"], variant=variant,
                                params={"eval.limit": opts["limit"], "eval.chat": result.spec.chat,
                                        "eval.kind": result.spec.kind, "eval.lm_type": result.spec.lm_type,
                                        "eval.model_args": result.spec.args_string()})
        typer.echo(f"mlflow run: {run_id}", err=True)


# Options whose values are paths on this machine: made absolute before they go into a job script.
_PATH_OPTS = ("out", "datasets", "bias_data", "include_path", "tokenizer")


def _job_argv(models: list[str], opts: dict) -> list[str]:
    """`latxa eval run` for one task of the array: the same options, every model, --array-task."""
    argv = ["latxa", "eval", "run"]
    for m in models:
        path = Path(m).expanduser()
        argv += ["--model", str(path.resolve()) if path.exists() else m]
    flags = {"chat": ("--chat", "--no-chat"), "parallelize": ("--parallelize", "--no-parallelize"),
             "mcq_to_generative": ("--mcq-to-generative", "--no-mcq-to-generative")}
    for key, value in opts.items():
        if key in flags:   # three states: unset (the default decides), on, off
            if value is not None:
                argv.append(flags[key][0] if value else flags[key][1])
            continue
        if value is None or value is False or value == []:
            continue
        if value is True:
            argv.append("--" + key.replace("_", "-"))
        elif key == "task":
            for t in value:
                argv += ["--task", t]
        else:
            text = str(Path(value).expanduser().resolve()) if key in _PATH_OPTS else str(value)
            argv += ["--" + key.replace("_", "-"), text]
    return [*argv, "--array-task"]


def _submit_array(models: list[str], opts: dict, *, profile: str, max_parallel: int | None,
                  time_limit: str | None) -> None:
    """One SLURM array task (one node) per model, through the bridge's render/submit API."""
    from latxa.components.eval.errors import EvalError
    from latxa.components.eval.runner import model_spec
    from latxa.slurm.bridge import SlurmBridge
    from latxa.slurm.profiles import load_profile
    from latxa.slurm.render import render_command

    if opts["resume"] is False:
        typer.echo("note: without --resume a requeued array task evaluates its model again from the start", err=True)
    names = []
    for m in models:
        try:
            names.append(model_spec(m, check_loads=False, revision=opts["revision"], name=opts["name"]).name)
        except EvalError:
            if not m.startswith("/"):
                raise
            names.append(Path(m).name)   # a folder on the cluster, not on this machine
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EvalError(f"model(s) {', '.join(dupes)} given twice.")
    prof = load_profile(profile)
    array = f"0-{len(models) - 1}" + (f"%{max_parallel}" if max_parallel else "")
    job = render_command(prof, _job_argv(models, opts), name=f"eval-{len(models)}", time=time_limit, array=array,
                         nodes=1)
    bridge = SlurmBridge(prof)
    job_id = bridge.submit(job)
    typer.echo(f"submitted {job.name}: {len(models)} models as array tasks 0-{len(models) - 1} "
               f"to {bridge.transport.describe()} (logs: {job.log})", err=True)
    for i, n in enumerate(names):
        typer.echo(f"  task {i}: {n} -> {opts['out'] / n}", err=True)
    typer.echo(job_id)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Evaluation with lm-eval: run suites, aggregate results into the paper's tables, log to MLflow.",
                        no_args_is_help=True)

    @group.command(
        "run",
        help="Evaluate models with lm-eval, one results file per task (as the study ran them), writing lm-eval's "
        "results JSON and per-sample logs to OUT/<name>/, then print the suite's table. --model takes a model folder, "
        "a cached hub name (--revision for a branch), a variant code (exp_2_101: its branch of "
        "HiTZ/Latxa-Llama-3.1-8B-Instruct), an OpenAI-compatible URL, or an API model (openai:NAME, anthropic:NAME). "
        "Base models get plain few-shot prompts; instruct and fine-tuned models the chat template with few-shot as "
        "turns. Study suites read datasets from an offline mirror (--datasets, from `latxa eval fetch`). Several "
        "--model values run one after another, or with --slurm PROFILE as a SLURM job array (one node per model)."
        + example("latxa eval run --model exp_2_101 --suite paper --datasets /data/eval-mirror --device cuda --out eval-out"),
    )
    def run(
        model: List[str] = typer.Option(..., "--model", help="Model folder, hub org/name, variant code, URL or openai:/anthropic: model (repeatable)."),
        suite: str = typer.Option("eu-mini", "--suite", help="eu-mini, eu-mini-gen, paper, eu, en, es or paper-api (`latxa eval tasks`)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Output folder; results go to OUT/<name>/results_<time>.json "
                                           "(default: <state>/eval)."),
        limit: Optional[float] = typer.Option(None, "--limit", help="Documents per task (below 1: a fraction). For smoke runs."),
        task: Optional[List[str]] = typer.Option(None, "--task", help="Only these tasks of the suite (repeatable)."),
        name: Optional[str] = typer.Option(None, "--name", help="Name to file results under (default: the study's folder name)."),
        revision: Optional[str] = typer.Option(None, "--revision", help="Hub models: branch, tag or commit (the 8B variants are branches)."),
        kind: Optional[str] = typer.Option(None, "--kind", help="base, instruct or finetuned (default: from the study's model registry; folders: from the chat template)."),
        chat: Optional[bool] = typer.Option(None, "--chat/--no-chat", help="Override the kind's chat template choice."),
        backend: str = typer.Option("hf", "--backend", help="hf (transformers) or vllm (GPU only)."),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:0, ..."),
        dtype: Optional[str] = typer.Option(None, "--dtype", help="auto, float32, bfloat16, float16 (default: bfloat16 on GPU)."),
        batch_size: Optional[str] = typer.Option(None, "--batch-size", help="N, auto or auto:N (default: auto on GPU, 1 on CPU)."),
        tensor_parallel_size: Optional[int] = typer.Option(None, "--tensor-parallel-size", help="vllm: GPUs per model (default: all for 70B, else 1)."),
        parallelize: Optional[bool] = typer.Option(None, "--parallelize/--no-parallelize", help="hf: spread the model over the GPUs (default: on for 70B on GPU)."),
        attn_implementation: Optional[str] = typer.Option(None, "--attn-implementation", help="hf: e.g. flash_attention_2 (the study's)."),
        max_length: Optional[int] = typer.Option(None, "--max-length", help="Context length limit."),
        num_fewshot: Optional[int] = typer.Option(None, "--num-fewshot", help="Override the registry's few-shot count for every task."),
        datasets: Optional[Path] = typer.Option(None, "--datasets", envvar="LATXA_EVAL_DATASETS",
                                                help="Offline dataset mirror made by `latxa eval fetch` (default: the HF cache)."),
        bias_data: Optional[Path] = typer.Option(None, "--bias-data", envvar="LATXA_BIAS_DATA",
                                                 help="BBQ/BasqBBQ data folder (not public; default: DATASETS/json)."),
        mcq_to_generative: Optional[bool] = typer.Option(None, "--mcq-to-generative/--no-mcq-to-generative",
                                                         help="Multiple choice as a generated letter (the API-model protocol; paper-api: on)."),
        resume: bool = typer.Option(False, "--resume", help="Skip tasks OUT/<name>/ already holds with the same settings."),
        include_path: Optional[Path] = typer.Option(None, "--include-path", help="Extra lm-eval task YAML folder (overrides tasks by name)."),
        served_model: Optional[str] = typer.Option(None, "--served-model", help="URL models: the model name the endpoint serves."),
        tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="URL models: local tokenizer folder (needed with --no-chat)."),
        variant: Optional[str] = typer.Option(None, "--variant", help="Log to MLflow as a nested run of this variant's run (default for a variant model: its code)."),
        mlflow: bool = typer.Option(False, "--mlflow", help="Log each model to MLflow."),
        slurm: Optional[str] = typer.Option(None, "--slurm", help="Submit a SLURM job array instead (cluster profile: local, leonardo, a YAML file)."),
        max_parallel: Optional[int] = typer.Option(None, "--max-parallel", help="--slurm: at most this many models at once."),
        time_limit: Optional[str] = typer.Option(None, "--time", help="--slurm: time limit per model (default: the profile's)."),
        array_task: bool = typer.Option(False, "--array-task", help="Inside a SLURM array: evaluate only model number $SLURM_ARRAY_TASK_ID."),
        fmt: TableFormat = typer.Option(TableFormat.md, "--format", help="How to print the suite's table."),
    ) -> None:
        import os

        from latxa.components.eval.errors import EvalError

        lim = None if limit is None else (int(limit) if limit >= 1 else limit)
        if limit is not None and limit >= 1 and limit != int(limit):
            raise EvalError(f"--limit {limit}: give a whole number of documents, or a fraction below 1.")
        if variant:
            from latxa.components.registry import parse

            parse(variant)
        if variant and len(model) > 1:
            raise EvalError("--variant names one model's variant run: give it with a single --model.")
        if name and len(model) > 1:
            raise EvalError("--name files one model's results: give it with a single --model.")
        from latxa.paths import state_dir

        out = (out or state_dir() / "eval").expanduser().resolve()
        opts = dict(suite=suite, out=out, limit=lim, task=task or [], name=name, revision=revision, kind=kind,
                    chat=chat, backend=backend, device=device, dtype=dtype, batch_size=batch_size,
                    tensor_parallel_size=tensor_parallel_size, parallelize=parallelize,
                    attn_implementation=attn_implementation, max_length=max_length, num_fewshot=num_fewshot,
                    datasets=datasets, bias_data=bias_data, mcq_to_generative=mcq_to_generative, resume=resume,
                    include_path=include_path, served_model=served_model, tokenizer=tokenizer, variant=variant,
                    mlflow=mlflow)
        if slurm:
            if array_task:
                raise EvalError("--slurm submits the array; --array-task is what its tasks run.")
            _submit_array(model, opts, profile=slurm, max_parallel=max_parallel, time_limit=time_limit)
            return
        models = model
        if array_task:
            index = os.environ.get("SLURM_ARRAY_TASK_ID")
            if index is None or not index.isdigit() or int(index) >= len(model):
                raise EvalError(f"--array-task needs SLURM_ARRAY_TASK_ID between 0 and {len(model) - 1} (got {index!r}).")
            models = [model[int(index)]]
        for m in models:
            _run_one(m, opts, fmt.value)

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

    @group.command("tasks", help="List the benchmark registry: suites, or the tasks of one suite. With --resolved, "
                   "every (sub)task's config as lm-eval resolves it (what a run writes under \"configs\": prompt, "
                   "choices, target, delimiters, splits, shots, metrics) and the groups' members, as JSON."
                   + example("latxa eval tasks --suite paper --resolved --format json"))
    def tasks(
        suite: Optional[str] = typer.Option(None, "--suite", help="Show this suite's tasks (default: every suite)."),
        resolved: bool = typer.Option(False, "--resolved", help="Dump lm-eval's resolved configs (needs --suite)."),
        mcq_to_generative: Optional[bool] = typer.Option(None, "--mcq-to-generative/--no-mcq-to-generative",
                                                         help="--resolved: as the API-model protocol would run them."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
    ) -> None:
        from latxa.components.eval.errors import EvalError
        from latxa.components.eval.registry import default_registry

        reg = default_registry()
        if resolved:
            if not suite:
                raise EvalError("--resolved needs --suite (e.g. --suite paper).")
            if fmt != OutputFormat.json:
                raise EvalError("--resolved prints JSON: add --format json.")
            from latxa.components.eval.taskdefs import resolved as resolve

            emit_json(resolve(reg.suite(suite), generative=mcq_to_generative))
            return
        suites = [reg.suite(suite)] if suite else list(reg.suites.values())
        if fmt == OutputFormat.json:
            emit_json({s.name: {"description": s.description, "generative": s.generative, "offline": s.offline,
                                "generative_mc": s.generative_mc, "system_instruction": s.system_instruction,
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

    @group.command("fetch", help="Mirror every dataset, config and split a suite reads into one folder (run it where "
                   "there is internet; compute nodes then read the folder with `latxa eval run --datasets DIR`). "
                   "BBQ/BasqBBQ are not public: --bias-data DIR copies them in. Writes DIR/mirror.json."
                   + example("latxa eval fetch --suite paper --to /leonardo_work/latxa/eval-mirror --bias-data ~/bbq-data"))
    def fetch(
        to: Path = typer.Option(..., "--to", help="Mirror folder (created)."),
        suite: str = typer.Option("paper", "--suite", help="Which suite's datasets."),
        task: Optional[List[str]] = typer.Option(None, "--task", help="Only these tasks' datasets (repeatable)."),
        source: Optional[Path] = typer.Option(None, "--from", help="Read from a local folder of hub dataset repositories "
                                              "(FROM/HiTZ/BertaQA, ...) instead of the hub."),
        bias_data: Optional[Path] = typer.Option(None, "--bias-data", envvar="LATXA_BIAS_DATA",
                                                 help="BBQ/BasqBBQ data folder to copy in (laid out like the study's lm-eval tasks folder)."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
    ) -> None:
        from latxa.components.eval.errors import EvalError
        from latxa.components.eval.mirror import fetch as do_fetch
        from latxa.components.eval.mirror import refs_from_configs
        from latxa.components.eval.registry import default_registry
        from latxa.components.eval.runner import resolve_tasks
        from latxa.components.eval.taskdefs import task_manager, task_tree

        chosen, names = resolve_tasks(suite, task or None, default_registry())
        if chosen.offline:
            raise EvalError(f"suite '{suite}' ships its data with the project: nothing to fetch.")
        if source is not None and not source.is_dir():
            raise EvalError(f"--from {source}: no such folder.")
        refs = refs_from_configs(task_tree(task_manager(chosen), names).leaves)
        report = do_fetch(refs, to, source=source, bias_data=bias_data, suite=suite,
                          progress=lambda msg: typer.echo(msg, err=True))
        if fmt == OutputFormat.json:
            emit_json(report.as_dict())
            return
        for d in report.datasets:
            rows = ", ".join(f"{k} {v}" for k, v in d["rows"].items())
            typer.echo(f"{d['path']}{'/' + d['name'] if d['name'] else ''}: {rows}")
        for d in report.skipped:
            typer.echo(f"skipped {d['tasks'][0]} ({len(d['tasks'])} tasks): {d['reason']}")
        typer.echo(f"{len(report.datasets)} of {len(refs)} datasets in {to} ({len(report.skipped)} skipped)", err=True)

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
