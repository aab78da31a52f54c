"""`latxa report`: the paper's arena analysis in one folder, from votes and benchmark results.

It follows the study's notebook (evaluation/results.ipynb) step by step, in the paper's rating convention
(:mod:`latxa.components.arena.paper`): the arena table with rank changes per dimension, the win-rate and
battle-count heatmaps, the participants figure, the research questions (ratings grouped by Basque corpus,
instruction languages, Basque instructions, English instructions and backbone, with the notebook's
interval-overlap test and bar charts), the language trade-off, and the arena-benchmark Spearman table and
heatmap; ``index.html`` shows them all. Model names, aliases and equivalences are data (``models.yaml``).
Parts that need what a source lacks (benchmark results, participant fields, the study's variant codes) are
skipped with a note in the index, never silently.
"""

from __future__ import annotations

import html
import itertools
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from latxa.components.arena import names as N
from latxa.components.arena.paper import ROUNDS, SEED, leaderboard
from latxa.errors import LatxaError

DIMS = {"global": "winner", "content": "winner_content", "language": "winner_language"}
GROUPINGS = {  # name -> (title, positions masked, which models)
    "corpus": ("RQ1: Basque corpus in the SFT mix (without / with C_EU)", [N.CORPUS_EU], r"\d_\d\d\d"),
    "instructions": ("RQ2: instruction languages, models with the Basque corpus (I_EU, I_EN)",
                     [N.INST_EU, N.INST_EN], r"\d_1\d\d"),
    "basque-instructions": ("Basque instructions (without / with I_EU)", [N.INST_EU], r"\d_\d\d\d"),
    "english-instructions": ("English instructions (without / with I_EN)", [N.INST_EN], r"\d_\d\d\d"),
    "backbone": ("Backbone (BASE_EN / BASE_EU / INST_EN)", [N.BACKBONE], r"\d_\d\d\d"),
}
PRETTY_TASKS = {"arc_challenge": "ARC_Challenge", "arc_easy": "ARC_Easy", "bbq": "BBQ", "belebele_Latn": "Belebele",
                "bertaqa_global": "BertaQA_Global", "bertaqa_local": "BertaQA_Local", "bl2mp": "BL2MP",
                "eus_exams": "EusExams", "eus_proficiency": "EusProficiency", "eus_reading": "EusReading",
                "eus_trivia": "EusTrivia", "mgsm_native_cot": "MGSM_n-CoT", "mmlu": "MMLU", "piqa": "PIQA",
                "xstorycloze": "XStoryCloze"}


class ReportError(LatxaError):
    """The report cannot be built from these inputs (one sentence)."""


@dataclass
class Artefact:
    name: str
    title: str
    files: list[str]
    kind: str                 # figure | table
    note: str = ""
    html: str = ""            # a table rendered for the index


@dataclass
class Report:
    out: Path
    artefacts: list[Artefact] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, a: Artefact) -> None:
        self.artefacts.append(a)

    def skip(self, name: str, why: str) -> None:
        self.skipped.append((name, why))


# ----------------------------------------------------------------------------- arena data
def arena_frame(records: list[dict]):
    """The votes as the notebook's ``arena_df``: names normalised, in the given (timestamp) order."""
    import pandas as pd

    if not records:
        raise ReportError("there are no votes in this source.")
    df = pd.DataFrame(records)
    missing = [c for c in ("model_a", "model_b", *DIMS.values()) if c not in df.columns]
    if missing:
        raise ReportError(f"the votes lack {', '.join(missing)}.")
    df["model_a"] = df["model_a"].map(N.normalize)
    df["model_b"] = df["model_b"].map(N.normalize)
    return df.reset_index(drop=True)


def rate(df, key: str, rounds: int, seed: int, bar=None):
    """The notebook's ``process_arena_results`` + ``arena_to_pretty_table`` for one outcome column."""
    import pandas as pd

    board = leaderboard(df["model_a"].tolist(), df["model_b"].tolist(), df[key].tolist(), rounds, seed, bar)
    return pd.DataFrame([{"model": m, "rank": float(r["rank"]), "ELO": r["rating"], "90% CI": r["ci"],
                          "ELO upper": r["ci_plus"], "ELO lower": r["ci_minus"]} for m, r in board.items()])


