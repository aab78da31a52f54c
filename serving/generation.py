"""Chat generation backends: local Hugging Face folders (transformers) and external OpenAI-compatible endpoints.

Every backend streams :class:`Chunk` dicts ``{"text": str, "tokens": int, "finish_reason": str | None}``: one
chunk per generated token for local models (text may be empty while a multi-byte character is incomplete),
and a last chunk with ``finish_reason`` ``stop`` or ``length``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, AsyncIterator, Iterator

from latxa.serving import prompts as _prompts
from latxa.serving.registry import GenerationSettings, ModelSpec

# The system prompts live in serving/prompts.py (named: "default" Basque, "ebaluatoia-2025" the study's English).
SYSTEM_PROMPT = _prompts.BASQUE
today_eu = _prompts.today_eu


def system_prompt(settings: GenerationSettings, now: float | None = None) -> str | None:
    return _prompts.render(settings.system_prompt, now)


def with_system_prompt(messages: list[dict], settings: GenerationSettings) -> list[dict]:
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    prompt = system_prompt(settings)
    if prompt and not (msgs and msgs[0]["role"] == "system"):
        msgs = [{"role": "system", "content": prompt}] + msgs
    return msgs


class BackendError(RuntimeError):
    """A model backend failed (the arena answers with an apology for that side)."""


class HFChatModel:
    """A local Hugging Face folder served with transformers (CPU by default; CUDA when available)."""

    def __init__(self, spec: ModelSpec):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec = spec
        path = spec.resolve_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(path).to(self.device).eval()
        self.max_positions = int(getattr(self.model.config, "max_position_embeddings", 4096))
        self._lock = threading.Lock() if spec.serialize else None

    def stream(self, messages: list[dict], settings: GenerationSettings, seed: int | None = None) -> Iterator[dict]:
        import torch
        from transformers.generation.streamers import BaseStreamer

        msgs = with_system_prompt(messages, settings)
        ids = self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        input_ids = ids["input_ids"].to(self.device)
        room = self.max_positions - input_ids.shape[1]
        if room <= 0:
            raise BackendError("The conversation is longer than the model's context window.")
        max_new = min(settings.max_tokens, room)
        q: "Queue[Any]" = Queue()
        tokenizer = self.tokenizer

        class _Streamer(BaseStreamer):
            def __init__(self):
                self.first = True
                self.ids: list[int] = []
                self.sent = ""

            def put(self, value):
                if self.first:  # the prompt
                    self.first = False
                    return
                self.ids.extend(value.reshape(-1).tolist())
                text = tokenizer.decode(self.ids, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    q.put({"text": "", "tokens": 1, "finish_reason": None})
                    return
                q.put({"text": text[len(self.sent):], "tokens": 1, "finish_reason": None})
                self.sent = text

            def end(self):
                q.put(None)

        streamer = _Streamer()
        errors: list[BaseException] = []

        def work():
            try:
                if seed is not None:
                    torch.manual_seed(seed)
                kwargs = dict(max_new_tokens=max_new, streamer=streamer, do_sample=settings.temperature > 0,
                              pad_token_id=self.tokenizer.pad_token_id)
                if settings.temperature > 0:
                    kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
                if settings.repetition_penalty != 1.0:
                    kwargs.update(repetition_penalty=settings.repetition_penalty)
                with torch.inference_mode():
                    if self._lock:
                        with self._lock:
                            self.model.generate(input_ids=input_ids, attention_mask=ids["attention_mask"].to(self.device), **kwargs)
                    else:
                        self.model.generate(input_ids=input_ids, attention_mask=ids["attention_mask"].to(self.device), **kwargs)
            except BaseException as err:  # surfaced to the consumer below
                errors.append(err)
                q.put(None)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        n = 0
        while True:
            item = q.get()
            if item is None:
                break
            n += 1
            yield item
        thread.join()
        if errors:
            raise BackendError(f"generation failed: {errors[0]}")
        yield {"text": "", "tokens": 0, "finish_reason": "length" if n >= max_new else "stop"}


class OpenAIEndpointModel:
    """An external OpenAI-compatible endpoint (GPT-4o / Claude-style baselines, vLLM servers).

    The API key is read from the environment variable named in the registry at request time; it is
    never stored on the object, logged, or echoed in errors.
    """

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        if not spec.base_url:
            raise BackendError(f"model {spec.name}: an openai model needs base_url.")

    def _headers(self) -> dict:
        key = self.spec.api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def payload(self, messages: list[dict], settings: GenerationSettings) -> dict:
        """The request body in the endpoint's dialect, as the study sent it: vLLM takes max_tokens, stop and
        repetition_penalty; the OpenAI API max_completion_tokens and neither of the other two."""
        body = {"model": self.spec.remote_model or self.spec.name, "messages": with_system_prompt(messages, settings),
                "stream": True, "temperature": settings.temperature, "top_p": settings.top_p}
        if settings.frequency_penalty:
            body["frequency_penalty"] = settings.frequency_penalty
        if self.spec.openai_dialect() == "vllm":
            body["max_tokens"] = settings.max_tokens
            if settings.stop:
                body["stop"] = settings.stop
            if settings.repetition_penalty != 1.0:
                body["repetition_penalty"] = settings.repetition_penalty
        elif self.spec.kind == "openai" and self.spec.dialect == "openai":
            body["max_completion_tokens"] = settings.max_tokens
        else:   # a generic OpenAI-compatible endpoint
            body["max_tokens"] = settings.max_tokens
        return body

    def stream(self, messages: list[dict], settings: GenerationSettings, seed: int | None = None) -> Iterator[dict]:
        import json

        import httpx

        body = self.payload(messages, settings)
        if seed is not None:  # OpenAI and vLLM accept a sampling seed
            body["seed"] = seed
        url = self.spec.base_url.rstrip("/") + "/chat/completions"
        finish = "stop"
        try:
            with httpx.Client(timeout=httpx.Timeout(120.0, connect=10.0)) as client:
                with client.stream("POST", url, json=body, headers=self._headers()) as resp:
                    if resp.status_code != 200:
                        raise BackendError(f"model {self.spec.name}: the endpoint answered HTTP {resp.status_code}.")
                    for line in resp.iter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        obj = json.loads(data)
                        choice = (obj.get("choices") or [{}])[0]
                        text = (choice.get("delta") or {}).get("content") or ""
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                        if text:
                            yield {"text": text, "tokens": 1, "finish_reason": None}
        except httpx.HTTPError as err:
            raise BackendError(f"model {self.spec.name}: the endpoint is unreachable ({type(err).__name__}).") from None
        yield {"text": "", "tokens": 0, "finish_reason": finish}


def load_model(spec: ModelSpec):
    if spec.kind == "openai":
        return OpenAIEndpointModel(spec)
    if spec.kind == "vllm":
        return OpenAIEndpointModel(spec)   # Ray Serve LLM's OpenAI app; base_url filled in by the server
    if spec.kind == "anthropic":
        from latxa.serving.anthropic_backend import AnthropicModel

        return AnthropicModel(spec)
    return HFChatModel(spec)


class _End:
    pass


async def aiter_thread(gen_factory) -> AsyncIterator[Any]:
    """Run a blocking generator in a thread and iterate it asynchronously."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue = asyncio.Queue()
    end = _End()

    def run():
        try:
            for item in gen_factory():
                loop.call_soon_threadsafe(q.put_nowait, item)
        except BaseException as err:  # noqa: BLE001 - re-raised in the consumer
            loop.call_soon_threadsafe(q.put_nowait, err)
        loop.call_soon_threadsafe(q.put_nowait, end)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while True:
        item = await q.get()
        if item is end:
            break
        if isinstance(item, BaseException):
            raise item
        yield item


class LocalBackends:
    """Models loaded in this process (standalone arena, tests, the generation benchmark)."""

    def __init__(self, specs: list[ModelSpec]):
        self.specs = {s.name: s for s in specs}
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(self.specs)

    def settings(self, name: str) -> GenerationSettings:
        return self.specs[name].generation

    def model(self, name: str):
        with self._lock:
            if name not in self._models:
                self._models[name] = load_model(self.specs[name])
            return self._models[name]

    async def astream(self, name: str, messages: list[dict], settings: GenerationSettings) -> AsyncIterator[dict]:
        model = await asyncio.to_thread(self.model, name)
        async for chunk in aiter_thread(lambda: model.stream(messages, settings)):
            yield chunk


class Queue:
    """A tiny thread-safe FIFO (stdlib queue without the import cost in hot paths)."""

    def __init__(self):
        import queue

        self._q = queue.SimpleQueue()

    def put(self, item):
        self._q.put(item)

    def get(self):
        return self._q.get()
