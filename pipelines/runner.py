"""Compile, run locally with kfp.local, and submit to a KFP endpoint: what `latxa pipeline ...` calls."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latxa.components import tracking
from latxa.errors import LatxaError
from latxa.paths import state_dir


class PipelineError(LatxaError):
    """A pipeline could not be compiled, run or submitted."""


def pipelines() -> dict:
    from latxa.pipelines.study import PIPELINES

    return PIPELINES


def compile_all(out: str | Path, image: str | None = None, names: list[str] | None = None) -> dict[str, Path]:
    """Write the IR YAML of each pipeline to OUT/<name>.yaml; ``image`` becomes the default of the `image` parameter."""
    from kfp import compiler

    from latxa.pipelines import steps

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = pipelines()
    unknown = [n for n in (names or []) if n not in table]
    if unknown:
        raise PipelineError(f"Unknown pipeline '{unknown[0]}' (known: {', '.join(table)}).")
    written = {}
    for name in names or list(table):
        path = out / f"{name.replace('-', '_')}_pipeline.yaml"
        params = {"image": image} if image and image != steps.IMAGE else None
        compiler.Compiler().compile(table[name], str(path), pipeline_parameters=params)
        written[name] = path
    return written


# How the KFP dashboard's run form labels a parameter's type (frontend/src/lib/NewRunParametersUtils.ts, protoMap).
_FORM_TYPES = {"NUMBER_DOUBLE": "double", "NUMBER_INTEGER": "integer", "STRING": "string", "BOOLEAN": "boolean",
               "LIST": "list", "STRUCT": "dict"}


def describe(name: str, image: str | None = None) -> dict:
    """The run form of pipeline ``name``, read back from its compiled IR: the pipeline's description and, per
    parameter, the field label the KFP dashboard shows (``<name> - <type>``), the prefilled value, whether the form
    requires it, and the description the IR carries."""
    import json
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        path = compile_all(tmp, image=image, names=[name])[name]
        spec = next(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    params = []
    for key, p in spec["root"].get("inputDefinitions", {}).get("parameters", {}).items():
        has_default = "defaultValue" in p
        default = p.get("defaultValue")
        params.append({
            "name": key, "type": p["parameterType"],
            "label": f"{key} - {_FORM_TYPES.get(p['parameterType'], p['parameterType'].lower())}",
            "prefilled": (json.dumps(default) if isinstance(default, (list, dict)) else str(default)) if has_default else "",
            "optional": bool(p.get("isOptional")), "has_default": has_default,
            "description": p.get("description", ""),
        })
    return {"pipeline": spec["pipelineInfo"]["name"], "description": spec["pipelineInfo"].get("description", ""),
            "parameters": params}


def parse_variants(text: str | list[str] | None) -> list[str]:
    """Comma-separated codes; ``trained`` is the study's 17 trained 8B variants. Validates each code."""
    from latxa.components.registry import TRAINED_8B, parse

    items = text if isinstance(text, list) else [t for t in (text or "").split(",")]
    out: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        codes = list(TRAINED_8B) if item == "trained" else [parse(item).code]
        for code in codes:
            v = parse(code)
            if v.is_baseline:
                raise PipelineError(f"{code} is a baseline with no training data (it is {v.equivalent_model} itself); "
                                    f"evaluate it with `latxa eval run` instead of training it.")
        out += [c for c in codes if c not in out]
    if not out:
        raise PipelineError("No variants given; pass --variants exp_2_101,exp_2_100 (or 'trained' for the 8B grid).")
    return out


def is_slurm_profile(profile: str) -> bool:
    """A study profile whose target is a GPU cluster trains through the SLURM bridge."""
    from latxa.components.config import load_config

    return load_config().resolve(profile).target.backend == "gpu"


@dataclass
class LocalResult:
    variants: list[str]
    pipeline: str
    tracking_uri: str
    experiment: str
    seconds: float
    runs: list[dict]


