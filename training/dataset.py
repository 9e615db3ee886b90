"""Encoding raw interactions as indices, and the train / validation / test split.

Vocabularies are the union of the ids of every channel given (train,
validation, test), sorted as strings: a validation or test user or item always
has an index, even when it never occurs in ``train`` (its embedding is then
untrained, which is the honest cold-start behaviour for a metric). Item
popularity counts ``train`` only. Everything here is vectorised NumPy/pandas.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ncf_contract.seen import SeenItems
from training.data import ITEM, NEGATIVES, RATING, TIMESTAMP, USER
from training.errors import DataError

if TYPE_CHECKING:
    from training.attributes import EncodedAttributes

FEEDBACK_TYPES = ("implicit", "explicit")

#: Fewest distinct users and items ``train`` must keep after filtering: with
#: one user or one item there is nothing to rank or to contrast.
MIN_USERS = 2
MIN_ITEMS = 2


@dataclass(frozen=True)
class Vocabulary:
    """Raw ids <-> dense indices. ``ids[i]`` is the raw id of index ``i``."""

    ids: np.ndarray  # [n] object array of str
    _index: pd.Index = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=object)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "_index", pd.Index(ids, dtype=object))

    def index_of(self, raw_ids: Any) -> np.ndarray:
        """Indices of ``raw_ids`` (int64), ``-1`` where an id is unknown."""
        values = np.asarray(raw_ids, dtype=object)
        flat = values.ravel()
        if flat.size and not isinstance(flat[0], str):
            flat = flat.astype(str).astype(object)
        found = self._index.get_indexer(flat).astype(np.int64)
        return found.reshape(values.shape)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Interactions:
    """Interactions as index arrays (one row per (user, item) after collapsing)."""

    user_index: np.ndarray  # [n] int32
    item_index: np.ndarray  # [n] int32
    rating: np.ndarray | None = None  # [n] float32
    timestamp: np.ndarray | None = None  # [n] int64 or float64

    def __len__(self) -> int:
        return len(self.user_index)

    def take(self, rows: np.ndarray) -> Interactions:
        """The interactions at ``rows`` (indices or a boolean mask)."""
        return Interactions(
            self.user_index[rows],
            self.item_index[rows],
            None if self.rating is None else self.rating[rows],
            None if self.timestamp is None else self.timestamp[rows],
        )


@dataclass(frozen=True)
class Dataset:
    """Everything training, evaluation and export need, as indices.

    Attributes:
        users, items: The vocabularies (union of all channels).
        train: What the model fits.
        validation: For model selection: the ``validation`` channel, else each
            user's latest ``train`` interaction (see :func:`build_dataset`).
        test: The ``test`` channel, if given (reported once, at the end).
        train_seen: ``train`` positives per user: never drawn as negatives.
        all_seen: train + validation (+ test) per user: what serving excludes.
        item_popularity: ``[num_items]`` int64 ``train`` interaction counts.
        feedback: ``"implicit"`` or ``"explicit"``.
        validation_source: ``"channel"`` or ``"leave_latest_out"`` or
            ``"leave_random_out"`` (no timestamps).
        item_attributes, user_attributes: The ``items`` / ``users`` channels
            encoded (``training.attributes``), rows aligned with the vocabularies.
        item_trending: ``[num_items]`` int64 ``train`` interactions within the last
            ``trending_window`` days (``training.recency``), if set.
    """

    users: Vocabulary
    items: Vocabulary
    train: Interactions
    validation: Interactions
    test: Interactions | None
    train_seen: SeenItems
    all_seen: SeenItems
    item_popularity: np.ndarray
    feedback: str
    validation_source: str = "channel"
    item_attributes: EncodedAttributes | None = None
    user_attributes: EncodedAttributes | None = None
    item_trending: np.ndarray | None = None

    @property
    def num_users(self) -> int:
        """Users in the vocabulary."""
        return len(self.users)

    @property
    def num_items(self) -> int:
        """Items in the vocabulary."""
        return len(self.items)

    def with_validation_in_train(self) -> Dataset:
        """This dataset with the validation interactions added to ``train`` (for the refit).

        The validation split stays as it is, for the record: figures on it are no longer
        held out. ``train_seen`` and ``item_popularity`` follow the new ``train``.
        """
        parts = (self.train, self.validation)
        ratings = [p.rating for p in parts]
        stamps = [p.timestamp for p in parts]
        train = Interactions(
            np.concatenate([p.user_index for p in parts]),
            np.concatenate([p.item_index for p in parts]),
            None if any(r is None for r in ratings) else np.concatenate(ratings),  # type: ignore[arg-type]
            None if any(t is None for t in stamps) else np.concatenate(stamps),  # type: ignore[arg-type]
        )
        return replace(
            self,
            train=train,
            train_seen=SeenItems.from_pairs(
                train.user_index, train.item_index, self.num_users, self.num_items
            ),
            item_popularity=np.bincount(train.item_index, minlength=self.num_items).astype(
                np.int64
            ),
        )

    def statistics(self) -> dict[str, Any]:
        """Plain-JSON data statistics for ``metadata.json`` and logs."""
        stats: dict[str, Any] = {
            "num_users": self.num_users,
            "num_items": self.num_items,
            "feedback": self.feedback,
            "train_interactions": len(self.train),
            "train_users": int(np.count_nonzero(self.train_seen.counts())),
            "train_items": int(np.count_nonzero(self.item_popularity)),
            "validation_interactions": len(self.validation),
            "validation_source": self.validation_source,
            "test_interactions": 0 if self.test is None else len(self.test),
            "density": len(self.train) / max(1, self.num_users * self.num_items),
        }
        for side, attributes in (("item", self.item_attributes), ("user", self.user_attributes)):
            if attributes is not None:
                stats[f"{side}_attributes"] = {
                    column.name: column.kind for column in attributes.schema.columns
                }
        if self.train.rating is not None:
            stats["train_rating_mean"] = float(np.mean(self.train.rating)) if len(self.train) else 0
        return stats


# --------------------------------------------------------------------------- building


def _check_frame(
    frame: pd.DataFrame, name: str, feedback: str, min_rating: float | None
) -> pd.DataFrame:
    """Check one channel's columns and apply the rating threshold (raw ids kept)."""
    missing = [column for column in (USER, ITEM) if column not in frame.columns]
    if missing:
        raise DataError(
            f"{name} data lacks the column(s) {missing}; columns found: {list(frame.columns)}"
        )
    needs_rating = feedback == "explicit" or min_rating is not None
    if needs_rating and RATING not in frame.columns:
        why = (
            "explicit feedback predicts ratings"
            if feedback == "explicit"
            else f"min_rating={min_rating} filters on ratings"
        )
        raise DataError(
            f"{name} data has no rating column but {why}; columns found: "
            f"{list(frame.columns)}. Set rating_column to the rating column, or "
            + ("use feedback=implicit." if feedback == "explicit" else "unset min_rating.")
        )
    if RATING in frame.columns:
        missing_rating = frame[RATING].isna().to_numpy()
        if missing_rating.any():
            raise DataError(
                f"{name} data has {int(missing_rating.sum())} rows without a rating; "
                "fill or drop them"
            )
    for column in (USER, ITEM):
        if frame[column].isna().any():
            raise DataError(
                f"{name} data has {int(frame[column].isna().sum())} rows with an empty {column}"
            )
    if min_rating is not None:
        frame = frame[frame[RATING].to_numpy(dtype=np.float64) >= min_rating]
    return frame


