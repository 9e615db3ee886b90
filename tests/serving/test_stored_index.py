"""The first-stage index in the model directory: written from the threshold on, validated,
and left out (never failing the load) when it does not fit the model."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from serving_support import random_artifacts

from inference.app import create_app, load_recommender
from inference.instances import RecommendRequest
from inference.recommender import Recommender
from inference.retrieval import RetrievalSettings
from inference.settings import ServingSettings
from ncf_contract import first_stage
from ncf_contract.first_stage import INDEX_FILE, INDEX_INFO_FILE, FirstStageIndex
from ncf_contract.model_dir import ArtifactError, load_model_dir, save_model_dir

#: The threshold the tests set, so that a few hundred items make a "large" catalog.
THRESHOLD = 500


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(first_stage, "APPROXIMATE_FROM_ITEMS", THRESHOLD)


@pytest.mark.parametrize(
    ("model_type", "num_items", "stored", "dim"),
    [
        ("gmf", THRESHOLD, True, 4),
        ("neumf", THRESHOLD + 100, True, 4 + 8),  # [gmf (4), first MLP layer (8)]
        ("gmf", THRESHOLD - 1, False, 0),
        ("mlp", THRESHOLD + 100, False, 0),  # no first stage
    ],
)
def test_the_export_stores_the_index_exactly_when_auto_would_search_it(
    tmp_path: Path, model_type: str, num_items: int, stored: bool, dim: int
) -> None:
    artifacts = random_artifacts(model_type=model_type, num_users=10, num_items=num_items)
    save_model_dir(tmp_path, artifacts)
    assert (tmp_path / INDEX_FILE).is_file() is stored
    assert (tmp_path / INDEX_INFO_FILE).is_file() is stored
    loaded = load_model_dir(tmp_path)
    if not stored:
        assert loaded.first_stage_index is None
        return
    index = loaded.first_stage_index
    assert index is not None and index.path == tmp_path / INDEX_FILE
    info = json.loads((tmp_path / INDEX_INFO_FILE).read_text())
    assert (info["num_items"], info["dim"]) == (num_items, dim)
    assert info["num_lists"] == first_stage.number_of_lists(num_items)
    meta = artifacts.metadata
    assert info["fingerprint"] == first_stage.fingerprint(
        artifacts.weights, meta.model_type, meta.num_mlp_layers
    )
    read = index.read(loaded.weights, meta.model_type, meta.num_mlp_layers)
    assert (read.ntotal, read.d, read.nlist) == (num_items, dim, info["num_lists"])


def test_the_fingerprint_follows_every_weight_the_vectors_come_from() -> None:
    artifacts = random_artifacts(model_type="neumf", num_items=50)
    meta = artifacts.metadata
    original = first_stage.fingerprint(artifacts.weights, "neumf", meta.num_mlp_layers)
    for name in ("gmf_item_embedding", "mlp_item_embedding", "mlp_kernel_0", "mlp_bias_0"):
        weights = dict(artifacts.weights)
        changed = weights[name].copy()
        changed.flat[-1] += 1e-3
        weights[name] = changed
        assert first_stage.fingerprint(weights, "neumf", meta.num_mlp_layers) != original, name
    # The user side and the deeper layers are not in the item vectors.
    weights = {
        **artifacts.weights,
        "gmf_user_embedding": artifacts.weights["gmf_user_embedding"] + 1,
    }
    weights["mlp_kernel_1"] = weights["mlp_kernel_1"] + 1
    assert first_stage.fingerprint(weights, "neumf", meta.num_mlp_layers) == original


def test_validation_refuses_an_index_that_does_not_fit_the_model(tmp_path: Path) -> None:
    artifacts = random_artifacts(model_type="gmf", num_users=10, num_items=THRESHOLD)
    save_model_dir(tmp_path / "gmf", artifacts)
    index = load_model_dir(tmp_path / "gmf").first_stage_index
    assert index is not None
    wrong_count = dataclasses.replace(index, info=dataclasses.replace(index.info, num_items=7))
    with pytest.raises(ArtifactError, match=r"first_stage.faiss does not fit.*7 items"):
        dataclasses.replace(artifacts, first_stage_index=wrong_count).validate()
    wrong_dim = dataclasses.replace(index, info=dataclasses.replace(index.info, dim=5))
    with pytest.raises(ArtifactError, match=r"x 5 dims; the model's first stage is 500 x 4"):
        dataclasses.replace(artifacts, first_stage_index=wrong_dim).validate()
    mlp = random_artifacts(model_type="mlp", num_users=10, num_items=THRESHOLD)
    with pytest.raises(ArtifactError, match="a mlp model has no first stage"):
        dataclasses.replace(mlp, first_stage_index=index).validate()
    # Saving another model's index with these weights: refused, nothing silently shipped.
    other = random_artifacts(model_type="gmf", num_users=10, num_items=THRESHOLD, seed=1)
    with pytest.raises(ArtifactError, match="built from other weights"):
        save_model_dir(tmp_path / "other", dataclasses.replace(other, first_stage_index=index))
    # Re-saving a loaded model copies its index file.
    save_model_dir(tmp_path / "copy", load_model_dir(tmp_path / "gmf"))
    assert (tmp_path / "copy" / INDEX_FILE).read_bytes() == (
        tmp_path / "gmf" / INDEX_FILE
    ).read_bytes()


@pytest.mark.parametrize("damage", ["no description", "no index file", "bad json", "wrong count"])
def test_an_index_whose_description_does_not_fit_is_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    save_model_dir(tmp_path, random_artifacts(model_type="gmf", num_users=10, num_items=THRESHOLD))
    info_file, index_file = tmp_path / INDEX_INFO_FILE, tmp_path / INDEX_FILE
    if damage == "no description":
        info_file.unlink()
    elif damage == "no index file":
        index_file.unlink()
    elif damage == "bad json":
        info_file.write_text("{not json")
    else:
        info = json.loads(info_file.read_text())
        info_file.write_text(json.dumps({**info, "num_items": THRESHOLD + 1}))
    with caplog.at_level(logging.WARNING, logger="ncf_contract.model_dir"):
        loaded = load_model_dir(tmp_path)
    assert loaded.first_stage_index is None
    assert "first-stage index" in caplog.text and "left out" in caplog.text


def test_a_fresh_build_and_the_stored_index_are_the_same_index(tmp_path: Path) -> None:
    artifacts = random_artifacts(model_type="neumf", num_users=10, num_items=THRESHOLD)
    save_model_dir(tmp_path, artifacts)
    meta = artifacts.metadata
    built = FirstStageIndex.build(artifacts.weights, "neumf", meta.num_mlp_layers).index
    stored = load_model_dir(tmp_path).first_stage_index
    assert stored is not None
    read = stored.read(artifacts.weights, "neumf", meta.num_mlp_layers)
    import faiss

    assert faiss.serialize_index(read).tobytes() == faiss.serialize_index(built).tobytes()
    # The exported vectors are the serving scorer's: the same shared computation.
    from inference.scoring import NcfScorer

    vectors = NcfScorer.from_artifacts(artifacts).first_stage_items()
    terms = first_stage.item_terms(artifacts.weights, "neumf", meta.num_mlp_layers)
    expected = first_stage.first_stage_vectors(terms)
    assert vectors is not None and expected is not None
    np.testing.assert_array_equal(vectors, expected)


def _lists(recommender: Recommender, users: range) -> list[list[str]]:
    requests = [RecommendRequest(user_id=f"u{n}", k=10) for n in users]
    return [[i["item_id"] for i in p["items"]] for p in recommender.recommend(requests)]


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on the index build: one entry per index built."""
    builds: list[int] = []
    build = first_stage.build_index

    def counted(vectors: np.ndarray, seed: int = first_stage.INDEX_SEED) -> object:
        builds.append(len(vectors))
        return build(vectors, seed)

    monkeypatch.setattr(first_stage, "build_index", counted)
    return builds


