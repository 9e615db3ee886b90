"""The training report in ``output/data/``: ``metrics.json``, the PNG figures and ``report.html``.

``report.html`` is one static page (no server, no script, no network: the
figures are embedded as data URIs, so the page can be opened straight from the
job's ``output.tar.gz``): a summary, the accuracy and beyond-accuracy table of
the model against the popularity baseline per split, and the figures, each of
which is also written as its own PNG beside the page.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training import beyond_accuracy

METRICS_FILE = "metrics.json"
LEARNING_CURVE_FILE = "learning_curve.png"
POPULARITY_BIAS_FILE = "popularity_bias.png"
TRIALS_FILE = "trials.png"
HTML_REPORT_FILE = "report.html"

#: How the table explains each metric: (meaning, which way is better).
METRIC_NOTES: dict[str, tuple[str, str]] = {
    "hr": ("hit rate: the held-out item is in the top k", "higher"),
    "ndcg": ("normalised discounted cumulative gain of the held-out item", "higher"),
    "full_hr": ("hit rate ranking against every item", "higher"),
    "full_ndcg": ("NDCG ranking against every item", "higher"),
    "rmse": ("root mean squared error of predicted ratings", "lower"),
    "coverage": ("share of training items recommended to anyone", "higher"),
    "distributional_coverage": (
        "entropy (bits) of how recommendations spread over items",
        "higher",
    ),
    "gini": ("Gini index of recommendation counts (0 even, 1 all on one item)", "lower"),
    "novelty": ("mean -log2 training popularity share of recommended items", "higher"),
    "ild": ("intra-list diversity: 1 - mean cosine of item vectors within a list", "higher"),
    "ild_attributes": ("intra-list diversity on item attributes", "higher"),
    "arp": ("average training interactions of recommended items", "lower"),
    "aplt": ("share of each list in the long tail (outside 80% of interactions)", "higher"),
}


@dataclass(frozen=True)
class Figure:
    """One figure of the report: a PNG in ``output/data`` with a title and a caption."""

    title: str
    path: Path
    caption: str = ""


def write_metrics(output_dir: Path, report: dict[str, Any]) -> Path:
    """Write ``report`` (history, best epoch, final metrics, timings) as ``metrics.json``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / METRICS_FILE
    path.write_text(json.dumps(report, indent=2, sort_keys=True, default=float) + "\n")
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    _pyplot().close(figure)
    return path


def plot_learning_curve(output_dir: Path, history: list[dict[str, float]], best_epoch: int) -> Path:
    """Plot training loss and every validation metric per epoch; returns the PNG's path.

    Beyond-accuracy metrics in the history (those a ``validation_constraint``
    bounds) get a panel of their own, beside the accuracy metrics.
    """
    plt = _pyplot()
    epochs = [record["epoch"] for record in history]
    names = [
        name
        for name in (history[0] if history else {})
        if name not in ("epoch", "train_loss", "epoch_seconds")
    ]
    panels = {
        "validation": [name for name in names if name not in beyond_accuracy.METRIC_NAMES],
        "validation, beyond accuracy": [
            name for name in names if name in beyond_accuracy.METRIC_NAMES
        ],
    }
    panels = {title: metrics for title, metrics in panels.items() if metrics}
    figure, axes = plt.subplots(1, 1 + len(panels), figsize=(5 * (1 + len(panels)), 4))
    loss_axis, *metric_axes = np.atleast_1d(axes)
    # A pre-trained NeuMF's epoch 0 (its fused towers) has no training loss of its own.
    losses = [record.get("train_loss", np.nan) for record in history]
    loss_axis.plot(epochs, losses, marker="o")
    loss_axis.set(title="training loss", xlabel="epoch", ylabel="loss")
    for axis, (title, metrics) in zip(metric_axes, panels.items(), strict=True):
        for name in metrics:
            axis.plot(epochs, [record[name] for record in history], marker="o", label=name)
        if any(record["epoch"] == best_epoch for record in history):
            axis.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch {best_epoch}")
        axis.set(title=title, xlabel="epoch")
        axis.legend()
    for axis in (loss_axis, *metric_axes):
        axis.grid(alpha=0.3)
    return _save(figure, output_dir / LEARNING_CURVE_FILE)