def run_local(variants: list[str], *, profile: str = "local", experiment: str = tracking.DEFAULT_EXPERIMENT,
              tracking_uri: str | None = None, base_model: str | None = None, max_steps: int | None = None,
              seq_len: int | None = None, eval_suite: str = "eu-mini", eval_limit: int | None = None,
              cluster: str | None = None, pipeline_root: str | Path | None = None) -> LocalResult:
    """Execute the study (1 variant) or sweep (several) pipeline function with kfp.local's SubprocessRunner.

    With ``cluster`` (a SLURM cluster profile, e.g. ``local`` for the single-node test cluster) the SLURM
    pipelines run instead: the steps run here, training goes through the SLURM bridge. ``None`` leaves a setting to
    the profile: the argument is not passed, so the pipeline's optional parameter stays unset."""
    from kfp import local

    if is_slurm_profile(profile) and not cluster:
        raise PipelineError(f"Profile '{profile}' targets a GPU cluster; pass --cluster NAME (a SLURM cluster profile) "
                            "or run it with `latxa pipeline submit`.")
    uri = tracking.check_reachable(tracking_uri)  # fail fast, before any work
    if not base_model:
        from latxa.components.tiny_model import ensure_tiny_model
        from latxa.paths import tiny_model_dir

        base_model = str(ensure_tiny_model(tiny_model_dir()))
    elif Path(base_model).is_dir():
        base_model = str(Path(base_model).resolve())
    else:
        raise PipelineError(f"--model {base_model} is not a model folder; local runs are offline, so the base model "
                            "must be a local Hugging Face folder (default: the tiny model).")
    tokenizer = base_model if Path(base_model).is_dir() else ""  # the model's own tokenizer and chat template
    tracking.ensure_experiment(experiment, uri)
    root = Path(pipeline_root or state_dir() / "kfp" / "runs")
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ["MLFLOW_TRACKING_URI"] = uri  # every step (a subprocess) logs to the same store
    local_optional_inputs()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    args: dict[str, Any] = dict(profile=profile, base_model=base_model, tokenizer=tokenizer or None, seq_len=seq_len,
                                max_steps=max_steps, eval_suite=eval_suite, eval_limit=eval_limit,
                                experiment=experiment, tracking_uri=uri)
    args = {k: v for k, v in args.items() if v is not None}
    table = pipelines()
    t0 = time.time()
    started_ms = int(t0 * 1000) - 1000
    suffix = "-slurm" if cluster else ""
    if cluster:
        args["cluster"] = cluster
    try:
        if len(variants) == 1:
            name = "study" + suffix
            table[name](variant=variants[0], **args)
        else:
            name = "sweep" + suffix
            table[name](variants=variants, **args)
    except LatxaError:
        raise
    except Exception as err:  # kfp.local raises RuntimeError naming the failed task
        raise PipelineError(f"The local {name} pipeline failed: {str(err).splitlines()[0]} (step logs above).") from None
    runs = variant_runs(experiment, uri, variants, since_ms=started_ms)
    return LocalResult(variants, name, uri, experiment, time.time() - t0, runs)


_PATCHED = False


def local_optional_inputs() -> None:
    """Run optional pipeline inputs without a default (``Optional[int] = None``) under kfp.local as the KFP backend
    does since 2.5 (kubeflow/pipelines#11667): an input that is not given stays unset, and the component's own
    default (None) applies.

    kfp.local (2.17, and the SDK's main branch as of 2026-08, orchestrator_utils.join_user_inputs_and_defaults)
    instead fails with "Unknown value type" on the missing default, or refuses None as an argument. Two small
    wraps: a missing optional pipeline input becomes None, and None-valued (or empty) parameters are left out of a
    task's executor input. Idempotent; nothing else of kfp.local changes."""
    global _PATCHED
    if _PATCHED:
        return
    from kfp.local import executor_input_utils
    from kfp.local.orchestrator import orchestrator_utils

    utils = orchestrator_utils.OrchestratorUtils
    join = utils.join_user_inputs_and_defaults.__func__

    def join_with_unset(cls, dag_arguments, dag_inputs_spec):
        args = dict(dag_arguments)
        for name, spec in dag_inputs_spec.parameters.items():
            if name not in args and spec.is_optional and not spec.HasField("default_value"):
                args[name] = None
        return join(cls, args, dag_inputs_spec)

    construct = executor_input_utils.construct_executor_input

    def construct_without_unset(component_spec, arguments, *rest, **kwargs):
        artifacts = component_spec.input_definitions.artifacts
        kept = {k: v for k, v in arguments.items() if v is not None or k in artifacts}
        message = construct(component_spec, kept, *rest, **kwargs)
        values = message.inputs.parameter_values
        for name in [n for n in values if values[n].WhichOneof("kind") in (None, "null_value")]:
            del values[name]
        return message

    utils.join_user_inputs_and_defaults = classmethod(join_with_unset)
    executor_input_utils.construct_executor_input = construct_without_unset
    _PATCHED = True


