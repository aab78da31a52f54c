"""`latxa train`: fine-tune one variant on Ray Train (DDP or DeepSpeed ZeRO), plus `export` and `publish`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from latxa.cli.commands._common import OutputFormat, emit_json, example


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Train a variant with Ray Train (FSDP2, DeepSpeed ZeRO or DDP; checkpoints, exact resume, MLflow), export it to a "
        "Hugging Face folder and publish it." + example(
            "latxa train --variant exp_1_010 --data .latxa/data/exp_1_010 --out .latxa/runs/exp_1_010"),
        invoke_without_command=True,
        no_args_is_help=True,
    )

    @group.callback(invoke_without_command=True)
    def train(
        ctx: typer.Context,
        variant: Optional[str] = typer.Option(None, "--variant", help="Variant code, e.g. exp_2_101."),
        data: Optional[Path] = typer.Option(None, "--data", help="Packed dataset folder from `latxa data prepare`."),
        out: Optional[Path] = typer.Option(None, "--out", help="Run folder: checkpoints, run.json, exported model/."),
        profile: str = typer.Option("local", "--profile", help="Target profile from the study config (local, leonardo-8b, ...)."),
        model: Optional[str] = typer.Option(None, "--model", help="Base model: a folder or a Hugging Face name "
                                            "resolved offline from HF_HOME, e.g. meta-llama/Llama-3.1-8B or "
                                            "NAME@BRANCH (default: the tiny model on CPU, the variant's backbone on GPU)."),
        revision: Optional[str] = typer.Option(None, "--revision", help="Branch, tag or commit of a --model name."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
        tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow URI (sqlite:///... or http://host:port)."),
        config: Optional[Path] = typer.Option(None, "--config", help="Study YAML (default: the shipped study.yaml)."),
        num_workers: Optional[int] = typer.Option(None, "--num-workers", help="Override the profile's worker count."),
        deepspeed_stage: Optional[int] = typer.Option(None, "--deepspeed-stage", help="0 = DDP, 1/2/3 = DeepSpeed ZeRO stage."),
        fsdp: Optional[str] = typer.Option(None, "--fsdp", help="FSDP2 sharding: none, full_shard or hybrid_shard (default: the profile's)."),
        global_batch_size: Optional[int] = typer.Option(None, "--global-batch-size",
                                                        help="Rows per optimizer step; sets grad accumulation (must be a multiple of workers x micro batch)."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
        checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Checkpoint every N steps."),
        saves_per_epoch: Optional[int] = typer.Option(None, "--saves-per-epoch", help="Checkpoints per epoch (reference: 4; 70B 5)."),
        checkpoint_minutes: Optional[float] = typer.Option(None, "--checkpoint-minutes", help="Also checkpoint every M minutes of training."),
        heldout: Optional[Path] = typer.Option(None, "--heldout", help="Prepared held-out set(s) (a folder of them) for the "
                                               "loss during training (`latxa study prepare` writes DATA/heldout)."),
        evals_per_epoch: Optional[int] = typer.Option(None, "--evals-per-epoch", help="Held-out loss this many times per epoch "
                                                      "(reference: 4; 70B 5)."),
        smoke: bool = typer.Option(False, "--smoke", help="Apply the study config's smoke overrides (a few steps)."),
        backend: Optional[str] = typer.Option(None, "--backend", help="cpu: run a GPU profile on CPU workers (rehearsals)."),
        pg_timeout: Optional[int] = typer.Option(None, "--pg-timeout", help="torch.distributed process-group timeout "
                                                 "in seconds (Ray's default: 1800)."),
        no_export: bool = typer.Option(False, "--no-export", help="Train and checkpoint only; export (`latxa train "
                                       "export`) and registration (`latxa model register`) run as their own steps."),
        experiment: Optional[str] = typer.Option(None, "--experiment", help="MLflow experiment (default latxa-instruct)."),
        parent_run_id: Optional[str] = typer.Option(None, "--parent-run-id", help="MLflow sweep run this run belongs to (tag latxa.sweep_run)."),
        no_register: bool = typer.Option(False, "--no-register", help="Do not register the exported model."),
        no_track: bool = typer.Option(False, "--no-track", help="No MLflow at all."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Validate and print the plan as JSON; start nothing."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json (the result)."),
    ) -> None:
        if ctx.invoked_subcommand is not None:
            return
        from latxa.errors import LatxaError

        missing = [flag for flag, value in (("--variant", variant), ("--data", data), ("--out", out)) if value is None]
        if missing:
            raise LatxaError(f"`latxa train` needs {', '.join(missing)} (see `latxa train --help`).")
        from latxa.components.train.plan import TrainJob, plan_training

        job = TrainJob(variant=variant, data_dir=data, out_dir=out, model=model, revision=revision, profile=profile,
                       config_path=config, resume=resume, tracking_uri=tracking_uri, experiment=experiment,
                       parent_run_id=parent_run_id, register=not no_register and not no_export, track=not no_track,
                       num_workers=num_workers, deepspeed_stage=deepspeed_stage, fsdp=fsdp,
                       global_batch_size=global_batch_size, max_steps=max_steps, checkpoint_every=checkpoint_every,
                       saves_per_epoch=saves_per_epoch, checkpoint_minutes=checkpoint_minutes, heldout=heldout,
                       evals_per_epoch=evals_per_epoch, smoke=smoke, backend=backend, pg_timeout_s=pg_timeout,
                       export=not no_export)
        if dry_run:
            emit_json(plan_training(job).to_dict())
            return
        from latxa.components.train.runner import train as run

        result = run(job)
        if fmt == OutputFormat.json:
            emit_json(result.to_dict())
            return
        m = result.metrics
        where = f"model exported to {result.model_dir}" if result.model_dir else f"checkpoint {result.checkpoint_dir}"
        typer.echo(f"trained {result.variant}: {m.get('step')} steps, loss {m.get('first_loss', float('nan')):.4f} -> "
                   f"{m.get('loss', float('nan')):.4f}; {where}")
        if result.mlflow_run_id:
            typer.echo(f"MLflow run {result.mlflow_run_id} at {result.tracking_uri}"
                       + (f"; registered {result.registered_model} v{result.model_version}" if result.registered_model else ""))

    @group.command("export", help="Consolidate a checkpoint (DDP, FSDP or DeepSpeed ZeRO shards) into a Hugging Face "
                   "folder with tokenizer and chat template, streaming one tensor at a time into safetensors shards "
                   "(bf16 unless --dtype float32)."
                   + example("latxa train export --run .latxa/runs/exp_1_010 --out /tmp/exp_1_010-hf"))
    def export(
        out: Path = typer.Option(..., "--out", help="Folder to write the Hugging Face model into."),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="A checkpoint folder (out/ray/<variant>/step-N)."),
        run: Optional[Path] = typer.Option(None, "--run", help="A run folder: export its latest checkpoint."),
        base_model: Optional[Path] = typer.Option(None, "--base-model", help="Model the run started from (default: from run.json)."),
        dtype: Optional[str] = typer.Option(None, "--dtype", help="bfloat16, float32 or float16 (default: the run's export_dtype, else bfloat16)."),
        max_shard_size: str = typer.Option("5GB", "--max-shard-size", help="Largest safetensors shard, e.g. 5GB or 500MB."),
    ) -> None:
        from latxa.components.train.export import export_checkpoint, latest_checkpoint
        from latxa.errors import LatxaError

        if (checkpoint is None) == (run is None):
            raise LatxaError("Pass exactly one of --checkpoint or --run.")
        ckpt = checkpoint if checkpoint is not None else latest_checkpoint(run)
        path = export_checkpoint(ckpt, out, base_model=base_model, dtype=dtype, max_shard_size=max_shard_size)
        typer.echo(f"exported {ckpt} to {path}")

    @group.command("plan", help="Memory and time plan of a variant on a profile: host GiB per node, GPU GiB per device "
                   "(weights, gradients, optimizer, activations, logits, buffers), tokens per step, steps and step "
                   "time at a stated MFU. Refuses, in one sentence, a configuration that does not fit."
                   + example("latxa train plan --variant exp_2_101 --profile leonardo-70b --format json"))
    def plan(
        variant: str = typer.Option("exp_2_101", "--variant", help="Variant code."),
        profile: str = typer.Option("leonardo-8b", "--profile", help="Profile of the study config."),
        model: Optional[str] = typer.Option(None, "--model", help="Model name (the study's backbones) or folder with config.json (default: the profile's plan_model, else the variant's backbone)."),
        data: Optional[Path] = typer.Option(None, "--data", help="Packed dataset: plan its rows (steps, hours)."),
        rows: Optional[int] = typer.Option(None, "--rows", help="Packed rows per epoch, when there is no --data."),
        config: Optional[Path] = typer.Option(None, "--config", help="Study YAML (default: the shipped study.yaml)."),
        mfu: float = typer.Option(0.40, "--mfu", help="Model FLOPs utilisation assumed for the step time."),
        doc_len: int = typer.Option(2048, "--doc-len", help="Mean packed document length (attention FLOPs)."),
        micro_batch_size: Optional[int] = typer.Option(None, "--micro-batch-size", help="Override the micro batch."),
        seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Override the sequence length."),
        fsdp: Optional[str] = typer.Option(None, "--fsdp", help="Override: none, full_shard or hybrid_shard."),
        no_gradient_checkpointing: bool = typer.Option(False, "--no-gradient-checkpointing", help="Plan without activation checkpointing."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
    ) -> None:
        from latxa.components.train.memory import plan_memory, setup_from_config

        if data is not None and rows is None:
            from latxa.components.train.data import inspect_packed

            rows = inspect_packed(data, check_rows=False).num_rows
        overrides = {"micro_batch": micro_batch_size, "seq_len": seq_len, "fsdp": fsdp, "mfu": mfu, "doc_len": doc_len,
                     "gradient_checkpointing": False if no_gradient_checkpointing else None}
        result = plan_memory(setup_from_config(variant=variant, profile=profile, config_path=config, model=model,
                                               rows=rows, overrides=overrides))
        if fmt == OutputFormat.json:
            emit_json(result)
            return
        typer.echo(_plan_table(result))

    @group.command("publish", help="Copy an exported model to a folder or host:path (rsync) and verify its SHA256SUMS."
                   + example("latxa train publish .latxa/runs/exp_1_010/model /srv/models/latxa-exp_1_010"))
    def publish(
        src: Path = typer.Argument(..., help="Exported model folder."),
        dest: str = typer.Argument(..., help="Destination folder, or user@host:/path for rsync over ssh."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty destination folder."),
    ) -> None:
        from latxa.components.train.publish import publish as do_publish

        info = do_publish(src, dest, overwrite=overwrite)
        typer.echo(f"published {src} to {info['dest']}: {info['files']} files verified")

    app.add_typer(group, name="train")


def _plan_table(p: dict) -> str:
    lines = [f"{p['model']} ({p['params'] / 1e9:.2f}e9 parameters) on '{p['profile']}': {p['world_size']} ranks, "
             f"{p['nodes']} node(s), FSDP {p['sharding']['fsdp']} (shard group {p['sharding']['shard_group']}), "
             f"ZeRO {p['sharding']['deepspeed_stage']}"]
    def budget(value: float) -> str:
        return f"of {value:g}" if value else "(no budget in the profile)"

    if p["gpu"]:
        lines.append(f"GPU per device: {p['gpu_gib_per_device']:.2f} GiB {budget(p['gpu_budget_gib'])}")
        lines += [f"  {k:<12} {v:8.2f} GiB" for k, v in p["gpu"].items()]
    lines.append(f"host per node: {p['host_gib_per_node']:.2f} GiB {budget(p['host_budget_gib'])}")
    lines += [f"  {k:<12} {v:8.2f} GiB" for k, v in p["host"].items()]
    lines.append(f"tokens per step {p['tokens_per_step']:,} ({p['global_batch_rows']} rows); step time "
                 f"{p['step_time_s']:.2f} s at MFU {p['mfu_assumed']:.0%} of {p['gpu_peak_tflops']:g} TFLOP/s"
                 + (f"; {p['steps']:,} steps, {p['hours']:.1f} h" if p["steps"] else "; steps: pass --data or --rows"))
    return "\n".join(lines)
