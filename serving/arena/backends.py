"""The typed interface the arena (and the OpenAI-compatible routes) need from model backends.

Two implementations exist: :class:`latxa.serving.generation.LocalBackends` (in-process models, the light mode) and
:class:`latxa.serving.ray_app.RayBackends` (Ray Serve deployment handles). Anything with these methods works.
"""

from __future__ import annotations

from typing import AsyncIterator, Protocol, runtime_checkable

from latxa.serving.registry import GenerationSettings


@runtime_checkable
class Backends(Protocol):
    def names(self) -> list[str]:
        """The served model names, in the configuration's order."""
        ...

    def settings(self, name: str) -> GenerationSettings:
        """The generation settings the arena uses for ``name`` (recorded per battle side)."""
        ...

    def astream(self, name: str, messages: list[dict], settings: GenerationSettings) -> AsyncIterator[dict]:
        """Stream ``{"text", "tokens", "finish_reason"}`` chunks of one answer."""
        ...


def backend_kinds(backends: Backends) -> dict[str, str]:
    """{name: kind} where the backends can say (``kinds()`` is optional); the admin view defaults to "hf"."""
    kinds = getattr(backends, "kinds", None)
    return kinds() if callable(kinds) else {}
