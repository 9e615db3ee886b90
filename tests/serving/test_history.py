"""Recommendations and scores from a history given in the request (``"history": [...]``).

EASE scores a history exactly (its indicator row times the item-item matrix);
gmf and ials fold it into a user vector with one ridge least-squares step (for
ials the library's own ``recalculate_user``); mlp and neumf refuse it with a 400.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import serving_support
from implicit.cpu.als import AlternatingLeastSquares
from ncf_test_support import single_fit_config
from threadpoolctl import threadpool_limits

from inference.app import create_app
from inference.errors import InferenceError
from inference.instances import RecommendRequest, ScoreRequest, parse_instance
from inference.recommender import Recommender
from inference.scoring import FOLD_IN_ALPHA, FOLD_IN_RELATIVE_L2
from inference.settings import ServingSettings
from training import export
from training.config import TrainingConfig
from training.dataset import Dataset, build_dataset
from training.families.ease import FittedEase, ease_weights
from training.families.ials import FittedIals, confidence_matrix
from training.synthetic import make_interactions

make_artifacts = serving_support.make_artifacts  # the shared fixture, under its own name

#: make_interactions puts item n in taste cluster n % 4.
CLUSTERS = 4


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return build_dataset(make_interactions(), None, None, seed=0)


def serve(model, config: TrainingConfig, dataset: Dataset, directory: Path) -> Recommender:
    artifacts = export.build_artifacts(model, config, dataset, {})
    export.write_model(directory, artifacts, model)
    return Recommender.from_model_dir(directory)


@pytest.fixture(scope="module")
def ease(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    config = single_fit_config({"model_type": "ease", "ease_l2": 20.0})
    weights, _ = ease_weights(dataset.train_seen.matrix, config.ease_l2)
    model = FittedEase(weights, dataset.train_seen)
    return serve(model, config, dataset, tmp_path_factory.mktemp("ease") / "model")


@pytest.fixture(scope="module")
def ials(
    dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Recommender, AlternatingLeastSquares]:
    config = single_fit_config(
        {
            "model_type": "ials",
            "ials_factors": 8,
            "ials_regularization": 5.0,
            "ials_alpha": 3.0,
            "ials_members": 1,
        }
    )
    [library] = library_fits(dataset, members=1)
    model = FittedIals(library.user_factors, library.item_factors)
    recommender = serve(model, config, dataset, tmp_path_factory.mktemp("ials") / "model")
    return recommender, library


def library_fits(dataset: Dataset, members: int) -> list[AlternatingLeastSquares]:
    """``members`` fits of ``implicit`` (8 factors, L2 5, alpha 3), seeds 0, 1, ..."""
    fits = []
    with threadpool_limits(1, "blas"):  # as implicit asks
        for seed in range(members):
            library = AlternatingLeastSquares(
                factors=8, regularization=5.0, alpha=1.0, iterations=5, random_state=seed
            )
            library.fit(confidence_matrix(dataset, 3.0), show_progress=False)
            fits.append(library)
    return fits


def library_fold_in(library: AlternatingLeastSquares, positions: np.ndarray) -> np.ndarray:
    """The library's own user update for a history (confidence ``1 + 3``), as item scores."""
    row = np.zeros((1, library.item_factors.shape[0]), dtype=np.float32)
    row[0, positions] = 1.0 + 3.0  # the confidence of the ials_alpha the model was fitted with
    user = library.recalculate_user(0, sp.csr_matrix(row))
    return np.asarray(user, dtype=np.float64).reshape(-1) @ library.item_factors.T


def cluster_history(dataset: Dataset, cluster: int, size: int = 6) -> list[str]:
    ids = [item for item in dataset.items.ids.tolist() if int(item[1:]) % CLUSTERS == cluster]
    return ids[:size]


def recommend(recommender: Recommender, **fields: object) -> dict:
    request = parse_instance(fields, "instance")
    assert isinstance(request, RecommendRequest)
    [answer] = recommender.recommend([request])
    return answer


