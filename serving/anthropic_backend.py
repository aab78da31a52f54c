"""Claude through Anthropic's native Messages API, streamed (as the study called claude-3-5-sonnet-20241022).

``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``, ``stream: true``; the server sends
server-sent events: ``message_start``, ``content_block_start``, ``content_block_delta`` (``text_delta`` pieces),
``content_block_stop``, ``message_delta`` (the ``stop_reason``), ``message_stop``, ``ping``, and ``error``.
The system prompt goes in the ``system`` field (the API has no system turn); the study sent max_tokens,
temperature and top_p and dropped the penalties and stop strings, as this does. The key is read at request time
(environment variable, else the mounted Secret file) and never logged or echoed.
"""

from __future__ import annotations

import json
from typing import Iterator

from latxa.serving.generation import BackendError, system_prompt
from latxa.serving.registry import GenerationSettings, ModelSpec

API_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class AnthropicModel:
    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def payload(self, messages: list[dict], settings: GenerationSettings) -> dict:
        turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
        system = next((m["content"] for m in messages if m["role"] == "system"), None) or system_prompt(settings)
        body = {"model": self.spec.remote_model or self.spec.name, "max_tokens": settings.max_tokens,
                "temperature": min(settings.temperature, 1.0), "top_p": settings.top_p, "messages": turns,
                "stream": True}
        if system:
            body["system"] = system
        return body

    def stream(self, messages: list[dict], settings: GenerationSettings, seed: int | None = None) -> Iterator[dict]:
        import httpx

        del seed  # the Messages API takes no sampling seed
        key = self.spec.api_key()
        if not key:
            raise BackendError(f"model {self.spec.name}: no Anthropic API key (set {self.spec.api_key_env or 'api_key_env'}"
                               " or mount api_key_file).")
        url = (self.spec.base_url or DEFAULT_BASE_URL).rstrip("/") + "/v1/messages"
        headers = {"x-api-key": key, "anthropic-version": API_VERSION, "content-type": "application/json",
                   "accept": "text/event-stream"}
        finish = "stop"
        try:
            with httpx.Client(timeout=httpx.Timeout(120.0, connect=10.0)) as client:
                with client.stream("POST", url, json=self.payload(messages, settings), headers=headers) as resp:
                    if resp.status_code != 200:
                        raise BackendError(f"model {self.spec.name}: Anthropic answered HTTP {resp.status_code}.")
                    event = None
                    for line in resp.iter_lines():
                        if line.startswith("event:"):
                            event = line[6:].strip()
                            continue
                        if not line.startswith("data:"):
                            continue
                        try:
                            data = json.loads(line[5:].strip())
                        except json.JSONDecodeError:
                            raise BackendError(f"model {self.spec.name}: Anthropic sent a malformed event.") from None
                        kind = data.get("type") or event
                        if kind == "content_block_delta":
                            delta = data.get("delta") or {}
                            if delta.get("type") == "text_delta" and delta.get("text"):
                                yield {"text": delta["text"], "tokens": 1, "finish_reason": None}
                        elif kind == "message_delta":
                            reason = (data.get("delta") or {}).get("stop_reason")
                            if reason:
                                finish = STOP_REASONS.get(reason, "stop")
                        elif kind == "error":
                            err = (data.get("error") or {}).get("type", "error")
                            raise BackendError(f"model {self.spec.name}: Anthropic stream error ({err}).")
                        elif kind == "message_stop":
                            break
        except httpx.HTTPError as err:
            raise BackendError(f"model {self.spec.name}: Anthropic is unreachable ({type(err).__name__}).") from None
        yield {"text": "", "tokens": 0, "finish_reason": finish}
