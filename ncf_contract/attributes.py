"""Item and user attributes as features: the schema training writes and serving reads.

An attribute table (the ``items`` or ``users`` channel) becomes a sparse
feature matrix, one row per id and one column per *feature*. Each attribute
column owns a contiguous block of features, from ``offset``:

- ``categorical``: one feature per value; the row's value has weight 1.
- ``multi`` (multi-valued, e.g. ``Animation|Comedy`` with separator ``|``): one
  feature per value; each of the row's ``n`` values has weight ``1 / n``, so the
  embedding of the attribute is the mean of its values' embeddings.
- ``numeric``: one feature whose weight is the standardised value
  ``(x - mean) / scale`` (0 where missing).
- ``text``: one feature per vocabulary term, weighted by TF-IDF (rows scaled to
  unit length), as scikit-learn's ``TfidfVectorizer`` computes at training time.

The model's vector of a row is ``features @ embedding_table`` (see
``training.families.hybrid``). Training encodes whole tables (vectorised, in
``training.attributes``); serving encodes one request's ``user_attributes``
with :meth:`AttributeSchema.encode`. Text attributes are encoded at training
time only: a request cannot send one. The schema is ``attributes.json`` in the
model directory (see ``ncf_contract.model_dir``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

CATEGORICAL = "categorical"
MULTI = "multi"
NUMERIC = "numeric"
TEXT = "text"
KINDS: tuple[str, ...] = (CATEGORICAL, MULTI, NUMERIC, TEXT)
#: Kinds whose features are values a request may name (filters, user attributes).
VALUE_KINDS: tuple[str, ...] = (CATEGORICAL, MULTI)


class UnknownAttributeError(ValueError):
    """An attribute name or value that the schema does not know (serving answers 400)."""


def multi_value_weights(count: int | np.ndarray) -> Any:
    """The weight of each of a row's ``count`` values of a multi-valued attribute (their mean)."""
    return 1.0 / np.maximum(count, 1)


@dataclass(frozen=True)
class AttributeColumn:
    """One attribute column and its block of features.

    Attributes:
        name: The column's name in the channel.
        kind: One of ``KINDS``.
        offset: The index of its first feature.
        values: ``categorical`` / ``multi``: the value of feature ``offset + n``;
            ``text``: the vocabulary term of feature ``offset + n``; ``numeric``: empty.
        mean: ``numeric``: the mean subtracted.
        scale: ``numeric``: the standard deviation divided by (1 if it is 0).
    """

    name: str
    kind: str
    offset: int
    values: tuple[str, ...] = ()
    mean: float = 0.0
    scale: float = 1.0
    _positions: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        positions = {value: n for n, value in enumerate(self.values)}
        object.__setattr__(self, "_positions", positions)

    @property
    def size(self) -> int:
        """How many features the column owns."""
        return 1 if self.kind == NUMERIC else len(self.values)

    def feature_of(self, value: str) -> int | None:
        """The feature index of ``value`` (categorical / multi), ``None`` if unknown."""
        position = self._positions.get(value)
        return None if position is None else self.offset + position

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values."""
        values = asdict(self)
        values["values"] = list(self.values)
        return values


@dataclass(frozen=True)
class AttributeSchema:
    """The attribute columns of one side (items or users), in feature order."""

    columns: tuple[AttributeColumn, ...]
    separator: str = "|"

    @property
    def num_features(self) -> int:
        """Total features of every column."""
        return sum(column.size for column in self.columns)

    def column(self, name: str) -> AttributeColumn | None:
        """The column called ``name``, if any."""
        return next((column for column in self.columns if column.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (``attributes.json`` holds one per side)."""
        return {
            "separator": self.separator,
            "columns": [column.to_json() for column in self.columns],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AttributeSchema:
        """The schema from :meth:`to_json`'s output.

        Raises:
            ValueError: ``raw`` is malformed.
        """
        try:
            columns = tuple(
                AttributeColumn(
                    name=str(column["name"]),
                    kind=str(column["kind"]),
                    offset=int(column["offset"]),
                    values=tuple(str(v) for v in column.get("values", ())),
                    mean=float(column.get("mean", 0.0)),
                    scale=float(column.get("scale", 1.0)),
                )
                for column in raw["columns"]
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"malformed attribute schema: {error!r}") from error
        unknown = [column.kind for column in columns if column.kind not in KINDS]
        if unknown:
            raise ValueError(f"unknown attribute kind(s) {unknown}; expected {KINDS}")
        return cls(columns=columns, separator=str(raw.get("separator", "|")))

    def value_features(self, name: str, values: list[str], where: str) -> list[int]:
        """Feature indices of ``values`` of the categorical / multi column ``name``.

        Raises:
            UnknownAttributeError: No such column, a column of another kind, or an unknown value.
        """
        column = self._column_or_error(name, where)
        if column.kind not in VALUE_KINDS:
            raise UnknownAttributeError(
                f"{where}: attribute {name!r} is {column.kind}; only categorical and "
                "multi-valued attributes can be matched by value"
            )
        features = []
        for value in values:
            feature = column.feature_of(value)
            if feature is None:
                raise UnknownAttributeError(
                    f"{where}: value {value!r} of attribute {name!r} is not known to the model"
                )
            features.append(feature)
        return features

    def _column_or_error(self, name: str, where: str) -> AttributeColumn:
        column = self.column(name)
        if column is None:
            raise UnknownAttributeError(
                f"{where}: unknown attribute {name!r}; known: "
                f"{sorted(column.name for column in self.columns)}"
            )
        return column

    def encode(
        self, attributes: Mapping[str, Sequence[str]], where: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """One row's ``(feature indices int64, weights float32)`` from raw attribute values.

        Each attribute has one value, or several for a multi-valued one (given as a
        list, or as one string with the separator). Attributes left out contribute
        nothing, as a missing value does in training.

        Raises:
            UnknownAttributeError: An unknown name or value, several values of a
                single-valued attribute, a non-number for a numeric one, a text one.
        """
        indices: list[int] = []
        weights: list[float] = []
        for name, given in attributes.items():
            column = self._column_or_error(name, where)
            if column.kind == TEXT:
                raise UnknownAttributeError(
                    f"{where}: attribute {name!r} is free text, which is encoded at training "
                    "time only; leave it out of the request"
                )
            if column.kind == MULTI:
                values = [v.strip() for raw in given for v in raw.split(self.separator)]
                values = [v for v in values if v]
            elif len(given) != 1:
                raise UnknownAttributeError(
                    f"{where}: attribute {name!r} is {column.kind} and takes one value, "
                    f"got {len(given)}"
                )
            else:
                values = list(given)
            if column.kind == NUMERIC:
                indices.append(column.offset)
                weights.append(
                    (_finite_number(values[0], name, where) - column.mean) / column.scale
                )
                continue
            features = self.value_features(name, values, where)
            indices.extend(features)
            weights.extend([float(multi_value_weights(len(features)))] * len(features))
        return np.asarray(indices, dtype=np.int64), np.asarray(weights, dtype=np.float32)


def _finite_number(raw: str, name: str, where: str) -> float:
    try:
        number = float(raw)
    except ValueError:
        raise UnknownAttributeError(
            f"{where}: attribute {name!r} is numeric, got {raw!r}"
        ) from None
    if not np.isfinite(number):
        raise UnknownAttributeError(f"{where}: attribute {name!r} must be a finite number")
    return number
