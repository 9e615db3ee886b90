"""Approximate retrieval for large catalogs: the same lists as brute force where exact by
construction, seen and excluded items never returned, and the choice by catalog size."""

from __future__ import annotations

import numpy as np
import pytest
import serving_support

from inference.instances import RecommendRequest
from inference.recommender import Recommender
from inference.retrieval import APPROXIMATE_FROM_ITEMS, ApproximateIndex, RetrievalSettings
from inference.settings import ServingSettings, SettingsError

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
    index = ApproximateIndex(items.astype(np.float32), nprobe=8)
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
    query = recommender.query_vectors[0]
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
        }
    )
    assert settings.retrieval == RetrievalSettings("approximate", 500, 64)
    assert ServingSettings.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)}).retrieval.mode == "auto"
    with pytest.raises(SettingsError, match="NCF_RETRIEVAL"):
        ServingSettings.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path), "NCF_RETRIEVAL": "fast"})
