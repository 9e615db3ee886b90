"""Serving with attributes: user_attributes, fallbacks, filters, similar items by content / hybrid.

The model directory is written by ``save_model_dir`` and read back by the app, so the
files of the contract (attributes.json, item_features.npz, content.npz, the
trending column) are exercised too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import serving_support
from flask.testing import FlaskClient

from inference.app import create_app
from inference.instances import Reranking
from inference.recommender import Recommender
from inference.settings import ServingSettings
from ncf_contract.attributes import AttributeColumn, AttributeSchema
from ncf_contract.model_dir import ModelArtifacts, ModelMetadata, load_model_dir, save_model_dir
from ncf_contract.seen import SeenItems

random_model_dir = serving_support.random_model_dir  # a model without attributes

GENRES = ("Comedy", "Drama", "Horror")
#: Item n's genres; item 7 is cold (no interaction).
ITEM_GENRES = [
    ["Comedy"],
    ["Comedy", "Drama"],
    ["Drama"],
    ["Horror"],
    ["Comedy", "Horror"],
    ["Drama", "Horror"],
    ["Comedy"],
    ["Horror"],
]
DIM = 4


def hybrid_artifacts() -> ModelArtifacts:
    rng = np.random.default_rng(3)
    num_users, num_items = 5, len(ITEM_GENRES)
    rows = [n for n, genres in enumerate(ITEM_GENRES) for _ in genres]
    columns = [GENRES.index(g) for genres in ITEM_GENRES for g in genres]
    weights = [1 / len(genres) for genres in ITEM_GENRES for _ in genres]
    features = sp.csr_matrix((weights, (rows, columns)), shape=(num_items, 3), dtype=np.float32)
    indicator = (features > 0).astype(np.float32)
    content = sp.csr_matrix(
        indicator.multiply(1 / np.sqrt(indicator.sum(axis=1))), dtype=np.float32
    )
    item_schema = AttributeSchema((AttributeColumn("genres", "multi", 0, GENRES),))
    user_schema = AttributeSchema(
        (
            AttributeColumn("age", "categorical", 0, ("18", "25")),
            AttributeColumn("gender", "categorical", 2, ("F", "M")),
            AttributeColumn("income", "numeric", 4, (), mean=50.0, scale=10.0),
        )
    )
    popularity = np.array([9, 8, 7, 6, 5, 4, 3, 0], dtype=np.int64)
    return ModelArtifacts(
        metadata=ModelMetadata(
            model_type="hybrid", feedback="implicit", output_activation="sigmoid", num_mlp_layers=0
        ),
        weights={
            "gmf_user_embedding": rng.normal(size=(num_users, DIM)).astype(np.float32),
            "gmf_item_embedding": rng.normal(size=(num_items, DIM)).astype(np.float32),
            "item_bias": rng.normal(size=num_items).astype(np.float32),
            "output_kernel": np.ones((DIM, 1), np.float32),
            "output_bias": np.array([0.1], np.float32),
            "user_feature_embedding": rng.normal(size=(5, DIM)).astype(np.float32),
        },
        user_ids=np.array([f"u{n}" for n in range(num_users)]),
        item_ids=np.array([f"i{n}" for n in range(num_items)]),
        item_popularity=popularity,
        seen=SeenItems.from_pairs(np.array([0, 1]), np.array([0, 2]), num_users, num_items),
        item_attributes=item_schema,
        user_attributes=user_schema,
        item_features=features,
        content=content,
        item_trending=np.array([0, 0, 5, 0, 9, 0, 1, 2], dtype=np.int64),
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hybrid") / "model"
    save_model_dir(directory, hybrid_artifacts())
    return directory


@pytest.fixture(scope="module")
def recommender(model_dir: Path) -> Recommender:
    return Recommender(load_model_dir(model_dir))


@pytest.fixture
def client(recommender: Recommender, model_dir: Path) -> FlaskClient:
    return create_app(ServingSettings(model_dir=model_dir), recommender).test_client()


def ask(client: FlaskClient, instance: dict, status: int = 200) -> dict:
    response = client.post(
        "/invocations", data=json.dumps(instance), content_type="application/json"
    )
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    return body if status != 200 else body["predictions"][0]


def ids(prediction: dict) -> list[str]:
    return [item["item_id"] for item in prediction["items"]]


def test_model_directory_round_trip(recommender: Recommender) -> None:
    artifacts = recommender.artifacts
    assert artifacts.item_attributes == hybrid_artifacts().item_attributes
    assert artifacts.user_attributes == hybrid_artifacts().user_attributes
    assert artifacts.content is not None and artifacts.content.shape == (8, 3)
    assert artifacts.item_trending is not None and artifacts.item_trending[4] == 9


def test_known_users_are_scored_with_the_item_bias(client: FlaskClient) -> None:
    artifacts = hybrid_artifacts()
    w = artifacts.weights
    logits = w["gmf_user_embedding"][3] @ w["gmf_item_embedding"].T + w["item_bias"] + 0.1
    prediction = ask(client, {"user_id": "u3", "k": 8})
    assert ids(prediction) == [f"i{n}" for n in np.argsort(-logits, kind="stable")]
    assert "fallback" not in prediction and "from" not in prediction
    np.testing.assert_allclose(
        prediction["items"][0]["score"], 1 / (1 + np.exp(-logits.max())), rtol=1e-5
    )


def test_unknown_user_with_attributes_is_scored_from_them(client: FlaskClient) -> None:
    w = hybrid_artifacts().weights
    table = w["user_feature_embedding"]
    vector = table[1] + table[2] + (65 - 50) / 10 * table[4]  # age 25, gender F, income 65
    logits = vector @ w["gmf_item_embedding"].T + w["item_bias"] + 0.1
    instance = {
        "user_id": "new",
        "k": 8,
        "user_attributes": {"age": "25", "gender": "F", "income": 65},
    }
    prediction = ask(client, instance)
    assert prediction["from"] == "user_attributes"
    assert "fallback" not in prediction
    assert ids(prediction) == [f"i{n}" for n in np.argsort(-logits, kind="stable")]
    # Attributes left out contribute nothing; a known user's attributes change nothing.
    partial = ask(client, {"user_id": "new", "k": 8, "user_attributes": {"age": "18"}})
    expected = table[0] @ w["gmf_item_embedding"].T + w["item_bias"]
    assert ids(partial) == [f"i{n}" for n in np.argsort(-expected, kind="stable")]
    known = ask(client, {"user_id": "u3", "k": 3, "user_attributes": {"age": "18"}})
    assert known == ask(client, {"user_id": "u3", "k": 3})


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"height": "2"}, "unknown attribute 'height'"),
        ({"age": "99"}, "value '99' of attribute 'age' is not known"),
        ({"age": ["18", "25"]}, "'age' is categorical and takes one value, got 2"),
        ({"income": "lots"}, "'income' is numeric, got 'lots'"),
        ({"age": {"x": 1}}, "user_attributes.age must be a string or a number"),
        (["age"], "user_attributes must be an object"),
    ],
)
def test_bad_user_attributes_are_400_naming_them(
    client: FlaskClient, attributes: object, message: str
) -> None:
    body = ask(client, {"user_id": "new", "user_attributes": attributes}, status=400)
    assert message in body["error"]
    assert "instance" in body["error"]


def test_user_attributes_need_a_model_that_learned_them(random_model_dir: Path) -> None:
    client = create_app(
        ServingSettings(model_dir=random_model_dir), Recommender.from_model_dir(random_model_dir)
    ).test_client()
    body = ask(client, {"user_id": "new", "user_attributes": {"age": "25"}}, status=400)
    assert "cannot use user attributes" in body["error"]
    body = ask(client, {"user_id": "u1", "filter": {"include": {"genre": ["x"]}}}, status=400)
    assert "has no item attributes" in body["error"]
    body = ask(client, {"item_id": "i1", "by": "content"}, status=400)
    assert "needs item attributes" in body["error"]
    body = ask(client, {"user_id": "new", "fallback": "trending"}, status=400)
    assert "no 'trending' ranking" in body["error"]


def test_fallbacks_popularity_and_trending(model_dir: Path, client: FlaskClient) -> None:
    popular = ask(client, {"user_id": "new", "k": 3})
    assert popular["fallback"] == "popularity"
    assert ids(popular) == ["i0", "i1", "i2"]
    trending = ask(client, {"user_id": "new", "k": 3, "fallback": "trending"})
    assert trending["fallback"] == "trending"
    assert ids(trending) == ["i4", "i2", "i7"]
    # The endpoint default (NCF_FALLBACK) applies when the request names none.
    by_default = Recommender(load_model_dir(model_dir), Reranking(fallback="trending"))
    default_client = create_app(ServingSettings(model_dir=model_dir), by_default).test_client()
    assert ids(ask(default_client, {"user_id": "new", "k": 3})) == ["i4", "i2", "i7"]
    body = ask(client, {"user_id": "new", "fallback": "newest"}, status=400)
    assert "fallback must be one of ['popularity', 'trending']" in body["error"]


def genres_of(prediction: dict) -> list[list[str]]:
    return [ITEM_GENRES[int(item_id[1:])] for item_id in ids(prediction)]


@pytest.mark.parametrize(
    ("item_filter", "allowed"),
    [
        ({"include": {"genres": ["Comedy"]}}, {0, 1, 4, 6}),
        ({"include": {"genres": ["Comedy", "Horror"]}}, {0, 1, 3, 4, 5, 6, 7}),
        ({"include": {"genres": "Drama"}}, {1, 2, 5}),
        ({"exclude": {"genres": ["Horror"]}}, {0, 1, 2, 6}),
        ({"include": {"genres": ["Comedy"]}, "exclude": {"genres": ["Drama", "Horror"]}}, {0, 6}),
    ],
)
def test_each_filter_form(client: FlaskClient, item_filter: dict, allowed: set[int]) -> None:
    for instance in (
        {"user_id": "u3", "k": 8},
        {"user_id": "new", "k": 8},
        {"user_id": "new", "k": 8, "user_attributes": {"age": "25"}},
        {"item_id": "i2", "k": 8},
        {"item_id": "i2", "k": 8, "by": "content"},
    ):
        prediction = ask(client, {**instance, "filter": item_filter})
        found = {int(item_id[1:]) for item_id in ids(prediction)}
        expected = allowed - ({2} if "item_id" in instance else set())
        assert found == expected, (instance, found)


@pytest.mark.parametrize(
    ("item_filter", "message"),
    [
        ({"include": {"genre": ["Comedy"]}}, "unknown attribute 'genre'; known: ['genres']"),
        ({"exclude": {"genres": ["Western"]}}, "value 'Western' of attribute 'genres'"),
        ({"only": {"genres": ["Comedy"]}}, 'filter must be {"include"'),
        ({"include": ["Comedy"]}, "filter.include must be an object"),
        ({"include": {"genres": []}}, "filter.include.genres must list 1 to"),
    ],
)
def test_bad_filters_are_400_naming_them(
    client: FlaskClient, item_filter: object, message: str
) -> None:
    for instance in ({"user_id": "u1"}, {"item_id": "i1"}):
        body = ask(client, {**instance, "filter": item_filter}, status=400)
        assert message in body["error"]


def cosine_order(matrix: np.ndarray, query: int) -> list[str]:
    similarity = matrix @ matrix[query]
    similarity[query] = -np.inf
    return [f"i{n}" for n in np.argsort(-similarity, kind="stable")[:7]]


def unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_similar_by_content_behaviour_and_hybrid(client: FlaskClient) -> None:
    artifacts = hybrid_artifacts()
    assert artifacts.content is not None
    content = artifacts.content.toarray()
    behaviour = unit(artifacts.weights["gmf_item_embedding"])
    for query in (1, 7):  # item 7 is cold: no interaction at all
        by_content = ask(client, {"item_id": f"i{query}", "k": 7, "by": "content"})
        assert ids(by_content) == cosine_order(content, query)
        by_behaviour = ask(client, {"item_id": f"i{query}", "k": 7, "by": "behaviour"})
        assert ids(by_behaviour) == cosine_order(behaviour, query)
        assert ask(client, {"item_id": f"i{query}", "k": 7}) == by_behaviour
        blend = 0.5 * (content @ content[query] + behaviour @ behaviour[query])
        blend[query] = -np.inf
        hybrid = ask(client, {"item_id": f"i{query}", "k": 7, "by": "hybrid"})
        assert ids(hybrid) == [f"i{n}" for n in np.argsort(-blend, kind="stable")[:7]]
        np.testing.assert_allclose(hybrid["items"][0]["score"], blend.max(), rtol=1e-5)
    body = ask(client, {"item_id": "i1", "by": "taste"}, status=400)
    assert "by must be one of ['behaviour', 'content', 'hybrid']" in body["error"]


def test_batch_mixes_every_path(client: FlaskClient) -> None:
    response = client.post(
        "/invocations",
        data=json.dumps(
            {
                "instances": [
                    {"user_id": "u3", "k": 2},
                    {"user_id": "new", "k": 2, "user_attributes": {"gender": "M"}},
                    {"user_id": "new", "k": 2, "fallback": "trending"},
                    {"user_id": "new", "k": 2},
                    {"item_id": "i7", "k": 2, "by": "content"},
                ]
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 200
    predictions = response.get_json()["predictions"]
    assert [p.get("from") or p.get("fallback") for p in predictions[:4]] == [
        None,
        "user_attributes",
        "trending",
        "popularity",
    ]
    assert ids(predictions[4]) == ["i3", "i4"]  # Horror-only i3 first, then Comedy|Horror i4
