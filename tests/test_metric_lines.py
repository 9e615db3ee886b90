"""The metric regexes read exactly the values the training log lines carry."""

from __future__ import annotations

import re

from ncf_contract.metric_lines import METRIC_DEFINITIONS, format_metric_line


def parse(line: str) -> dict[str, float]:
    found = {}
    for definition in METRIC_DEFINITIONS:
        match = re.search(definition["Regex"], line)
        if match:
            found[definition["Name"]] = float(match.group(1))
    return found


def test_epoch_line_is_parsed() -> None:
    line = format_metric_line(
        "epoch=3",
        {"train_loss": 0.3121, "val_hr@10": 0.7012, "val_ndcg@10": 0.4213, "epoch_seconds": 8.1},
    )
    assert line.startswith("epoch=3 train_loss=0.312100 val_hr@10=0.701200")
    assert parse(line) == {
        "train:loss": 0.3121,
        "validation:hr": 0.7012,
        "validation:ndcg": 0.4213,
        "epoch:seconds": 8.1,
    }


def test_final_line_keeps_sampled_and_full_ranking_apart() -> None:
    line = format_metric_line(
        "final", {"test_hr@20": 0.8, "test_ndcg@20": 0.5, "test_full_hr@20": 0.1}
    )
    assert parse(line) == {"test:hr": 0.8, "test:ndcg": 0.5, "test:full_hr": 0.1}


def test_scientific_notation() -> None:
    assert parse("epoch=1 train_loss=1.5e-05") == {"train:loss": 1.5e-05}