@pytest.mark.parametrize("model_type", ["gmf", "neumf"])
def test_serving_reads_the_stored_index_and_finds_what_an_index_built_at_load_finds(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    model_type: str,
) -> None:
    save_model_dir(
        tmp_path, random_artifacts(model_type=model_type, num_users=40, num_items=THRESHOLD + 100)
    )
    builds = _count_builds(monkeypatch)
    settings = RetrievalSettings(candidates=30, nprobe=3)  # auto: the catalog is over THRESHOLD
    loaded = load_model_dir(tmp_path)
    with caplog.at_level(logging.INFO, logger="inference.retrieval"):
        stored = Recommender(loaded, retrieval=settings)
    assert builds == []  # read, not built
    assert stored.approximate is not None and stored.approximate.nprobe == 3
    assert stored.approximate._index.nprobe == 3  # NCF_ANN_NPROBE, not the stored default
    assert f"read from {tmp_path / INDEX_FILE}" in caplog.text
    at_load = Recommender(dataclasses.replace(loaded, first_stage_index=None), retrieval=settings)
    assert builds == [THRESHOLD + 100]
    assert at_load.approximate is not None
    assert (stored.approximate.origin, at_load.approximate.origin) == ("stored", "built")
    assert _lists(stored, range(40)) == _lists(at_load, range(40))
    exact = Recommender(loaded, retrieval=RetrievalSettings(mode="exact"))
    assert exact.approximate is None  # exact never reads the file


