"""What training optimises and how a model is judged, one objective per feedback kind.

An ``Objective`` bundles everything that differs between implicit and explicit
feedback, so no other module compares the feedback kind:

- the output activation and the Keras loss;
- one epoch's training examples (fresh negatives for implicit feedback, the
  shuffled ratings for explicit feedback);
- the validation metrics, the metric that picks the best epoch or trial, and
  which value of it is better;
- the test metrics, computed once at the end;
- the beyond-accuracy figures of the validation (and test) users' top-k lists
  (``training.beyond_accuracy``): per epoch only those ``validation_constraint``
  bounds (an epoch that misses a bound is never selected), and all of them, for
  the model and the popularity baseline side by side, for the report.

Implicit feedback is trained with the NCF paper's pointwise loss
(``ImplicitObjective``) or with a softmax over the catalog (``SoftmaxObjective``;
``TrainingConfig.loss_for`` picks). It is judged by HR@K and NDCG@K of each
held-out item among sampled negatives (the NCF protocol; the negatives are drawn once with a fixed
seed) and, on test, also among every unseen item. Explicit feedback is judged
by RMSE.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple, Protocol

import numpy as np

from ncf_contract.families import Feedback, output_activation
from ncf_contract.seen import SeenItems
from training import beyond_accuracy, evaluation, recency, sampling
from training.config import SOFTMAX, TrainingConfig
from training.constraints import all_hold, describe
from training.dataset import Dataset, Interactions
from training.errors import ConfigError

#: Offsets from ``seed`` for the independent random streams of evaluation.
VALIDATION_SEED_OFFSET, TEST_SEED_OFFSET = 1, 2
#: Users per block in full-ranking evaluation.
FULL_RANKING_USERS = 256


class Examples(NamedTuple):
    """One epoch of training examples, shuffled.

    ``weights`` (float32, or ``None`` for all 1) scale each example's loss:
    the recency weights of ``recency_half_life`` (``training.recency``).
    """

    users: np.ndarray
    items: np.ndarray
    targets: np.ndarray
    weights: np.ndarray | None = None


TestNegatives = tuple[np.ndarray, np.ndarray, np.ndarray]
#: Returns a model's ``[num_items, d]`` unit item vectors (for intra-list diversity).
ItemVectors = Callable[[], np.ndarray]


class Scorer(Protocol):
    """Scores of a fitted model, for evaluation (every family provides one)."""

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of aligned ``(users[j], items[j])`` pairs (any equal shapes), same shape."""
        ...

    def score_all_items(self, users: np.ndarray) -> np.ndarray:
        """``[len(users), num_items]`` scores of every item for each user."""
        ...


@dataclass(frozen=True)
class RankingTask:
    """Held-out items to rank, each against its row of negatives."""

    users: np.ndarray
    held_out: np.ndarray
    negatives: np.ndarray