def _latest_unique(interactions: Interactions) -> Interactions:
    """Collapse duplicate (user, item) rows onto the latest (by timestamp, then row order)."""
    if len(interactions) < 2:
        return interactions
    keys = (interactions.user_index.astype(np.int64) << 32) | interactions.item_index.astype(
        np.int64
    )
    # Hash-based duplicate detection: O(n), far cheaper than sorting.
    if not pd.Series(keys).duplicated().any():
        return interactions
    if interactions.timestamp is None:
        latest = ~pd.Series(keys).duplicated(keep="last").to_numpy()
        return interactions.take(latest)
    # Stable sort by time keeps row order among equal times; keep the last per pair.
    order = np.argsort(interactions.timestamp, kind="stable")
    latest = ~pd.Series(keys[order]).duplicated(keep="last").to_numpy()
    return interactions.take(np.sort(order[latest]))


def leave_one_out(train: Interactions, num_users: int, seed: int) -> tuple[np.ndarray, str]:
    """Rows of ``train`` to hold out: each user's latest interaction.

    By timestamp when there are timestamps (ties broken at random with
    ``seed``), else one interaction per user at random with ``seed``. Users
    with a single interaction keep it in ``train`` (they get no validation row).
    Deterministic for a given ``seed`` and input.

    Returns:
        (sorted row indices into ``train``, ``"leave_latest_out"`` or ``"leave_random_out"``)
    """
    rng = np.random.default_rng(seed)
    users = train.user_index.astype(np.int64)
    order = rng.permutation(len(train))  # random tie-break
    if train.timestamp is not None:
        order = order[np.argsort(train.timestamp[order], kind="stable")]
        source = "leave_latest_out"
    else:
        source = "leave_random_out"
    # order[r] is the row of rank r; each user's latest row has their highest rank.
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    best = np.full(num_users, -1, dtype=np.int64)
    np.maximum.at(best, users, rank)
    counts = np.bincount(users, minlength=num_users)
    held = order[best[(counts >= 2) & (best >= 0)]]
    return np.sort(held), source


