"""OpenAI-compatible routes: ``GET /v1/models`` and ``POST /v1/chat/completions`` (JSON or SSE stream).

Request fields the client sets (temperature, top_p, max_tokens) override the model's registry settings;
the registry's system prompt is added when the conversation has none. Works with the ``openai`` client and
lm-eval's ``local-chat-completions`` model (it sends ``$OPENAI_API_KEY`` as the bearer token).

Hardening (docs/serving.md, "The OpenAI-compatible API"):

- Completions need an API key (``Authorization: Bearer KEY`` or ``x-api-key: KEY``); the keys are read from the
  environment variable the serving config names (``api.api_keys_env``, default ``LATXA_API_KEYS``, comma-separated)
  when the server starts. Without any key the server refuses every completion. The model list stays public.
- Per key: a request rate and a number of generations in flight; a cap on the prompt's characters.
- Every error, whatever raised it (validation, routing, a backend), has OpenAI's shape
  ``{"error": {"message", "type", "param", "code"}}``; a stream that fails ends with such an error frame and
  ``data: [DONE]``.
- Sampling parameters are bounded; temperatures below 0.01 decode greedily (generation.MIN_TEMPERATURE).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from typing import Callable, Literal, Optional, Union

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from latxa.serving.generation import BackendError, InputError

log = logging.getLogger("latxa.serving.openai")
_SURROGATE = re.compile("[\ud800-\udfff]")


def no_lone_surrogates(value: str) -> str:
    """JSON can carry a lone surrogate escape (\\ud800) that is not text: no tokenizer or encoder takes it."""
    if _SURROGATE.search(value):
        raise ValueError("the text holds a lone UTF-16 surrogate, which is not a Unicode character")
    return value


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: StrictStr

    _text = field_validator("text")(no_lone_surrogates)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[StrictStr, list[TextPart]]

    @field_validator("content")
    @classmethod
    def _content(cls, v):
        if isinstance(v, str):
            no_lone_surrogates(v)
        return v

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    model: StrictStr = Field(max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    stream: bool = False
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    max_tokens: Optional[int] = Field(None, ge=1, le=32768)
    max_completion_tokens: Optional[int] = Field(None, ge=1, le=32768)
    n: int = Field(1, ge=1, le=1)

    _model = field_validator("model")(no_lone_surrogates)


# ----------------------------------------------------------------------------- errors, in OpenAI's one shape
def openai_error(status: int, message: str, typ: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict | None = None) -> JSONResponse:
    message = message if message.endswith(".") else message + "."
    return JSONResponse({"error": {"message": message, "type": typ, "param": param, "code": code}},
                        status_code=status, headers=headers)


def error_frame(message: str, typ: str, code: str | None) -> str:
    body = {"error": {"message": message if message.endswith(".") else message + ".", "type": typ,
                      "param": None, "code": code}}
    return f"data: {json.dumps(body)}\n\n"


def _validation_error(err: RequestValidationError) -> JSONResponse:
    first = err.errors()[0] if err.errors() else {}
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return openai_error(400, "The body is not valid JSON", code="invalid_json")
    msg = str(first.get("msg", "invalid request")).rstrip(".")
    where = ".".join(loc)
    return openai_error(400, f"Invalid request: {where + ': ' if where else ''}{msg}", param=where or None,
                        code="invalid_value")


def route_class(gate: "KeyGate", gated: set[str]) -> type[APIRoute]:
    """Routes whose every failure answers in OpenAI's error shape, not the arena's (FastAPI's exception handlers
    are app-wide, so the /v1 routes translate their own errors here). On the ``gated`` paths the API key and the
    key's rate are checked first, before the body is parsed: a caller without a key learns nothing from
    validation errors, and pays no parsing."""

    class OpenAIRoute(APIRoute):
        def get_route_handler(self) -> Callable:
            handler = super().get_route_handler()
            needs_key = self.path in gated

            async def route(request: Request) -> Response:
                try:
                    if needs_key:
                        key_id, refused = gate.check(request)
                        if refused is None:
                            refused = gate.limit(key_id)
                        if refused is not None:
                            return refused
                        request.state.v1_key = key_id
                    return await handler(request)
                except RequestValidationError as err:
                    return _validation_error(err)
                except StarletteHTTPException as err:
                    return openai_error(err.status_code, str(err.detail), code=None)
                except Exception:  # noqa: BLE001 - logged here; the client gets one sentence, never a traceback
                    log.exception("/v1 request failed")
                    return openai_error(500, "The server failed on this request", "server_error")

            return route

    return OpenAIRoute


# ----------------------------------------------------------------------------- keys and limits
class KeyGate:
    """API keys (compared in constant time), and per key a request rate and the generations in flight."""

    def __init__(self, keys: list[str] | None, env_name: str, rate_per_minute: int, max_concurrent: int):
        from latxa.serving.arena.abuse import RateLimiter

        self.open = keys is None
        self.keys = [k.encode() for k in (keys or [])]
        self.env_name = env_name
        self.rate = rate_per_minute
        self.max_concurrent = max_concurrent
        self.limiter = RateLimiter()
        self.inflight: dict[str, int] = {}
        self._lock = threading.Lock()

    def check(self, request: Request) -> tuple[str | None, JSONResponse | None]:
        """(the key's id for limits, or an error response)."""
        if self.open:
            return "open", None
        if not self.keys:
            return None, openai_error(401, f"This server has no API key configured: set {self.env_name} (comma-"
                                           "separated keys) in its environment to open /v1/chat/completions",
                                      code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else request.headers.get("x-api-key", "").strip()
        raw = given.encode("utf-8", "surrogateescape")[:512]
        ok = False
        for key in self.keys:   # every key compared, so the time does not tell which prefix matched
            ok |= secrets.compare_digest(raw, key)
        if not ok:
            return None, openai_error(401, "Incorrect or missing API key: send Authorization: Bearer <key>",
                                      code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        return hashlib.sha256(raw).hexdigest()[:16], None

    def limit(self, key_id: str) -> JSONResponse | None:
        wait = self.limiter.hit(f"v1:{key_id}", self.rate)
        if wait:
            secs = max(1, int(wait + 0.999))
            return openai_error(429, "Too many requests for this API key; retry after a while", "rate_limit_error",
                                "rate_limit_exceeded", headers={"Retry-After": str(secs)})
        return None

    def acquire(self, key_id: str) -> JSONResponse | None:
        with self._lock:
            if self.inflight.get(key_id, 0) >= self.max_concurrent:
                return openai_error(429, f"This API key already has {self.max_concurrent} generations in flight",
                                    "rate_limit_error", "too_many_concurrent_requests", headers={"Retry-After": "1"})
            self.inflight[key_id] = self.inflight.get(key_id, 0) + 1
        return None

    def release(self, key_id: str) -> None:
        with self._lock:
            self.inflight[key_id] = max(0, self.inflight.get(key_id, 0) - 1)


class ClosingStream(StreamingResponse):
    """A streamed response that always finishes its body iterator (so the generation behind it is cancelled at
    once when the client leaves) and then runs ``on_close`` once, even if the body was never iterated."""

    def __init__(self, content, on_close: Callable[[], None], **kw):
        super().__init__(content, **kw)
        self._on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        import anyio

        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.body_iterator.aclose()
                finally:
                    self._on_close()


def _backend_error(err: BackendError) -> tuple[int, str, str | None]:
    if isinstance(err, InputError):
        return 400, "invalid_request_error", err.code
    return 502, "backend_error", "backend_error"


def add_openai_routes(app: FastAPI, backends, api=None) -> None:
    """Add /v1 to ``app``. ``api`` (registry.ApiSettings) turns on keys and limits, as every server built by
    serving.app does; without it the routes are open (for programs that embed them behind their own checks)."""
    if api is None:
        gate = KeyGate(None, "", 10**9, 10**6)
        max_prompt_chars, max_tokens = 10**9, 32768
    else:
        keys = [k.strip() for k in os.environ.get(api.api_keys_env, "").split(",") if k.strip()]
        gate = KeyGate(keys, api.api_keys_env, api.rate_requests_per_minute, api.max_concurrent_per_key)
        max_prompt_chars, max_tokens = api.max_prompt_chars, api.max_tokens
    r = APIRouter(prefix="/v1", route_class=route_class(gate, {"/v1/chat/completions"}))

    @r.get("/models")
    def models() -> dict:
        now = int(time.time())
        return {"object": "list", "data": [{"id": n, "object": "model", "created": now, "owned_by": "latxa"}
                                           for n in backends.names()]}

    @r.post("/chat/completions", response_model=None)
    async def chat(request: Request, req: ChatRequest):
        key_id = request.state.v1_key
        if req.model not in backends.names():
            return openai_error(404, f"The model {req.model!r} does not exist; GET /v1/models lists the served models",
                                code="model_not_found", param="model")
        roles = [m.role for m in req.messages]
        first_other = next((i for i, role in enumerate(roles) if role not in ("system", "developer")), len(roles))
        if any(role in ("system", "developer") for role in roles[first_other:]):
            return openai_error(400, "System messages may only come first, before any user or assistant message",
                                param="messages", code="invalid_value")
        if sum(len(m.text()) for m in req.messages) > max_prompt_chars:
            return openai_error(400, f"The messages hold more than {max_prompt_chars} characters",
                                param="messages", code="context_length_exceeded")
        asked = req.max_completion_tokens or req.max_tokens
        if asked is not None and asked > max_tokens:
            return openai_error(400, f"max_tokens may be at most {max_tokens} on this server",
                                param="max_tokens", code="invalid_value")
        settings = backends.settings(req.model)
        over = {k: v for k, v in {"temperature": req.temperature, "top_p": req.top_p,
                                  "max_tokens": req.max_completion_tokens or req.max_tokens}.items() if v is not None}
        settings = settings.model_copy(update=over)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
        cid = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        busy = gate.acquire(key_id)
        if busy:
            return busy
        stream = backends.astream(req.model, messages, settings)

        if not req.stream:
            parts, tokens, finish = [], 0, "stop"
            try:
                async for chunk in stream:
                    parts.append(chunk["text"])
                    tokens += chunk["tokens"]
                    finish = chunk["finish_reason"] or finish
            except BackendError as err:
                status, typ, code = _backend_error(err)
                return openai_error(status, str(err), typ, code)
            except Exception as err:  # noqa: BLE001 - an unexpected backend failure is still the backend's
                log.warning("/v1 generation failed: %s", type(err).__name__)
                return openai_error(502, f"The model failed ({type(err).__name__})", "backend_error", "backend_error")
            finally:
                gate.release(key_id)
            return {"id": cid, "object": "chat.completion", "created": created, "model": req.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)},
                                 "finish_reason": finish}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens}}

        def frame(delta: dict, finish: Optional[str] = None) -> str:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

        async def sse():
            try:
                yield frame({"role": "assistant", "content": ""})
                try:
                    async for chunk in stream:
                        if chunk["finish_reason"]:
                            yield frame({}, chunk["finish_reason"])
                        elif chunk["text"]:
                            yield frame({"content": chunk["text"]})
                except BackendError as err:
                    _, typ, code = _backend_error(err)
                    yield error_frame(str(err), typ, code)
                except Exception as err:  # noqa: BLE001 - the stream still ends in the protocol's way
                    log.warning("/v1 stream failed: %s", type(err).__name__)
                    yield error_frame(f"The model failed ({type(err).__name__})", "backend_error", "backend_error")
                yield "data: [DONE]\n\n"
            finally:
                await stream.aclose()   # a client that left: cancel the generation now, not at garbage collection

        return ClosingStream(sse(), on_close=lambda: gate.release(key_id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})

    known = {"/v1/models": {"GET"}, "/v1/chat/completions": {"POST"}}

    @r.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def unknown(request: Request, rest: str) -> JSONResponse:
        path = "/v1/" + rest
        if path in known:
            return openai_error(405, f"{request.method} is not allowed on {path}; use {', '.join(sorted(known[path]))}",
                                code="method_not_allowed")
        return openai_error(404, f"There is no route {request.method} /v1/{rest[:80]}; this server offers "
                                 "GET /v1/models and POST /v1/chat/completions", code="unknown_url")

    app.include_router(r)
