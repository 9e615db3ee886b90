"""Beyond-accuracy metrics: each on a hand-computed case, then against reference implementations.

Hand case: 5 items with training popularity ``[6, 3, 1, 0, 2]`` (12 interactions;
item 3 never seen), three users' top-2 lists ``[0, 1]``, ``[0, 2]`` and ``[0, -]``
(the last user had one item left). Recommendation counts ``[3, 1, 1, 0, 0]``
over 5 recommendations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from ncf_contract.seen import SeenItems
from training import beyond_accuracy as ba
from training.evaluation import PopularityScorer, compare_lists, top_k_lists

POPULARITY = np.array([6, 3, 1, 0, 2])
LISTS = np.array([[0, 1], [0, 2], [0, -1]])
# Item 1 is (3, 4): cosine 0.6 with item 0 = (1, 0); item 2 = (0, 1) is orthogonal to item 0.
VECTORS = np.array([[1, 0], [3, 4], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)


def test_recommendation_counts():
    assert ba.recommendation_counts(LISTS, 5).tolist() == [3, 1, 1, 0, 0]


def test_catalog_coverage_counts_distinct_items_over_training_items():
    # 3 distinct items recommended; 4 items have training interactions.
    assert ba.catalog_coverage(LISTS, POPULARITY) == pytest.approx(3 / 4)


def test_distributional_coverage_is_the_entropy_of_recommendation_shares():
    expected = -(0.6 * math.log2(0.6) + 2 * 0.2 * math.log2(0.2))  # 1.37095...
    assert ba.distributional_coverage(LISTS, 5) == pytest.approx(expected)
    even = np.array([[0, 1], [2, 3]])
    assert ba.distributional_coverage(even, 4) == pytest.approx(2.0)  # log2(4): all equal


def test_gini_index_over_the_whole_catalogue():
    # Sorted counts [0, 0, 1, 1, 3]; weights 2j - n - 1 = [-4, -2, 0, 2, 4]; 14 / (5 * 5).
    assert ba.gini_index(LISTS, 5) == pytest.approx(0.56)
    assert ba.gini_index(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(0.0)
    # Everyone gets the same one item of 4: (2*4 - 5) * 3 / (4 * 3) = 0.75 = 1 - 1/n.
    assert ba.gini_index(np.array([[0], [0], [0]]), 4) == pytest.approx(0.75)


def test_novelty_is_mean_self_information_of_recommendations():
    # -log2(p): item 0 6/12 -> 1, item 1 3/12 -> 2, item 2 1/12 -> log2(12).
    expected = (3 * 1 + 2 + math.log2(12)) / 5
    assert ba.novelty(LISTS, POPULARITY) == pytest.approx(expected)


def test_novelty_of_an_item_unseen_in_training_counts_zero():
    # As the reference (an inner join on training items): item 3 adds 0 but counts.
    assert ba.novelty(np.array([[0, 3]]), POPULARITY) == pytest.approx(0.5)


def test_intra_list_diversity_is_one_minus_mean_pairwise_cosine():
    # User 0: cos(0, 1) = 0.6 -> 0.4; user 1: cos(0, 2) = 0 -> 1; user 2 has no pair.
    assert ba.intra_list_diversity(LISTS, VECTORS) == pytest.approx((0.4 + 1.0) / 2)
    # Three items: cosines 0.6, 0.0, 0.8 -> 1 - 1.4 / 3.
    assert ba.intra_list_diversity(np.array([[0, 1, 2]]), VECTORS) == pytest.approx(1 - 1.4 / 3)


def test_intra_list_diversity_on_sparse_attributes_equals_dense():
    sparse = sp.csr_matrix(VECTORS)
    assert ba.intra_list_diversity(LISTS, sparse) == pytest.approx(0.7)
    rng = np.random.default_rng(3)
    attributes = (rng.random((5, 7)) < 0.4) * rng.random((5, 7))
    lists = np.array([[0, 1, 2], [3, 4, -1], [2, -1, -1]])
    assert ba.intra_list_diversity(lists, sp.csr_matrix(attributes)) == pytest.approx(
        ba.intra_list_diversity(lists, attributes)
    )


def test_intra_list_diversity_streams_in_blocks(monkeypatch):
    monkeypatch.setattr(ba, "_ILD_BLOCK_USERS", 2)
    assert ba.intra_list_diversity(LISTS, VECTORS) == pytest.approx(0.7)


def test_arp_is_the_mean_over_users_of_list_popularity():
    # (6 + 3) / 2, (6 + 1) / 2, 6 / 1.
    assert ba.average_recommendation_popularity(LISTS, POPULARITY) == pytest.approx(
        (4.5 + 3.5 + 6) / 3
    )


def test_long_tail_lies_outside_the_items_making_up_80_percent_of_interactions():
    # Descending: item 0 (6), item 1 (9 cumulative), item 4 (11 >= 9.6): the head.
    assert np.flatnonzero(ba.long_tail_items(POPULARITY)).tolist() == [2, 3]


def test_aplt_is_the_mean_share_of_long_tail_items_per_list():
    # User 0: 0/2; user 1: item 2 -> 1/2; user 2: 0/1.
    assert ba.average_percentage_long_tail(LISTS, POPULARITY) == pytest.approx(0.5 / 3)


def test_beyond_accuracy_metrics_names_every_metric():
    metrics = ba.beyond_accuracy_metrics(LISTS, POPULARITY, VECTORS)
    assert set(metrics) == set(ba.METRIC_NAMES) - {ba.ILD_ATTRIBUTES}
    attributes = np.eye(5)  # one-hot attributes: distinct items never share one
    with_attributes = ba.beyond_accuracy_metrics(LISTS, POPULARITY, VECTORS, attributes)
    assert with_attributes[ba.ILD_ATTRIBUTES] == pytest.approx(1.0)
    assert with_attributes[ba.ILD] == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("lists", "message"),
    [
        (np.array([[0, 5]]), r"\[0, 5\)"),
        (np.array([0, 1]), "2-D integer"),
        (np.array([[0.0, 1.0]]), "2-D integer"),
    ],
)
def test_bad_lists_are_refused(lists, message):
    with pytest.raises(ValueError, match=message):
        ba.beyond_accuracy_metrics(lists, POPULARITY, VECTORS)


def test_item_vectors_must_match_the_catalogue():
    with pytest.raises(ValueError, match="4 item vectors for 5 items"):
        ba.beyond_accuracy_metrics(LISTS, POPULARITY, VECTORS[:4])


# Reference case: 10 items, 6 users' top-4 lists. The figures were produced by the
# reference implementations themselves:
# - Microsoft Recommenders 1.2.1, recommenders.evaluation.python_evaluation
#   (catalog_coverage, distributional_coverage, novelty, and diversity with
#   item_sim_measure="item_feature_vector"), run on train_df = one row per training
#   interaction (users disjoint from the recommended users), reco_df = the lists.
#   Recommenders is not a dev dependency: it installs 171 packages (transformers,
#   cornac, lightgbm, ...) and pins pandas < 3, so it ran in a scratch environment.
# - RecBole GiniIndex.get_gini (recbole/evaluator/metrics.py) and Elliot's ARP, APLT
#   and Popularity.get_short_head / get_long_tail (sisinflab/elliot), transcribed
#   verbatim into the same scratch script: recbole pulls in PyTorch (63 packages) and
#   Elliot is not on PyPI.
REFERENCE_POPULARITY = np.array([9, 7, 6, 4, 3, 2, 2, 1, 1, 0])
REFERENCE_LISTS = np.array(
    [[0, 1, 2, 3], [0, 2, 4, 1], [1, 0, 5, 3], [0, 1, 2, 5], [3, 8, 0, 9], [2, 0, 1, 4]]
)
REFERENCE_VECTORS = np.array(
    [
        [1, 0, 0],
        [1, 1, 0],
        [0, 1, 0],
        [0, 0, 1],
        [1, 0, 1],
        [2, 1, 0],
        [0, 1, 2],
        [1, 1, 1],
        [0, 2, 1],
        [1, 2, 3],
    ],
    dtype=np.float32,
)
REFERENCE_FIGURES = {
    ba.COVERAGE: 0.8888888888888888,  # Recommenders catalog_coverage
    ba.DISTRIBUTIONAL_COVERAGE: 2.7568665431825217,  # Recommenders distributional_coverage
    ba.NOVELTY: 2.641975406936058,  # Recommenders novelty
    ba.ILD: 0.575985340101762,  # Recommenders diversity (item_feature_vector)
    ba.GINI: 0.4583333333333333,  # RecBole GiniIndex
    ba.ARP: 5.666666666666667,  # Elliot ARP
    ba.APLT: 0.16666666666666666,  # Elliot APLT (long tail: items 5, 6, 7, 8, 9)
}


def test_figures_match_the_reference_implementations():
    metrics = ba.beyond_accuracy_metrics(REFERENCE_LISTS, REFERENCE_POPULARITY, REFERENCE_VECTORS)
    assert metrics == pytest.approx(REFERENCE_FIGURES, rel=1e-6)
    assert np.flatnonzero(ba.long_tail_items(REFERENCE_POPULARITY)).tolist() == [5, 6, 7, 8, 9]


def test_top_k_lists_exclude_seen_items_and_stream_in_blocks():
    scores = np.array(
        [[0.9, 0.8, 0.7, 0.1, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.5, 0.5, np.nan, 0.1]],
        dtype=np.float32,
    )
    seen = SeenItems.from_pairs(np.array([0, 1, 1, 1, 1]), np.array([0, 0, 1, 2, 3]), 3, 5)
    lists = top_k_lists(lambda users: scores[users], np.arange(3), seen, k=3, batch_size=2)
    # User 1 has one unseen item left; user 2's ties go to the lower index, NaN ranks last.
    assert lists.tolist() == [[1, 2, 4], [4, -1, -1], [0, 1, 2]]


def test_popularity_baseline_lists_are_the_most_popular_unseen_items():
    seen = SeenItems.from_pairs(np.array([0]), np.array([0]), 2, 5)
    lists = top_k_lists(PopularityScorer(POPULARITY).score_all_items, np.arange(2), seen, k=2)
    assert lists.tolist() == [[1, 4], [0, 1]]


def test_compare_lists_puts_the_model_beside_popularity():
    # The model prefers the least popular items; each user has seen item 0.
    scores = np.broadcast_to(-POPULARITY.astype(np.float32), (3, 5))
    seen = SeenItems.from_pairs(np.array([0, 1, 2]), np.array([0, 0, 0]), 3, 5)
    comparison = compare_lists(
        lambda users: scores[users], np.array([2, 0, 1, 0]), seen, 2, POPULARITY, VECTORS
    )
    # Model lists: [3, 2] for all 3 users; popularity lists: [1, 4].
    assert comparison.recommendation_counts["model"].tolist() == [0, 0, 3, 3, 0]
    assert comparison.recommendation_counts["popularity"].tolist() == [0, 3, 0, 0, 3]
    assert comparison.metrics["model"]["aplt"] == pytest.approx(1.0)
    assert comparison.metrics["popularity"]["aplt"] == pytest.approx(0.0)
    assert comparison.metrics["popularity"] == ba.beyond_accuracy_metrics(
        np.array([[1, 4]] * 3), POPULARITY, VECTORS
    )


def test_popularity_scorer_scores_pairs_by_popularity():
    scorer = PopularityScorer(POPULARITY)
    assert scorer.score_pairs(np.array([0, 1]), np.array([4, 0])).tolist() == [2.0, 6.0]
    assert scorer.score_all_items(np.array([0, 1])).shape == (2, 5)
