"""The attribute channels ``items`` and ``users``: reading, kinds, encoding, bad input."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ncf_contract.attributes import CATEGORICAL, MULTI, NUMERIC, TEXT
from training.attributes import (
    attach_attributes,
    encode_attributes,
    infer_kind,
    read_attribute_channel,
)
from training.config import TrainingConfig
from training.dataset import build_dataset
from training.errors import ConfigError, DataError
from training.synthetic import make_interactions, make_item_attributes, make_user_attributes


def config(**hyperparameters: object) -> TrainingConfig:
    return TrainingConfig.from_hyperparameters(hyperparameters)


def read_items(location: Path, settings: TrainingConfig) -> pd.DataFrame:
    frame = read_attribute_channel(location, settings, "item")
    assert frame is not None
    return frame


def encode(frame: pd.DataFrame, **options: object):
    settings: dict = {
        "kinds": {},
        "separator": "|",
        "min_filled": 0.5,
        "text_max_features": 100,
        "channel": "items",
        "kinds_hyperparameter": "item_attribute_kinds",
        "with_content": True,
        **options,
    }
    return encode_attributes(frame, "item_id", np.arange(len(frame)), len(frame), **settings)


def test_each_kind_is_inferred() -> None:
    frame = make_item_attributes(num_items=120)
    frame["colour"] = np.where(np.arange(120) % 3 == 0, "red", "blue")
    encoded = encode(frame)
    kinds = {column.name: column.kind for column in encoded.schema.columns}
    assert kinds == {"genres": MULTI, "title": TEXT, "price": NUMERIC, "colour": CATEGORICAL}


def test_small_numeric_codes_are_categorical() -> None:
    codes = pd.Series([str(n % 21) for n in range(500)])
    assert infer_kind(codes, "|") == CATEGORICAL
    assert infer_kind(pd.Series([str(n) for n in range(500)]), "|") == NUMERIC


def test_each_kind_is_encoded_as_documented() -> None:
    frame = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "genres": ["x|y", "y", "x|y|z"],
            "brand": ["p", "q", "p"],
            "price": ["1", "2", "3"],
            "title": ["red fox jumps", "lazy dog sleeps", "red dog runs"],
        }
    )
    kinds = {"genres": MULTI, "brand": CATEGORICAL, "price": NUMERIC, "title": TEXT}
    encoded = encode(frame, kinds=kinds)
    schema, dense = encoded.schema, encoded.features.toarray()
    genres, brand = schema.column("genres"), schema.column("brand")
    price, title = schema.column("price"), schema.column("title")
    assert genres.values == ("x", "y", "z")
    # Multi-valued: the mean of the values (each 1/n).
    np.testing.assert_allclose(dense[2, genres.offset : genres.offset + 3], [1 / 3] * 3)
    np.testing.assert_allclose(dense[0, genres.offset : genres.offset + 3], [0.5, 0.5, 0])
    # Categorical: one-hot.
    np.testing.assert_allclose(dense[:, brand.offset : brand.offset + 2], [[1, 0], [0, 1], [1, 0]])
    # Numeric: standardised.
    expected = (np.array([1, 2, 3]) - 2) / np.std([1, 2, 3])
    np.testing.assert_allclose(dense[:, price.offset], expected, rtol=1e-6)
    # Text: unit TF-IDF rows over the terms found in two rows or more ("red", "dog").
    assert title.values == ("dog", "red")
    text = dense[:, title.offset : title.offset + 2]
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), [1, 1, 1], rtol=1e-6)
    # Content: unit rows; items sharing values are closer.
    content = encoded.content
    similarity = (content @ content.T).toarray()
    np.testing.assert_allclose(np.diag(similarity), 1, rtol=1e-5)
    assert similarity[0, 2] > similarity[0, 1]


def test_kinds_hyperparameter_overrides_inference() -> None:
    frame = make_item_attributes()
    encoded = encode(frame, kinds={"price": CATEGORICAL, "title": CATEGORICAL})
    assert encoded.schema.column("price").kind == CATEGORICAL
    assert encoded.schema.column("title").kind == CATEGORICAL
    parsed = config(item_attribute_kinds='{"title": "text"}')
    assert parsed.item_attribute_kinds == {"title": "text"}
    with pytest.raises(ConfigError, match="item_attribute_kinds"):
        config(item_attribute_kinds={"title": "words"})


def test_kinds_naming_a_missing_column_fail() -> None:
    with pytest.raises(DataError, match=r"item_attribute_kinds names column\(s\) \['plot'\]"):
        encode(make_item_attributes(), kinds={"plot": TEXT})


def test_numeric_override_on_text_fails_with_examples() -> None:
    frame = pd.DataFrame({"item_id": ["a", "b"], "size": ["1", "large"]})
    with pytest.raises(DataError, match=r"'size' is numeric but 1 values.*'large'"):
        encode(frame, kinds={"size": NUMERIC})


def test_mostly_empty_column_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    frame = make_item_attributes(num_items=20)
    frame["director"] = [None] * 15 + ["someone"] * 5
    with caplog.at_level(logging.WARNING, logger="training.attributes"):
        encoded = encode(frame)
    assert encoded.schema.column("director") is None
    assert "'director' is filled in 25.0% of rows" in caplog.text


@pytest.mark.parametrize("name", ["a.csv", "a.tsv", "a.csv.gz", "a.tsv.gz", "a.parquet"])
def test_reads_each_format(tmp_path: Path, name: str) -> None:
    frame = make_item_attributes(num_items=8)
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if ".tsv" in name else ",")
    read = read_items(tmp_path, config())
    assert read["item_id"].tolist() == frame["item_id"].tolist()
    assert read["genres"].tolist() == frame["genres"].tolist()
    assert read["price"].iloc[1] == "10.25"


def movielens_style_file(path: Path) -> Path:
    """``id;title;genres``, no header, latin-1, as ML-1M's ``movies.dat``."""
    lines = [
        "1;Toy Story (1995);Animation|Children's|Comedy",
        "2;Jumanji (1995);Adventure|Children's|Fantasy",
        "3;Misérables, Les (1995);Drama|Musical",
        "4;Cold Movie (2001);Drama",
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return path


MOVIES_HYPERPARAMETERS = {
    "item_columns": ["item_id", "title", "genres"],
    "attribute_delimiter": ";",
    "attribute_encoding": "latin-1",
    "item_attribute_kinds": {"title": "text"},
}


def test_headerless_latin1_file_through_hyperparameters(tmp_path: Path) -> None:
    path = movielens_style_file(tmp_path / "movies.dat")
    read = read_items(path, config(**MOVIES_HYPERPARAMETERS))
    assert read.columns.tolist() == ["item_id", "title", "genres"]
    assert read["title"].iloc[2] == "Misérables, Les (1995)"
    gz = tmp_path / "gz" / "movies.dat.gz"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_items(gz, config(**MOVIES_HYPERPARAMETERS)).equals(read)


def test_undecodable_bytes_name_file_and_hyperparameter(tmp_path: Path) -> None:
    path = movielens_style_file(tmp_path / "movies.dat")
    utf8 = {**MOVIES_HYPERPARAMETERS, "attribute_encoding": "utf-8"}
    with pytest.raises(DataError) as error:
        read_attribute_channel(path, config(**utf8), "item")
    assert str(path) in str(error.value)
    assert "not valid utf-8" in str(error.value)
    assert "attribute_encoding" in str(error.value)


def test_missing_id_column_is_a_clear_error(tmp_path: Path) -> None:
    frame = make_item_attributes(num_items=4).rename(columns={"item_id": "sku"})
    frame.to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(DataError, match=r"no item column 'item_id'.*item_column"):
        read_attribute_channel(tmp_path, config(), "item")
    (tmp_path / "m").mkdir()
    path = movielens_style_file(tmp_path / "m" / "movies.dat")
    no_names = {k: v for k, v in MOVIES_HYPERPARAMETERS.items() if k != "item_columns"}
    with pytest.raises(DataError, match="set item_columns to its column names"):
        read_attribute_channel(path, config(**no_names), "item")


def test_duplicate_ids_fail(tmp_path: Path) -> None:
    frame = make_item_attributes(num_items=4)
    pd.concat([frame, frame.iloc[[1, 3]]]).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(DataError, match=r"2 item id\(s\) have more than one row.*'i1', 'i3'"):
        read_attribute_channel(tmp_path, config(), "item")


def test_items_without_interactions_are_kept_as_cold_items() -> None:
    interactions = make_interactions(num_users=30, num_items=20, interactions_per_user=5)
    items = make_item_attributes(num_items=24)  # i20..i23 have no interaction
    built = build_dataset(interactions, None, None, cold_item_ids=items["item_id"])
    users = make_user_attributes(num_users=35)  # u30..u34 have no interaction: dropped
    built = attach_attributes(built, items, users, config())
    assert built.num_items == 24
    cold = built.items.index_of(["i20", "i23"])
    assert (cold >= 0).all() and (built.item_popularity[cold] == 0).all()
    assert built.item_attributes is not None and built.user_attributes is not None
    assert built.item_attributes.features.shape[0] == 24
    assert built.item_attributes.features[cold].nnz > 0
    assert built.user_attributes.features.shape[0] == built.num_users == 30
    assert built.statistics()["item_attributes"]["genres"] == MULTI
