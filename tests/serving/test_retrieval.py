"""Approximate retrieval for large catalogs: the same lists as brute force where exact by
construction, seen and excluded items never returned, and the choice by catalog size."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import serving_support

from inference.instances import RecommendRequest
from inference.recommender import Recommender
from inference.retrieval import ApproximateIndex, RetrievalSettings
from inference.scoring import NcfScorer
from inference.settings import ServingSettings, SettingsError
from ncf_contract.first_stage import APPROXIMATE_FROM_ITEMS
from ncf_contract.model_dir import ModelArtifacts

random_artifacts = serving_support.random_artifacts


def lists(recommender: Recommender, requests: list[RecommendRequest]) -> list[list[str]]:
    return [[i["item_id"] for i in p["items"]] for p in recommender.recommend(requests)]


@pytest.mark.parametrize("model_type", ["gmf", "neumf"])
def test_every_list_searched_and_every_candidate_rescored_gives_the_brute_force_top_k(
    model_type: str,
) -> None:
    # nprobe >= lists makes the first stage exhaustive and, for NeuMF, as many candidates as
    # items leave nothing to the GMF part's choice: the approximate path is exact by construction.
    artifacts = random_artifacts(model_type=model_type, num_users=40, num_items=1_200)
    every = RetrievalSettings(mode="approximate", candidates=1_200, nprobe=1_000)
    approximate = Recommender(artifacts, retrieval=every)
    exact = Recommender(artifacts, retrieval=RetrievalSettings(mode="exact"))
    assert approximate.approximate is not None and exact.approximate is None
    requests = [RecommendRequest(user_id=f"u{n}", k=10) for n in range(40)]
    assert lists(approximate, requests) == lists(exact, requests)
    scores = approximate.recommend(requests[:1])[0]["items"]
    assert scores == exact.recommend(requests[:1])[0]["items"]  # same exact scores too


def test_gmf_recall_with_a_partial_search_stays_high_on_clustered_items() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(30, 16)).astype(np.float32)
    items = centers[rng.integers(0, 30, 5_000)] + 0.3 * rng.normal(size=(5_000, 16))
    index = ApproximateIndex.build(items.astype(np.float32), nprobe=8)
    assert index.num_lists > 8  # a partial search
    hits = 0
    for query in centers[rng.integers(0, 30, 50)] + 0.3 * rng.normal(size=(50, 16)):
        best = set(np.argsort(-(items @ query))[:10].tolist())
        hits += len(best & set(index.search(query, 10, np.empty(0, np.int64)).tolist()))
    assert hits / 500 >= 0.9


def test_seen_and_excluded_items_are_never_returned() -> None:
    artifacts = random_artifacts(model_type="gmf", num_users=30, num_items=1_000)
    recommender = Recommender(
        artifacts, retrieval=RetrievalSettings(mode="approximate", candidates=20, nprobe=4)
    )
    exact = Recommender(artifacts, retrieval=RetrievalSettings(mode="exact"))
    for user in range(30):
        seen = {f"i{p}" for p in artifacts.seen.row(user).tolist()}
        # Exclude the exact path's own top 5 too: the search must look past them.
        top = lists(exact, [RecommendRequest(user_id=f"u{user}", k=5)])[0]
        found = lists(
            recommender,
            [RecommendRequest(user_id=f"u{user}", k=10, exclude_item_ids=tuple(top))],
        )[0]
        assert len(found) == 10
        assert not (set(found) & (seen | set(top)))
    # A search that excludes the index's whole neighbourhood gives way to the exact path.
    index = recommender.approximate
    assert index is not None
    assert isinstance(recommender.scorer, NcfScorer)
    query = recommender.scorer.first_stage_query(0)
    assert len(index.search(query, 5, np.arange(1_000))) == 0


def test_the_choice_follows_catalog_size_model_type_and_setting() -> None:
    auto = RetrievalSettings()
    assert not auto.use_approximate(APPROXIMATE_FROM_ITEMS - 1, has_gmf=True)
    assert auto.use_approximate(APPROXIMATE_FROM_ITEMS, has_gmf=True)
    assert not auto.use_approximate(10 * APPROXIMATE_FROM_ITEMS, has_gmf=False)  # MLP only
    assert not RetrievalSettings(mode="exact").use_approximate(10**7, has_gmf=True)
    assert RetrievalSettings(mode="approximate").use_approximate(10, has_gmf=True)
    small = Recommender(random_artifacts(model_type="gmf", num_items=300))
    assert small.approximate is None  # auto, a small catalog: brute force
    mlp = Recommender(
        random_artifacts(model_type="mlp", num_items=300),
        retrieval=RetrievalSettings(mode="approximate"),
    )
    assert mlp.approximate is None  # nothing to index


def test_settings_read_the_retrieval_variables(tmp_path) -> None:
    settings = ServingSettings.from_env(
        {
            "SAGEMAKER_BASE_DIR": str(tmp_path),
            "NCF_RETRIEVAL": "approximate",
            "NCF_ANN_CANDIDATES": "500",
            "NCF_ANN_NPROBE": "64",
            "NCF_KNOWN_ROWS_MB": "0",
        }
    )
    assert settings.retrieval == RetrievalSettings("approximate", 500, 64, known_rows_mb=0)
    assert ServingSettings.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)}).retrieval == (
        RetrievalSettings("auto", 200, 32, known_rows_mb=256)
    )
    with pytest.raises(SettingsError, match="NCF_KNOWN_ROWS_MB"):
        ServingSettings.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path), "NCF_KNOWN_ROWS_MB": "-1"})
    assert ServingSettings.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)}).retrieval.mode == "auto"
    with pytest.raises(SettingsError, match="NCF_RETRIEVAL"):
        ServingSettings.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path), "NCF_RETRIEVAL": "fast"})


def _with_item_bias(artifacts: ModelArtifacts) -> ModelArtifacts:
    """The GMF artifacts as a hybrid model: the same vectors plus a per-item bias."""
    bias = np.random.default_rng(1).normal(size=artifacts.num_items).astype(np.float32)
    return dataclasses.replace(
        artifacts,
        metadata=dataclasses.replace(artifacts.metadata, model_type="hybrid"),
        weights={**artifacts.weights, "item_bias": bias},
    )


@pytest.mark.parametrize(
    "artifacts",
    [
        random_artifacts(model_type="gmf", num_items=400),
        _with_item_bias(random_artifacts(model_type="gmf", num_items=400)),
        random_artifacts(model_type="neumf", num_items=400, layers=()),
    ],
    ids=["gmf", "hybrid", "neumf-no-hidden-layer"],
)
def test_a_linear_model_s_first_stage_inner_product_is_its_logit(
    artifacts: ModelArtifacts,
) -> None:
    # Up to a per-user constant, which leaves each user's ranking as it is.
    scorer = NcfScorer.from_artifacts(artifacts)
    items = scorer.first_stage_items()
    assert items is not None
    for user in range(artifacts.num_users):
        gap = items @ scorer.first_stage_query(user) - scorer.logits_all_items(np.array([user]))[0]
        np.testing.assert_allclose(gap, gap[0], atol=1e-5)


def test_neumf_first_stage_follows_the_mlp_tower_not_only_the_gmf_part() -> None:
    # A NeuMF whose ranking the MLP tower decides (GMF vectors shrunk): the GMF part alone
    # picks nearly random candidates; with its linear stand-in for the tower, 50 candidates
    # of 2,000 hold most of the exact top 10.
    artifacts = random_artifacts(model_type="neumf", num_users=40, num_items=2_000, mlp_dim=8)
    weights = dict(artifacts.weights)
    weights["gmf_item_embedding"] = 0.05 * weights["gmf_item_embedding"]
    artifacts = dataclasses.replace(artifacts, weights=weights)
    scorer = NcfScorer.from_artifacts(artifacts)
    items = scorer.first_stage_items()
    assert items is not None and items.shape[1] == 4 + 8  # [gmf (4), first MLP layer (8)]
    found = {"linearised": 0, "gmf part": 0}
    for user in range(40):
        best = set(np.argsort(-scorer.logits_all_items(np.array([user]))[0])[:10].tolist())
        query = scorer.first_stage_query(user)
        for name, inner in (("linearised", items @ query), ("gmf part", items[:, :4] @ query[:4])):
            found[name] += len(best & set(np.argsort(-inner)[:50].tolist()))
    assert found["linearised"] / 400 >= 0.8  # 0.86
    assert found["gmf part"] / 400 <= 0.1  # 0.015
    # Through the index (every list searched) and exact re-scoring: the exact lists.
    every = RetrievalSettings(mode="approximate", candidates=50, nprobe=1_000)
    approximate = Recommender(artifacts, retrieval=every)
    exact = Recommender(artifacts, retrieval=RetrievalSettings(mode="exact"))
    requests = [RecommendRequest(user_id=f"u{n}", k=10) for n in range(40)]
    overlap = sum(
        len(set(a) & set(e))
        for a, e in zip(lists(approximate, requests), lists(exact, requests), strict=True)
    )
    assert overlap / 400 >= 0.8