def build_dataset(
    train: pd.DataFrame,
    validation: pd.DataFrame | None,
    test: pd.DataFrame | None,
    *,
    feedback: str = "implicit",
    min_rating: float | None = None,
    seed: int = 0,
    test_negatives: pd.DataFrame | None = None,
    cold_item_ids: pd.Series | None = None,
) -> Dataset:
    """Encode the channels and carve a validation split if none is given.

    Implicit feedback: every interaction is a positive; with ``min_rating``
    only rows with ``rating >= min_rating`` (in every channel: a low-rated
    held-out item is not a positive either). Explicit feedback: ratings are the
    targets. Either way duplicate (user, item) rows within a channel collapse
    onto the latest one (by timestamp, then row order), keeping its rating.

    Without a validation channel, each user's latest ``train`` interaction
    (see :func:`leave_one_out`) becomes the validation row.

    The vocabularies are the sorted union of the ids of every channel given,
    ``test_negatives`` (a :func:`training.data.read_test_negatives` frame)
    and ``cold_item_ids`` (the ``items`` channel's ids: items with attributes
    but perhaps no interaction) included, so every evaluated id has an index.

    Raises:
        DataError: No rating column where one is needed, empty ids, too few
            users or items left to train on, or no validation row at all.
    """
    if feedback not in FEEDBACK_TYPES:
        raise DataError(f"feedback must be one of {FEEDBACK_TYPES}, got {feedback!r}")
    named = {"train": train, "validation": validation, "test": test}
    frames = {
        name: _check_frame(frame, name, feedback, min_rating)
        for name, frame in named.items()
        if frame is not None
    }
    train_frame = frames["train"]
    n_users = train_frame[USER].nunique()
    n_items = train_frame[ITEM].nunique()
    if n_users < MIN_USERS or n_items < MIN_ITEMS:
        threshold = "" if min_rating is None else f" with rating >= {min_rating}"
        raise DataError(
            f"too little data to train: the train channel has {len(train_frame)} "
            f"interactions{threshold} from {n_users} user(s) and {n_items} item(s); "
            f"at least {MIN_USERS} users and {MIN_ITEMS} items are needed"
            + (" (lower min_rating?)" if min_rating is not None else "")
        )

    # One factorize per column over every channel: fast on Arrow strings, and
    # the codes are the indices (sort=True: index order = sorted raw ids).
    extra_users: list[pd.Series] = []
    extra_items: list[pd.Series] = []
    if test_negatives is not None and len(test_negatives):
        extra_users.append(test_negatives[USER].astype(str))
        extra_items.append(test_negatives[ITEM].astype(str))
        flat = list(chain.from_iterable(test_negatives[NEGATIVES].to_list()))
        extra_items.append(pd.Series(flat, dtype=object).astype(str))
    extra_items += [] if cold_item_ids is None else [cold_item_ids.astype(str)]
    lengths = [len(frame) for frame in frames.values()]
    bounds = np.cumsum([0, *lengths])
    codes: dict[str, np.ndarray] = {}
    vocabularies: dict[str, Vocabulary] = {}
    for column, extra in ((USER, extra_users), (ITEM, extra_items)):
        parts = [frame[column].astype(str) for frame in frames.values()] + extra
        values = pd.concat(parts, ignore_index=True)
        column_codes, uniques = pd.factorize(values, sort=True)
        codes[column] = column_codes.astype(np.int32)
        vocabularies[column] = Vocabulary(np.asarray(uniques, dtype=object))
    users, items = vocabularies[USER], vocabularies[ITEM]

    encoded: dict[str, Interactions] = {}
    for position, (name, frame) in enumerate(frames.items()):
        lo, hi = bounds[position], bounds[position + 1]
        encoded[name] = _latest_unique(
            Interactions(
                codes[USER][lo:hi],
                codes[ITEM][lo:hi],
                frame[RATING].to_numpy(dtype=np.float32) if RATING in frame.columns else None,
                frame[TIMESTAMP].to_numpy() if TIMESTAMP in frame.columns else None,
            )
        )

    train_ix = encoded["train"]
    if "validation" in encoded:
        validation_ix = encoded["validation"]
        source = "channel"
    else:
        held, source = leave_one_out(train_ix, len(users), seed)
        keep = np.ones(len(train_ix), dtype=bool)
        keep[held] = False
        validation_ix = train_ix.take(held)
        train_ix = train_ix.take(keep)
    if len(validation_ix) == 0:
        raise DataError(
            "no validation data: the validation channel is empty after filtering"
            if source == "channel"
            else "no user has two or more interactions, so none can be held out for "
            "validation; provide a validation channel"
        )
    test_ix = encoded.get("test")

    num_users, num_items = len(users), len(items)
    train_seen = SeenItems.from_pairs(
        train_ix.user_index, train_ix.item_index, num_users, num_items
    )
    parts_ix = [train_ix, validation_ix] + ([test_ix] if test_ix is not None else [])
    all_seen = SeenItems.from_pairs(
        np.concatenate([p.user_index for p in parts_ix]),
        np.concatenate([p.item_index for p in parts_ix]),
        num_users,
        num_items,
    )
    popularity = np.bincount(train_ix.item_index, minlength=num_items).astype(np.int64)
    return Dataset(
        users=users,
        items=items,
        train=train_ix,
        validation=validation_ix,
        test=test_ix,
        train_seen=train_seen,
        all_seen=all_seen,
        item_popularity=popularity,
        feedback=feedback,
        validation_source=source,
    )
