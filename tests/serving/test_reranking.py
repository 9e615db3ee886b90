"""Re-ranking at serving: diversity (maximal marginal relevance) and the popularity penalty."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import serving_support
from flask.testing import FlaskClient

from inference.app import create_app, create_app_from_settings
from inference.instances import Reranking
from inference.recommender import Recommender, mmr_order
from inference.settings import ServingSettings, SettingsError
from ncf_contract.model_dir import ModelArtifacts, load_model_dir, save_model_dir

random_model_dir = serving_support.random_model_dir  # the shared fixture, under its own name


@pytest.fixture(scope="module")
def recommender(random_model_dir: Path) -> Recommender:
    return Recommender(load_model_dir(random_model_dir))


def client_for(recommender: Recommender, model_dir: Path) -> FlaskClient:
    return create_app(ServingSettings(model_dir=model_dir), recommender).test_client()


def recommend(client: FlaskClient, instances: list[dict[str, object]]) -> list[dict[str, object]]:
    response = client.post(
        "/invocations", data=json.dumps({"instances": instances}), content_type="application/json"
    )
    assert response.status_code == 200, response.data
    body = response.get_json()
    assert isinstance(body, dict)
    return body["predictions"]


def item_ids(prediction: dict[str, object]) -> list[str]:
    return [entry["item_id"] for entry in prediction["items"]]  # type: ignore[attr-defined, index]


def handmade_artifacts() -> ModelArtifacts:
    """One user; GMF logit of item i = its first embedding coordinate.

    A (3, 1, 0) and B (2.9, 1, 0) point the same way (cosine 0.9999); C (2.5, 0, 5) is
    less relevant but unlike A (cosine 0.42); D (1, 0, 0) is the least relevant.
    Plain order: A, B, C, D.
    """
    base = serving_support.random_artifacts(model_type="gmf", num_users=1, num_items=4)
    weights = {
        "gmf_user_embedding": np.array([[1.0, 0.0, 0.0]], np.float32),
        "gmf_item_embedding": np.array(
            [[3.0, 1.0, 0.0], [2.9, 1.0, 0.0], [2.5, 0.0, 5.0], [1.0, 0.0, 0.0]], np.float32
        ),
        "output_kernel": np.ones((3, 1), np.float32),
        "output_bias": np.zeros(1, np.float32),
    }
    return dataclasses.replace(
        base,
        weights=weights,
        item_ids=np.array(["A", "B", "C", "D"]),
        item_popularity=np.array([1000, 10, 100, 0], np.int64),
        seen=base.seen.from_pairs(np.empty(0), np.empty(0), 1, 4),
    )


@pytest.fixture(scope="module")
def handmade(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recommender, Path]:
    directory = tmp_path_factory.mktemp("handmade") / "model"
    save_model_dir(directory, handmade_artifacts())
    return Recommender.from_model_dir(directory), directory


def test_plain_order_of_the_handmade_model(handmade: tuple[Recommender, Path]) -> None:
    client = client_for(*handmade)
    assert item_ids(recommend(client, [{"user_id": "u0", "k": 4}])[0]) == ["A", "B", "C", "D"]


def test_mmr_moves_an_unlike_item_ahead_of_a_near_duplicate(
    handmade: tuple[Recommender, Path],
) -> None:
    # λ = 0.5: relevance scaled over the pool is A 1, B 0.95, C 0.75, D 0. After A,
    # B gains 0.5 * 0.95 - 0.5 * 0.9999 < 0, C gains 0.5 * 0.75 - 0.5 * 0.42 = 0.16.
    client = client_for(*handmade)
    prediction = recommend(client, [{"user_id": "u0", "k": 4, "diversity": 0.5}])[0]
    assert item_ids(prediction) == ["A", "C", "B", "D"]
    # Scores stay the model's: sigmoid of each item's logit (its first coordinate).
    scores = {entry["item_id"]: entry["score"] for entry in prediction["items"]}  # type: ignore[attr-defined]
    assert scores["C"] == pytest.approx(1 / (1 + math.exp(-2.5)), abs=1e-6)
    # A small weight on diversity keeps the plain order.
    small = recommend(client, [{"user_id": "u0", "k": 4, "diversity": 0.01}])[0]
    assert item_ids(small) == ["A", "B", "C", "D"]


def test_popularity_penalty_divides_the_odds_by_popularity(
    handmade: tuple[Recommender, Path],
) -> None:
    # Key = logit - β ln(1 + popularity). β = 1: A 3 - ln 1001 = -3.91, B 2.9 - ln 11 =
    # 0.50, C 2.5 - ln 101 = -2.12, D 1 - ln 1 = 1.
    client = client_for(*handmade)
    full = recommend(client, [{"user_id": "u0", "k": 4, "popularity_penalty": 1}])[0]
    assert item_ids(full) == ["D", "B", "C", "A"]
    # β = 0.1: A 2.31, B 2.66, C 2.04, D 1.
    light = recommend(client, [{"user_id": "u0", "k": 4, "popularity_penalty": 0.1}])[0]
    assert item_ids(light) == ["B", "A", "C", "D"]


def reference_mmr(relevance: list[float], vectors: np.ndarray, k: int, weight: float) -> list[int]:
    """Greedy MMR written plainly from its definition (Carbonell and Goldstein 1998)."""
    low, high = min(relevance), max(relevance)
    scaled = [(r - low) / (high - low) if high > low else 0.0 for r in relevance]
    chosen = [0]
    while len(chosen) < min(k, len(relevance)):
        best, best_gain = -1, -math.inf
        for candidate in range(len(relevance)):
            if candidate in chosen:
                continue
            similarity = max(float(vectors[candidate] @ vectors[j]) for j in chosen)
            gain = (1 - weight) * scaled[candidate] - weight * similarity
            if gain > best_gain + 1e-6:
                best, best_gain = candidate, gain
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("weight", [0.1, 0.3, 0.5, 0.8, 1.0])
def test_mmr_order_matches_the_definition(weight: float) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(40, 5)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    relevance = np.sort(rng.normal(size=40))[::-1].astype(np.float32)
    expected = reference_mmr(relevance.tolist(), vectors, 10, weight)
    assert mmr_order(relevance, vectors, 10, weight).tolist() == expected


def test_mmr_order_of_full_diversity_picks_the_least_similar_second() -> None:
    vectors = np.array([[1, 0], [0.99, 0.141], [0, 1], [0.7071, 0.7071]], np.float32)
    assert mmr_order(np.array([4, 3, 2, 1], np.float32), vectors, 2, 1.0).tolist() == [0, 2]


def test_diversity_and_penalty_zero_are_exactly_the_plain_ranking(
    recommender: Recommender, random_model_dir: Path
) -> None:
    client = client_for(recommender, random_model_dir)
    users = [f"u{n}" for n in range(30)] + ["stranger"]
    plain = recommend(client, [{"user_id": user, "k": 12} for user in users])
    zero = recommend(
        client,
        [{"user_id": u, "k": 12, "diversity": 0, "popularity_penalty": 0.0} for u in users],
    )
    assert zero == plain


def test_a_batch_mixes_re_ranked_and_plain_rows(
    recommender: Recommender, random_model_dir: Path
) -> None:
    client = client_for(recommender, random_model_dir)
    plain = recommend(client, [{"user_id": "u3", "k": 8}, {"user_id": "u4", "k": 8}])
    mixed = recommend(
        client, [{"user_id": "u3", "k": 8, "diversity": 1}, {"user_id": "u4", "k": 8}]
    )
    assert mixed[1] == plain[1]
    assert item_ids(mixed[0])[0] == item_ids(plain[0])[0]  # MMR keeps the best item first
    assert item_ids(mixed[0]) != item_ids(plain[0])
    assert len(set(item_ids(mixed[0]))) == 8


def test_re_ranking_keeps_exclusions(recommender: Recommender, random_model_dir: Path) -> None:
    client = client_for(recommender, random_model_dir)
    user = recommender.user_index["u5"]
    seen = {recommender.item_id_list[i] for i in recommender.seen.row(user)}
    prediction = recommend(
        client,
        [
            {
                "user_id": "u5",
                "k": 25,
                "diversity": 0.7,
                "popularity_penalty": 0.5,
                "exclude_item_ids": ["i1", "i2"],
            }
        ],
    )[0]
    returned = set(item_ids(prediction))
    assert not returned & (seen | {"i1", "i2"})
    assert len(returned) == 25 - len(seen | {"i1", "i2"})


def test_unknown_users_get_the_plain_popularity_fallback(
    recommender: Recommender, random_model_dir: Path
) -> None:
    client = client_for(recommender, random_model_dir)
    plain = recommend(client, [{"user_id": "stranger", "k": 5}])
    reranked = recommend(
        client, [{"user_id": "stranger", "k": 5, "diversity": 1, "popularity_penalty": 1}]
    )
    assert reranked == plain
    assert plain[0]["fallback"] == "popularity"


def test_endpoint_defaults_from_the_environment_and_requests_override_them(
    handmade: tuple[Recommender, Path],
) -> None:
    _, directory = handmade
    settings = dataclasses.replace(
        ServingSettings.from_env({"NCF_DIVERSITY": "0.5", "NCF_POPULARITY_PENALTY": "0"}),
        model_dir=directory,
    )
    assert settings.reranking == Reranking(diversity=0.5, popularity_penalty=0.0)
    client = create_app_from_settings(settings).test_client()
    assert item_ids(recommend(client, [{"user_id": "u0", "k": 4}])[0]) == ["A", "C", "B", "D"]
    plain = recommend(client, [{"user_id": "u0", "k": 4, "diversity": 0}])[0]
    assert item_ids(plain) == ["A", "B", "C", "D"]
    # null means "the endpoint's default".
    default = recommend(client, [{"user_id": "u0", "k": 4, "diversity": None}])[0]
    assert item_ids(default) == ["A", "C", "B", "D"]


@pytest.mark.parametrize("name", ["NCF_DIVERSITY", "NCF_POPULARITY_PENALTY"])
@pytest.mark.parametrize("value", ["1.5", "-0.1", "lots", "nan"])
def test_bad_endpoint_defaults_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        ServingSettings.from_env({name: value})


@pytest.mark.parametrize("field", ["diversity", "popularity_penalty"])
@pytest.mark.parametrize("value", [1.5, -0.1, "0.5", True, [0.5], {"a": 1}])
def test_bad_values_are_400_naming_the_field(
    recommender: Recommender, random_model_dir: Path, field: str, value: object
) -> None:
    client = client_for(recommender, random_model_dir)
    response = client.post(
        "/invocations",
        data=json.dumps({"instances": [{"user_id": "u1"}, {"user_id": "u1", field: value}]}),
        content_type="application/json",
    )
    assert response.status_code == 400
    body = response.get_json()
    assert isinstance(body, dict)
    assert f"instances[1].{field}" in body["error"]
