"""Render an aggregate (see :func:`latxa.components.eval.aggregate.aggregate`) as json, md, csv or latex."""

from __future__ import annotations

import csv
import io
import json

from latxa.components.eval.errors import EvalError

FORMATS = ("json", "md", "csv", "latex")
LANG_NAMES = {"eu": "EU", "en": "EN", "es": "ES"}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rounded(obj, digits: int = 4):
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v, digits) for v in obj]
    return obj


def _languages(agg: dict) -> list[str]:
    return [lang for lang in LANG_NAMES if any(lang in m["languages"] for m in agg["models"].values())]


def _tasks_of(agg: dict, lang: str) -> list[dict]:
    return [b for b in agg["benchmarks"] if b["language"] == lang]


def to_json(agg: dict) -> str:
    return json.dumps(_rounded(agg), indent=2, ensure_ascii=False)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def to_markdown(agg: dict) -> str:
    langs = _languages(agg)
    cats = [c for c in agg["categories"] if any(c in m["categories"] for m in agg["models"].values())]
    out = [f"## Language means (suite `{agg['suite']}`, percent; (n/N) = tasks covered, bias tasks excluded)", ""]
    rows = []
    for name, m in agg["models"].items():
        row = [name]
        for lang in langs:
            cov = m["coverage"].get(lang, {"tasks": 0, "of": 0})
            rank = (m.get("ranks") or {}).get(lang)
            row.append(f"{_fmt(m['languages'].get(lang))} ({cov['tasks']}/{cov['of']})" + (f" #{rank}" if rank else ""))
        rows.append(row)
    out.append(_md_table(["model", *(LANG_NAMES[lang] for lang in langs)], rows))
    out += ["", "## Category means (all languages, percent)", ""]
    rows = [[name, *(_fmt(m["categories"].get(c)) + f" ({m['category_coverage'][c]['tasks']}/{m['category_coverage'][c]['of']})" for c in cats)]
            for name, m in agg["models"].items()]
    out.append(_md_table(["model", *(agg["categories"][c] for c in cats)], rows))
    for lang in langs:
        tasks = _tasks_of(agg, lang)
        out += ["", f"## {LANG_NAMES[lang]} tasks (percent; * = not in the mean)", ""]
        header = ["model", *(b["task"] + ("" if b["in_mean"] else "*") for b in tasks), "mean"]
        rows = [[name, *(_fmt(m["tasks"].get(b["task"])) for b in tasks), _fmt(m["languages"].get(lang))]
                for name, m in agg["models"].items()]
        out.append(_md_table(header, rows))
    notes = [(name, n) for name, m in agg["models"].items() for n in m["notes"]]
    if notes:
        out += ["", "Notes:", *(f"- {name}: {n}" for name, n in notes)]
    return "\n".join(out) + "\n"


def to_csv(agg: dict) -> str:
    """Long format: one row per (model, kind, name); kind is task, language_mean or category_mean."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "kind", "name", "language", "category", "score", "tasks_covered", "tasks_total", "in_mean"])
    by_task = {b["task"]: b for b in agg["benchmarks"]}
    for name, m in agg["models"].items():
        for lang, value in m["languages"].items():
            cov = m["coverage"][lang]
            w.writerow([name, "language_mean", lang, lang, "", "" if value is None else f"{value:.4f}", cov["tasks"], cov["of"], ""])
        for cat, value in m["categories"].items():
            cov = m["category_coverage"][cat]
            w.writerow([name, "category_mean", cat, "", cat, "" if value is None else f"{value:.4f}", cov["tasks"], cov["of"], ""])
        for task, value in m["tasks"].items():
            b = by_task[task]
            w.writerow([name, "task", task, b["language"], b["category"], f"{value:.4f}", "", "", int(b["in_mean"])])
    return buf.getvalue()


def _tex(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("&", r"\&").replace("%", r"\%").replace("#", r"\#")


def to_latex(agg: dict) -> str:
    """One booktabs tabular per language (tasks + mean), as the paper's benchmark-full-XX tables, then the means."""
    langs = _languages(agg)
    parts = []
    for lang in langs:
        tasks = [b for b in _tasks_of(agg, lang) if b["in_mean"]]
        parts.append(f"% {LANG_NAMES[lang]}: suite {agg['suite']}, percent, NaN = not evaluated")
        parts.append(r"\begin{tabular}{l" + "r" * (len(tasks) + 1) + "}")
        parts.append(r"\toprule")
        parts.append("model & " + " & ".join(_tex(b["task"]) for b in tasks) + r" & mean \\")
        parts.append(r"\midrule")
        for name, m in agg["models"].items():
            cells = [("NaN" if m["tasks"].get(b["task"]) is None else f"{m['tasks'][b['task']]:.2f}") for b in tasks]
            mean = m["languages"].get(lang)
            parts.append(_tex(name) + " & " + " & ".join(cells) + " & " + ("NaN" if mean is None else f"{mean:.2f}") + r" \\")
        parts.append(r"\bottomrule")
        parts.append(r"\end{tabular}")
        parts.append("")
    parts.append(r"\begin{tabular}{l" + "r" * len(langs) + "}")
    parts.append(r"\toprule")
    parts.append("model & " + " & ".join(LANG_NAMES[lang] for lang in langs) + r" \\")
    parts.append(r"\midrule")
    for name, m in agg["models"].items():
        parts.append(_tex(name) + " & " + " & ".join(_fmt(m["languages"].get(lang)).replace("-", "NaN") for lang in langs) + r" \\")
    parts.append(r"\bottomrule")
    parts.append(r"\end{tabular}")
    return "\n".join(parts) + "\n"


def render(agg: dict, fmt: str) -> str:
    renderers = {"json": to_json, "md": to_markdown, "csv": to_csv, "latex": to_latex}
    if fmt not in renderers:
        raise EvalError(f"unknown format '{fmt}': choose one of {', '.join(FORMATS)}.")
    return renderers[fmt](agg)