def plot_popularity_bias(
    output_dir: Path, popularity: np.ndarray, recommendation_counts: Mapping[str, np.ndarray]
) -> Path:
    """Log-log scatter of how often each item is recommended against its training popularity.

    Args:
        output_dir: Where the PNG goes.
        popularity: ``[num_items]`` training interactions per item.
        recommendation_counts: Per system (``"model"``, ``"popularity"``), the
            ``[num_items]`` number of top-k lists each item is in. Items with a
            zero on either axis cannot sit on a log scale and are left out; the
            legend says how many items each system recommends at all.
    """
    plt = _pyplot()
    popularity = np.asarray(popularity)
    figure, axis = plt.subplots(figsize=(6, 4.5))
    for (name, raw_counts), marker in zip(recommendation_counts.items(), "o^sD", strict=False):
        counts = np.asarray(raw_counts)
        shown = (counts > 0) & (popularity > 0)
        axis.scatter(
            popularity[shown],
            counts[shown],
            s=10,
            alpha=0.5,
            marker=marker,
            label=f"{name} ({int(np.count_nonzero(counts))} items recommended)",
        )
    axis.set(
        xscale="log",
        yscale="log",
        xlabel="training interactions of the item",
        ylabel="top-k lists the item is in",
        title="popularity bias",
    )
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    return _save(figure, output_dir / POPULARITY_BIAS_FILE)


def plot_trials(
    output_dir: Path, trials: Sequence[Mapping[str, Any]], metric: str, maximize: bool = True
) -> Path:
    """The objective of each search trial in order, the best so far as a line.

    Args:
        output_dir: Where the PNG goes.
        trials: One mapping per trial with ``number`` and ``value`` (``None`` or
            NaN for a trial that produced none, e.g. pruned or failed).
        metric: The objective's name (the y label).
        maximize: Whether a higher objective is better (for the best-so-far line).
    """
    plt = _pyplot()
    finished = [
        (int(trial["number"]), float(trial["value"]))
        for trial in trials
        if trial.get("value") is not None and math.isfinite(float(trial["value"]))
    ]
    figure, axis = plt.subplots(figsize=(6, 4))
    if finished:
        numbers, values = zip(*finished, strict=True)
        axis.scatter(numbers, values, label="trial")
        best = np.maximum.accumulate(values) if maximize else np.minimum.accumulate(values)
        axis.plot(numbers, best, color="grey", label="best so far")
        axis.legend()
    axis.set(title=f"search: {len(trials)} trials", xlabel="trial", ylabel=metric)
    axis.grid(alpha=0.3)
    return _save(figure, output_dir / TRIALS_FILE)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return html.escape(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return "–"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4f}"


