"""Every family's exported model is served with the scores the family itself predicts.

Each family is fitted on synthetic data by ``training.trainer.train``, written
with ``training.export`` (``ncf_contract.model_dir``), loaded back as the server
loads it (``Recommender.from_model_dir``) and compared with the fitted model's
own scorer. EASE scores from each user's history: the train split while the job
evaluates, ``seen.npz`` (every interaction) when served, so its served scores
are compared with the fitted ``B`` applied to ``seen.npz`` (for a blend, its
EASE part).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ncf_test_support import single_fit_config

from inference.instances import RecommendRequest, ScoreRequest, SimilarRequest
from inference.recommender import Recommender
from inference.retrieval import RetrievalSettings
from inference.scoring import BlendScorer, EaseScorer, NcfScorer, known_user_rows
from training import export
from training.dataset import Dataset, build_dataset
from training.families.base import FittedModel
from training.families.blend import BlendScorer as TrainingBlendScorer
from training.families.blend import FittedBlend
from training.families.ease import EaseScorer as TrainingEaseScorer
from training.families.ease import FittedEase
from training.synthetic import make_interactions
from training.trainer import train

HYPERPARAMETERS: dict[str, dict[str, object]] = {
    "gmf": {"model_type": "gmf", "epochs": 2, "batch_size": 256, "gmf_dim": 8},
    "neumf": {
        "model_type": "neumf",
        "epochs": 2,
        "batch_size": 256,
        "gmf_dim": 8,
        "mlp_layers": [16, 8],
    },
    "ials": {"model_type": "ials", "ials_factors": 8, "ials_iterations": 3},
    "ease": {"model_type": "ease", "ease_l2": 20.0},
    "blend": {
        "model_type": "blend",
        "ease_l2": 20.0,
        "ials_factors": 8,
        "ials_iterations": 3,
        "blend_ease_weight": 0.3,
    },
}
SERVING_SCORERS = {"ease": EaseScorer, "blend": BlendScorer}


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    # A test channel too, so seen.npz (train + validation + test) differs from train_seen.
    frame = make_interactions(num_users=60, num_items=40, interactions_per_user=10)
    last = frame.groupby("user_id").tail(1).index
    return build_dataset(frame.drop(index=last), None, frame.loc[last], seed=0)


def fit_and_serve(
    model_type: str, dataset: Dataset, directory: Path
) -> tuple[FittedModel, Recommender]:
    if model_type in ("gmf", "neumf"):
        pytest.importorskip("keras")
    config = single_fit_config(HYPERPARAMETERS[model_type])
    result = train(config, dataset, directory / "checkpoints", emit=lambda line: None)
    assert result.model is not None
    artifacts = export.build_artifacts(result.model, config, dataset, {"test": result.test})
    export.write_model(directory / "model", artifacts, result.model)
    return result.model, Recommender.from_model_dir(directory / "model")


def family_scorer(model: FittedModel, dataset: Dataset):
    """The fitted model's own scores, with the history serving uses for EASE."""
    if isinstance(model, FittedEase):
        return TrainingEaseScorer(model.item_item, dataset.all_seen)
    if isinstance(model, FittedBlend):
        ease = TrainingEaseScorer(model.scorer.ease.item_item, dataset.all_seen)
        return TrainingBlendScorer(ease, model.ials.scorer, model.scorer.ease_weight)
    return model.scorer


@pytest.mark.parametrize("model_type", ["gmf", "neumf", "ials", "ease", "blend"])
def test_served_scores_are_the_family_scores(
    model_type: str, dataset: Dataset, tmp_path: Path
) -> None:
    model, recommender = fit_and_serve(model_type, dataset, tmp_path)
    assert isinstance(recommender.scorer, SERVING_SCORERS.get(model_type, NcfScorer))
    assert recommender.metadata.model_type == model_type
    own = family_scorer(model, dataset)
    users = np.arange(dataset.num_users)

    expected = np.asarray(own.score_all_items(users), dtype=np.float64)
    served = recommender.scorer.score_all_items(users)
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)

    rng = np.random.default_rng(0)
    pair_users = rng.integers(dataset.num_users, size=300)
    pair_items = rng.integers(dataset.num_items, size=300)
    np.testing.assert_allclose(
        recommender.scorer.score_pairs(pair_users, pair_items),
        own.score_pairs(pair_users, pair_items),
        rtol=1e-4,
        atol=1e-5,
    )

    # A recommendation is the family's ranking of the items the user has not seen.
    user = 7
    row = expected[user].copy()
    row[dataset.all_seen.row(user)] = -np.inf
    best = np.argsort(-row, kind="stable")[:5]
    [answer] = recommender.recommend([RecommendRequest(user_id=str(dataset.users.ids[user]), k=5)])
    assert [item["item_id"] for item in answer["items"]] == list(dataset.items.ids[best])
    np.testing.assert_allclose(
        [item["score"] for item in answer["items"]], expected[user, best], rtol=1e-4, atol=1e-5
    )


def test_ials_is_served_as_an_exact_dot_product(dataset: Dataset, tmp_path: Path) -> None:
    model, recommender = fit_and_serve("ials", dataset, tmp_path)
    weights = model.model_weights()
    expected = weights["gmf_user_embedding"] @ weights["gmf_item_embedding"].T
    np.testing.assert_allclose(
        recommender.scorer.score_all_items(np.arange(dataset.num_users)),
        expected,
        rtol=1e-5,
        atol=1e-6,
    )
    assert recommender.metadata.output_activation == "linear"