class Objective(ABC):
    """The feedback-specific parts of training and evaluation."""

    feedback: Feedback
    #: The Keras loss: a name, or a loss object.
    loss: Any
    #: The candidate items of the softmax loss (``NCF.softmax_candidates``); 0: none.
    softmax_candidates: int = 0

    def __init__(self, config: TrainingConfig, dataset: Dataset) -> None:
        self.config = config
        self.dataset = dataset
        #: Per training interaction, its loss weight (``None``: no recency weighting).
        self.interaction_weights = (
            None
            if config.recency_half_life is None
            else recency.recency_weights(dataset.train, config.recency_half_life)
        )

    @property
    def output_activation(self) -> str:
        """``sigmoid`` (scores are probabilities) or ``linear`` (scores are ratings)."""
        return output_activation(self.feedback)

    @property
    @abstractmethod
    def selection_metric(self) -> str:
        """The validation metric that picks the best epoch or trial."""

    @abstractmethod
    def is_better(self, value: float, best: float | None) -> bool:
        """Whether ``value`` of the selection metric beats ``best`` (``None``: nothing yet)."""

    @abstractmethod
    def epoch_examples(self, rng: np.random.Generator, rows: np.ndarray | None = None) -> Examples:
        """One epoch of ``(users int32, items int32, targets float32, weights)``, shuffled.

        Args:
            rng: The epoch's random stream.
            rows: The train interactions to draw from (default: all); a worker of a
                multi-worker job passes its users' rows (``training.cluster.user_shards``).
        """

    @property
    def batch_size(self) -> int:
        """Training examples per step (``batch_size``)."""
        return self.config.batch_size

    def _train_rows(self, rows: np.ndarray | None) -> tuple[Interactions, np.ndarray | None]:
        """The train interactions at ``rows`` (all by default) and their loss weights."""
        train, weights = self.dataset.train, self.interaction_weights
        if rows is None:
            return train, weights
        return train.take(rows), None if weights is None else weights[rows]

    #: Whether the popularity baseline's accuracy means something beside the model's
    #: (a ranking does; an RMSE of interaction counts against ratings does not).
    popularity_accuracy_comparable: bool = True

    def validation_metrics(
        self, scorer: Scorer, item_vectors: ItemVectors | None = None
    ) -> dict[str, float]:
        """Metrics on the validation split: accuracy, plus what ``validation_constraint`` bounds.

        Args:
            scorer: The model's scores.
            item_vectors: The model's unit item vectors, needed only when a
                constraint bounds ``ild``.

        Raises:
            ConfigError: A constraint bounds ``ild`` and the model has no item vectors.
        """
        return {**self.validation_accuracy(scorer), **self.constraint_metrics(scorer, item_vectors)}

    @abstractmethod
    def validation_accuracy(self, scorer: Scorer) -> dict[str, float]:
        """The feedback kind's accuracy metrics on the validation split."""

    def constraint_metrics(
        self, scorer: Scorer, item_vectors: ItemVectors | None = None
    ) -> dict[str, float]:
        """The metrics ``validation_constraint`` bounds, on the validation users' top-k lists."""
        names = {constraint.metric for constraint in self.config.selection_constraints}
        if not names:
            return {}
        vectors = None
        if beyond_accuracy.ILD in names:
            if item_vectors is None:
                raise ConfigError(
                    f"validation_constraint bounds {beyond_accuracy.ILD}, but model_type "
                    f"{self.config.model_type} has no item vectors to measure it on"
                )
            vectors = item_vectors()
        lists = evaluation.top_k_lists(
            scorer.score_all_items,
            self.validation_users,
            self.dataset.train_seen,
            self.config.top_k,
            FULL_RANKING_USERS,
        )
        metrics = beyond_accuracy.beyond_accuracy_metrics(
            lists, self.dataset.item_popularity, vectors
        )
        return {name: metrics[name] for name in sorted(names)}

    def meets_constraints(self, metrics: Mapping[str, float]) -> bool:
        """Whether ``metrics`` (an epoch's or a trial's validation metrics) meet every bound."""
        return all_hold(self.config.selection_constraints, metrics)

    def constraints_text(self) -> str:
        """``validation_constraint`` as parsed (for messages)."""
        return describe(self.config.selection_constraints)

    @cached_property
    def validation_users(self) -> np.ndarray:
        """The distinct users of the validation split."""
        return np.unique(self.dataset.validation.user_index)

    @cached_property
    def known_before_test(self) -> SeenItems:
        """Each user's train and validation items: excluded from test users' top-k lists."""
        train, validation = self.dataset.train, self.dataset.validation
        return SeenItems.from_pairs(
            np.concatenate([train.user_index, validation.user_index]),
            np.concatenate([train.item_index, validation.item_index]),
            self.dataset.num_users,
            self.dataset.num_items,
        )

    def list_comparison(
        self, scorer: Scorer, item_vectors: np.ndarray | None, split: str
    ) -> evaluation.ListComparison | None:
        """Beyond-accuracy figures of the model's and popularity's top-k lists on ``split``.

        ``split`` is ``"validation"`` (lists exclude training items) or ``"test"``
        (lists exclude training and validation items); ``None`` without a test split.
        """
        if split == "validation":
            users, exclude = self.validation_users, self.dataset.train_seen
        elif self.dataset.test is not None:
            users, exclude = self.dataset.test.user_index, self.known_before_test
        else:
            return None
        attributes = self.dataset.item_attributes
        return evaluation.compare_lists(
            scorer.score_all_items,
            users,
            exclude,
            self.config.top_k,
            self.dataset.item_popularity,
            item_vectors,
            # ild_attributes: cosine on the items' attribute content (unit TF-IDF rows).
            None if attributes is None else attributes.content,
        )

    @abstractmethod
    def test_metrics(
        self, scorer: Scorer, test_negatives: TestNegatives | None
    ) -> dict[str, float]:
        """Metrics on the test split; empty without one."""

    def log_keys(self, metrics: dict[str, float], prefix: str) -> dict[str, float]:
        """``{"hr": v}`` -> ``{"val_hr@10": v}`` as the metric lines name them."""
        keyed = {}
        for name, value in metrics.items():
            suffix = "" if name == "rmse" else f"@{self.config.top_k}"
            keyed[f"{prefix}_{name}{suffix}"] = value
        return keyed


