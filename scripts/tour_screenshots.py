"""Take the screenshots of docs/tour.md in a real Chromium (Playwright, Debian's chromium), after `make demo` and
with `make arena` running:

    make demo && make arena                     # in another terminal: note the "Arena running at" URL
    .venv/bin/python scripts/tour_screenshots.py --arena http://127.0.0.1:PORT --out docs/img

What it shoots (each name in docs/img/):
- tour-mlflow-runs.png, tour-mlflow-charts.png: the demo's experiment through the links `latxa compare` prints;
- tour-kfp-run-form.png: the sweep pipeline's run form as `latxa pipeline describe` renders it from the compiled
  IR (our rendering: no KFP dashboard runs here), tour-kfp-compare.png: the HTML output of the demo's
  compare-variants step, opened as a page (in KFP it shows in the step's visualisation);
- tour-arena-battle.png, tour-arena-vote.png, tour-arena-leaderboard.png: a new user's battle, vote (reveal) and
  the leaderboard, with whatever the arena on this branch shows.
Without --arena the arena shots are skipped.
"""

from __future__ import annotations

import argparse
import html
import sys
import uuid
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
PROMPT = "Zein da Euskal Herriko mendirik altuena?"


def mlflow_shots(browser, out: Path) -> None:
    from latxa.components import tracking
    from latxa.pipelines import compare

    experiment, uri, _ = compare.default_experiment()
    links = compare.mlflow_links(experiment, tracking.resolve_tracking_uri(uri))
    if not links:
        sys.exit("no MLflow server with the last run's experiment: run `make demo` first (it starts one).")
    for link, name, height in ((links[0], "tour-mlflow-runs.png", 900), (links[1], "tour-mlflow-charts.png", 1300)):
        page = browser.new_page(viewport={"width": 1600, "height": height})
        page.goto(link)
        page.wait_for_selector("text=Latxa study: variants side by side")
        page.wait_for_timeout(4000)  # charts draw after the runs arrive
        close = page.locator("button[aria-label='Close']")
        if close.count():
            close.first.click()
            page.wait_for_timeout(500)
        page.screenshot(path=str(out / name))
        page.close()


def kfp_shots(browser, out: Path) -> None:
    from latxa.paths import state_dir
    from latxa.pipelines.runner import describe

    form = describe("sweep")
    rows = "".join(
        f"<div class='field'><div class='label'>{html.escape(p['label'])}</div>"
        f"<div class='input'>{html.escape(p['prefilled']) or '&nbsp;'}</div>"
        f"<div class='desc'>{html.escape(p['description'])}</div></div>" for p in form["parameters"])
    page_html = (
        "<!doctype html><meta charset='utf-8'><style>body{font-family:Roboto,Arial,sans-serif;margin:24px;width:1100px}"
        ".note{background:#fff8e1;border:1px solid #f0c36d;padding:8px 12px;margin-bottom:16px}"
        "h2{font-weight:500}.field{margin:10px 0 14px}.label{font-size:12px;color:#5f6368}"
        ".input{border:1px solid #bbb;border-radius:4px;padding:9px 12px;width:600px;min-height:18px}"
        ".desc{font-size:13px;color:#444;margin-top:4px;width:900px}</style>"
        "<div class='note'>Rendered by <code>latxa pipeline describe sweep</code> from the compiled IR: field labels "
        "and prefilled values as the KFP run form shows them; the KFP dashboard itself does not display the "
        "descriptions (grey).</div>"
        f"<h2>{html.escape(form['pipeline'])}: run parameters</h2><p>{html.escape(form['description'])}</p>{rows}")
    path = (out.parent / ".tour-run-form.html").resolve()
    path.write_text(page_html, encoding="utf-8")
    page = browser.new_page(viewport={"width": 1180, "height": 900})
    page.goto(path.as_uri())
    page.screenshot(path=str(out / "tour-kfp-run-form.png"), full_page=True)
    page.close()
    path.unlink()
    runs = sorted((state_dir() / "kfp" / "runs").glob("latxa-sweep-*/compare-variants/page"), key=lambda p: p.stat().st_mtime)
    if runs:
        page = browser.new_page(viewport={"width": 1180, "height": 800})
        page.set_content(runs[-1].read_text(encoding="utf-8"))  # the artifact has no .html name: load it as HTML
        page.screenshot(path=str(out / "tour-kfp-compare.png"), full_page=True)
        page.close()


def arena_shots(browser, base: str, out: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(base + "/")
    page.wait_for_url("**/login")
    page.fill("#username", "tour_" + uuid.uuid4().hex[:8])
    page.fill("#password", "pasahitz-luzea-123")
    page.click("#basque-level")
    page.get_by_role("option", name="C1").click()
    page.click("#education")
    page.get_by_role("option", name="Masterra").click()
    page.click("#consent")
    page.click("#adult")
    page.click("#auth-submit")
    page.wait_for_selector("#prompt")
    page.fill("#prompt", PROMPT)
    page.click("#send")
    page.wait_for_selector("#vote-panel", timeout=300_000)
    page.click("#vote-content-model_a")
    page.click("#vote-language-model_a")
    page.screenshot(path=str(out / "tour-arena-battle.png"), full_page=True)
    page.wait_for_timeout(11_000)  # the arena refuses a vote before the reading time (10 s by default)
    page.click("#vote-submit")
    page.wait_for_selector("#reveal, #vote-error")
    if page.is_visible("#vote-error"):  # still too early on a slow machine: the page says how long to wait
        page.wait_for_timeout(10_000)
        page.click("#vote-submit")
    page.wait_for_selector("#reveal")
    page.screenshot(path=str(out / "tour-arena-vote.png"), full_page=True)
    page.click("#nav-leaderboard")
    page.wait_for_selector("#lb-overall, #lb-not-enough")   # a young arena lists no model yet
    page.wait_for_timeout(2000)
    page.screenshot(path=str(out / "tour-arena-leaderboard.png"), full_page=True)
    page.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arena", help="URL of the running `make arena` UI (skip the arena shots if absent)")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--only", choices=("mlflow", "kfp", "arena"), help="take only these shots")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            if args.only in (None, "mlflow"):
                mlflow_shots(browser, args.out)
            if args.only in (None, "kfp"):
                kfp_shots(browser, args.out)
            if args.arena and args.only in (None, "arena"):
                arena_shots(browser, args.arena.rstrip("/"), args.out)
        finally:
            browser.close()
    print(f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
