"""The model-directory contract between training and serving round-trips and rejects bad parts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ncf_contract.model_dir import (
    ITEMS_FILE,
    SEEN_FILE,
    USERS_FILE,
    WEIGHTS_FILE,
    ArtifactError,
    ModelArtifacts,
    ModelMetadata,
    load_model_dir,
    publish_model_dir,
    save_model_dir,
)
from ncf_contract.seen import SeenItems


def small_neumf() -> ModelArtifacts:
    rng = np.random.default_rng(0)
    users, items = 3, 5
    weights = {
        "gmf_user_embedding": rng.normal(size=(users, 4)),
        "gmf_item_embedding": rng.normal(size=(items, 4)),
        "mlp_user_embedding": rng.normal(size=(users, 2)),
        "mlp_item_embedding": rng.normal(size=(items, 2)),
        "mlp_kernel_0": rng.normal(size=(4, 3)),
        "mlp_bias_0": np.zeros(3),
        "output_kernel": rng.normal(size=(7, 1)),
        "output_bias": np.zeros(1),
    }
    return ModelArtifacts(
        metadata=ModelMetadata(
            model_type="neumf", feedback="implicit", output_activation="sigmoid", num_mlp_layers=1
        ),
        weights=weights,
        user_ids=np.array(["a", "b", "c"]),
        item_ids=np.array(["10", "11", "12", "13", "14"]),
        item_popularity=np.array([5, 4, 3, 2, 1]),
        seen=SeenItems.from_csr(np.array([0, 2, 2, 3]), np.array([0, 3, 4]), items),
    )


def test_round_trip(tmp_path: Path) -> None:
    original = small_neumf()
    save_model_dir(tmp_path, original)
    loaded = load_model_dir(tmp_path)
    assert loaded.metadata == original.metadata
    assert list(loaded.user_ids) == ["a", "b", "c"]
    assert list(loaded.item_ids) == ["10", "11", "12", "13", "14"]
    np.testing.assert_array_equal(loaded.seen.row(0), [0, 3])
    np.testing.assert_array_equal(loaded.seen.row(1), [])
    for name, array in original.weights.items():
        np.testing.assert_allclose(loaded.weights[name], array)


def test_missing_weight_is_named(tmp_path: Path) -> None:
    artifacts = small_neumf()
    weights = dict(artifacts.weights)
    del weights["mlp_kernel_0"]
    with pytest.raises(ArtifactError, match="mlp_kernel_0"):
        save_model_dir(tmp_path, replace(artifacts, weights=weights))


def test_embedding_rows_must_match_vocabulary(tmp_path: Path) -> None:
    artifacts = small_neumf()
    with pytest.raises(ArtifactError, match="gmf_user_embedding has 3 rows"):
        fewer_users = replace(
            artifacts,
            user_ids=np.array(["a", "b"]),
            seen=SeenItems.from_csr(np.array([0, 1, 2]), np.array([0, 1]), 5),
        )
        fewer_users.validate()


@pytest.mark.parametrize("victim", [WEIGHTS_FILE, SEEN_FILE, USERS_FILE, ITEMS_FILE])
def test_missing_or_corrupt_file_is_named(tmp_path: Path, victim: str) -> None:
    save_model_dir(tmp_path, small_neumf())
    (tmp_path / victim).unlink()
    with pytest.raises(ArtifactError, match=f"model file.*{victim}.*missing"):
        load_model_dir(tmp_path)
    (tmp_path / victim).write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="unreadable"):
        load_model_dir(tmp_path)


def test_publish_replaces_contents(tmp_path: Path) -> None:
    scratch, model_dir = tmp_path / "scratch", tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "stale.txt").write_text("old")
    save_model_dir(scratch, small_neumf())
    publish_model_dir(scratch, model_dir)
    assert not (model_dir / "stale.txt").exists()
    assert load_model_dir(model_dir).num_items == 5


def test_non_finite_weights_are_refused(tmp_path: Path) -> None:
    artifacts = small_neumf()
    weights = dict(artifacts.weights)
    weights["gmf_item_embedding"] = weights["gmf_item_embedding"].copy()
    weights["gmf_item_embedding"][2, 1] = np.nan
    with pytest.raises(ArtifactError, match=r"NaN or infinite.*gmf_item_embedding"):
        save_model_dir(tmp_path, replace(artifacts, weights=weights))


@pytest.mark.parametrize(
    ("indptr", "indices", "message"),
    [([0, 2, 2, 3], [0, 3, 99], "item indices"), ([0, 2, 2, 3], [0, -3, 4], "item indices")],
)
def test_tampered_seen_items_are_refused(
    tmp_path: Path, indptr: list[int], indices: list[int], message: str
) -> None:
    save_model_dir(tmp_path, small_neumf())
    np.savez(tmp_path / SEEN_FILE, indptr=np.array(indptr), indices=np.array(indices))
    with pytest.raises(ArtifactError, match=f"{SEEN_FILE}.*{message}"):
        load_model_dir(tmp_path)


def small_blend(shares: list[float]) -> ModelArtifacts:
    base = small_neumf()
    rng = np.random.default_rng(1)
    weights = {
        "ease_item_item": rng.normal(size=(5, 5)),
        "gmf_user_embedding": base.weights["gmf_user_embedding"],
        "gmf_item_embedding": base.weights["gmf_item_embedding"],
        "output_kernel": np.ones((4, 1)),
        "output_bias": np.zeros(1),
        "blend_weights": np.array(shares),
    }
    metadata = ModelMetadata(
        model_type="blend", feedback="implicit", output_activation="linear", num_mlp_layers=0
    )
    return replace(base, metadata=metadata, weights=weights)


def test_a_blend_carries_both_parts_and_two_shares(tmp_path: Path) -> None:
    save_model_dir(tmp_path / "good", small_blend([0.4, 0.6]))
    np.testing.assert_allclose(
        load_model_dir(tmp_path / "good").weights["blend_weights"], [0.4, 0.6]
    )
    for shares in ([0.4, 0.6, 0.0], [1.5, -0.5]):
        with pytest.raises(ArtifactError, match="blend_weights must hold two shares"):
            save_model_dir(tmp_path / "bad", small_blend(shares))
    weights = dict(small_blend([0.5, 0.5]).weights)
    del weights["ease_item_item"]
    with pytest.raises(ArtifactError, match="ease_item_item"):
        save_model_dir(tmp_path / "partial", replace(small_blend([0.5, 0.5]), weights=weights))
