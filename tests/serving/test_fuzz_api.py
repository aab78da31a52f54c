"""A bounded schemathesis run over the arena + OpenAI OpenAPI document: no input gives a 500."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_schemathesis_no_server_errors(make_arena, reg):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    client, _ = make_arena()
    h = reg(client, "fuzzer")
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", client.app)
    seen, failures = 0, []
    for result in schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy())
        @settings(max_examples=8, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            nonlocal seen
            headers = dict(case.headers or {})
            headers.setdefault("Authorization", h["Authorization"])
            headers.setdefault("X-Admin-Token", "admin-secret")
            case.headers = headers
            resp = case.call()
            seen += 1
            if resp.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {resp.status_code}: {resp.text[:200]}")

        check()
    assert seen > 100
    assert not failures, "\n".join(failures[:10])
