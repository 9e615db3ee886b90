"""The hybrid family: the documented formula, cold ids from attributes, learning from attributes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from ncf_test_support import single_fit_config

keras = pytest.importorskip("keras")

from training.attributes import attach_attributes  # noqa: E402
from training.dataset import build_dataset  # noqa: E402
from training.families import family_for  # noqa: E402
from training.families.hybrid import HybridFamily, HybridModel  # noqa: E402
from training.synthetic import (  # noqa: E402
    make_interactions,
    make_item_attributes,
    make_user_attributes,
)
from training.trainer import train  # noqa: E402


def test_formula_and_export_with_cold_ids() -> None:
    rng = np.random.default_rng(0)
    item_features = sp.random(9, 5, density=0.4, random_state=1, format="csr", dtype=np.float32)
    user_features = sp.random(12, 3, density=0.5, random_state=2, format="csr", dtype=np.float32)
    item_known = np.arange(9) < 7  # items 7 and 8 are cold
    user_known = np.arange(12) != 4
    model = HybridModel(
        12, 9, 4, 0.0, "sigmoid", user_known, item_known, user_features, item_features
    ).build_all()
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    weights = model.export_weights()
    assert set(weights) == {
        "gmf_user_embedding",
        "gmf_item_embedding",
        "item_bias",
        "output_kernel",
        "output_bias",
        "user_feature_embedding",
    }
    np.testing.assert_array_equal(weights["output_kernel"], np.ones((4, 1)))
    # A cold id's vector is its attribute part alone.
    assert model.items.feature_table is not None
    item_table = np.asarray(model.items.feature_table)
    cold_items = item_features[7:].toarray() @ item_table
    np.testing.assert_allclose(weights["gmf_item_embedding"][7:], cold_items[:, :4], rtol=1e-5)
    np.testing.assert_allclose(weights["item_bias"][7:], cold_items[:, 4], rtol=1e-5)
    cold_user = user_features[4].toarray() @ weights["user_feature_embedding"]
    np.testing.assert_allclose(weights["gmf_user_embedding"][4], cold_user[0], rtol=1e-5)
    # The Keras forward pass is the documented dot product on the exported vectors.
    users, items = np.array([0, 4, 11, 3]), np.array([8, 0, 7, 2])
    logits = (
        np.einsum(
            "nd,nd->n", weights["gmf_user_embedding"][users], weights["gmf_item_embedding"][items]
        )
        + weights["item_bias"][items]
        + weights["output_bias"][0]
    )
    scores = keras.ops.convert_to_numpy(model((users, items)))[:, 0]
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits)), rtol=1e-5)


def test_family_is_chosen_by_model_type() -> None:
    assert isinstance(family_for("hybrid"), HybridFamily)
    assert single_fit_config({"model_type": "hybrid"}).model_type == "hybrid"


def test_cold_items_are_ranked_from_their_attributes(tmp_path: Path) -> None:
    """Items never seen in training are ranked for a user by the attributes they share."""
    interactions = make_interactions(num_users=200, num_items=120)
    items = make_item_attributes(num_items=120)
    cold_ids = [f"i{n}" for n in range(100, 120)]
    warm = interactions[~interactions["item_id"].isin(cold_ids)]
    dataset = build_dataset(warm, None, None, seed=0, cold_item_ids=items["item_id"])
    config = single_fit_config(
        {
            "model_type": "hybrid",
            "epochs": 6,
            "batch_size": 256,
            "gmf_dim": 16,
            "learning_rate": 0.01,
        }
    )
    dataset = attach_attributes(dataset, items, make_user_attributes(200), config)
    result = train(config, dataset, tmp_path, emit=lambda line: None)
    assert result.model is not None
    weights = result.model.model_weights()
    cold = dataset.items.index_of(cold_ids)
    assert (dataset.item_popularity[cold] == 0).all()
    # Each user's favourite cold item should share the user's taste cluster (chance: 1 in 4).
    scores = result.model.scorer.score_all_items(np.arange(dataset.num_users))[:, cold]
    favourite_cluster = (np.argmax(scores, axis=1) + 100) % 4
    own_items = dataset.train_seen
    user_cluster = np.array(
        [
            np.bincount(
                [int(dataset.items.ids[i][1:]) % 4 for i in own_items.row(u)], minlength=4
            ).argmax()
            for u in range(dataset.num_users)
        ]
    )
    agreement = float(np.mean(favourite_cluster == user_cluster))
    assert agreement > 0.6, agreement
    assert weights["gmf_item_embedding"].shape == (120, 16)


@pytest.mark.slow
def test_train_job_with_attribute_channels_serves_cold_items(sagemaker_layout) -> None:
    """The real ``train`` program with items (cold ones included) and users, then serving."""
    from ncf_test_support import run_container_script

    from inference.instances import parse_instance
    from inference.recommender import Recommender
    from ncf_contract.model_dir import load_model_dir

    interactions = make_interactions()
    cold_ids = ["i118", "i119", "cold-1"]
    items = make_item_attributes(num_items=121)
    items.loc[120, "item_id"] = "cold-1"  # an item that occurs in no interaction
    sagemaker_layout.write_channel("train", interactions[~interactions["item_id"].isin(cold_ids)])
    sagemaker_layout.write_channel("items", items, name="items.tsv.gz")
    sagemaker_layout.write_channel("users", make_user_attributes(), name="users.parquet")
    sagemaker_layout.write_config(
        {
            "model_type": "hybrid",
            "epochs": 2,
            "batch_size": 256,
            "gmf_dim": 8,
            "recency_half_life": 365,
            "trending_window": 30,
            "item_attribute_kinds": {"title": "text"},
        },
        channels=("train", "items", "users"),
    )
    result = run_container_script("train", sagemaker_layout.base_dir, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    artifacts = load_model_dir(sagemaker_layout.model_dir)
    assert artifacts.metadata.model_type == "hybrid"
    assert artifacts.item_attributes is not None and artifacts.content is not None
    assert artifacts.item_trending is not None and artifacts.item_trending.sum() > 0
    recommender = Recommender(artifacts)
    positions = [recommender.item_index[item] for item in cold_ids]
    assert (artifacts.item_popularity[positions] == 0).all()
    request = parse_instance({"user_id": "u1", "k": 121, "exclude_seen": False}, "instance")
    [answer] = recommender.recommend([request])  # type: ignore[list-item]
    assert set(cold_ids) <= {item["item_id"] for item in answer["items"]}
    new_user = parse_instance(
        {"user_id": "new", "k": 5, "user_attributes": {"segment": "s1"}}, "instance"
    )
    [answer] = recommender.recommend([new_user])  # type: ignore[list-item]
    assert answer["from"] == "user_attributes" and len(answer["items"]) == 5
    similar = parse_instance({"item_id": "cold-1", "k": 5, "by": "content"}, "instance")
    [answer] = recommender.similar([similar], ["instance"])  # type: ignore[list-item]
    # cold-1 has item 120's attributes: cluster 0 (genre g0, theme "space").
    assert all(int(item["item_id"][1:]) % 4 == 0 for item in answer["items"])
