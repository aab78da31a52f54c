"""Ray Serve application: one deployment per model (own replicas/autoscaling) behind one gateway.

The gateway is a FastAPI ingress serving the OpenAI-compatible routes (/v1) and the arena API (/api); it
streams from the model deployments through deployment handles (``handle.options(stream=True)``). The
gateway keeps one replica: it owns the arena database connection pool and the in-memory rate limits.
"""

from __future__ import annotations

import os
from typing import AsyncIterator

from ray import serve

from latxa.serving.generation import BackendError, GenerationSettings, aiter_thread, load_model
from latxa.serving.registry import ModelSpec, ServeConfig, ServeConfigError


@serve.deployment(ray_actor_options={"num_cpus": 0})
class ChatModel:
    def __init__(self, spec_json: str):
        self.spec = ModelSpec.model_validate_json(spec_json)
        self.model = load_model(self.spec)

    async def stream(self, messages: list[dict], settings_json: str):
        settings = GenerationSettings.model_validate_json(settings_json)
        async for chunk in aiter_thread(lambda: self.model.stream(messages, settings)):
            yield chunk


class RayBackends:
    """The arena/OpenAI routes' view of the model deployments."""

    def __init__(self, cfg: ServeConfig, handles: dict):
        self.specs = {m.name: m for m in cfg.models}
        self.handles = handles

    def names(self) -> list[str]:
        return list(self.specs)

    def kinds(self) -> dict[str, str]:
        return {n: s.kind for n, s in self.specs.items()}

    def settings(self, name: str) -> GenerationSettings:
        return self.specs[name].generation

    async def astream(self, name: str, messages: list[dict], settings: GenerationSettings) -> AsyncIterator[dict]:
        gen = self.handles[name].options(stream=True).stream.remote(messages, settings.model_dump_json())
        try:
            async for chunk in gen:
                yield chunk
        except BackendError:
            raise
        except Exception as err:  # a replica error arrives wrapped by Ray
            raise BackendError(f"model {name} failed ({type(err).__name__}).") from None


@serve.deployment(ray_actor_options={"num_cpus": 0}, num_replicas=1, max_ongoing_requests=256)
@serve.ingress()
class Gateway:
    def __init__(self, cfg_json: str, handles: dict):
        self.cfg = ServeConfig.model_validate_json(cfg_json)
        self.backends = RayBackends(self.cfg, handles)

    def __serve_build_asgi_app__(self):
        from latxa.serving.app import build_app

        return build_app(self.cfg, self.backends)


def build_application(cfg: ServeConfig):
    handles = {}
    for spec in cfg.models:
        opts: dict = {"name": f"model-{spec.name}",
                      "ray_actor_options": {"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus},
                      "max_ongoing_requests": 64}
        a = spec.autoscaling
        if a.max_replicas > a.min_replicas:
            opts["autoscaling_config"] = {"min_replicas": a.min_replicas, "max_replicas": a.max_replicas,
                                          "target_ongoing_requests": a.target_ongoing_requests}
        else:
            opts["num_replicas"] = max(1, a.min_replicas)
        handles[spec.name] = ChatModel.options(**opts).bind(spec.model_dump_json())
    return Gateway.bind(cfg.model_dump_json(), handles)


def build_llm_application(cfg: ServeConfig):
    """Ray Serve LLM's OpenAI app for the config's vLLM models (needs ``ray[llm]``, i.e. vLLM, on the cluster)."""
    from latxa.serving.placement import llm_configs

    try:
        from ray.serve.llm import build_openai_app
    except ImportError:
        raise ServeConfigError("the vLLM models need Ray Serve LLM: pip install 'ray[llm]' (vLLM, a GPU host), "
                               "or point llm_base_url at a running one.") from None
    return build_openai_app({"llm_configs": llm_configs(cfg)})


def start(cfg: ServeConfig, host: str, port: int, num_cpus: int | None = None) -> None:
    """Start (or join) Ray, then run the application with its HTTP proxy on host:port (non-blocking).

    vLLM models without their own endpoint are served here too, as Ray Serve LLM's app under /llm."""
    from latxa.ray_local import start_ray
    from latxa.serving.registry import local_llm_url

    local_vllm = [m for m in cfg.models if m.kind == "vllm" and m.base_url == local_llm_url(cfg.port)]
    for m in local_vllm:
        m.base_url = local_llm_url(port)
    llm_app = build_llm_application(cfg) if local_vllm else None

    # Workers of a local cluster inherit this environment (LATXA_HOME, HF_HUB_OFFLINE, API keys), so keys are
    # never put in a runtime_env, where Ray would record them.
    start_ray(num_cpus=num_cpus or min(2, os.cpu_count() or 1), log_to_driver=False, quiet=True)
    serve.start(http_options={"host": host, "port": port})
    if llm_app is not None:
        serve.run(llm_app, name="llm", route_prefix="/llm", blocking=False)
    serve.run(build_application(cfg), name="latxa", route_prefix="/", blocking=False)


def stop() -> None:
    import ray

    if not ray.is_initialized():
        return
    try:
        serve.shutdown()
    finally:
        ray.shutdown()
