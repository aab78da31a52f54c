"""Ray Serve application builder for the KubeRay RayService (``latxa.serving.rayservice:build_app``).

KubeRay deploys ``serveConfigV2``, whose ``import_path`` must name an application or a builder that
takes the ``args`` mapping. This builder reads the same serving YAML as ``latxa serve --config`` and
returns the project's application (one deployment per model behind the arena/OpenAI gateway), so the
cluster serves exactly what ``latxa serve`` serves locally.

    applications:
      - name: arena
        import_path: latxa.serving.rayservice:build_app
        args: {config: /etc/latxa/serve.yaml}
      - name: llm                       # the vLLM models of the same YAML, as Ray Serve LLM's OpenAI app
        route_prefix: /llm
        import_path: latxa.serving.rayservice:build_llm_app
        args: {config: /etc/latxa/serve.yaml}
"""

from __future__ import annotations


def _config(args: dict):
    from latxa.serving.registry import load_serve_config

    config = (args or {}).get("config")
    if not config:
        from latxa.errors import LatxaError

        raise LatxaError("the RayService application needs args.config: the path of the serving YAML.")
    return load_serve_config(config)


def build_app(args: dict):
    from latxa.serving.ray_app import build_application

    return build_application(_config(args))


def build_llm_app(args: dict):
    """The vLLM models of the serving YAML (kind: vllm) as Ray Serve LLM LLMConfigs: one source for both apps."""
    from latxa.serving.ray_app import build_llm_application

    return build_llm_application(_config(args))