def comparison_table(comparison: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """An HTML table: one row per metric, one column per (split, system).

    Args:
        comparison: ``{split: {system: {metric: value}}}``, e.g.
            ``{"validation": {"model": {...}, "popularity": {...}}, "test": {...}}``.
    """
    columns = [(split, system) for split, systems in comparison.items() for system in systems]
    metrics: list[str] = []
    for systems in comparison.values():
        for values in systems.values():
            metrics.extend(name for name in values if name not in metrics)
    head = "".join(
        f"<th>{html.escape(split)}<br>{html.escape(system)}</th>" for split, system in columns
    )
    rows = []
    for name in metrics:
        meaning, better = METRIC_NOTES.get(name, ("", ""))
        cells = "".join(
            f"<td>{_number(comparison[split][system].get(name, '–'))}</td>"
            for split, system in columns
        )
        note = f"{meaning} ({better} is better)" if meaning else ""
        rows.append(
            f'<tr><th scope="row">{html.escape(name)}</th>{cells}'
            f'<td class="note">{html.escape(note)}</td></tr>'
        )
    return (
        f'<table><thead><tr><th>metric</th>{head}<th class="note">meaning</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th[scope=row], td.note, th.note { text-align: left; }
td.note { color: #555; font-size: 0.9em; }
figure { margin: 2em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: 600; }
"""


def write_html_report(
    output_dir: Path,
    title: str,
    summary: Mapping[str, Any],
    comparison: Mapping[str, Mapping[str, Mapping[str, float]]],
    figures: Sequence[Figure],
) -> Path:
    """Write ``report.html``: summary, the model-vs-popularity table and the figures.

    Args:
        output_dir: ``output/data``; the figures' PNGs are already there.
        title: The page's heading.
        summary: Facts shown as a list (model, data sizes, best epoch, timings...).
        comparison: ``{split: {system: {metric: value}}}`` (see ``comparison_table``).
        figures: The figures, embedded in this order; each names its PNG file.

    Returns:
        The page's path.
    """
    facts = "".join(
        f"<dt>{html.escape(str(name))}</dt><dd>{_number(value)}</dd>"
        for name, value in summary.items()
    )
    sections = []
    for figure in figures:
        encoded = base64.b64encode(figure.path.read_bytes()).decode("ascii")
        caption = f"{figure.caption} " if figure.caption else ""
        sections.append(
            f'<figure id="{html.escape(figure.path.stem)}"><h2>{html.escape(figure.title)}</h2>'
            f'<img alt="{html.escape(figure.title)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{html.escape(caption)}(<code>{html.escape(figure.path.name)}</code>)"
            "</figcaption></figure>"
        )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><dl>{facts}</dl>"
        "<h2>Accuracy and beyond accuracy, model against popularity</h2>"
        f"{comparison_table(comparison)}{''.join(sections)}</body></html>\n"
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / HTML_REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path


def write_training_report(
    output_dir: Path,
    summary: Mapping[str, Any],
    history: list[dict[str, float]],
    best_epoch: int,
    comparison: Mapping[str, Mapping[str, Mapping[str, float]]],
    popularity: np.ndarray,
    recommendation_counts: Mapping[str, Mapping[str, np.ndarray]],
    trials: Sequence[Mapping[str, Any]] = (),
    trial_metric: str = "",
    maximize: bool = True,
) -> Path:
    """Every figure as a PNG, then ``report.html`` around them; returns the page's path.

    Args:
        output_dir: ``output/data``.
        summary: Facts for the top of the page.
        history: Per-epoch records (the learning curves).
        best_epoch: The selected epoch (0: none).
        comparison: ``{split: {system: {metric: value}}}`` (the table).
        popularity: ``[num_items]`` training interactions per item.
        recommendation_counts: ``{split: {system: counts}}``; the popularity-bias plot
            shows the test split's lists when there is one, else validation's.
        trials: Search trials (``number``, ``value``), if a search ran.
        trial_metric: The search objective's name.
        maximize: Whether a higher search objective is better.
    """
    figures = [
        Figure(
            "Learning curves",
            plot_learning_curve(output_dir, history, best_epoch),
            "Training loss and validation metrics per epoch; the dashed line marks the "
            "selected epoch.",
        )
    ]
    split = "test" if "test" in recommendation_counts else "validation"
    if split in recommendation_counts:
        figures.append(
            Figure(
                "Popularity bias",
                plot_popularity_bias(output_dir, popularity, recommendation_counts[split]),
                f"How often each item is in the {split} users' top-k lists against its "
                "training interactions (log-log; items with a zero on either axis are left "
                "out). A popularity-biased model's points climb with popularity.",
            )
        )
    if trials:
        figures.append(
            Figure(
                "Search trials",
                plot_trials(output_dir, trials, trial_metric, maximize),
                "Each trial's validation objective and the best so far.",
            )
        )
    return write_html_report(output_dir, "Training report", summary, comparison, figures)
