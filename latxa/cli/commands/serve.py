"""`latxa serve`: Ray Serve with the arena models (OpenAI-compatible /v1) and the arena API (/api)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from latxa.cli.commands._common import example


def register(app: typer.Typer) -> None:
    @app.command(
        "serve",
        help="Start Ray Serve on 127.0.0.1 with one deployment per arena model and a gateway that answers the "
        "OpenAI API (/v1/models, /v1/chat/completions, streamed or not) and the arena API (/api, see "
        "docs/arena-api.md). Without --config the models are three seeds of the offline tiny model plus exported "
        "models under <state>/exports. Stops cleanly on Ctrl-C or SIGTERM."
        " --protocol picks the arena protocol (latxa, ours, the default; ebaluatoia-2025, the study's). --dry-run "
        "checks the configuration offline and prints the models, the GPU placement plan against the stated budget "
        "and the Ray Serve LLM configs of the vLLM models, without starting anything."
        + example("latxa serve --config ebaluatoia-2025 --dry-run    # the study's 21 models; or: latxa serve --port 8000"),
    )
    def serve(
        config: Optional[Path] = typer.Option(None, "--config", help="Serving YAML (models, generation settings, arena)."),
        host: Optional[str] = typer.Option(None, "--host", help="Bind address (default from the config: 127.0.0.1)."),
        port: Optional[int] = typer.Option(None, "--port", help="HTTP port (default from the config: 8000; 0 not allowed)."),
        no_ray: bool = typer.Option(False, "--no-ray", help="Serve in this process with uvicorn instead of Ray Serve."),
        num_cpus: Optional[int] = typer.Option(None, "--num-cpus", help="CPUs for the local Ray cluster (default: up to 2)."),
        protocol: Optional[str] = typer.Option(None, "--protocol", help="Arena protocol: latxa or ebaluatoia-2025."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Check the config and the GPU placement; start nothing."),
    ) -> None:
        from latxa.errors import LatxaError
        from latxa.serving.registry import load_serve_config, shipped_config

        if config is not None and not config.exists() and "/" not in str(config):
            config = shipped_config(str(config))   # a configuration shipped with the project, e.g. ebaluatoia-2025
        cfg = load_serve_config(config, protocol=protocol)
        if dry_run:
            _dry_run(cfg)
            return
        host = host or cfg.host
        port = cfg.port if port is None else port
        if len(cfg.arena_models()) < 2:
            raise LatxaError("the arena needs at least two models with arena: true in the serving config.")
        names = ", ".join(m.name for m in cfg.models)
        if no_ray:
            from latxa.serving.app import serve_standalone

            typer.echo(f"serving on http://{host}:{port} (models: {names}; no Ray)")
            serve_standalone(cfg, host, port)
            return
        import signal
        import threading

        from latxa.serving import ray_app

        done = threading.Event()
        try:
            ray_app.start(cfg, host, port, num_cpus)
            # after ray.init, which installs its own C++ SIGTERM handler
            signal.signal(signal.SIGTERM, lambda *_: done.set())
            signal.signal(signal.SIGINT, lambda *_: done.set())
            typer.echo(f"serving on http://{host}:{port} (models: {names})", err=False)
            import sys

            sys.stdout.flush()
            done.wait()
        finally:
            typer.echo("shutting down Ray Serve")
            ray_app.stop()


def _dry_run(cfg) -> None:
    from rich.console import Console
    from rich.table import Table

    from latxa.serving.placement import llm_configs, plan_placement, validate_llm_configs

    console = Console()
    table = Table("model", "kind", "served by", "generation", title=f"protocol {cfg.arena.protocol}")
    for m in cfg.models:
        where = {"vllm": f"vLLM ({m.vllm.model_source}" + (f"@{m.vllm.revision}" if m.vllm and m.vllm.revision else "")
                 + (f", tp {m.vllm.tensor_parallel_size}" if m.vllm and m.vllm.tensor_parallel_size > 1 else "") + ")"
                 if m.vllm else "", "openai": f"{m.base_url} ({m.remote_model or m.name})",
                 "anthropic": f"Anthropic ({m.remote_model})", "hf": m.path or "", "mlflow": m.model_uri or ""}[m.kind]
        g = m.generation
        table.add_row(m.name, m.kind, where, f"T={g.temperature} top_p={g.top_p} max={g.max_tokens} "
                      f"prompt={g.system_prompt}")
    console.print(table)
    configs = llm_configs(cfg)
    if configs:
        console.print(f"Ray Serve LLM: {validate_llm_configs(configs)} LLMConfig(s) valid")
    if cfg.placement is not None:
        plan = plan_placement(cfg)
        for node, gpus in plan["nodes"].items():
            for i, names in enumerate(gpus):
                console.print(f"  {node} GPU {i}: {', '.join(names) if names else '-'}")
        console.print(f"placement fits: {plan['used_gpus']} of {plan['budget_gpus']} GPUs "
                      f"({plan['accelerator_type']}, {plan['gpu_memory_gb']:g} GB)")
    elif configs:
        console.print("no placement budget stated (placement: nodes: [...]); Ray will place the vLLM models.")