class ImplicitObjective(Objective):
    """Ranking: binary cross-entropy on positives and sampled negatives; HR/NDCG@K."""

    feedback = Feedback.IMPLICIT
    loss = "binary_crossentropy"

    @property
    def selection_metric(self) -> str:
        """``hr`` or ``ndcg`` (the ``validation_metric`` hyperparameter)."""
        return self.config.validation_metric

    def is_better(self, value: float, best: float | None) -> bool:
        """Higher is better."""
        return best is None or value > best

    def epoch_examples(self, rng: np.random.Generator, rows: np.ndarray | None = None) -> Examples:
        """Every positive followed by its ``num_negatives`` fresh negatives, the groups shuffled.

        With recency weights, each negative carries the weight of its positive.
        Negatives exclude every item the user has in the whole train split, so a
        worker's shard of users never draws one of its users' positives.
        """
        train, positive_weights = self._train_rows(rows)
        return Examples(
            *sampling.training_examples(
                train,
                self.dataset.train_seen,
                self.dataset.num_items,
                self.config.num_negatives,
                rng,
                positive_weights=positive_weights,
            )
        )

    @cached_property
    def validation_task(self) -> RankingTask:
        """The validation items with negatives drawn once (fixed seed)."""
        return self._task(self.dataset.validation, VALIDATION_SEED_OFFSET)

    def _task(self, split: Interactions, seed_offset: int) -> RankingTask:
        negatives = evaluation.sample_evaluation_negatives(
            split.user_index,
            split.item_index,
            self.dataset.all_seen,
            self.dataset.num_items,
            self.config.num_eval_negatives,
            self.config.seed + seed_offset,
        )
        return RankingTask(split.user_index, split.item_index, negatives)

    def _ranking(self, scorer: Scorer, task: RankingTask) -> dict[str, float]:
        metrics = evaluation.sampled_ranking_metrics(
            scorer.score_pairs, task.users, task.held_out, task.negatives, self.config.top_k
        )
        return {name: float(value) for name, value in metrics.items()}

    def validation_accuracy(self, scorer: Scorer) -> dict[str, float]:
        """Sampled HR@K and NDCG@K of the validation items."""
        return self._ranking(scorer, self.validation_task)

    def test_metrics(
        self, scorer: Scorer, test_negatives: TestNegatives | None
    ) -> dict[str, float]:
        """Sampled HR/NDCG@K (the exact ``test_negatives`` if given) and full-ranking figures."""
        if test_negatives is not None:
            task = RankingTask(*test_negatives)
        elif self.dataset.test is not None:
            task = self._task(self.dataset.test, TEST_SEED_OFFSET)
        else:
            return {}
        metrics = self._ranking(scorer, task)
        if self.config.full_ranking:
            full = evaluation.full_ranking_metrics(
                scorer.score_all_items,
                task.users,
                task.held_out,
                self.dataset.all_seen,
                self.config.top_k,
                FULL_RANKING_USERS,
            )
            metrics.update({f"full_{name}": float(value) for name, value in full.items()})
        return metrics


