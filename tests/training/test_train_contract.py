"""The `train` program end to end: the SageMaker contract on a temporary /opt/ml."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ncf_test_support import QUICK_HYPERPARAMETERS, SageMakerLayout, run_container_script
from train_support import parse_metric_lines

from ncf_contract.model_dir import SAVED_MODEL_DIR, load_model_dir
from training.synthetic import make_interactions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[SageMakerLayout, object, np.ndarray, np.ndarray]:
    """One run with a train and a test channel (each user's latest interaction held out)."""
    layout = SageMakerLayout(tmp_path_factory.mktemp("contract") / "opt_ml")
    layout.base_dir.mkdir()
    frame = make_interactions()
    latest = frame.groupby("user_id").tail(1)
    layout.write_channel("train", frame.drop(latest.index), name="nested/part-0.csv.gz")
    layout.write_channel("test", latest, name="test.parquet")
    layout.write_config({**QUICK_HYPERPARAMETERS, "epochs": 5}, channels=("train", "test"))
    result = run_container_script("train", layout.base_dir)
    assert result.returncode == 0, f"training failed:\n{result.stdout}\n{result.stderr}"
    return layout, result, latest["user_id"].to_numpy(), latest["item_id"].to_numpy()


def test_model_directory_is_complete(trained) -> None:
    layout, _, _, _ = trained
    artifacts = load_model_dir(layout.model_dir)
    assert artifacts.metadata.model_type == "neumf"
    assert artifacts.metadata.output_activation == "sigmoid"
    assert artifacts.num_users == 200 and artifacts.num_items == 120
    assert artifacts.metadata.config["epochs"] == 5
    assert artifacts.metadata.data["num_users"] == 200
    assert {"tensorflow", "keras", "numpy", "pandas"} <= set(artifacts.metadata.versions) | {
        "tensorflow"
    } and "keras" in artifacts.metadata.versions
    assert "test" in artifacts.metadata.metrics
    assert artifacts.user_ids[0].startswith("u")
    # Nothing but the model: no staging leftovers beside or inside it.
    assert not list(layout.base_dir.glob(".model-staging-*"))
    assert not layout.failure_file.exists()


def test_saved_model_matches_the_numpy_formula(trained) -> None:
    tf = pytest.importorskip("tensorflow")
    from inference.scoring import NcfScorer

    layout, _, _, _ = trained
    artifacts = load_model_dir(layout.model_dir)
    loaded = tf.saved_model.load(str(layout.model_dir / SAVED_MODEL_DIR))
    serve = loaded.signatures["serving_default"]
    rng = np.random.default_rng(0)
    users = rng.integers(artifacts.num_users, size=64).astype(np.int64)
    items = rng.integers(artifacts.num_items, size=64).astype(np.int64)
    out = serve(user_index=tf.constant(users), item_index=tf.constant(items))
    assert set(out) == {"score"}
    assert out["score"].dtype == tf.float32 and out["score"].shape == (64,)
    expected = NcfScorer.from_artifacts(artifacts).score_pairs(users, items)
    np.testing.assert_allclose(out["score"].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_report_and_metric_lines(trained) -> None:
    layout, result, _, _ = trained
    report = json.loads((layout.output_data_dir / "metrics.json").read_text())
    assert [record["epoch"] for record in report["history"]] == [1, 2, 3, 4, 5]
    assert 1 <= report["best_epoch"] <= 5
    assert set(report["validation"]) == {"hr", "ndcg"}
    assert {"hr", "ndcg", "full_hr", "full_ndcg"} <= set(report["test"])
    assert report["timings"]["total_seconds"] > 0
    png = (layout.output_data_dir / "learning_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG")

    parsed = parse_metric_lines(result.stdout)
    epochs = [p for p in parsed if "train:loss" in p]
    assert len(epochs) == 5
    assert all({"validation:hr", "validation:ndcg", "epoch:seconds"} <= set(p) for p in epochs)
    final = parsed[-1]
    assert final["test:hr"] == pytest.approx(report["test"]["hr"], abs=1e-6)
    assert final["test:full_hr"] == pytest.approx(report["test"]["full_hr"], abs=1e-6)
    assert "test:hr" not in epochs[-1]  # test figures only once, at the end
    best = report["history"][report["best_epoch"] - 1]
    assert report["validation"]["hr"] == max(r["hr"] for r in report["history"]) == best["hr"]


def test_model_beats_popularity(trained) -> None:
    """Full ranking of each user's held-out item: the model clearly ahead of popularity."""
    layout, _, test_users, test_items = trained
    report = json.loads((layout.output_data_dir / "metrics.json").read_text())
    artifacts = load_model_dir(layout.model_dir)
    user_index = {u: i for i, u in enumerate(artifacts.user_ids)}
    item_index = {u: i for i, u in enumerate(artifacts.item_ids)}
    hits = []
    for user, item in zip(test_users, test_items, strict=True):
        u, target = user_index[user], item_index[item]
        scores = artifacts.item_popularity.astype(float)
        seen = artifacts.seen.row(u)
        scores[seen[seen != target]] = -np.inf
        hits.append(np.count_nonzero(scores > scores[target]) < 10)
    popularity_hr = float(np.mean(hits))
    assert report["test"]["full_hr"] > popularity_hr + 0.05, (report["test"], popularity_hr)
    # The report's own popularity baseline is the same computation.
    assert report["comparison"]["test"]["popularity"]["full_hr"] == pytest.approx(popularity_hr)


def test_report_sets_beyond_accuracy_beside_popularity(trained) -> None:
    layout, _, _, _ = trained
    report = json.loads((layout.output_data_dir / "metrics.json").read_text())
    beyond = {"coverage", "distributional_coverage", "gini", "novelty", "ild", "arp", "aplt"}
    for split, accuracy in (("validation", {"hr", "ndcg"}), ("test", {"hr", "full_hr"})):
        model, popularity = (report["comparison"][split][s] for s in ("model", "popularity"))
        assert accuracy | beyond <= set(model) and accuracy | beyond <= set(popularity)
        # Popularity gives nearly everyone the same few items: less coverage, more Gini.
        assert model["coverage"] > popularity["coverage"]
        assert model["gini"] < popularity["gini"]
        assert model["arp"] < popularity["arp"]
    assert report["comparison"]["test"]["model"]["hr"] == report["test"]["hr"]
    assert report["timings"]["beyond_accuracy_seconds"] > 0
    page = (layout.output_data_dir / "report.html").read_text()
    for title, png in (
        ("Learning curves", "learning_curve.png"),
        ("Popularity bias", "popularity_bias.png"),
    ):
        assert f"<h2>{title}</h2>" in page and f"<code>{png}</code>" in page
        assert (layout.output_data_dir / png).read_bytes().startswith(b"\x89PNG")
