"""The training report's HTML page: it exists, embeds and names every figure, holds the table."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from training import report


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs))


def build_report(output_dir: Path) -> Path:
    history = [
        {"epoch": epoch, "train_loss": 1.0 / epoch, "hr": 0.5 + epoch / 100, "ndcg": 0.3}
        for epoch in (1, 2, 3)
    ]
    rng = np.random.default_rng(0)
    popularity = rng.integers(0, 500, size=200)
    figures = [
        report.Figure(
            "Learning curves",
            report.plot_learning_curve(output_dir, history, best_epoch=2),
            "Training loss and validation metrics per epoch.",
        ),
        report.Figure(
            "Popularity bias",
            report.plot_popularity_bias(
                output_dir,
                popularity,
                {"model": rng.integers(0, 50, size=200), "popularity": np.eye(200)[0] * 600},
            ),
        ),
        report.Figure(
            "Search <trials>",
            report.plot_trials(
                output_dir,
                [
                    {"number": 0, "value": 0.5},
                    {"number": 1, "value": None},
                    {"number": 2, "value": 0.7},
                ],
                "hr@10",
            ),
        ),
    ]
    comparison = {
        "validation": {
            "model": {"hr": 0.7, "ndcg": 0.42, "coverage": 0.35, "gini": 0.8, "arp": 1234.5},
            "popularity": {"hr": 0.45, "ndcg": 0.25, "coverage": 0.02, "gini": 0.99},
        },
        "test": {"model": {"hr": 0.69}, "popularity": {"hr": 0.44}},
    }
    return report.write_html_report(
        output_dir, "NCF training report", {"model": "gmf", "users": 6040}, comparison, figures
    )


def test_html_report_exists_and_names_every_figure(tmp_path: Path) -> None:
    path = build_report(tmp_path)
    assert path == tmp_path / report.HTML_REPORT_FILE
    page = path.read_text(encoding="utf-8")
    for title, file_name in (
        ("Learning curves", report.LEARNING_CURVE_FILE),
        ("Popularity bias", report.POPULARITY_BIAS_FILE),
        ("Search &lt;trials&gt;", report.TRIALS_FILE),
    ):
        assert f"<h2>{title}</h2>" in page
        assert f"<code>{file_name}</code>" in page
        assert (tmp_path / file_name).read_bytes().startswith(b"\x89PNG")  # the PNGs stay
    parser = _Images()
    parser.feed(page)
    assert [image["alt"] for image in parser.images] == [
        "Learning curves",
        "Popularity bias",
        "Search <trials>",
    ]
    for image in parser.images:
        source = image["src"] or ""
        assert source.startswith("data:image/png;base64,")  # static: no file or network links
        assert base64.b64decode(source.split(",", 1)[1]).startswith(b"\x89PNG")


def test_html_report_table_puts_model_and_popularity_side_by_side(tmp_path: Path) -> None:
    page = build_report(tmp_path).read_text(encoding="utf-8")
    table = page[page.index("<table>") : page.index("</table>")]
    headers = re.findall(r"<th>([^<]*)<br>([^<]*)</th>", table)
    assert headers == [
        ("validation", "model"),
        ("validation", "popularity"),
        ("test", "model"),
        ("test", "popularity"),
    ]
    coverage_row = re.search(r'<th scope="row">coverage</th>(.*?)</tr>', table)
    assert coverage_row is not None
    assert re.findall(r"<td>([^<]*)</td>", coverage_row.group(1)) == ["0.3500", "0.0200", "–", "–"]
    assert "1,234.5" in table
    assert "share of training items recommended to anyone (higher is better)" in table
