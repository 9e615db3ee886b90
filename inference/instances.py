"""Validate raw instances into typed requests; errors name the instance and the field.

Three kinds of instance (ids are strings; JSON numbers are accepted as their string):

- ``{"user_id", "k"?, "exclude_seen"?, "exclude_item_ids"?, "candidate_item_ids"?,
  "diversity"?, "popularity_penalty"?, "user_attributes"?, "filter"?, "fallback"?}``:
  top-k recommendations (``RecommendRequest``); ``diversity`` and
  ``popularity_penalty`` (each 0 to 1) re-rank the list, see
  ``inference.recommender``; left out, the endpoint's defaults apply (``Reranking``).
  ``user_attributes`` (``{"age": "25", ...}``) serve a user the model does not
  know from the attribute part of a hybrid model; ``fallback`` (``popularity`` or
  ``trending``) is what serves an unknown user otherwise.
- ``{"user_id", "item_ids"}``: scores for these items (``ScoreRequest``).
- ``{"item_id", "k"?, "by"?, "filter"?}``: similar items (``SimilarRequest``), ``by``
  ``behaviour`` (the learned vectors, the default), ``content`` (TF-IDF of the
  item's attributes) or ``hybrid`` (the mean of both cosines).

``filter`` is ``{"include": {"genre": ["Comedy"]}, "exclude": {...}}`` on item
attributes (categorical or multi-valued): an item is kept if, for every
attribute under ``include``, it has one of the values listed, and it has none of
the values under ``exclude``. Names and values are checked against the model
(``inference.recommender``).

A recommend or score instance may give ``"history": ["i1", "i7"]`` (the items a
user interacted with) instead of, or besides, ``user_id``: the model then scores
from that history, not from what it knows of the user, so a user unknown at
training time gets personal recommendations (families gmf, ials and ease; see
``inference.scoring``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.errors import bad_request

DEFAULT_K = 10
#: The largest k a request may ask for. 1,000 covers every ranking use we know of
#: (re-ranking pipelines take a few hundred); a response of 1,000 items is ~40 KB of JSON.
MAX_K = 1000
#: The most item ids one instance may list (item_ids, exclude_item_ids, candidate_item_ids).
MAX_ITEM_IDS = 100_000

RECOMMEND_FIELDS = frozenset(
    {
        "user_id",
        "k",
        "exclude_seen",
        "exclude_item_ids",
        "candidate_item_ids",
        "diversity",
        "popularity_penalty",
        "history",
        "user_attributes",
        "filter",
        "fallback",
    }
)
SCORE_FIELDS = frozenset({"user_id", "item_ids", "history"})
SIMILAR_FIELDS = frozenset({"item_id", "k", "by", "filter"})
#: What ``by`` of a similar-items request may be.
SIMILARITY_KINDS = ("behaviour", "content", "hybrid")
#: Who serves a user the model does not know (``fallback``).
FALLBACKS = ("popularity", "trending")
#: The most attributes a request may name (user_attributes, each side of a filter).
MAX_ATTRIBUTES = 100


@dataclass(frozen=True)
class Reranking:
    """How far a recommendation list departs from the plain ranking (0 = not at all).

    Attributes:
        diversity: 0 to 1, the weight of dissimilarity in maximal marginal relevance.
        popularity_penalty: 0 to 1, the exponent of the popularity discount.
    """

    diversity: float = 0.0
    popularity_penalty: float = 0.0
    #: Not a re-ranking, but an endpoint default all the same: who serves unknown users.
    fallback: str = "popularity"


#: Each re-ranking value's allowed range, for requests and endpoint defaults alike.
RERANKING_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class ItemFilter:
    """Attribute values an item must have (``include``) and must not have (``exclude``)."""

    include: tuple[tuple[str, tuple[str, ...]], ...] = ()
    exclude: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class RecommendRequest:
    """Top-k items for ``user_id``; ``None`` re-ranking values take the endpoint's defaults.

    ``history`` (item ids), when given, is what the model scores from instead of what it
    knows of ``user_id`` (which may then be ``None`` or unknown).
    """

    user_id: str | None
    k: int = DEFAULT_K
    exclude_seen: bool = True
    exclude_item_ids: tuple[str, ...] = ()
    candidate_item_ids: tuple[str, ...] | None = None
    diversity: float | None = None
    popularity_penalty: float | None = None
    history: tuple[str, ...] | None = None
    user_attributes: tuple[tuple[str, tuple[str, ...]], ...] | None = None
    filter: ItemFilter | None = None
    fallback: str | None = None


@dataclass(frozen=True)
class ScoreRequest:
    """Scores of ``item_ids`` for ``user_id``, or for ``history`` when given."""

    user_id: str | None
    item_ids: tuple[str, ...]
    history: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SimilarRequest:
    """The ``k`` items closest to ``item_id``."""

    item_id: str
    k: int = DEFAULT_K
    by: str = "behaviour"
    filter: ItemFilter | None = None


InstanceRequest = RecommendRequest | ScoreRequest | SimilarRequest


def _id(value: Any, where: str) -> str:
    if isinstance(value, str):
        if not value:
            raise bad_request(f"{where} must be a non-empty string")
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise bad_request(f"{where} must be a string or a number, got {_describe(value)}")


def _ids(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise bad_request(f"{where} must be a list of ids, got {_describe(value)}")
    if len(value) > MAX_ITEM_IDS:
        raise bad_request(f"{where} has {len(value)} ids; at most {MAX_ITEM_IDS} are allowed")
    return tuple(_id(item, f"{where}[{n}]") for n, item in enumerate(value))


def _k(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{where} must be an integer from 1 to {MAX_K}, got {_describe(value)}")
    if not 1 <= value <= MAX_K:
        raise bad_request(f"{where} must be from 1 to {MAX_K}, got {value}")
    return value


def _reranking_value(value: Any, where: str) -> float | None:
    if value is None:
        return None
    low, high = RERANKING_RANGE
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(
            f"{where} must be a number from {low:g} to {high:g}, got {_describe(value)}"
        )
    if not low <= value <= high:  # NaN fails this too
        raise bad_request(f"{where} must be from {low:g} to {high:g}, got {value}")
    return float(value)


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise bad_request(f"{where} must be one of {list(allowed)}, got {_describe(value)}")
    return str(value)


def _attribute_values(value: Any, where: str) -> tuple[str, ...]:
    """One value or a list of values (ids' rules: strings, numbers as their text)."""
    if isinstance(value, list):
        if not value or len(value) > MAX_ITEM_IDS:
            raise bad_request(f"{where} must list 1 to {MAX_ITEM_IDS} values")
        return tuple(_id(item, f"{where}[{n}]") for n, item in enumerate(value))
    return (_id(value, where),)


def _attribute_map(value: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(value, dict) or len(value) > MAX_ATTRIBUTES:
        raise bad_request(
            f"{where} must be an object of up to {MAX_ATTRIBUTES} attribute names to values, "
            f"got {_describe(value)}"
        )
    return tuple(
        (str(name), _attribute_values(values, f"{where}.{name}")) for name, values in value.items()
    )


def _item_filter(value: Any, where: str) -> ItemFilter | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not set(value) <= {"include", "exclude"} or not value:
        raise bad_request(
            f'{where} must be {{"include": {{...}}, "exclude": {{...}}}} (either or both), '
            f"got {_describe(value)}"
        )
    return ItemFilter(
        include=_attribute_map(value.get("include", {}), f"{where}.include"),
        exclude=_attribute_map(value.get("exclude", {}), f"{where}.exclude"),
    )


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def parse_instance(raw: Any, where: str) -> InstanceRequest:
    """One validated request from one raw instance.

    Args:
        raw: The decoded instance.
        where: How errors name this instance (``"instances[3]"``, ``"line 4"``).

    Raises:
        InferenceError: 400 naming the field that is missing, unknown or bad.
    """
    if not isinstance(raw, dict):
        raise bad_request(f"{where} must be a JSON object, got {_describe(raw)}")
    if "user_id" in raw and "item_id" in raw:
        raise bad_request(f"{where} has both user_id and item_id; send one")
    if "user_id" in raw or "history" in raw:
        allowed = SCORE_FIELDS if "item_ids" in raw else RECOMMEND_FIELDS
    elif "item_id" in raw:
        allowed = SIMILAR_FIELDS
    else:
        raise bad_request(
            f"{where} needs user_id or history (recommend or score) or item_id (similar items)"
        )
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise bad_request(f"{where} has unknown field(s) {unknown}; allowed: {sorted(allowed)}")

    if "item_id" in raw:
        return SimilarRequest(
            item_id=_id(raw["item_id"], f"{where}.item_id"),
            k=_k(raw.get("k", DEFAULT_K), f"{where}.k"),
            by=_choice(raw.get("by", "behaviour"), SIMILARITY_KINDS, f"{where}.by"),
            filter=_item_filter(raw.get("filter"), f"{where}.filter"),
        )
    user_id = _id(raw["user_id"], f"{where}.user_id") if "user_id" in raw else None
    history = _ids(raw["history"], f"{where}.history") if "history" in raw else None
    if "item_ids" in raw:
        return ScoreRequest(
            user_id=user_id, item_ids=_ids(raw["item_ids"], f"{where}.item_ids"), history=history
        )
    exclude_seen = raw.get("exclude_seen", True)
    if not isinstance(exclude_seen, bool):
        raise bad_request(
            f"{where}.exclude_seen must be true or false, got {_describe(exclude_seen)}"
        )
    candidates = raw.get("candidate_item_ids")
    return RecommendRequest(
        user_id=user_id,
        k=_k(raw.get("k", DEFAULT_K), f"{where}.k"),
        exclude_seen=exclude_seen,
        exclude_item_ids=_ids(raw.get("exclude_item_ids", []), f"{where}.exclude_item_ids"),
        candidate_item_ids=(
            None if candidates is None else _ids(candidates, f"{where}.candidate_item_ids")
        ),
        diversity=_reranking_value(raw.get("diversity"), f"{where}.diversity"),
        popularity_penalty=_reranking_value(
            raw.get("popularity_penalty"), f"{where}.popularity_penalty"
        ),
        history=history,
        user_attributes=None
        if raw.get("user_attributes") is None
        else _attribute_map(raw["user_attributes"], f"{where}.user_attributes"),
        filter=_item_filter(raw.get("filter"), f"{where}.filter"),
        fallback=None
        if raw.get("fallback") is None
        else _choice(raw["fallback"], FALLBACKS, f"{where}.fallback"),
    )


def parse_instances(raw_instances: list[Any], labels: list[str]) -> list[InstanceRequest]:
    """Validate every instance; ``labels[n]`` names instance ``n`` in error messages."""
    return [parse_instance(raw, label) for raw, label in zip(raw_instances, labels, strict=True)]