def variant_runs(experiment: str, uri: str, variants: list[str] | None = None, since_ms: int = 0) -> list[dict]:
    """The latest pipeline run per variant (newest first), as plain dicts."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    found = client.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.TAG_STAGE}` = 'train'",
                               order_by=["attributes.start_time DESC"], max_results=1000)
    out, seen = [], set()
    for run in found:
        code = run.data.tags.get(tracking.TAG_VARIANT)
        if not code or code in seen or (variants and code not in variants) or run.info.start_time < since_ms:
            continue
        seen.add(code)
        out.append({"variant": code, "run_id": run.info.run_id, "status": run.info.status,
                    "metrics": dict(run.data.metrics), "tags": dict(run.data.tags), "params": dict(run.data.params)})
    return out


def _probe_kfp(host: str, timeout: float = 10.0) -> None:
    """Fail in seconds (not after kfp.Client's retries) when nothing answers at HOST."""
    import urllib.error
    import urllib.request

    if not host.startswith(("http://", "https://")):
        raise PipelineError(f"--host must be an http(s) URL of the KFP API, got '{host}'.")
    try:
        urllib.request.urlopen(host.rstrip("/") + "/apis/v2beta1/healthz", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # something answers (auth proxies may refuse healthz): let kfp.Client speak to it
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise PipelineError(f"Submitting to the KFP endpoint {host} failed: nothing answers there ({reason}).") from None


def submit(host: str, variants: list[str], *, profile: str, cluster: str | None = None, image: str | None = None,
           experiment: str = tracking.DEFAULT_EXPERIMENT, tracking_uri: str | None = None,
           max_steps: int | None = None, eval_suite: str = "eu-mini", namespace: str | None = None,
           wait: float | None = None, existing_token: str | None = None) -> dict:
    """Upload the pipeline (a new version if it exists) and start a run through kfp.Client."""
    import tempfile

    import kfp

    _probe_kfp(host)
    slurm = bool(cluster) or is_slurm_profile(profile)
    kind = ("study" if len(variants) == 1 else "sweep") + ("-slurm" if slurm else "")
    with tempfile.TemporaryDirectory() as tmp:
        path = compile_all(tmp, image=image, names=[kind])[kind]
        try:
            client = kfp.Client(host=host, namespace=namespace, existing_token=existing_token)
            name = f"latxa-{kind}"
            pipeline_id = client.get_pipeline_id(name)
            version_name = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
            if pipeline_id is None:
                pipe = client.upload_pipeline(str(path), pipeline_name=name, namespace=namespace)
                pipeline_id = pipe.pipeline_id
                versions = client.list_pipeline_versions(pipeline_id).pipeline_versions or []
                version_id = versions[0].pipeline_version_id if versions else None
            else:
                ver = client.upload_pipeline_version(str(path), pipeline_version_name=version_name, pipeline_id=pipeline_id)
                version_id = ver.pipeline_version_id
            exp = client.create_experiment(experiment, namespace=namespace)
            params: dict[str, Any] = {"profile": profile, "experiment": experiment, "eval_suite": eval_suite}
            if max_steps:
                params["max_steps"] = max_steps
            if tracking_uri:
                params["tracking_uri"] = tracking_uri
            if image:
                params["image"] = image
            if slurm:
                params["cluster"] = cluster or "leonardo"
            if len(variants) == 1:
                params["variant"] = variants[0]
            else:
                params["variants"] = variants
            run = client.run_pipeline(exp.experiment_id, f"{name}-{'-'.join(variants) if len(variants) < 4 else f'{len(variants)}-variants'}",
                                      pipeline_id=pipeline_id, version_id=version_id, params=params)
            result = {"host": host, "pipeline": name, "pipeline_id": pipeline_id, "version_id": version_id,
                      "experiment_id": exp.experiment_id, "run_id": run.run_id, "params": params,
                      "url": f"{host.rstrip('/')}/#/runs/details/{run.run_id}"}
            if wait:
                done = client.wait_for_run_completion(run.run_id, timeout=wait)
                result["state"] = str(done.state)
            return result
        except LatxaError:
            raise
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PipelineError(f"Submitting to the KFP endpoint {host} failed: {first}.") from None