# ----------------------------------------------------------------------------- rendering helpers
def md_table(df, index_name: str = "model", floatfmt: str = "{:.2f}") -> str:
    def cell(v):
        if isinstance(v, float):
            return "" if v != v else floatfmt.format(v)
        return str(v)

    cols = [str(c) if not isinstance(c, tuple) else " ".join(map(str, c)) for c in df.columns]
    lines = ["| " + " | ".join([index_name, *cols]) + " |", "|" + "---|" * (len(cols) + 1)]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([str(idx), *(cell(v) for v in row.tolist())]) + " |")
    return "\n".join(lines) + "\n"


def html_table(df, index_name: str = "model", floatfmt: str = "{:.2f}") -> str:
    def cell(v):
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return "" if v != v else floatfmt.format(v)
        return html.escape(str(v))

    cols = [str(c) if not isinstance(c, tuple) else " ".join(map(str, c)) for c in df.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [index_name, *cols])
    body = "".join("<tr><th>" + html.escape(str(i)) + "</th>" + "".join(f"<td>{cell(v)}</td>" for v in r.tolist())
                   + "</tr>" for i, r in df.iterrows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"axes.unicode_minus": False, "font.size": 9})
    return plt


def _heatmap(ax, matrix, labels, *, cmap, fmt="{:.0f}", vmin=None, vmax=None, annot_size=6):
    import numpy as np

    data = np.asarray(matrix, dtype=float)
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(labels[1])), labels[1], rotation=90, fontsize=6)
    ax.set_yticks(range(len(labels[0])), labels[0], fontsize=6)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if data[i, j] == data[i, j]:
                ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=annot_size)
    return im


# ----------------------------------------------------------------------------- the sections
RANK_COLUMNS = ("rank", "rank_cont", "rank_cont_delta", "rank_lang", "rank_lang_delta")


def _rank(value) -> str:
    return "" if value != value else str(int(value))  # NaN (no battles in that dimension) stays empty


def arena_table(rep: Report, ratings: dict) -> None:
    """figures/arena-full.tex: global, content and language ranks, scores and intervals, rank changes."""
    g, c, lang = (ratings[d].set_index("model") for d in ("global", "content", "language"))
    cols = ["rank", "ELO", "90% CI"]
    full = g[cols].merge(c[cols], left_index=True, right_index=True, how="left", suffixes=("", "_cont")) \
        .merge(lang[cols].add_suffix("_lang"), left_index=True, right_index=True, how="left")
    full["rank_cont_delta"] = full["rank_cont"] - full["rank"]
    full["rank_lang_delta"] = full["rank_lang"] - full["rank"]
    full = full[["rank", "ELO", "90% CI", "rank_cont", "rank_cont_delta", "ELO_cont", "90% CI_cont",
                 "rank_lang", "rank_lang_delta", "ELO_lang", "90% CI_lang"]]
    latex = full.copy()
    latex.index = [N.pretty(m, "latex") for m in latex.index]
    latex.index.name = "model"
    (rep.out / "arena-full.tex").write_text(
        latex.to_latex(sparsify=False, float_format="{:.2f}".format, formatters=dict.fromkeys(RANK_COLUMNS, _rank)),
    encoding="utf-8")
    text = full.copy()
    text.index = [N.label(m) for m in text.index]
    for col in RANK_COLUMNS:  # ranks are whole numbers (floats only because a left merge may leave gaps)
        text[col] = text[col].map(_rank)
    (rep.out / "arena-full.md").write_text("# Arena: Bradley-Terry scores (paper convention)\n\n" + md_table(text),
                                           encoding="utf-8")
    full.to_csv(rep.out / "arena-full.csv")
    rep.data["arena"] = {m: {k: (v if not isinstance(v, float) or v == v else None) for k, v in row.items()}
                         for m, row in full.to_dict("index").items()}
    rep.add(Artefact("arena-full", "Arena table: ranks, scores and 90% intervals per dimension (global, content, "
                     "language) and the rank changes against the global rank",
                     ["arena-full.tex", "arena-full.md", "arena-full.csv"], "table", html=html_table(text)))


