"""A bounded schemathesis run over the one OpenAPI document of the arena (/api) and the OpenAI-compatible routes
(/v1), on SQLite and on a real PostgreSQL: no input gives a 5xx, and every error has its API's one shape."""

from __future__ import annotations

import json

import pytest

EXAMPLES = 8          # per operation, derandomized: the run is the same every time and bounded
V1_EXAMPLES = 30      # /v1/chat/completions: the richest body, the one a key holder reaches


def _error_shape_problem(path: str, status: int, text: str) -> str | None:
    if status < 400:
        return None
    try:
        body = json.loads(text)
        err = body["error"]
    except (ValueError, KeyError, TypeError):
        return f"not a JSON error body: {text[:120]!r}"
    if path.startswith("/v1"):
        if set(body) != {"error"} or set(err) != {"message", "type", "param", "code"}:
            return f"not OpenAI's error shape: {text[:200]}"
    elif not (isinstance(err.get("code"), str) and isinstance(err.get("message"), str)):
        return f"not the arena's error shape: {text[:200]}"
    return None


@pytest.mark.slow
@pytest.mark.parametrize("arena_db", ["sqlite", "postgresql"], indirect=True)
def test_schemathesis_no_server_errors(make_arena, reg, api_key):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    client, _ = make_arena(api={"max_tokens": 16})
    h = reg(client, "fuzzer")
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", client.app)
    seen: dict[str, int] = {"/api": 0, "/v1": 0}
    failures, statuses = [], {}
    for result in schema.get_all_operations():
        op = result.ok()
        examples = V1_EXAMPLES if op.path == "/v1/chat/completions" else EXAMPLES

        @given(case=op.as_strategy())
        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            headers = dict(case.headers or {})
            is_v1 = case.path.startswith("/v1")
            headers.setdefault("Authorization", f"Bearer {api_key}" if is_v1 else h["Authorization"])
            headers.setdefault("X-Admin-Token", "admin-secret")
            case.headers = headers
            if case.path == "/v1/chat/completions" and isinstance(case.body, dict) and seen["/v1"] % 2:
                case.body["model"] = "tiny-a"   # half the bodies name a served model, to get past the 404
            resp = case.call()
            seen["/v1" if is_v1 else "/api"] += 1
            where = f"{case.method} {case.formatted_path}"
            statuses.setdefault(case.path, set()).add(resp.status_code)
            if resp.status_code >= 500:
                failures.append(f"{where} -> {resp.status_code}: {resp.text[:200]}")
            problem = _error_shape_problem(case.path, resp.status_code, resp.text)
            if problem:
                failures.append(f"{where} -> {resp.status_code}: {problem}")

        check()
    assert seen["/api"] > 100 and seen["/v1"] >= V1_EXAMPLES, seen
    assert 200 in statuses["/v1/chat/completions"], statuses   # the fuzzer also got real completions through
    assert not failures, "\n".join(failures[:10])
