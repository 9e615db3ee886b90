"""NcfScorer against a direct, naive evaluation of the formula in ncf_contract.model_dir."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import serving_support

from inference.scoring import NcfScorer
from ncf_contract.model_dir import ModelArtifacts

make_artifacts = serving_support.make_artifacts  # the shared fixture, under its own name

MakeArtifacts = Callable[..., ModelArtifacts]


def naive_score(artifacts: ModelArtifacts, user: int, item: int) -> float:
    """The module docstring's formula, one pair at a time, in float64."""
    weights = {
        name: np.asarray(value, dtype=np.float64) for name, value in artifacts.weights.items()
    }
    meta = artifacts.metadata
    parts = []
    if meta.model_type in ("gmf", "neumf"):
        parts.append(weights["gmf_user_embedding"][user] * weights["gmf_item_embedding"][item])
    if meta.model_type in ("mlp", "neumf"):
        x = np.concatenate(
            [weights["mlp_user_embedding"][user], weights["mlp_item_embedding"][item]]
        )
        for layer in range(meta.num_mlp_layers):
            x = np.maximum(x @ weights[f"mlp_kernel_{layer}"] + weights[f"mlp_bias_{layer}"], 0)
        parts.append(x)
    h = np.concatenate(parts)
    logit = h @ weights["output_kernel"][:, 0] + weights["output_bias"][0]
    return float(1 / (1 + np.exp(-logit))) if meta.output_activation == "sigmoid" else float(logit)


CASES = [
    {"model_type": "gmf"},
    {"model_type": "mlp"},
    {"model_type": "mlp", "layers": ()},
    {"model_type": "mlp", "layers": (5,)},
    {"model_type": "neumf"},
    {"model_type": "neumf", "layers": (16, 8, 4)},
    {"model_type": "neumf", "output_activation": "linear"},
    {"model_type": "gmf", "output_activation": "linear"},
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(map(str, case.values())))
def test_scores_match_the_formula(make_artifacts: MakeArtifacts, case: dict) -> None:
    artifacts = make_artifacts(**case)
    scorer = NcfScorer.from_artifacts(artifacts)
    grid_users, grid_items = np.meshgrid(
        np.arange(artifacts.num_users), np.arange(artifacts.num_items)
    )
    users, items = grid_users.T.ravel(), grid_items.T.ravel()
    expected = np.array(
        [naive_score(artifacts, int(u), int(i)) for u, i in zip(users, items, strict=True)]
    )

    pairs = scorer.score_pairs(users, items)
    assert pairs.dtype == np.float32
    np.testing.assert_allclose(pairs, expected, rtol=1e-4, atol=1e-5)

    catalog = scorer.score_all_items(np.arange(artifacts.num_users))
    assert catalog.shape == (artifacts.num_users, artifacts.num_items)
    assert catalog.dtype == np.float32
    np.testing.assert_allclose(catalog.ravel(), expected, rtol=1e-4, atol=1e-5)