def mirror(df):
    """Each battle from both sides (the notebook's ``mirror_matches``)."""
    import pandas as pd

    swap = {"model_a": "model_b", "model_b": "model_a"}
    m = df[["model_a", "model_b", *DIMS.values()]].copy()
    other = m.rename(columns=swap)
    for key in DIMS.values():
        other[key] = other[key].replace(swap)
    return pd.concat([m, other[m.columns]], ignore_index=True)


def heatmaps(rep: Report, df, order: list[str]) -> None:
    """figures/arena-win_rates-heatmap (ties count as non-wins) and arena-battle_counts-heatmap."""
    import numpy as np

    plt = _plt()
    mirrored = mirror(df)
    k = len(order)
    pos = {m: i for i, m in enumerate(order)}
    wins = np.zeros((k, k))
    games = np.zeros((k, k))
    for a, b, w in zip(mirrored["model_a"], mirrored["model_b"], mirrored["winner"], strict=True):
        if a in pos and b in pos:
            games[pos[a], pos[b]] += 1
            wins[pos[a], pos[b]] += w == "model_a"
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_ = np.where(games > 0, 100 * wins / games, np.nan)
    np.fill_diagonal(rate_, np.nan)
    counts = np.where(games > 0, games, np.nan)
    labels = [N.label(m) for m in order]
    for name, matrix, cmap, extra, title in (
            ("arena-win_rates-heatmap", rate_, "RdBu", {"vmin": 0, "vmax": 100},
             "Win rate of model A over model B, % (ties count as non-wins)"),
            ("arena-battle_counts-heatmap", counts, "plasma", {}, "Battles per pair")):
        fig, ax = plt.subplots(figsize=(8, 6.5))
        im = _heatmap(ax, matrix, (labels, labels), cmap=cmap, **extra)
        fig.colorbar(im, ax=ax)
        ax.set_ylabel("Model A")
        ax.set_xlabel("Model B")
        ax.set_title(title, fontsize=9)
        _save(fig, rep.out / f"{name}.png")
        rep.add(Artefact(name, title, [f"{name}.png"], "figure"))
    rep.data["battle_counts"] = {"total": int(np.nansum(counts)), "per_model": dict(zip(order, np.nansum(counts, 1).astype(int).tolist(), strict=True))}


def participants(rep: Report, df) -> None:
    """figures/arena-participants: share of users and of preferences per language level and education."""
    import numpy as np

    need = ["username", "user_language", "user_education"]
    if any(c not in df.columns for c in need) or df[need].isna().all().any():
        rep.skip("arena-participants", "the votes carry no participant fields (username, user_language, "
                 "user_education): a plain votes file")
        return
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(6.5, 2.8), sharey=True)
    shares = {}
    for ax, col, order, xlabel in (
            (axes[0], "user_language", sorted(df["user_language"].dropna().unique()), "Language proficiency level (CEFR)"),
            (axes[1], "user_education", [c for c in ("Secondary", "High School", "Vocational ed", "Bachelor")
                                         if c in set(df["user_education"])] +
             sorted(set(df["user_education"].dropna()) - {"Secondary", "High School", "Vocational ed", "Bachelor"}),
             "Education level")):
        users = df.groupby(col)["username"].nunique()
        users = users / users.sum() * 100
        prefs = df[col].value_counts()
        prefs = prefs / prefs.sum() * 100
        x = np.arange(len(order))
        for off, series, label in ((-0.2, users, "Users"), (0.2, prefs, "Preferences")):
            vals = [float(series.get(c, 0.0)) for c in order]
            bars = ax.bar(x + off, vals, width=0.4, label=label)
            for b, v in zip(bars, vals, strict=True):
                if v > 0:
                    ax.annotate(f"{v:.1f}%", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                                fontsize=6, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(x, order, fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylim(0, 105)
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0f}%"))
        shares[col] = {"users": {c: round(float(users.get(c, 0.0)), 1) for c in order},
                       "preferences": {c: round(float(prefs.get(c, 0.0)), 1) for c in order}}
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1.08), ncol=2, frameon=False)
    _save(fig, rep.out / "arena-participants.png")
    rep.data["participants"] = {"users": int(df["username"].nunique()), "votes": len(df), **shares}
    rep.add(Artefact("arena-participants", f"Participants: {df['username'].nunique()} users, {len(df)} preferences, "
                     "by Basque level and education", ["arena-participants.png"], "figure"))


