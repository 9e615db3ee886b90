"""NumPy scoring of a GMF / MLP / NeuMF model, with every request-independent part precomputed.

Serving never imports TensorFlow: the weights in ``weights.npz`` are enough to
evaluate the formula in ``ncf_contract.model_dir`` exactly. What does not depend on
the request is computed once at load time, so a request only does the work
that involves its own users:

- GMF part: ``(gmf_user[u] * gmf_item[i]) @ w_gmf`` equals
  ``(gmf_user[u] * w_gmf) @ gmf_item[i]``; the user side is pre-scaled by the
  output kernel (``gmf_user_scaled``), so scoring a whole catalog is one
  ``[b, d] @ [d, num_items]`` matrix product with no ``[b, num_items, d]``
  intermediate and no per-request multiply by the kernel.
- MLP first layer: ``concat(mlp_user[u], mlp_item[i]) @ W0 + b0`` equals
  ``mlp_user[u] @ W0_user + (mlp_item[i] @ W0_item + b0)``; both terms are
  precomputed per user and per item (``mlp_user_first`` / ``mlp_item_first``),
  so the widest layer costs one broadcast add instead of a
  ``[b * num_items, 2 * d_mlp] @ [2 * d_mlp, L0]`` product per request.
- Output layer: the MLP half of the output kernel is split off once
  (``mlp_output_kernel``); with no hidden layers the MLP part is linear and
  collapses to one precomputed scalar per user and per item.
- Ranking only needs logits (the sigmoid is monotonic), so ``logits_all_items``
  lets callers apply the activation to the ``k`` winners only.
- Every array is float32 and C-contiguous so BLAS gets them without copies; a
  catalog product ``users @ items.T`` passes the transposed *view* to BLAS (its
  transpose flag), so no ``[d, num_items]`` copy is made at load time (1 s per
  copy at 1M x 64, issue 16); for a batch the result is identical to the product
  with a contiguous transposed copy.
- The hybrid family exports GMF-shaped vectors plus ``item_bias``, added to
  each item's logit; ``logits_from_user_vectors`` scores a user built at request
  time (from ``user_attributes``) the same way.

``ials`` models are GMF models with an identity output layer and go through
``NcfScorer`` unchanged. ``EaseScorer`` serves ``ease``: a user's logits are their
``seen.npz`` row's indicator times the item-item matrix (``ncf_contract.model_dir``).
``BlendScorer`` serves ``blend``: an ``EaseScorer`` and an iALS ``NcfScorer`` on the
same model directory, each user's two logit rows standardised and mixed by
``blend_weights``. ``scorer_for`` picks the scorer by ``model_type``.

A history given in a request (``logits_from_history``) is scored exactly for EASE
(its indicator row times the item-item matrix). The dot-product families (gmf,
ials) fold it into a user vector with one ridge least-squares step against the
item vectors ``V`` (``FoldIn``): the user half-step of implicit ALS (Hu, Koren &
Volinsky 2008), every item a target, 1 with confidence ``1 + α`` for a history
item and 0 with confidence 1 for the rest::

    u = (VᵀV + α V_hᵀ V_h + λ I)⁻¹ (1 + α) V_hᵀ 1

For ials, α and λ are the model's own (``ials_alpha``, ``ials_regularization``),
so ``u`` is the user vector the next ALS step would give this history; a model of
``ials_members`` fits side by side solves each member's block of factors on its own
(``u_k`` against ``V_k``) and stores ``[u_1 .. u_K] / K``, as training exported it. For gmf,
``u`` lives in the user space scaled by the output kernel (``gmf_user_scaled``)
so the score formula is unchanged; α is ``FOLD_IN_ALPHA`` and λ is
``FOLD_IN_RELATIVE_L2`` times the mean eigenvalue of ``VᵀV`` (so it follows the
scale of the item vectors). Such scores rank the catalog for the history; for
gmf they are not calibrated probabilities the way a trained user's are, and they
rank below a trained user's (ML-1M: HR@10 0.632 from the history against 0.703
by user id; ials 0.716 against 0.712, BENCHMARKS.md). A blend mixes the exact
EASE row of the history with the iALS fold-in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from ncf_contract.families import (
    BLEND,
    DOT_PRODUCT_FAMILIES,
    EASE,
    GMF_TOWER_FAMILIES,
    IALS,
    MLP_TOWER_FAMILIES,
)
from ncf_contract.first_stage import ItemTerms, first_stage_vectors, item_terms
from ncf_contract.model_dir import ModelArtifacts
from ncf_contract.ranking import (
    ROW_BLOCK_USERS,
    pairs_from_rows,
    standardise_rows,
    unit_item_vectors,
)
from ncf_contract.seen import SeenItems

#: The fold-in of a gmf model (ials uses its own training values): the confidence of a
#: history item is ``1 + FOLD_IN_ALPHA``; λ is ``FOLD_IN_RELATIVE_L2`` x mean eigenvalue of VᵀV.
FOLD_IN_ALPHA = 4.0
FOLD_IN_RELATIVE_L2 = 0.1

#: Rows (users x items) scored per MLP block: bounds the ``[rows, L0]`` intermediate
#: (4 MB at L0 = 64) whatever the batch size.
_MLP_BLOCK_ROWS = 16_384
#: Items per float64 block when summing the fold-in's ``VᵀV`` (4 MB at d = 64).
_GRAM_BLOCK_ROWS = 8_192
#: Items (a fixed random sample) over which a user's MLP tower is linearised for the
#: approximate first stage (``NcfScorer.first_stage_query``).
LINEARISATION_SAMPLE = 256


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    # exp(-softplus(-x)): stable for any float32 logit, no overflow warnings, two ufunc calls.
    return np.exp(-np.logaddexp(np.float32(0.0), -logits))


@dataclass(frozen=True)
class _MlpTower:
    """The MLP half with its first layer split into precomputed user and item terms."""

    user_first: np.ndarray  # [num_users, L0]: mlp_user @ W0_user
    item_first: np.ndarray  # [num_items, L0]: mlp_item @ W0_item + b0
    kernels: tuple[np.ndarray, ...]  # layers 1 .. L-1
    biases: tuple[np.ndarray, ...]
    output_kernel: np.ndarray  # [L_last]
    # Read-only zero blocks per layer width: NumPy's maximum against a same-shape array
    # takes a SIMD loop ~3.5x faster than against the scalar 0 (25 vs 90 us for 3706 x 64).
    zeros: dict[int, np.ndarray]

    def _relu(self, hidden: np.ndarray) -> np.ndarray:
        rows, width = hidden.shape
        zeros = self.zeros[width]
        if rows <= zeros.shape[0]:
            return np.maximum(hidden, zeros[:rows], out=hidden)
        return np.maximum(hidden, 0.0, out=hidden)

    def logits(self, first_layer: np.ndarray) -> np.ndarray:
        """MLP logit contribution from pre-activation first-layer rows ``[rows, L0]``."""
        hidden = self._relu(first_layer)
        for kernel, bias in zip(self.kernels, self.biases, strict=True):
            hidden = hidden @ kernel
            hidden += bias
            self._relu(hidden)
        return hidden @ self.output_kernel

    def mean_gradient(self, first_layer: np.ndarray) -> np.ndarray:
        """``[L0]``: the mean over rows of d(MLP logit) / d(first-layer pre-activation).

        The tower is piecewise linear (ReLU), so each row's gradient is its active units'
        path through the kernels; the mean over a sample of items is the slope of the
        least-squares-like linear stand-in for the tower that the first stage indexes.
        """
        masks = [first_layer > 0]
        hidden = np.maximum(first_layer, np.float32(0.0))
        for kernel, bias in zip(self.kernels, self.biases, strict=True):
            hidden = hidden @ kernel + bias
            masks.append(hidden > 0)
            np.maximum(hidden, np.float32(0.0), out=hidden)
        gradient = masks[-1] * self.output_kernel
        for kernel, mask in zip(reversed(self.kernels), reversed(masks[:-1]), strict=True):
            gradient = (gradient @ kernel.T) * mask
        return np.asarray(gradient.mean(axis=0), dtype=np.float32)


class Scorer(Protocol):
    """What ``inference.recommender`` needs from a family's scorer (indices are positions)."""

    num_users: int
    num_items: int
    #: ``[num_items, d]`` unit vectors: cosine for similar items and diversity.
    item_vectors: np.ndarray

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """Scores from logits."""
        ...

    def logits_all_items(self, user_index: np.ndarray) -> np.ndarray:
        """``[b, num_items]`` logits of every item for each user."""
        ...

    def score_pairs(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """``[n]`` scores of aligned (user, item) pairs."""
        ...

    def logits_from_history(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """``[len(histories), num_items]`` logits for users known only by their history.

        Each history is an array of distinct item positions (not empty).
        """
        ...


@dataclass(frozen=True)
class FoldIn:
    """One ridge least-squares step from a history to a user vector (see the module docstring).

    Attributes:
        item_vectors: ``[num_items, d]`` float32 ``V`` (the model's own array, not a copy;
            a history's rows are taken to float64 when solving).
        gram: ``VᵀV`` (float64), precomputed.
        alpha: α; a history item's confidence is ``1 + α``.
        l2: λ.
    """

    item_vectors: np.ndarray
    gram: np.ndarray
    alpha: float
    l2: float
    members: int = 1

    @classmethod
    def build(
        cls, item_vectors: np.ndarray, alpha: float, l2: float | None, members: int = 1
    ) -> FoldIn:
        """``l2=None``: ``FOLD_IN_RELATIVE_L2`` times the mean eigenvalue of ``VᵀV``.

        ``VᵀV`` is summed in float64 over blocks of ``_GRAM_BLOCK_ROWS`` items, so no
        float64 copy of ``V`` is made (512 MB at 1M x 64). ``members`` > 1: ``V`` is the
        item factors of that many iALS fits side by side (``ials_members``), each solved for
        on its own (the cross-member blocks of the system are zero) and the user vector
        divided by ``members``, as the export stores it.
        """
        vectors = np.asarray(item_vectors, dtype=np.float32)
        dim = vectors.shape[1]
        if members < 1 or dim % members:
            raise ValueError(f"{dim} factors cannot be split into {members} iALS members")
        gram = np.zeros((dim, dim))
        for start in range(0, len(vectors), _GRAM_BLOCK_ROWS):
            block = vectors[start : start + _GRAM_BLOCK_ROWS].astype(np.float64)
            gram += block.T @ block
        if l2 is None:
            l2 = FOLD_IN_RELATIVE_L2 * float(np.trace(gram)) / max(1, len(gram))
        return cls(
            vectors,
            gram * _member_blocks(dim, members),
            float(alpha),
            max(float(l2), 1e-9),
            members,
        )

    def user_vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """``[len(histories), d]`` float32 user vectors, one per history."""
        dim = self.gram.shape[0]
        systems = np.empty((len(histories), dim, dim))
        targets = np.empty((len(histories), dim))
        ridge = self.l2 * np.eye(dim)
        blocks = _member_blocks(dim, self.members)
        for row, items in enumerate(histories):
            vectors = self.item_vectors[items].astype(np.float64)
            systems[row] = self.gram + self.alpha * (vectors.T @ vectors) * blocks + ridge
            targets[row] = (1.0 + self.alpha) * vectors.sum(axis=0)
        solved = np.linalg.solve(systems, targets[:, :, None])[:, :, 0]
        return (solved / self.members).astype(np.float32)


def _member_blocks(dim: int, members: int) -> np.ndarray:
    """``[dim, dim]`` 1 within each member's diagonal block of factors, 0 across members."""
    member = np.arange(dim) // (dim // members)
    return (member[:, None] == member[None, :]).astype(np.float64)


class NcfScorer:
    """Scores (user, item) pairs or whole catalogs with the weights of a model directory.

    Build with ``from_artifacts``. Indices are model positions (``user_ids[u]``,
    ``item_ids[i]``), not raw ids.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        output_bias: float,
        sigmoid: bool,
        gmf_user_scaled: np.ndarray | None,
        gmf_item: np.ndarray | None,
        mlp: _MlpTower | None,
        mlp_user_linear: np.ndarray | None,
        mlp_item_linear: np.ndarray | None,
        item_vectors: np.ndarray,
        fold_in: FoldIn | None = None,
        gmf_kernel: np.ndarray | None = None,
        item_bias: np.ndarray | None = None,
    ) -> None:
        self.num_users = num_users
        self.num_items = num_items
        self._output_bias = np.float32(output_bias)
        self._sigmoid = sigmoid
        self._gmf_user_scaled = gmf_user_scaled
        self._gmf_item = gmf_item
        self._gmf_item_t = None if gmf_item is None else gmf_item.T  # a view: see the module
        self._mlp = mlp
        self._mlp_user_linear = mlp_user_linear
        self._mlp_item_linear = mlp_item_linear
        self.item_vectors = item_vectors
        self._fold_in = fold_in
        self._gmf_kernel = gmf_kernel
        self._item_bias = item_bias
        self._linearisation_rows = None
        if mlp is not None:
            sample = np.random.default_rng(0).choice(
                num_items, min(num_items, LINEARISATION_SAMPLE), replace=False
            )
            self._linearisation_rows = mlp.item_first[np.sort(sample)]

    @classmethod
    def from_artifacts(cls, artifacts: ModelArtifacts, family: str | None = None) -> NcfScorer:
        """Precompute the request-independent arrays (see the module docstring).

        Args:
            artifacts: The loaded model directory.
            family: Score its weights as this family (default: its ``model_type``); a
                blend's iALS part is scored as ``ials``.
        """
        meta = artifacts.metadata
        family = family or meta.model_type
        weights = artifacts.weights
        output_kernel = _f32(np.asarray(weights["output_kernel"]).reshape(-1))
        output_bias = float(np.asarray(weights["output_bias"]).reshape(-1)[0])
        use_gmf = family in GMF_TOWER_FAMILIES
        use_mlp = family in MLP_TOWER_FAMILIES

        # The item side (ncf_contract.first_stage, shared with the export's first-stage index).
        terms = item_terms(weights, family, meta.num_mlp_layers)
        gmf_item = terms.gmf_item
        gmf_user_scaled = None
        gmf_dim = 0
        item_embeddings: dict[str, np.ndarray] = {}
        if gmf_item is not None:
            gmf_user = _f32(weights["gmf_user_embedding"])
            gmf_dim = gmf_user.shape[1]
            gmf_user_scaled = _f32(gmf_user * output_kernel[:gmf_dim])
            item_embeddings["gmf_item_embedding"] = gmf_item

        mlp = None
        mlp_user_linear = None
        if use_mlp:
            mlp_user = _f32(weights["mlp_user_embedding"])
            mlp_dim = mlp_user.shape[1]
            mlp_output_kernel = _f32(output_kernel[gmf_dim:])
            item_embeddings["mlp_item_embedding"] = _f32(weights["mlp_item_embedding"])
            if meta.num_mlp_layers == 0:
                # x_L = x_0 = concat(user, item): linear, one scalar per user and per item.
                mlp_user_linear = _f32(mlp_user @ mlp_output_kernel[:mlp_dim])
            else:
                first_kernel = _f32(weights["mlp_kernel_0"])
                assert terms.mlp_item_first is not None
                mlp = _MlpTower(
                    user_first=_f32(mlp_user @ first_kernel[:mlp_dim]),
                    item_first=terms.mlp_item_first,
                    kernels=tuple(
                        _f32(weights[f"mlp_kernel_{layer}"])
                        for layer in range(1, meta.num_mlp_layers)
                    ),
                    biases=tuple(
                        _f32(np.asarray(weights[f"mlp_bias_{layer}"]).reshape(-1))
                        for layer in range(1, meta.num_mlp_layers)
                    ),
                    output_kernel=mlp_output_kernel,
                    zeros={
                        width: np.zeros((_MLP_BLOCK_ROWS, width), dtype=np.float32)
                        for width in {
                            first_kernel.shape[1],
                            *(
                                np.asarray(weights[f"mlp_kernel_{layer}"]).shape[1]
                                for layer in range(1, meta.num_mlp_layers)
                            ),
                        }
                    },
                )

        # Similar items and diversity: cosine on the unit item vectors (ncf_contract.ranking),
        # normalised once here so a query is one matrix-vector product.
        item_vectors = unit_item_vectors(item_embeddings)
        fold_in = None
        if family in DOT_PRODUCT_FAMILIES and gmf_item is not None:
            members = 1
            if family == IALS:
                alpha, l2 = meta.config.get("ials_alpha"), meta.config.get("ials_regularization")
                members = int(meta.config.get("ials_members") or 1)
            else:
                alpha, l2 = FOLD_IN_ALPHA, None
            fold_in = FoldIn.build(gmf_item, float(alpha or FOLD_IN_ALPHA), l2, members)
        return cls(
            num_users=artifacts.num_users,
            num_items=artifacts.num_items,
            output_bias=output_bias,
            sigmoid=meta.output_activation == "sigmoid",
            gmf_user_scaled=gmf_user_scaled,
            gmf_item=gmf_item,
            mlp=mlp,
            mlp_user_linear=mlp_user_linear,
            mlp_item_linear=terms.mlp_item_linear,
            item_vectors=item_vectors,
            fold_in=fold_in,
            gmf_kernel=_f32(output_kernel[:gmf_dim]) if use_gmf else None,
            item_bias=terms.item_bias,
        )

    @property
    def has_first_stage(self) -> bool:
        """Whether the model has a GMF part to search through the approximate index."""
        return self._gmf_item is not None

    def first_stage_items(self) -> np.ndarray | None:
        """``[num_items, D]`` float32 item vectors for the approximate first stage's index.

        ``ncf_contract.first_stage.first_stage_vectors`` of this scorer's item terms (the
        layout is documented there); their inner product with ``first_stage_query(u)`` is,
        up to a per-user constant (which does not change a user's ranking), the logit for
        gmf, ials, hybrid and NeuMF without hidden layers, and for NeuMF with hidden layers
        the GMF part plus a linear stand-in for the MLP tower. ``None`` for a model without
        a GMF part (MLP only; always scored exactly).
        """
        return first_stage_vectors(
            ItemTerms(
                gmf_item=self._gmf_item,
                item_bias=self._item_bias,
                mlp_item_linear=self._mlp_item_linear,
                mlp_item_first=None if self._mlp is None else self._mlp.item_first,
            )
        )

    def first_stage_query(self, user: int) -> np.ndarray:
        """``[D]`` float32: user ``user``'s query for ``first_stage_items``.

        In the same layout: ``gmf_user · w_gmf``; 1 against the item bias and against a
        NeuMF's linear MLP term; for NeuMF with hidden layers, the user's mean gradient of
        the MLP tower over ``LINEARISATION_SAMPLE`` fixed items, taken at the user's
        first-layer input (the tower is piecewise linear: this ranks the items by the GMF
        part plus a linear estimate of the tower).
        """
        assert self._gmf_user_scaled is not None, "first_stage_items is None for this model"
        parts = [self._gmf_user_scaled[user]]
        for column in (self._item_bias, self._mlp_item_linear):
            if column is not None:
                parts.append(np.ones(1, np.float32))
        if self._mlp is not None and self._linearisation_rows is not None:
            first = self._mlp.user_first[user] + self._linearisation_rows
            parts.append(self._mlp.mean_gradient(first))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """Scores from logits: the sigmoid for implicit models, identity otherwise."""
        return _sigmoid(logits) if self._sigmoid else logits

    def logits_pairs(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """Logits of aligned pairs, ``[n]`` float32."""
        user_index = np.asarray(user_index, dtype=np.intp).reshape(-1)
        item_index = np.asarray(item_index, dtype=np.intp).reshape(-1)
        logits = np.full(len(user_index), self._output_bias, dtype=np.float32)
        if self._item_bias is not None:
            logits += self._item_bias[item_index]
        if self._gmf_user_scaled is not None and self._gmf_item is not None:
            logits += np.einsum(
                "nd,nd->n", self._gmf_user_scaled[user_index], self._gmf_item[item_index]
            )
        if self._mlp is not None:
            for start in range(0, len(user_index), _MLP_BLOCK_ROWS):
                block = slice(start, start + _MLP_BLOCK_ROWS)
                first = self._mlp.user_first[user_index[block]]
                first += self._mlp.item_first[item_index[block]]
                logits[block] += self._mlp.logits(first)
        elif self._mlp_user_linear is not None and self._mlp_item_linear is not None:
            logits += self._mlp_user_linear[user_index] + self._mlp_item_linear[item_index]
        return logits

    def score_pairs(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """Scores of aligned (user, item) index pairs, ``[n]`` float32."""
        return self.activate(self.logits_pairs(user_index, item_index))

    def logits_all_items(self, user_index: np.ndarray) -> np.ndarray:
        """Logits of every item for each user, ``[b, num_items]`` float32."""
        user_index = np.asarray(user_index, dtype=np.intp).reshape(-1)
        batch = len(user_index)
        if self._gmf_user_scaled is not None and self._gmf_item_t is not None:
            logits = self._gmf_user_scaled[user_index] @ self._gmf_item_t
            logits += self._output_bias
            if self._item_bias is not None:
                logits += self._item_bias
        else:
            logits = np.full((batch, self.num_items), self._output_bias, dtype=np.float32)
        if self._mlp is not None:
            users_per_block = max(1, _MLP_BLOCK_ROWS // max(self.num_items, 1))
            # A single user is the common request: its rows are added straight into one
            # array (no [1, n, L0] broadcast temporary, no reshape).
            item_first = self._mlp.item_first
            if batch == 1:
                first = np.add(item_first, self._mlp.user_first[user_index[0]])
                logits[0] += self._mlp.logits(first)
                return logits
            for start in range(0, batch, users_per_block):
                users = user_index[start : start + users_per_block]
                first = self._mlp.user_first[users][:, None, :] + item_first[None, :, :]
                block_logits = self._mlp.logits(first.reshape(-1, item_first.shape[1]))
                logits[start : start + len(users)] += block_logits.reshape(len(users), -1)
        elif self._mlp_user_linear is not None and self._mlp_item_linear is not None:
            logits += self._mlp_user_linear[user_index][:, None]
            logits += self._mlp_item_linear[None, :]
        return logits

    def logits_from_user_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Every item's logits for users given as GMF vectors ``[b, d]`` (hybrid cold users).

        Raises:
            ValueError: The model has no GMF tower (MLP).
        """
        if self._gmf_kernel is None or self._gmf_item_t is None:
            raise ValueError("scoring a user vector needs a model with a GMF tower")
        logits = (_f32(vectors) * self._gmf_kernel) @ self._gmf_item_t
        logits += self._output_bias
        if self._item_bias is not None:
            logits += self._item_bias
        return logits

    def score_all_items(self, user_index: np.ndarray) -> np.ndarray:
        """Scores of every item for each user, ``[b, num_items]`` float32."""
        return self.activate(self.logits_all_items(user_index))

    def logits_from_history(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Logits for users known by their history: the fold-in (dot-product models only).

        Raises:
            ValueError: The model is not a dot product (mlp, neumf).
        """
        if self._fold_in is None or self._gmf_item_t is None:
            raise ValueError("a history can be folded into gmf and ials models only")
        logits = self._fold_in.user_vectors(histories) @ self._gmf_item_t
        logits += self._output_bias
        return logits


class EaseScorer:
    """Scores of an EASE model: a history's indicator row times the item-item matrix ``B``.

    A known user's history is their ``seen.npz`` row. Scores are linear (logits = scores).
    Item vectors (similar items, diversity) are the unit rows of ``B``.
    """

    def __init__(self, item_item: np.ndarray, seen: SeenItems, item_vectors: np.ndarray) -> None:
        self.item_item = _f32(item_item)
        self.seen = seen
        self.num_users = seen.num_users
        self.num_items = len(self.item_item)
        self.item_vectors = item_vectors

    @classmethod
    def from_artifacts(cls, artifacts: ModelArtifacts) -> EaseScorer:
        """The item-item matrix, the seen items and the unit rows."""
        return cls(
            artifacts.weights["ease_item_item"],
            artifacts.seen,
            unit_item_vectors(artifacts.weights),
        )

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """Identity: EASE scores are linear."""
        return logits

    def logits_from_history(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """``[len(histories), num_items]``: each history's indicator row times ``B``.

        A sparse product, even for one user: it adds the history's rows of ``B`` into
        the output without gathering them first (a ``[len(history), num_items]`` copy),
        160 against 280 µs for a 165-item history over 3,706 items.
        """
        lengths = np.fromiter((len(h) for h in histories), np.int64, len(histories))
        indicator = sp.csr_array(
            (
                np.ones(int(lengths.sum()), dtype=np.float32),
                np.concatenate(histories).astype(np.int32),
                np.concatenate([[0], np.cumsum(lengths)]),
            ),
            shape=(len(histories), self.num_items),
        )
        return np.asarray(indicator @ self.item_item, dtype=np.float32)

    def logits_all_items(self, user_index: np.ndarray) -> np.ndarray:
        """``[b, num_items]``: each user's seen items' indicator row times ``B``."""
        users = np.asarray(user_index, dtype=np.intp).reshape(-1)
        return self.logits_from_history([self.seen.row(int(user)) for user in users])

    def score_all_items(self, user_index: np.ndarray) -> np.ndarray:
        """Same as ``logits_all_items``."""
        return self.logits_all_items(user_index)

    def score_pairs(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """``[n]``: for each pair, the sum of ``B[seen item, item]`` over the user's seen items."""
        users = np.asarray(user_index, dtype=np.intp).reshape(-1)
        items = np.asarray(item_index, dtype=np.intp).reshape(-1)
        pairs, seen_items = self.seen.cells(np.arange(len(users)), users)
        values = self.item_item[seen_items, items[pairs]]
        return np.bincount(pairs, weights=values, minlength=len(users)).astype(np.float32)


class BlendScorer:
    """Scores of a blend: ``w_ease * z(EASE row) + w_ials * z(iALS row)`` for each user.

    ``z`` standardises a row over the whole catalog (``ncf_contract.ranking``), so a
    pair's score needs its user's whole rows. Scores are linear (logits = scores).
    Item vectors are the iALS part's.
    """

    def __init__(self, ease: EaseScorer, ials: NcfScorer, shares: np.ndarray) -> None:
        self.ease = ease
        self.ials = ials
        self.ease_share, self.ials_share = (float(share) for share in shares)
        self.num_users = ials.num_users
        self.num_items = ials.num_items
        self.item_vectors = ials.item_vectors

    @classmethod
    def from_artifacts(cls, artifacts: ModelArtifacts) -> BlendScorer:
        """Both parts of one model directory and their shares (``blend_weights``)."""
        ials = NcfScorer.from_artifacts(artifacts, family=IALS)
        ease = EaseScorer(artifacts.weights["ease_item_item"], artifacts.seen, ials.item_vectors)
        return cls(ease, ials, np.asarray(artifacts.weights["blend_weights"]).reshape(-1))

    def _mix(self, ease_logits: np.ndarray, ials_logits: np.ndarray) -> np.ndarray:
        mixed = self.ease_share * standardise_rows(ease_logits)
        mixed += self.ials_share * standardise_rows(ials_logits)
        return mixed

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """Identity: blended scores are linear."""
        return logits

    def logits_all_items(self, user_index: np.ndarray) -> np.ndarray:
        """``[b, num_items]``: the mix of both parts' rows for known users."""
        return self._mix(
            self.ease.logits_all_items(user_index), self.ials.logits_all_items(user_index)
        )

    def logits_from_history(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """``[len(histories), num_items]``: EASE's exact rows mixed with the iALS fold-in."""
        return self._mix(
            self.ease.logits_from_history(histories), self.ials.logits_from_history(histories)
        )

    def score_all_items(self, user_index: np.ndarray) -> np.ndarray:
        """Same as ``logits_all_items``."""
        return self.logits_all_items(user_index)

    def score_pairs(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """``[n]`` scores of aligned pairs, read off each distinct user's whole row."""
        users = np.asarray(user_index, dtype=np.intp).reshape(-1)
        items = np.asarray(item_index, dtype=np.intp).reshape(-1)
        return pairs_from_rows(self.logits_all_items, users, items)


def known_user_rows(
    scorer: NcfScorer | EaseScorer | BlendScorer, budget_bytes: int
) -> np.ndarray | None:
    """Every known user's logits row, ``[num_users, num_items]`` float32, computed once.

    For EASE and blend models only, and only when the table fits ``budget_bytes``
    (``NCF_KNOWN_ROWS_MB``); otherwise ``None`` and each request scores its rows.
    A known user's row is fixed by the model (its ``seen.npz`` row times ``B``, and for
    a blend the iALS row, both standardised over the catalog), yet it is that
    request's largest cost: adding up the history's rows of the items x items matrix,
    about 2.4 MB read per request for an average MovieLens-1M user, then two passes
    over the catalog to standardise. Read from the table, it is one row copy.
    Computed ``ROW_BLOCK_USERS`` users at a time by the scorer itself, so the rows
    are the scorer's rows (MovieLens-1M: 6,040 x 3,706, 90 MB, 1-2 s at load).
    The gunicorn master computes it before forking, so the workers share one copy.
    """
    if not isinstance(scorer, EaseScorer | BlendScorer):
        return None
    if scorer.num_users * scorer.num_items * 4 > budget_bytes:
        return None
    rows = np.empty((scorer.num_users, scorer.num_items), dtype=np.float32)
    for start in range(0, scorer.num_users, ROW_BLOCK_USERS):
        users = np.arange(start, min(start + ROW_BLOCK_USERS, scorer.num_users))
        rows[users] = scorer.logits_all_items(users)
    return rows


def scorer_for(artifacts: ModelArtifacts) -> NcfScorer | EaseScorer | BlendScorer:
    """The scorer of ``artifacts.metadata.model_type``."""
    if artifacts.metadata.model_type == EASE:
        return EaseScorer.from_artifacts(artifacts)
    if artifacts.metadata.model_type == BLEND:
        return BlendScorer.from_artifacts(artifacts)
    return NcfScorer.from_artifacts(artifacts)