@pytest.mark.parametrize("damage", ["stale", "corrupt", "truncated", "missing"])
def test_an_unusable_stored_index_is_built_at_load_with_a_warning_and_the_server_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    model_dir = tmp_path / "model"
    artifacts = random_artifacts(model_type="neumf", num_users=40, num_items=THRESHOLD)
    save_model_dir(model_dir, artifacts)
    index_file = model_dir / INDEX_FILE
    if damage == "stale":
        # Another job's index beside these weights: same shapes, other vectors.
        other = tmp_path / "other"
        save_model_dir(
            other, random_artifacts(model_type="neumf", num_users=40, num_items=THRESHOLD, seed=1)
        )
        for name in (INDEX_FILE, INDEX_INFO_FILE):
            (model_dir / name).write_bytes((other / name).read_bytes())
    elif damage == "corrupt":
        index_file.write_bytes(b"not a faiss index" * 100)
    elif damage == "truncated":
        index_file.write_bytes(index_file.read_bytes()[: index_file.stat().st_size // 2])
    else:  # a model directory exported before the index was stored
        index_file.unlink()
        (model_dir / INDEX_INFO_FILE).unlink()
    builds = _count_builds(monkeypatch)
    settings = ServingSettings.from_env(
        {"SAGEMAKER_BASE_DIR": str(tmp_path), "NCF_ANN_CANDIDATES": "30", "NCF_ANN_NPROBE": "3"}
    )
    with caplog.at_level(logging.WARNING):
        recommender, error = load_recommender(settings.model_dir, retrieval=settings.retrieval)
    assert error is None and recommender is not None
    assert builds == [THRESHOLD]
    expected = {
        "stale": "built from other weights",
        "corrupt": "is unreadable",
        "truncated": "is unreadable",
        "missing": "has no first_stage.faiss",
    }[damage]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(expected in message and "at load" in message for message in warnings), warnings
    client = create_app(settings, recommender).test_client()
    assert client.get("/ping").status_code == 200
    response = client.post(
        "/invocations", json={"instances": [{"user_id": f"u{n}", "k": 10} for n in range(40)]}
    )
    assert response.status_code == 200
    fresh = dataclasses.replace(artifacts, first_stage_index=None)
    expected_lists = _lists(Recommender(fresh, retrieval=settings.retrieval), range(40))
    answered = [[i["item_id"] for i in p["items"]] for p in response.get_json()["predictions"]]
    assert answered == expected_lists