def test_catalog_scoring_in_blocks_matches_pairs(
    make_artifacts: MakeArtifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    import inference.scoring as scoring

    monkeypatch.setattr(scoring, "_MLP_BLOCK_ROWS", 7)  # forces many blocks, ragged last one
    artifacts = make_artifacts(model_type="neumf")
    scorer = NcfScorer.from_artifacts(artifacts)
    users = np.array([3, 0, 3, 29])
    catalog = scorer.score_all_items(users)
    pairs = scorer.score_pairs(
        np.repeat(users, artifacts.num_items), np.tile(np.arange(artifacts.num_items), len(users))
    )
    np.testing.assert_allclose(catalog.ravel(), pairs, rtol=1e-5, atol=1e-6)


def test_empty_batches(make_artifacts: MakeArtifacts) -> None:
    scorer = NcfScorer.from_artifacts(make_artifacts())
    assert scorer.score_pairs(np.array([], int), np.array([], int)).shape == (0,)
    assert scorer.score_all_items(np.array([], int)).shape == (0, scorer.num_items)


def test_item_vectors_are_unit_rows(make_artifacts: MakeArtifacts) -> None:
    scorer = NcfScorer.from_artifacts(make_artifacts())
    np.testing.assert_allclose(np.linalg.norm(scorer.item_vectors, axis=1), 1.0, rtol=1e-5)
    assert scorer.item_vectors.flags.c_contiguous


def test_load_makes_no_transposed_or_float64_copy_of_the_item_tables(
    make_artifacts: MakeArtifacts,
) -> None:
    # Issue 16: at 1M items each [d, num_items] copy cost ~1 s of a worker's start. The
    # catalog product takes the transposed view (BLAS's transpose flag), with the same result
    # as a contiguous copy, and the fold-in sums VᵀV in float64 blocks over the float32 table.
    from inference.recommender import Recommender
    from inference.scoring import _GRAM_BLOCK_ROWS, FoldIn

    artifacts = make_artifacts(model_type="gmf", num_items=300)
    recommender = Recommender(artifacts)
    scorer = recommender.scorer
    assert isinstance(scorer, NcfScorer)
    user_scaled, items = scorer._gmf_user_scaled, scorer.first_stage_items()
    assert items is not None and user_scaled is not None
    assert items is scorer._gmf_item  # GMF: the index's vectors are the embeddings themselves
    assert np.shares_memory(recommender.item_vectors_t, scorer.item_vectors)
    assert scorer._fold_in is not None and np.shares_memory(scorer._fold_in.item_vectors, items)
    users = np.arange(7)
    np.testing.assert_array_equal(
        scorer.logits_all_items(users),
        user_scaled[users] @ np.ascontiguousarray(items.T) + scorer._output_bias,
    )
    rng = np.random.default_rng(0)
    table = rng.normal(size=(2 * _GRAM_BLOCK_ROWS + 5, 6)).astype(np.float32)
    fold_in = FoldIn.build(table, alpha=1.0, l2=None)
    exact = table.astype(np.float64).T @ table.astype(np.float64)
    np.testing.assert_allclose(fold_in.gram, exact, rtol=1e-10)
    assert fold_in.item_vectors is table


def test_two_tower_item_vectors_equal_the_unit_rows_of_the_towers_unit_rows() -> None:
    # Issue 16: written in place (no concatenated copy), the values are those of the
    # definition to the bit, zero and tiny rows included.
    from ncf_contract.ranking import unit_item_vectors, unit_rows

    rng = np.random.default_rng(1)
    gmf = rng.normal(size=(40, 8)).astype(np.float32)
    mlp = rng.normal(size=(40, 4)).astype(np.float32)
    gmf[3], mlp[3], mlp[5], gmf[7] = 0.0, 0.0, 0.0, 1e-14
    unit = unit_item_vectors({"gmf_item_embedding": gmf, "mlp_item_embedding": mlp})
    expected = unit_rows(np.concatenate([unit_rows(gmf), unit_rows(mlp)], axis=1))
    np.testing.assert_array_equal(unit, expected)
    assert unit.dtype == np.float32 and unit.flags.c_contiguous


def test_one_tower_item_vectors_are_its_unit_rows() -> None:
    from ncf_contract.ranking import unit_item_vectors, unit_rows

    rng = np.random.default_rng(0)
    gmf = rng.normal(size=(50, 8)).astype(np.float32)
    gmf[3] = 0.0
    unit = unit_item_vectors({"gmf_item_embedding": gmf})
    np.testing.assert_array_equal(unit, unit_rows(gmf))
    np.testing.assert_allclose(np.linalg.norm(unit[np.arange(50) != 3], axis=1), 1.0, rtol=1e-6)
    assert not unit[3].any()  # a zero row stays zero
    assert unit.dtype == np.float32 and unit.flags.c_contiguous