def test_ease_recommends_the_history_row_times_the_item_item_matrix(
    ease: Recommender, dataset: Dataset
) -> None:
    history = ["i3", "i7", "i11", "nobody-knows-me"]
    answer = recommend(ease, history=history, k=8)
    weights = ease.artifacts.weights["ease_item_item"]
    positions = [ease.item_index[item] for item in history[:3]]
    expected = weights[positions].astype(np.float64).sum(axis=0)
    expected[positions] = -np.inf  # exclude_seen excludes the history
    best = np.argsort(-expected, kind="stable")[:8]
    assert answer["from"] == "history"
    assert answer["user_id"] is None
    assert "fallback" not in answer
    assert [item["item_id"] for item in answer["items"]] == [ease.item_id_list[p] for p in best]
    np.testing.assert_allclose(
        [item["score"] for item in answer["items"]], expected[best], rtol=1e-5, atol=1e-6
    )


def test_ease_history_of_a_known_user_is_their_served_row(ease: Recommender) -> None:
    user = "u5"
    seen = ease.artifacts.seen.row(ease.user_index[user])
    by_id = recommend(ease, user_id=user, k=10)
    by_history = recommend(ease, history=[ease.item_id_list[p] for p in seen], k=10)
    assert by_history["items"] == by_id["items"]


