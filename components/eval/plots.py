"""PNG plots of an aggregate: models x languages (grouped bars) and models x categories (heatmap)."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_languages(agg: dict, path: str | Path) -> Path:
    plt = _pyplot()
    import numpy as np

    names = list(agg["models"])
    langs = [lang for lang in ("eu", "en", "es") if any(agg["models"][n]["languages"].get(lang) is not None for n in names)]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(names) * max(1, len(langs)) / 1.5 + 1)))
    y = np.arange(len(names))
    height = 0.8 / max(1, len(langs))
    for i, lang in enumerate(langs):
        vals = [agg["models"][n]["languages"].get(lang) for n in names]
        ax.barh(y + i * height, [v if v is not None else 0 for v in vals], height, label=lang.upper())
        for j, v in enumerate(vals):
            cov = agg["models"][names[j]]["coverage"].get(lang, {})
            if v is not None and cov.get("tasks") != cov.get("of"):
                ax.text(v + 0.5, y[j] + i * height, f"{cov['tasks']}/{cov['of']}", va="center", fontsize=6)
    ax.set_yticks(y + height * (len(langs) - 1) / 2, labels=names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("mean score (%) over the language's tasks (bias excluded)")
    ax.set_xlim(0, 100)
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title(f"Suite {agg['suite']}: per-language means")
    return _save(plt, fig, path)


def _save(plt, fig, path: str | Path) -> Path:
    """Write a finished figure as PNG (parents created) and release it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_categories(agg: dict, path: str | Path) -> Path:
    plt = _pyplot()
    import numpy as np

    names = list(agg["models"])
    cats = [c for c in agg["categories"] if any(agg["models"][n]["categories"].get(c) is not None for n in names)]
    grid = np.array([[agg["models"][n]["categories"].get(c) if agg["models"][n]["categories"].get(c) is not None else np.nan
                      for c in cats] for n in names], dtype=float)
    fig, ax = plt.subplots(figsize=(1.3 * len(cats) + 3, 0.32 * len(names) + 1.5))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(cats)), labels=[agg["categories"][c] for c in cats], rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), labels=names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(cats)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=6,
                        color="white" if grid[i, j] < 60 else "black")
    fig.colorbar(im, ax=ax, label="mean score (%)")
    ax.set_title(f"Suite {agg['suite']}: category means (all languages)")
    return _save(plt, fig, path)


def plot_all(agg: dict, out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    return [plot_languages(agg, out_dir / "languages.png"), plot_categories(agg, out_dir / "categories.png")]