def grouped_results(elo_acc, arena_df, by: list[int], rounds: int, seed: int, bar=None):
    """The notebook's ``grouped_results``: ratings of the models side by side per masked variant, a "global" row
    fitted on the battles with each model replaced by its variant, the interval-overlap test and accuracy deltas."""
    import pandas as pd

    records: dict[str, dict] = {}
    variants = set()
    for model, row in elo_acc.iterrows():
        masked, variant = N.mask(by, model)
        variants.add(variant)
        rec = records.setdefault(masked, {})
        for col in ("ELO", "90% CI", "ELO upper", "ELO lower", "acc"):
            rec[(col, variant)] = row[col]
    variants = sorted(variants, reverse=True)
    sub = arena_df[arena_df["model_a"].isin(elo_acc.index) & arena_df["model_b"].isin(elo_acc.index)].copy()
    sub["model_a"] = sub["model_a"].map(lambda m: N.mask(by, m)[1])
    sub["model_b"] = sub["model_b"].map(lambda m: N.mask(by, m)[1])
    grouped = rate(sub, "winner", rounds, seed, bar).set_index("model")
    records["global"] = {}
    for v in variants:
        for col in ("ELO", "90% CI", "ELO upper", "ELO lower"):
            records["global"][(col, v)] = grouped.loc[v][col] if v in grouped.index else float("nan")
        records["global"][("acc", v)] = float("nan")
    table = pd.DataFrame(records).T.sort_index(axis=0)
    for v in variants:
        table.at["global", ("acc", v)] = round(float(pd.to_numeric(table[("acc", v)]).mean()), 2)
    for v0, v1 in itertools.combinations(variants, 2):
        e0, e1 = (pd.to_numeric(table[("ELO", v)]) for v in (v0, v1))
        lo0 = e0 - pd.to_numeric(table[("ELO lower", v0)])
        hi0 = e0 + pd.to_numeric(table[("ELO upper", v0)])
        lo1 = e1 - pd.to_numeric(table[("ELO lower", v1)])
        hi1 = e1 + pd.to_numeric(table[("ELO upper", v1)])
        # the notebook's test, as written: True = "the intervals do not overlap" (one-directional, NaN -> True)
        table[("ELO", f"*({v0},{v1})")] = ~(((lo0 < lo1) & (lo1 < hi0)) | ((lo0 < hi1) & (hi1 < hi0)))
        table[("acc", f"Δ({v0},{v1})")] = pd.to_numeric(table[("acc", v0)]) - pd.to_numeric(table[("acc", v1)])
    return table[sorted(table.columns)], variants


