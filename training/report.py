"""The training report in ``output/data/``: ``metrics.json`` and a learning-curve PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
LEARNING_CURVE_FILE = "learning_curve.png"


def write_metrics(output_dir: Path, report: dict[str, Any]) -> Path:
    """Write ``report`` (history, best epoch, final metrics, timings) as ``metrics.json``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / METRICS_FILE
    path.write_text(json.dumps(report, indent=2, sort_keys=True, default=float) + "\n")
    return path


def plot_learning_curve(output_dir: Path, history: list[dict[str, float]], best_epoch: int) -> Path:
    """Plot training loss and every validation metric per epoch; returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir.mkdir(parents=True, exist_ok=True)
    epochs = [record["epoch"] for record in history]
    metric_names = [
        name
        for name in (history[0] if history else {})
        if name not in ("epoch", "train_loss", "epoch_seconds")
    ]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [record["train_loss"] for record in history], marker="o")
    loss_axis.set(title="training loss", xlabel="epoch", ylabel="loss")
    for name in metric_names:
        metric_axis.plot(epochs, [record[name] for record in history], marker="o", label=name)
    if best_epoch:
        metric_axis.axvline(
            best_epoch, color="grey", linestyle="--", label=f"best epoch {best_epoch}"
        )
    metric_axis.set(title="validation", xlabel="epoch")
    metric_axis.legend()
    for axis in (loss_axis, metric_axis):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path = output_dir / LEARNING_CURVE_FILE
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
