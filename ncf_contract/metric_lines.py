"""The metric lines training logs and the regexes SageMaker uses to read them.

Training prints one line per epoch, and one with the final test figures::

    epoch=3 train_loss=0.312100 val_hr@10=0.701200 val_ndcg@10=0.421300 epoch_seconds=8.1
    final test_hr@10=0.702000 test_ndcg@10=0.423100 test_full_hr@10=0.101000 ...

``METRIC_DEFINITIONS`` is what a training job's ``MetricDefinitions`` should be;
the launch scripts import it rather than repeating the patterns. The metric
names are cut-off independent (``validation:hr``), the regexes accept any K.
"""

from __future__ import annotations

from collections.abc import Mapping

_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

#: (metric name in SageMaker, key in the log line; ``@K`` stands for any cut-off)
_LOGGED_METRICS: tuple[tuple[str, str], ...] = (
    ("train:loss", "train_loss"),
    ("validation:hr", "val_hr@K"),
    ("validation:ndcg", "val_ndcg@K"),
    ("validation:rmse", "val_rmse"),
    ("test:hr", "test_hr@K"),
    ("test:ndcg", "test_ndcg@K"),
    ("test:full_hr", "test_full_hr@K"),
    ("test:full_ndcg", "test_full_ndcg@K"),
    ("test:rmse", "test_rmse"),
    ("epoch:seconds", "epoch_seconds"),
)


def _regex(key: str) -> str:
    # A leading boundary keeps "val_hr@10" from matching inside "test_full_hr@10".
    return r"(?:^|\s)" + key.replace("@K", r"@\d+") + "=" + _NUMBER


#: SageMaker ``MetricDefinitions``: ``[{"Name": ..., "Regex": ...}, ...]``.
METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": _regex(key)} for name, key in _LOGGED_METRICS
]

#: The metric a tuning job maximises by default.
OBJECTIVE_METRIC = "validation:hr"


def format_metric_line(prefix: str, values: Mapping[str, float | int]) -> str:
    """One log line ``prefix key=value ...`` that ``METRIC_DEFINITIONS`` can parse.

    Args:
        prefix: ``"epoch=3"`` or ``"final"``; written first.
        values: Keys as in the log (``"val_hr@10"``), numbers as values.
    """
    parts = [prefix] if prefix else []
    for key, value in values.items():
        parts.append(f"{key}={value}" if isinstance(value, int) else f"{key}={value:.6f}")
    return " ".join(parts)
