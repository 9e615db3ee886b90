"""Attribute tables -> kinds -> sparse feature matrices aligned with a vocabulary.

The ``items`` and ``users`` channels (read by ``training.data.read_attributes``)
are encoded as documented in ``ncf_contract.attributes``. Kinds are inferred
per column, in this order, unless ``item_attribute_kinds`` /
``user_attribute_kinds`` name one:

- ``numeric``: every value is a number and there are more than
  ``NUMERIC_MIN_DISTINCT`` distinct values (a code with few values, such as an
  age group or an occupation code, is ``categorical``);
- ``multi``: at least ``MULTI_MIN_SHARE`` of the values hold the separator;
- ``text``: most values are distinct and the values average two words or more;
- ``categorical``: anything else.

A column with fewer than ``attribute_min_filled`` of its rows filled is logged
and skipped. Text goes through scikit-learn (``CountVectorizer`` +
``TfidfTransformer``, at most ``text_max_features`` terms, terms in at least
two rows when there are any). Items additionally get a *content* matrix: the
TF-IDF of every categorical, multi-valued and text feature, rows scaled to unit
length, so the cosine of two items is one sparse dot product (content-based
similar items). Every step is vectorised (pandas, scipy.sparse).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ncf_contract.attributes import (
    CATEGORICAL,
    MULTI,
    NUMERIC,
    TEXT,
    AttributeColumn,
    AttributeSchema,
    multi_value_weights,
)
from training.config import TrainingConfig
from training.data import ITEM, USER, TextFormat, read_attributes
from training.dataset import Dataset
from training.errors import DataError

logger = logging.getLogger(__name__)

#: A numeric column with at most this many distinct values is taken as categorical.
NUMERIC_MIN_DISTINCT = 50
#: Share of values holding the separator from which a column is multi-valued.
MULTI_MIN_SHARE = 0.05
#: Share of distinct values above which a many-word column is text.
TEXT_MIN_DISTINCT_SHARE = 0.5

#: One column's features as COO parts: (rows, feature indices, weights).
Block = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class EncodedAttributes:
    """One side's attributes, rows aligned with the vocabulary (missing rows are empty).

    Attributes:
        schema: The columns and their feature blocks.
        features: ``[num_ids, schema.num_features]`` float32 CSR, the model's input.
        content: ``[num_ids, terms]`` float32 CSR of unit TF-IDF rows (items), or ``None``.
    """

    schema: AttributeSchema
    features: sp.csr_matrix
    content: sp.csr_matrix | None = None


def infer_kind(values: pd.Series, separator: str) -> str:
    """The kind of a column from its non-missing values (see the module docstring)."""
    numbers = pd.to_numeric(values, errors="coerce")
    distinct = values.nunique()
    if bool(numbers.notna().all()) and distinct > NUMERIC_MIN_DISTINCT:
        return NUMERIC
    if float(values.str.contains(separator, regex=False).mean()) >= MULTI_MIN_SHARE:
        return MULTI
    words = values.str.strip().str.count(r"\s+") + 1
    if distinct / max(1, len(values)) > TEXT_MIN_DISTINCT_SHARE and float(words.mean()) >= 2:
        return TEXT
    return CATEGORICAL


def _text_counts(values: pd.Series, max_features: int, where: str) -> tuple[sp.csr_matrix, list]:
    from sklearn.feature_extraction.text import CountVectorizer

    documents = values.fillna("").astype(str).tolist()
    for min_df in (2, 1):
        try:
            vectorizer = CountVectorizer(max_features=max_features, min_df=min_df)
            counts = vectorizer.fit_transform(documents)
        except ValueError:  # empty vocabulary
            continue
        return sp.csr_matrix(counts, dtype=np.float32), list(vectorizer.get_feature_names_out())
    raise DataError(f"{where} is text but holds no words")


def _tfidf(counts: sp.csr_matrix) -> sp.csr_matrix:
    from sklearn.feature_extraction.text import TfidfTransformer

    return sp.csr_matrix(TfidfTransformer().fit_transform(counts), dtype=np.float32)


def encode_attributes(
    frame: pd.DataFrame,
    id_column: str,
    positions: np.ndarray,
    num_ids: int,
    *,
    kinds: dict[str, str],
    separator: str,
    min_filled: float,
    text_max_features: int,
    channel: str,
    kinds_hyperparameter: str,
    with_content: bool,
) -> EncodedAttributes | None:
    """Encode an attribute table (see the module docstring).

    Args:
        frame: ``training.data.read_attributes`` output.
        id_column: Its id column (``item_id`` / ``user_id``).
        positions: The vocabulary index of each row; ``-1`` rows are dropped.
        num_ids: Rows of the matrices (the vocabulary's size).
        kinds: Column -> kind overrides.
        separator: The multi-valued separator.
        min_filled: Columns filled in fewer rows than this share are skipped.
        text_max_features: The most terms per text column.
        channel: The channel name, for messages.
        kinds_hyperparameter: The hyperparameter holding ``kinds``, for messages.
        with_content: Also build the content TF-IDF matrix.

    Returns:
        The encoding, or ``None`` when no column is left.

    Raises:
        DataError: ``kinds`` names a column the table lacks, or a numeric column
            holds a non-number.
    """
    attribute_columns = [c for c in frame.columns if c != id_column]
    unknown = sorted(set(kinds) - set(attribute_columns))
    if unknown:
        raise DataError(
            f"{kinds_hyperparameter} names column(s) {unknown} that channel {channel!r} does "
            f"not have; its attribute columns are {attribute_columns}"
        )
    keep = positions >= 0
    frame, positions = frame[keep].reset_index(drop=True), positions[keep]
    columns: list[AttributeColumn] = []
    blocks: list[Block] = []
    content_blocks: list[sp.csr_matrix] = []
    offset = 0
    for name in attribute_columns:
        raw = frame[name]
        if not (pd.api.types.is_string_dtype(raw) or pd.api.types.is_object_dtype(raw)):
            raw = raw.map(str, na_action="ignore")
        filled = raw.notna() & (raw.fillna("").str.strip().str.len() > 0)
        share = float(filled.mean()) if len(raw) else 0.0
        if share < min_filled:
            logger.warning(
                "channel %s: attribute column %r is filled in %.1f%% of rows (< %.0f%%, "
                "attribute_min_filled); skipped",
                channel,
                name,
                100 * share,
                100 * min_filled,
            )
            continue
        values = raw[filled].str.strip()
        rows = positions[filled.to_numpy()]
        kind = kinds.get(name) or infer_kind(values, separator)
        where = f"channel {channel!r}: attribute {name!r}"
        column, block, content_block = _encode_column(
            name, kind, values, rows, offset, num_ids, separator, text_max_features, where
        )
        if kind == NUMERIC and not np.isfinite(block[2]).all():
            bad = ~np.isfinite(pd.to_numeric(values, errors="coerce").to_numpy(np.float64))
            raise DataError(
                f"{where} is numeric but {int(bad.sum())} values are not finite numbers "
                f"(examples: {values[bad].head(5).tolist()}); fix them or set "
                f"{kinds_hyperparameter}"
            )
        blocks.append(block)
        if content_block is not None:
            content_blocks.append(content_block)
        columns.append(column)
        offset += column.size
        logger.info(
            "channel %s: attribute %r is %s (%d features)", channel, name, kind, column.size
        )
    if not columns:
        logger.warning("channel %s: no attribute column left to use", channel)
        return None
    features = sp.csr_matrix(
        (
            np.concatenate([block[2] for block in blocks]).astype(np.float32),
            (
                np.concatenate([block[0] for block in blocks]),
                np.concatenate([block[1] for block in blocks]),
            ),
        ),
        shape=(num_ids, offset),
    )
    features.sum_duplicates()
    content = None
    if with_content and content_blocks:
        content = _tfidf(sp.hstack(content_blocks, format="csr"))
    return EncodedAttributes(AttributeSchema(tuple(columns), separator), features, content)


def _encode_column(
    name: str,
    kind: str,
    values: pd.Series,
    rows: np.ndarray,
    offset: int,
    num_ids: int,
    separator: str,
    text_max_features: int,
    where: str,
) -> tuple[AttributeColumn, Block, sp.csr_matrix | None]:
    """One column's schema entry, its ``(rows, features, weights)`` and its content block.

    A numeric column's non-numbers come back as NaN weights (the caller reports them).
    """
    if kind == NUMERIC:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
        finite = numbers[np.isfinite(numbers)]
        mean = float(finite.mean()) if len(finite) else 0.0
        scale = float(finite.std()) if len(finite) else 0.0
        scale = scale or 1.0
        weights = ((numbers - mean) / scale).astype(np.float32)
        column = AttributeColumn(name, kind, offset, (), mean, scale)
        return column, (rows, np.full(len(rows), offset, np.int64), weights), None
    if kind == TEXT:
        counts, terms = _text_counts(values, text_max_features, where)
        tfidf = _tfidf(counts).tocoo()
        column = AttributeColumn(name, kind, offset, tuple(str(term) for term in terms))
        block = (rows[tfidf.row], tfidf.col.astype(np.int64) + offset, tfidf.data)
        return column, block, _rows_at(counts, rows, num_ids)
    if kind == MULTI:
        split = values.str.split(separator, regex=False)
        counts_per_row = split.str.len().to_numpy()
        exploded = split.explode().str.strip()
        value_rows = np.repeat(rows, counts_per_row)
        weights = np.repeat(multi_value_weights(counts_per_row), counts_per_row)
        nonempty = (exploded.str.len() > 0).to_numpy()
        exploded, value_rows, weights = exploded[nonempty], value_rows[nonempty], weights[nonempty]
    else:
        exploded, value_rows, weights = values, rows, np.ones(len(rows))
    codes, uniques = pd.factorize(exploded, sort=True)
    column = AttributeColumn(name, kind, offset, tuple(str(v) for v in uniques))
    indicator = sp.csr_matrix(
        (np.ones(len(codes), np.float32), (value_rows, codes)), shape=(num_ids, len(uniques))
    )
    block = (value_rows, codes.astype(np.int64) + offset, weights.astype(np.float32))
    return column, block, indicator


def _rows_at(matrix: sp.csr_matrix, rows: np.ndarray, num_ids: int) -> sp.csr_matrix:
    """``matrix``'s row ``n`` moved to row ``rows[n]`` of a ``num_ids``-row matrix."""
    coo = matrix.tocoo()
    return sp.csr_matrix((coo.data, (rows[coo.row], coo.col)), shape=(num_ids, matrix.shape[1]))


def text_format(config: TrainingConfig, side: str) -> TextFormat:
    """How the ``items`` (``side="item"``) or ``users`` channel's text files are laid out."""
    return TextFormat(
        delimiter=config.attribute_delimiter,
        names=getattr(config, f"{side}_columns"),
        encoding=config.attribute_encoding,
        hyperparameters=("attribute_delimiter", f"{side}_columns", "attribute_encoding"),
    )


def read_attribute_channel(
    location: str | Path | None, config: TrainingConfig, side: str
) -> pd.DataFrame | None:
    """Read the ``items`` / ``users`` channel at ``location`` (``None``: no channel)."""
    if location is None:
        return None
    id_column = getattr(config, f"{side}_column")
    channel = f"{side}s"
    return read_attributes(location, id_column, side, channel, text_format(config, side))


def attach_attributes(
    dataset: Dataset,
    items: pd.DataFrame | None,
    users: pd.DataFrame | None,
    config: TrainingConfig,
) -> Dataset:
    """``dataset`` with its ``items`` / ``users`` channels encoded against its vocabularies.

    Items of the channel are in the vocabulary already (``build_dataset``'s
    ``cold_item_ids``); users of the ``users`` channel without interactions are
    dropped (a new user is served from the attributes of its request).
    """
    encoded: dict[str, EncodedAttributes | None] = {"item": None, "user": None}
    for side, frame, vocabulary in (("item", items, dataset.items), ("user", users, dataset.users)):
        if frame is None:
            continue
        id_column = ITEM if side == "item" else USER
        positions = vocabulary.index_of(frame[id_column].to_numpy(dtype=object))
        dropped = int(np.count_nonzero(positions < 0))
        if dropped:
            logger.info("channel %ss: %d %s(s) without interactions dropped", side, dropped, side)
        encoded[side] = encode_attributes(
            frame,
            id_column,
            positions,
            len(vocabulary),
            kinds=getattr(config, f"{side}_attribute_kinds"),
            separator=config.attribute_separator,
            min_filled=config.attribute_min_filled,
            text_max_features=config.text_max_features,
            channel=f"{side}s",
            kinds_hyperparameter=f"{side}_attribute_kinds",
            with_content=side == "item",
        )
    return replace(dataset, item_attributes=encoded["item"], user_attributes=encoded["user"])