def test_ease_scores_a_history(ease: Recommender) -> None:
    request = parse_instance(
        {"history": ["i3", "i7"], "user_id": "stranger", "item_ids": ["i1", "nope", "i2"]}, "x"
    )
    assert isinstance(request, ScoreRequest)
    [answer] = ease.score([request])
    weights = ease.artifacts.weights["ease_item_item"]
    rows = [ease.item_index["i3"], ease.item_index["i7"]]
    expected = weights[rows].sum(axis=0)
    assert answer["from"] == "history" and answer["user_id"] == "stranger"
    assert answer["scores"][1] is None
    np.testing.assert_allclose(
        [answer["scores"][0], answer["scores"][2]],
        [expected[ease.item_index["i1"]], expected[ease.item_index["i2"]]],
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("cluster", range(CLUSTERS))
def test_ease_history_recommends_from_its_taste_cluster(
    ease: Recommender, dataset: Dataset, cluster: int
) -> None:
    answer = recommend(ease, history=cluster_history(dataset, cluster), k=10)
    clusters = [int(item["item_id"][1:]) % CLUSTERS for item in answer["items"]]
    assert clusters.count(cluster) >= 8


def test_ials_fold_in_is_the_library_user_update(
    ials: tuple[Recommender, AlternatingLeastSquares], dataset: Dataset
) -> None:
    recommender, library = ials
    history = ["i2", "i6", "i10", "i14", "i55"]
    positions = np.array(sorted(recommender.item_index[item] for item in history))
    expected = library_fold_in(library, positions)
    folded = recommender.scorer.logits_from_history([positions])[0]
    np.testing.assert_allclose(folded, expected, rtol=1e-4, atol=1e-5)
    answer = recommend(recommender, history=history, k=5, exclude_seen=False)
    best = np.argsort(-expected, kind="stable")[:5]
    assert [item["item_id"] for item in answer["items"]] == [
        recommender.item_id_list[p] for p in best
    ]


def test_ials_members_fold_a_history_into_each_member_and_serve_the_mean(
    dataset: Dataset, tmp_path: Path
) -> None:
    # ials_members=3: three seeded fits side by side (training.families.ials.side_by_side).
    # A trained user's score is the mean of the members' scores, and a history is folded
    # into each member on its own (the library's user update), then the scores averaged.
    from training.families.ials import side_by_side

    fits = library_fits(dataset, members=3)
    config = single_fit_config(
        {
            "model_type": "ials",
            "ials_factors": 8,
            "ials_regularization": 5.0,
            "ials_alpha": 3.0,
            "ials_members": 3,
        }
    )
    recommender = serve(FittedIals(*side_by_side(fits)), config, dataset, tmp_path / "model")
    users = np.arange(4)
    members_mean = np.mean([fit.user_factors[users] @ fit.item_factors.T for fit in fits], axis=0)
    np.testing.assert_allclose(
        recommender.scorer.logits_all_items(users), members_mean, rtol=1e-4, atol=1e-5
    )
    positions = np.array(sorted(recommender.item_index[item] for item in ["i2", "i6", "i55"]))
    expected = np.mean([library_fold_in(fit, positions) for fit in fits], axis=0)
    folded = recommender.scorer.logits_from_history([positions])[0]
    np.testing.assert_allclose(folded, expected, rtol=1e-4, atol=1e-5)
    # One fold-in over all 24 factors at once would couple the members: not what was fitted.
    assert not np.allclose(library_fold_in(fits[0], positions), expected, rtol=1e-2)


@pytest.mark.parametrize("cluster", range(CLUSTERS))
def test_ials_history_recommends_from_its_taste_cluster(
    ials: tuple[Recommender, AlternatingLeastSquares], dataset: Dataset, cluster: int
) -> None:
    answer = recommend(ials[0], history=cluster_history(dataset, cluster), k=10)
    clusters = [int(item["item_id"][1:]) % CLUSTERS for item in answer["items"]]
    assert clusters.count(cluster) >= 8


def test_gmf_fold_in_is_a_ridge_step_in_the_kernel_scaled_space(
    make_artifacts: serving_support.MakeArtifacts,
) -> None:
    artifacts = make_artifacts(model_type="gmf", num_items=25, gmf_dim=4)
    recommender = Recommender(artifacts)
    weights = artifacts.weights
    items = weights["gmf_item_embedding"].astype(np.float64)
    kernel = weights["output_kernel"][:, 0].astype(np.float64)
    bias = float(weights["output_bias"][0])
    history = ["i1", "i4", "i9"]
    positions = np.array([recommender.item_index[item] for item in history])
    gram = items.T @ items
    l2 = FOLD_IN_RELATIVE_L2 * np.trace(gram) / 4
    taken = items[positions]
    user_scaled = np.linalg.solve(
        gram + FOLD_IN_ALPHA * taken.T @ taken + l2 * np.eye(4),
        (1 + FOLD_IN_ALPHA) * taken.sum(axis=0),
    )
    logits = user_scaled @ items.T + bias
    logits[positions] = -np.inf
    best = np.argsort(-logits, kind="stable")[:5]
    answer = recommend(recommender, history=history, k=5)
    assert [item["item_id"] for item in answer["items"]] == [f"i{p}" for p in best]
    np.testing.assert_allclose(
        [item["score"] for item in answer["items"]],
        1 / (1 + np.exp(-logits[best])),
        rtol=1e-5,
        atol=1e-6,
    )
    # The folded user vector lives in the user space scaled by the output kernel: the
    # ordinary score formula with a user embedding of user_scaled / kernel gives the same.
    user = user_scaled / kernel
    np.testing.assert_allclose(
        (user * items[2]) @ kernel + bias, user_scaled @ items[2] + bias, rtol=1e-9
    )


def test_a_trained_gmf_history_recommends_from_its_taste_cluster(
    dataset: Dataset, tmp_path: Path
) -> None:
    pytest.importorskip("keras")
    from training.trainer import train

    config = single_fit_config(
        {"model_type": "gmf", "epochs": 5, "batch_size": 256, "gmf_dim": 16, "learning_rate": 0.01}
    )
    result = train(config, dataset, tmp_path / "checkpoints", emit=lambda line: None)
    recommender = serve(result.model, config, dataset, tmp_path / "model")
    for cluster in range(CLUSTERS):
        answer = recommend(recommender, history=cluster_history(dataset, cluster), k=10)
        clusters = [int(item["item_id"][1:]) % CLUSTERS for item in answer["items"]]
        assert clusters.count(cluster) >= 8, (cluster, clusters)


@pytest.mark.parametrize("model_type", ["mlp", "neumf"])
def test_history_needs_a_dot_product_or_ease_model(
    make_artifacts: serving_support.MakeArtifacts, model_type: str
) -> None:
    recommender = Recommender(make_artifacts(model_type=model_type))
    with pytest.raises(InferenceError) as raised:
        recommend(recommender, history=["i1"])
    assert raised.value.status == 400
    message = raised.value.message
    assert "gmf, ials, ease" in message and f"a {model_type} model" in message


def test_a_history_of_unknown_items_falls_back_to_popularity(ease: Recommender) -> None:
    answer = recommend(ease, history=["nope", "neither"], k=3)
    popular = np.argsort(-ease.popularity, kind="stable")[:3]
    assert answer["fallback"] == "popularity" and answer["from"] == "history"
    assert [item["item_id"] for item in answer["items"]] == [ease.item_id_list[p] for p in popular]
    empty = recommend(ease, history=[], k=3)
    assert empty["fallback"] == "popularity"


def test_a_history_batch_mixes_with_user_requests(ease: Recommender) -> None:
    requests = [
        RecommendRequest(user_id="u1", k=4),
        RecommendRequest(user_id=None, k=4, history=("i3", "i7")),
        RecommendRequest(user_id="stranger", k=4),
        RecommendRequest(user_id=None, k=4, history=("i8",)),
    ]
    answers = ease.recommend(requests)
    alone = [ease.recommend([request])[0] for request in requests]
    assert answers == alone
    assert [a.get("from") for a in answers] == [None, "history", None, "history"]
    assert answers[2]["fallback"] == "popularity"


def test_history_through_the_app(tmp_path: Path, ease: Recommender) -> None:
    app = create_app(ServingSettings(model_dir=tmp_path), ease)
    response = app.test_client().post(
        "/invocations",
        data=json.dumps({"instances": [{"history": ["i3", 7], "k": 2}, {"history": "i3"}]}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "instances[1].history must be a list" in response.get_json()["error"]
    response = app.test_client().post(
        "/invocations",
        data=json.dumps({"history": ["i3", 7], "k": 2}),
        content_type="application/json",
    )
    assert response.status_code == 200
    [prediction] = response.get_json()["predictions"]
    assert prediction["from"] == "history" and len(prediction["items"]) == 2


def test_score_batches_with_histories_go_in_chunks(
    ease: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = [
        ScoreRequest(user_id="u1", item_ids=("i1", "i2")),
        ScoreRequest(user_id=None, item_ids=("i1", "nope"), history=("i3", "i7")),
        ScoreRequest(user_id="stranger", item_ids=("i4",)),
        ScoreRequest(user_id=None, item_ids=("i5", "i6"), history=("i8",)),
        ScoreRequest(user_id="u2", item_ids=("i9",), history=("unknown",)),
    ]
    alone = [ease.score([request])[0] for request in requests]
    monkeypatch.setattr("inference.recommender.RECOMMEND_CHUNK", 2)
    assert ease.score(requests) == alone
    assert [answer.get("fallback") for answer in alone] == [
        None,
        None,
        "popularity",
        None,
        "popularity",
    ]


@pytest.fixture(scope="module")
def blend(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    from training.trainer import train

    config = single_fit_config(
        {
            "model_type": "blend",
            "ease_l2": 20.0,
            "ials_factors": 8,
            "ials_regularization": 5.0,
            "ials_iterations": 4,
            "blend_ease_weight": 0.4,
        }
    )
    directory = tmp_path_factory.mktemp("blend")
    result = train(config, dataset, directory / "checkpoints", emit=lambda line: None)
    assert result.model is not None
    return serve(result.model, config, dataset, directory / "model")


def test_blend_mixes_the_exact_ease_row_with_the_ials_fold_in(blend: Recommender) -> None:
    history = ["i3", "i7", "i11", "nobody-knows-me"]
    answer = recommend(blend, history=history, k=8)
    positions = np.array([blend.item_index[item] for item in history[:3]])
    ease_row = blend.artifacts.weights["ease_item_item"][positions].astype(np.float64).sum(0)
    # The iALS part alone, as an ials model with these factors would fold the history in:
    # each of its ials_members (8 factors each) on its own, the scores averaged.
    alpha = blend.metadata.config["ials_alpha"]
    l2 = blend.metadata.config["ials_regularization"]
    members = blend.metadata.config["ials_members"]
    assert members == 3  # the default
    ials_row = np.zeros(blend.num_items)
    for factors in np.split(
        blend.artifacts.weights["gmf_item_embedding"].astype(np.float64), members, axis=1
    ):
        chosen = factors[positions]
        system = factors.T @ factors + alpha * chosen.T @ chosen + l2 * np.eye(factors.shape[1])
        user = np.linalg.solve(system, (1 + alpha) * chosen.sum(axis=0))
        ials_row += factors @ user / members

    def z(row: np.ndarray) -> np.ndarray:
        return (row - row.mean()) / row.std()

    expected = 0.4 * z(ease_row) + 0.6 * z(ials_row)
    expected[positions] = -np.inf
    best = np.argsort(-expected, kind="stable")[:8]
    assert answer["from"] == "history" and answer["user_id"] is None
    assert [item["item_id"] for item in answer["items"]] == [blend.item_id_list[p] for p in best]
    np.testing.assert_allclose(
        [item["score"] for item in answer["items"]], expected[best], rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("cluster", range(CLUSTERS))
def test_blend_history_recommends_from_its_taste_cluster(
    blend: Recommender, dataset: Dataset, cluster: int
) -> None:
    answer = recommend(blend, history=cluster_history(dataset, cluster), k=10)
    clusters = [int(item["item_id"][1:]) % CLUSTERS for item in answer["items"]]
    assert clusters.count(cluster) >= 8
