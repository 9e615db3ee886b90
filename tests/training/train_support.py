"""Helpers for the tests that run the ``train`` program as a subprocess."""

from __future__ import annotations

import re

from ncf_contract.metric_lines import METRIC_DEFINITIONS

#: Small and quick: a real NeuMF run on ``make_interactions()`` in a few seconds.
FAST_HYPERPARAMETERS: dict[str, object] = {
    "model_type": "neumf",
    "epochs": 2,
    "batch_size": 256,
    "gmf_dim": 8,
    "mlp_layers": [16, 8],
    "learning_rate": 0.01,
    "tuning": "off",  # the search and the refit have their own tests
    "refit": False,
}


def parse_metric_lines(stdout: str) -> list[dict[str, float]]:
    """What SageMaker would record: for each line, every MetricDefinitions match."""
    parsed = []
    for line in stdout.splitlines():
        found = {}
        for definition in METRIC_DEFINITIONS:
            match = re.search(definition["Regex"], line)
            if match:
                found[definition["Name"]] = float(match.group(1))
        if found:
            parsed.append(found)
    return parsed
