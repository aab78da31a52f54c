"""How much the Reflex UI adds to streaming, measured against the arena API itself in the same run.

Starts the real stack (arena API `latxa arena serve` with two tiny models, Reflex app in production mode), then
for N rounds alternates
  - baseline: a battle streamed straight from the API with httpx (SSE), and
  - UI: a battle sent from the battle page in Debian Chromium (Playwright), timed in the page,
and reports medians of time to first text, time to the whole turn, and how many page updates a turn took versus
how many SSE deltas it had (the UI batches deltas, flushing about every 80 ms).

    .venv/bin/python benchmarks/arena_ui_stream.py --rounds 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from latxa.arena_ui.launch import ArenaStack  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROMPT = "Zein da Euskal Herriko mendirik altuena?"

UI_TURN_JS = """async () => {
  const t0 = performance.now();
  let first = null, updates = 0, last = {a: '', b: ''};
  const tick = () => {
    for (const s of ['a', 'b']) {
      const el = document.querySelector('#live-' + s);
      if (!el) continue;
      const t = el.innerText;
      if (t !== last[s]) { updates++; last[s] = t; if (first === null && t && t !== 'Idazten...') first = performance.now() - t0; }
    }
  };
  const iv = setInterval(tick, 5);
  document.querySelector('#send').click();
  await new Promise(r => { const w = setInterval(() => { if (document.querySelector('#live-a')) { clearInterval(w); r(); } }, 5); });
  await new Promise(r => { const w = setInterval(() => { if (!document.querySelector('#live-a')) { clearInterval(w); r(); } }, 5); });
  clearInterval(iv);
  return {first_ms: first, total_ms: performance.now() - t0, updates};
}"""


def api_turn(api: str, token: str) -> dict:
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api + "/api", headers=h, timeout=300) as c:
        t0 = time.perf_counter()  # like the UI's first message: create the battle, then stream the turn
        bid = c.post("/battles", json={}).json()["battle_id"]
        first, deltas = None, 0
        with c.stream("POST", f"/battles/{bid}/messages", json={"content": PROMPT}) as r:
            for line in r.iter_lines():
                if not line.startswith("data:") or line.strip() == "data: [DONE]":
                    continue
                ev = json.loads(line[5:])
                if ev.get("type") == "delta":
                    deltas += 1
                    if first is None:
                        first = (time.perf_counter() - t0) * 1000
        return {"first_ms": first, "total_ms": (time.perf_counter() - t0) * 1000, "deltas": deltas}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from latxa.components.tiny_model import ensure_tiny_model
    from latxa.paths import tiny_model_dir

    tiny = ensure_tiny_model(tiny_model_dir())
    work = Path(tempfile.mkdtemp(prefix="arena-ui-bench-"))
    cfg = work / "serve.yaml"
    cfg.write_text(
        "models:\n"
        f"  - {{name: bench-a, kind: hf, path: '{tiny}', generation: {{max_tokens: {args.max_tokens}}}}}\n"
        f"  - {{name: bench-b, kind: hf, path: '{tiny}', generation: {{max_tokens: {args.max_tokens}}}}}\n"
        f"arena: {{database_url: 'sqlite:///{work / 'arena.db'}', min_reading_seconds: 0}}\n", encoding="utf-8")
    latxa = Path(sys.executable).with_name("latxa")
    stack = ArenaStack(log_dir=work / "logs")
    stack.api_cmd = [str(latxa), "arena", "serve", "--config", str(cfg), "--host", "127.0.0.1", "--port", "{port}"]
    rows: dict[str, list[dict]] = {"api": [], "ui": []}
    with stack, sync_playwright() as pw:
        reg = httpx.post(stack.api_url + "/api/participants", json={
            "username": "bench_" + uuid.uuid4().hex[:8], "password": "pasahitz-luzea", "consent": True,
            "basque_level": "C1", "education": "master"}).json()
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.goto(stack.ui_url + "/login")
        page.evaluate("([t, u]) => { localStorage.setItem('latxa_token', t); localStorage.setItem('latxa_user', u); }",
                      [reg["token"], reg["username"]])
        page.goto(stack.ui_url + "/")
        page.wait_for_selector("#prompt", timeout=60_000)
        api_turn(stack.api_url, reg["token"])  # warm-up: first generate loads the models
        for i in range(args.rounds):
            rows["api"].append(api_turn(stack.api_url, reg["token"]))
            page.click("#new-battle")
            page.fill("#prompt", PROMPT)
            page.wait_for_function("() => !document.querySelector('#send').disabled")
            rows["ui"].append(page.evaluate(UI_TURN_JS))
            print(f"round {i + 1}: api {rows['api'][-1]}  ui {rows['ui'][-1]}", flush=True)
        browser.close()

    med = lambda side, k: statistics.median(r[k] for r in rows[side] if r[k] is not None)  # noqa: E731
    out = {
        "rounds": args.rounds, "max_tokens": args.max_tokens,
        "first_text_ms": {"api": round(med("api", "first_ms")), "ui": round(med("ui", "first_ms")),
                          "ratio_ui_over_api": round(med("ui", "first_ms") / med("api", "first_ms"), 2)},
        "whole_turn_ms": {"api": round(med("api", "total_ms")), "ui": round(med("ui", "total_ms")),
                          "ratio_ui_over_api": round(med("ui", "total_ms") / med("api", "total_ms"), 2)},
        "sse_deltas_per_turn": med("api", "deltas"), "page_updates_per_turn": med("ui", "updates"),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