def test_ease_similar_items_are_the_closest_unit_rows(dataset: Dataset, tmp_path: Path) -> None:
    model, recommender = fit_and_serve("ease", dataset, tmp_path)
    assert isinstance(model, FittedEase)
    rows = model.item_item.astype(np.float64)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    cosine = rows @ rows[3]
    cosine[3] = -np.inf
    expected = list(dataset.items.ids[np.argsort(-cosine, kind="stable")[:4]])
    [answer] = recommender.similar([SimilarRequest(str(dataset.items.ids[3]), k=4)], ["instance"])
    assert [item["item_id"] for item in answer["items"]] == expected


def test_a_blend_mixes_the_standardised_rows_of_its_parts(dataset: Dataset, tmp_path: Path) -> None:
    model, recommender = fit_and_serve("blend", dataset, tmp_path)
    weights = model.model_weights()
    seen = dataset.all_seen.matrix.toarray().astype(np.float64)
    ease_rows = seen @ weights["ease_item_item"].astype(np.float64)
    ials_rows = weights["gmf_user_embedding"] @ weights["gmf_item_embedding"].T

    def z(rows: np.ndarray) -> np.ndarray:
        return (rows - rows.mean(axis=1, keepdims=True)) / rows.std(axis=1, keepdims=True)

    np.testing.assert_allclose(weights["blend_weights"], [0.3, 0.7])
    np.testing.assert_allclose(
        recommender.scorer.score_all_items(np.arange(dataset.num_users)),
        0.3 * z(ease_rows) + 0.7 * z(ials_rows),
        rtol=1e-4,
        atol=1e-4,
    )
    # Similar items and diversity use the iALS part's item vectors.
    factors = weights["gmf_item_embedding"]
    np.testing.assert_allclose(
        recommender.scorer.item_vectors,
        factors / np.linalg.norm(factors, axis=1, keepdims=True),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("model_type", ["ease", "blend"])
def test_known_users_rows_come_from_a_table_computed_once_with_the_same_answers(
    model_type: str, dataset: Dataset, tmp_path: Path
) -> None:
    _, recommender = fit_and_serve(model_type, dataset, tmp_path)
    per_request = Recommender.from_model_dir(
        tmp_path / "model", retrieval=RetrievalSettings(known_rows_mb=0)
    )
    assert recommender.known_rows is not None and per_request.known_rows is None
    users = np.arange(dataset.num_users)
    np.testing.assert_allclose(
        recommender.known_rows, per_request.scorer.logits_all_items(users), rtol=1e-5, atol=1e-6
    )

    ids = [str(user_id) for user_id in dataset.users.ids]
    items = [str(item_id) for item_id in dataset.items.ids]
    requests = [RecommendRequest(user_id=user_id, k=5) for user_id in ids] + [
        RecommendRequest(
            user_id=ids[3], k=7, exclude_seen=False, exclude_item_ids=tuple(items[:4])
        ),
        RecommendRequest(user_id="a user nobody knows", k=3),
    ]
    for batch in (requests, requests[:1]):
        tabled, scored = recommender.recommend(batch), per_request.recommend(batch)
        assert [[i["item_id"] for i in a["items"]] for a in tabled] == [
            [i["item_id"] for i in a["items"]] for a in scored
        ]
        np.testing.assert_allclose(
            [i["score"] for a in tabled for i in a["items"]],
            [i["score"] for a in scored for i in a["items"]],
            rtol=1e-4,
            atol=1e-5,
        )
    scores = [
        ScoreRequest(user_id=ids[n], item_ids=(items[n], items[-1], "unknown")) for n in (0, 5)
    ]
    tabled_scores, scored_scores = recommender.score(scores), per_request.score(scores)
    for tabled_answer, scored_answer in zip(tabled_scores, scored_scores, strict=True):
        assert tabled_answer["scores"][2] is None and scored_answer["scores"][2] is None
        np.testing.assert_allclose(
            tabled_answer["scores"][:2], scored_answer["scores"][:2], rtol=1e-4, atol=1e-5
        )

    # The answers are read off the table: a row changed there changes the answer.
    recommender.known_rows[0] = -recommender.known_rows[0]
    [reversed_answer] = recommender.recommend([RecommendRequest(user_id=ids[0], k=1)])
    row = -per_request.scorer.logits_all_items(np.array([0]))[0]
    row[dataset.all_seen.row(0)] = -np.inf
    assert reversed_answer["items"][0]["item_id"] == items[int(np.argmax(row))]


def test_the_known_users_table_is_built_only_for_item_item_families_within_its_bound(
    dataset: Dataset, tmp_path: Path
) -> None:
    _, blend = fit_and_serve("blend", dataset, tmp_path / "blend")
    table_bytes = dataset.num_users * dataset.num_items * 4
    assert known_user_rows(blend.scorer, table_bytes) is not None
    assert known_user_rows(blend.scorer, table_bytes - 1) is None
    _, ials = fit_and_serve("ials", dataset, tmp_path / "ials")
    assert ials.known_rows is None and known_user_rows(ials.scorer, 1 << 40) is None
