"""OpenAI-compatible routes: ``GET /v1/models`` and ``POST /v1/chat/completions`` (JSON or SSE stream).

Request fields the client sets (temperature, top_p, max_tokens) override the model's registry settings;
the registry's system prompt is added when the conversation has none. Works with the ``openai`` client and
lm-eval's ``local-chat-completions`` model.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Literal, Optional, Union

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from latxa.serving.generation import BackendError


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: Union[str, list[dict]]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.get("text", "") for part in self.content if isinstance(part, dict))


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    max_tokens: Optional[int] = Field(None, ge=1, le=32768)
    max_completion_tokens: Optional[int] = Field(None, ge=1, le=32768)
    n: int = Field(1, ge=1, le=1)


def _err(status: int, message: str, typ: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": typ, "code": None}}, status_code=status)


def add_openai_routes(app: FastAPI, backends) -> None:
    r = APIRouter(prefix="/v1")

    @r.get("/models")
    def models() -> dict:
        now = int(time.time())
        return {"object": "list", "data": [{"id": n, "object": "model", "created": now, "owned_by": "latxa"}
                                           for n in backends.names()]}

    @r.post("/chat/completions")
    async def chat(req: ChatRequest):
        if req.model not in backends.names():
            return _err(404, f"The model {req.model!r} does not exist; GET /v1/models lists the served models.",
                        "model_not_found")
        settings = backends.settings(req.model)
        over = {k: v for k, v in {"temperature": req.temperature, "top_p": req.top_p,
                                  "max_tokens": req.max_completion_tokens or req.max_tokens}.items() if v is not None}
        settings = settings.model_copy(update=over)
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        cid = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        stream = backends.astream(req.model, messages, settings)

        if not req.stream:
            parts, tokens, finish = [], 0, "stop"
            try:
                async for chunk in stream:
                    parts.append(chunk["text"])
                    tokens += chunk["tokens"]
                    finish = chunk["finish_reason"] or finish
            except BackendError as err:
                return _err(502, str(err), "backend_error")
            return {"id": cid, "object": "chat.completion", "created": created, "model": req.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)},
                                 "finish_reason": finish}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens}}

        def frame(delta: dict, finish: Optional[str] = None) -> str:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

        async def sse():
            yield frame({"role": "assistant", "content": ""})
            try:
                async for chunk in stream:
                    if chunk["finish_reason"]:
                        yield frame({}, chunk["finish_reason"])
                    elif chunk["text"]:
                        yield frame({"content": chunk["text"]})
            except BackendError as err:
                yield f"data: {json.dumps({'error': {'message': str(err), 'type': 'backend_error'}})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    app.include_router(r)