def group_bars(rep: Report, name: str, title: str, table, variants: list[str]) -> None:
    import numpy as np
    import pandas as pd

    plt = _plt()
    rows = table.drop(index="global")
    groups: dict[str, list[str]] = {}
    for r in rows.index:
        groups.setdefault(r.split("_")[0], []).append(r)
    x, ticks, positions = 0, [], {}
    for _g, members in groups.items():
        for r in members:
            positions[r] = x
            ticks.append(r)
            x += 1
        x += 1
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(ticks) + 2), 3.5))
    for k, v in enumerate(sorted(variants)):
        elo = pd.to_numeric(rows[("ELO", v)])
        lo = pd.to_numeric(rows[("ELO lower", v)]).fillna(0)
        hi = pd.to_numeric(rows[("ELO upper", v)]).fillna(0)
        xs = np.array([positions[r] for r in rows.index]) + (k - (len(variants) - 1) / 2) * width
        ax.bar(xs, elo, width=width, yerr=[lo, hi], capsize=3, label=f"variant {v}")
    ax.set_xticks([positions[t] for t in ticks], ticks, fontsize=7, rotation=45)
    finite = pd.concat([pd.to_numeric(rows[("ELO", v)]) for v in variants]).dropna()
    if len(finite):
        ax.set_ylim(finite.min() - 80, finite.max() + 60)
    for g, members in groups.items():
        if g.isdigit():
            mid = (positions[members[0]] + positions[members[-1]]) / 2
            ax.text(mid, ax.get_ylim()[1], N.backbone_title(int(g)), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("Bradley-Terry score")
    ax.set_xlabel("Variant group (X = the compared part)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 1.35), ncols=len(variants), frameon=False, fontsize=7)
    ax.set_title(title, fontsize=9, pad=28)
    _save(fig, rep.out / f"rq-{name}-ELO-bars.png")


def research_questions(rep: Report, ratings: dict, arena_df, bench, rounds: int, seed: int, bar=None) -> None:
    import pandas as pd

    from latxa.components.arena.benchmarks import language_table

    if bench is None:
        rep.skip("research questions", "no benchmark results (--results): the tables join arena scores with the "
                 "Basque benchmark mean")
        return
    eu = language_table(bench, "EU")           # basqbbq dropped, as for the benchmark tables
    elo = ratings["global"].copy()
    expanded = [elo]
    for src, targets in N.equivalences().items():
        rows = elo[elo["model"] == src]
        expanded += [rows.assign(model=t) for t in targets]
    elo = pd.concat(expanded, ignore_index=True).set_index("model")
    common = sorted(set(elo.index) & set(eu.columns), reverse=True)
    joined = elo.loc[common].copy()
    joined["acc"] = eu[common].T.mean(axis=1) * 100
    joined = joined[[N.is_variant(m) for m in joined.index]]
    if joined.empty:
        rep.skip("research questions", "no arena model is one of the study's variants (codes like exp_2_101)")
        return
    rep.data["research_questions"] = {}
    for name, (title, by, pattern) in GROUPINGS.items():
        subset = joined[[re.fullmatch(pattern, m) is not None for m in joined.index]]
        if subset.empty:
            rep.skip(f"rq-{name}", "no models of this group in the arena")
            continue
        table, variants = grouped_results(subset, arena_df, by, rounds, seed, bar)
        flat = table.copy()
        flat.columns = [f"{a} {b}" for a, b in flat.columns]
        flat.to_csv(rep.out / f"rq-{name}.csv")
        latex = table.copy()
        latex.columns = pd.MultiIndex.from_tuples(latex.columns)
        (rep.out / f"rq-{name}.tex").write_text(latex.to_latex(sparsify=False, float_format="{:.2f}".format),
                                                encoding="utf-8")
        shown = table[[c for c in table.columns if c[0] in ("ELO", "acc") or c[0] == "90% CI"]]
        (rep.out / f"rq-{name}.md").write_text(f"# {title}\n\n" + md_table(shown, "group"), encoding="utf-8")
        group_bars(rep, name, title, table, variants)
        tests = {c[1]: bool(table.at["global", c]) for c in table.columns if c[0] == "ELO" and c[1].startswith("*")}
        rep.data["research_questions"][name] = {
            "variants": variants,
            "global": {v: {"ELO": _num(table.at["global", ("ELO", v)]), "90% CI": table.at["global", ("90% CI", v)],
                           "acc": _num(table.at["global", ("acc", v)])} for v in variants},
            "no_overlap": tests}
        rep.add(Artefact(f"rq-{name}", title, [f"rq-{name}-ELO-bars.png", f"rq-{name}.tex", f"rq-{name}.md",
                                               f"rq-{name}.csv"], "figure",
                         note="*(v0,v1): the notebook's interval test, true when the 90% intervals do not overlap "
                              "(one-directional, as written); acc: Basque benchmark mean, basqbbq excluded.",
                         html=html_table(shown, "group")))


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def tradeoffs(rep: Report, bench) -> None:
    """figures/language-tradeoffs.dumbbell: accuracy change over the variant's backbone in EU, EN and ES."""
    import pandas as pd

    from latxa.components.arena.benchmarks import TASK_RE, language_table

    if bench is None:
        rep.skip("language-tradeoffs", "no benchmark results (--results)")
        return
    tables = [language_table(bench, lang).T for lang in ("EU", "EN", "ES")]
    wide = pd.concat(tables, keys=["EU", "EN", "ES"], names=["lang"], axis=1)
    wide = wide[wide.index.str.match(r"\d_\d\d\d")].T.reset_index()
    wide["task"] = wide["task"].map(lambda t: re.sub(TASK_RE, "", t))
    wide = wide.set_index(["task", "lang"])
    common = [t for t, n in Counter(t for t, _ in wide.index).most_common() if n > 2]
    wide = wide[wide.index.get_level_values("task").isin(common)]
    long = wide.reset_index().melt(id_vars=["task", "lang"], var_name="model", value_name="score")
    long["family"] = long["model"].str.split("_").str[0]
    long["config"] = long["model"].str.split("_").str[1]
    base = long[long["config"] == "000"].set_index(["task", "lang", "family"])["score"]
    if base.empty:
        rep.skip("language-tradeoffs", "the results lack the backbones (Llama-3.1-8B, Latxa-Llama-3.1-8B, "
                 "Llama-3.1-8B-Instruct)")
        return
    long["improvement"] = long.apply(lambda r: r["score"] - base.get((r["task"], r["lang"], r["family"]), float("nan")),
                                     axis=1) * 100
    data = long[~long["config"].isin(["000"])]
    skip = {t for ts in N.equivalences().values() for t in ts}
    data = data[~data["model"].isin(skip)]
    data = data.groupby(["model", "family", "config", "lang"])["improvement"].mean().reset_index()
    dumbbell = data.pivot(index=["model", "family", "config"], columns="lang", values="improvement").reset_index()
    plt = _plt()
    fams = sorted(dumbbell["family"].unique())
    fig, axes = plt.subplots(len(fams), 1, figsize=(6, 1.9 * len(fams) + 0.5), sharex=True, squeeze=False)
    colors = ["#4c72b0", "#dd8452", "#55a868"]
    for ax, fam in zip(axes[:, 0], fams, strict=True):
        part = dumbbell[dumbbell["family"] == fam].reset_index(drop=True)
        for i, row in part.iterrows():
            ax.plot([row.get(lang) for lang in ("EU", "EN", "ES")], [i] * 3, color="gray", lw=2, zorder=2)
        for c, lang in zip(colors, ("EU", "EN", "ES"), strict=True):
            ax.scatter(part.get(lang), range(len(part)), s=40, color=c, label=lang, zorder=4)
        ax.axvline(0, color="black", ls="--", lw=0.8)
        ax.set_yticks(range(len(part)), [N.pretty(m).split(" ", 1)[-1] for m in part["model"]], fontsize=7)
        ax.set_ylim(-0.8, len(part) - 0.2)
        ax.invert_yaxis()
        ax.set_ylabel(N.backbone_title(int(fam)), fontsize=8)
    axes[-1, 0].set_xlabel("Accuracy Δ over variant backbone (points)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.55, 1.03), ncols=3, frameon=False)
    _save(fig, rep.out / "language-tradeoffs.dumbbell.png")
    table = dumbbell.set_index("model")[["EU", "EN", "ES"]].round(2)
    (rep.out / "language-tradeoffs.md").write_text(
        "# Accuracy change over the variant's backbone (points; tasks in all three languages: "
        + ", ".join(sorted(common)) + ")\n\n" + md_table(table), encoding="utf-8")
    rep.data["tradeoffs"] = {m: {k: _num(v) for k, v in r.items()} for m, r in table.to_dict("index").items()}
    rep.add(Artefact("language-tradeoffs", "Language trade-off: benchmark change over each variant's backbone in "
                     "Basque, English and Spanish", ["language-tradeoffs.dumbbell.png", "language-tradeoffs.md"],
                     "figure", html=html_table(table)))


def correlations(rep: Report, ratings: dict, bench) -> None:
    """figures/arena-benchmarks-correlation.tex and .detailed: Spearman between arena and benchmark ranks."""
    import pandas as pd
    from scipy.stats import spearmanr

    from latxa.components.arena.benchmarks import TASK_RE, language_table, pretty_table

    if bench is None:
        rep.skip("arena-benchmarks-correlation", "no benchmark results (--results)")
        return
    arena_rank = pd.concat([ratings[d].set_index("model")["rank"] for d in ("content", "language", "global")], axis=1)
    arena_rank.columns = ["Content", "Language", "Global"]
    # all tasks here, bias tasks included, with each language table's mean and rank rows (the notebook's cell 45)
    tables = [pretty_table(language_table(bench, lang, drop_bias=False)) for lang in ("EU", "EN", "ES")]
    benchmark = pd.concat(tables, keys=["EU", "EN", "ES"], names=["lang"], axis=1).T
    common = sorted(m for m in set(benchmark.columns) & set(arena_rank.index) if N.is_variant(m))
    if len(common) < 3:
        rep.skip("arena-benchmarks-correlation", f"only {len(common)} of the study's 8B models are in both the arena "
                 "and the benchmark results")
        return
    bench_ranks = benchmark[common].T
    arena = arena_rank.loc[common]
    language_ranks = bench_ranks.T.groupby("lang").mean().T.rank(method="max", ascending=False)
    rows = {}
    for lang in language_ranks.columns:
        row = {}
        for dim in arena.columns:
            rho, p = spearmanr(language_ranks[lang], arena[dim])
            row[(dim, "rho")], row[(dim, "p")] = float(rho), float(p)
        rows[lang] = row
    corr = pd.DataFrame(rows).T
    corr.columns = pd.MultiIndex.from_tuples(corr.columns)
    (rep.out / "arena-benchmarks-correlation.tex").write_text(
        corr.to_latex(sparsify=False, float_format="{:.2f}".format), encoding="utf-8")
    (rep.out / "arena-benchmarks-correlation.md").write_text(
        f"# Spearman correlation: benchmark language ranks vs arena ranks ({len(common)} 8B models)\n\n"
        + md_table(corr, "benchmarks", "{:.4g}"), encoding="utf-8")
    corr.to_csv(rep.out / "arena-benchmarks-correlation.csv")
    rep.data["spearman"] = {lang: {f"{a} {b}": v for (a, b), v in r.items()} for lang, r in corr.to_dict("index").items()}
    rep.data["spearman_models"] = common
    rep.add(Artefact("arena-benchmarks-correlation", f"Arena vs benchmarks: Spearman's rho of the per-language "
                     f"benchmark ranks against the arena ranks ({len(common)} 8B models)",
                     ["arena-benchmarks-correlation.tex", "arena-benchmarks-correlation.md",
                      "arena-benchmarks-correlation.csv"], "table", html=html_table(corr, "benchmarks", "{:.3f}")))
    # per task
    per_task = bench_ranks.drop(columns=[c for c in bench_ranks.columns if "mean" in c or "rank" in c])
    per_task = per_task.rank(method="max", ascending=False)
    per_task.columns = pd.MultiIndex.from_tuples([(lang, re.sub(TASK_RE, "", t)) for lang, t in per_task.columns])
    tasks = sorted({t for _, t in per_task.columns})
    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(7, 5), sharex=True)
    detailed = {}
    for ax, dim in zip(axes, ("Global", "Content", "Language"), strict=True):
        mat = [[float("nan")] * len(tasks) for _ in range(3)]
        for i, lang in enumerate(("EU", "EN", "ES")):
            for j, t in enumerate(tasks):
                if (lang, t) in per_task.columns:
                    rho = spearmanr(per_task[(lang, t)], arena[dim]).statistic
                    mat[i][j] = float(rho)
        detailed[dim] = {lang: dict(zip(tasks, mat[i], strict=True)) for i, lang in enumerate(("EU", "EN", "ES"))}
        _heatmap(ax, mat, (["EU", "EN", "ES"], [PRETTY_TASKS.get(t, t) for t in tasks]), cmap="RdBu", fmt="{:.2f}",
                 vmin=-1, vmax=1, annot_size=6)
        ax.set_ylabel(f"Arena {dim}", fontsize=8)
    plt.setp(axes[-1].get_xticklabels(), rotation=45, ha="right")
    _save(fig, rep.out / "arena-benchmarks-correlation.detailed.png")
    rep.data["spearman_per_task"] = detailed
    rep.add(Artefact("arena-benchmarks-correlation.detailed", "Arena vs each benchmark: Spearman's rho per task "
                     "and language", ["arena-benchmarks-correlation.detailed.png"], "figure"))


# ----------------------------------------------------------------------------- the index
def write_index(rep: Report, title: str, summary: str) -> Path:
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}"
             "h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}"
             "table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ccc;"
             "padding:2px 6px;text-align:right}th{background:#f4f4f4}img{max-width:100%;border:1px solid #eee}"
             ".files a{margin-right:1em}.note{color:#555;font-size:.9em}nav a{margin-right:1em}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p><nav>"]
    parts += [f"<a href='#{a.name}'>{html.escape(a.name)}</a>" for a in rep.artefacts]
    parts.append("</nav>")
    for a in rep.artefacts:
        parts.append(f"<section id='{a.name}'><h2>{html.escape(a.title)}</h2>")
        for f in a.files:
            if f.endswith(".png"):
                parts.append(f"<img src='{f}' alt='{html.escape(a.title)}'>")
        if a.html:
            parts.append(a.html)
        if a.note:
            parts.append(f"<p class='note'>{html.escape(a.note)}</p>")
        parts.append("<p class='files'>" + "".join(f"<a href='{f}'>{f}</a>" for f in a.files) + "</p></section>")
    if rep.skipped:
        parts.append("<h2>Not produced</h2><ul>" + "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(w)}</li>"
                                                         for n, w in rep.skipped) + "</ul>")
    parts.append("</body></html>")
    path = rep.out / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def build_report(records: list[dict], out: str | Path, *, results: str | Path | None = None, rounds: int = ROUNDS,
                 seed: int = SEED, progress: bool = False, source: str = "votes") -> dict:
    """Write every artefact to ``out``; returns the summary (also ``report.json``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rep = Report(out)
    df = arena_frame(records)
    bench = None
    if results is not None:
        from latxa.components.arena.benchmarks import load_benchmarks

        bench = load_benchmarks(results)
    bar = None
    if progress:
        from tqdm import tqdm

        n_groups = len(GROUPINGS) if bench is not None else 0
        bar = tqdm(total=rounds * (len(DIMS) + n_groups), desc="bootstrap (paper convention)", unit="round")
    try:
        ratings = {d: rate(df, key, rounds, seed, bar) for d, key in DIMS.items()}
        arena_table(rep, ratings)
        heatmaps(rep, df, ratings["global"]["model"].tolist())
        participants(rep, df)
        research_questions(rep, ratings, df, bench, rounds, seed, bar)
    finally:
        if bar is not None:
            bar.close()
    tradeoffs(rep, bench)
    correlations(rep, ratings, bench)
    summary = (f"{len(df)} votes from {source} on {len(set(df['model_a']) | set(df['model_b']))} models; ratings in "
               f"the paper's convention ({rounds} bootstrap rounds, seed {seed}, 90% intervals)"
               + (f"; benchmarks from {results}" if results else "; no benchmark results") + ".")
    index = write_index(rep, "Latxa arena report", summary)
    doc = {"summary": summary, "votes": len(df), "index": str(index),
           "artefacts": [asdict(a) | {"html": None} for a in rep.artefacts],
           "skipped": [{"name": n, "why": w} for n, w in rep.skipped], **rep.data}
    (out / "report.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return doc