class SoftmaxObjective(ImplicitObjective):
    """Ranking, trained by a softmax of each positive against the catalog (``loss=softmax``).

    The examples are the positives alone, shuffled: the negatives are the candidate items
    the model scores in its loss (``training.families.ncf_model``), so the model outputs
    logits (linear output) and the compiled loss reads them as a softmax whose class 0 is
    the positive. Evaluation is the pointwise objective's.
    """

    def __init__(self, config: TrainingConfig, dataset: Dataset) -> None:
        super().__init__(config, dataset)
        # Keras (TensorFlow) only where a model trains: EASE and iALS jobs never import it.
        from keras.losses import SparseCategoricalCrossentropy

        self.loss = SparseCategoricalCrossentropy(from_logits=True)
        self.softmax_candidates = config.softmax_candidates

    @property
    def output_activation(self) -> str:
        """``linear``: a softmax ranks logits, which a sigmoid would saturate."""
        return "linear"

    @property
    def batch_size(self) -> int:
        """Positives per step: ``batch_size / (1 + num_negatives)``.

        A positive with its softmax stands in for the ``1 + num_negatives`` examples the
        pointwise loss makes of it, so both losses take the same steps per epoch and the
        learning rate and its per-epoch decay mean the same under either. (With 2,048
        positives per step the default GMF was still improving at its last epoch on
        MovieLens-1M; BENCHMARKS.md.)
        """
        return max(1, self.config.batch_size // (1 + self.config.num_negatives))

    def epoch_examples(self, rng: np.random.Generator, rows: np.ndarray | None = None) -> Examples:
        """Every positive once, shuffled, with target 0 (its class in the softmax)."""
        train, weights = self._train_rows(rows)
        order = rng.permutation(len(train))
        return Examples(
            train.user_index[order],
            train.item_index[order],
            np.zeros(len(order), dtype=np.float32),
            None if weights is None else weights[order],
        )


class ExplicitObjective(Objective):
    """Rating prediction: mean squared error; RMSE."""

    feedback = Feedback.EXPLICIT
    loss = "mean_squared_error"
    popularity_accuracy_comparable = False

    @property
    def selection_metric(self) -> str:
        """``rmse``."""
        return "rmse"

    def is_better(self, value: float, best: float | None) -> bool:
        """Lower is better."""
        return best is None or value < best

    def epoch_examples(self, rng: np.random.Generator, rows: np.ndarray | None = None) -> Examples:
        """The ratings (at ``rows``, default all), shuffled."""
        train, all_weights = self._train_rows(rows)
        assert train.rating is not None  # build_dataset requires ratings for explicit feedback
        order = rng.permutation(len(train))
        weights = None if all_weights is None else all_weights[order]
        return Examples(
            train.user_index[order], train.item_index[order], train.rating[order], weights
        )

    @staticmethod
    def _rmse(scorer: Scorer, split: Interactions) -> dict[str, float]:
        assert split.rating is not None
        predicted = scorer.score_pairs(split.user_index, split.item_index)
        return {"rmse": evaluation.rmse(predicted, split.rating)}

    def validation_accuracy(self, scorer: Scorer) -> dict[str, float]:
        """RMSE on the validation ratings."""
        return self._rmse(scorer, self.dataset.validation)

    def test_metrics(
        self, scorer: Scorer, test_negatives: TestNegatives | None
    ) -> dict[str, float]:
        """RMSE on the test ratings (``test_negatives`` does not apply)."""
        return {} if self.dataset.test is None else self._rmse(scorer, self.dataset.test)


def objective_for(config: TrainingConfig, dataset: Dataset) -> Objective:
    """The objective of ``config.feedback`` and of the loss its family trains with."""
    if config.loss_for(config.family) == SOFTMAX:
        return SoftmaxObjective(config, dataset)
    if Feedback(config.feedback) is Feedback.IMPLICIT:
        return ImplicitObjective(config, dataset)
    return ExplicitObjective(config, dataset)
