"""Reading interaction channels: formats, folders, column names, ids, S3, bad data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data import ColumnNames, read_interactions, read_test_negatives
from training.errors import DataError

DEFAULT = ColumnNames()


def small_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["42", "007", "u3", "42"],
            "item_id": ["1", "2", "3", "10"],
            "rating": [5.0, 3.5, 1.0, 4.0],
            "timestamp": [100, 200, 300, 400],
        }
    )


def write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if ".tsv" in path.name else ",")
    return path


@pytest.mark.parametrize("name", ["a.csv", "a.tsv", "a.csv.gz", "a.tsv.gz", "a.parquet"])
def test_reads_each_format(tmp_path: Path, name: str) -> None:
    write(small_frame(), tmp_path / name)
    frame = read_interactions(tmp_path, DEFAULT, "train")
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert frame["user_id"].tolist() == ["42", "007", "u3", "42"]
    assert frame["item_id"].tolist() == ["1", "2", "3", "10"]
    assert frame["rating"].dtype == np.float64
    assert frame["timestamp"].dtype == np.int64
    assert all(isinstance(value, str) for value in frame["item_id"])


def test_reads_a_single_file_path(tmp_path: Path) -> None:
    path = write(small_frame(), tmp_path / "one.csv")
    assert len(read_interactions(path, DEFAULT, "train")) == 4


def test_nested_folders_mixed_formats_and_ignored_files(tmp_path: Path) -> None:
    frame = small_frame()
    write(frame.iloc[:2], tmp_path / "part-0.csv")
    write(frame.iloc[2:3], tmp_path / "2024" / "01" / "part-1.parquet")
    write(frame.iloc[3:], tmp_path / "2024" / "02" / "part-2.tsv.gz")
    (tmp_path / "manifest").write_text("not data")
    (tmp_path / ".part-0.csv.crc").write_bytes(b"\x00\x01")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "notes.json").write_text("{}")
    result = read_interactions(tmp_path, DEFAULT, "train")
    assert sorted(result["user_id"]) == sorted(frame["user_id"])
    assert len(result) == 4


def test_custom_column_names_are_normalised(tmp_path: Path) -> None:
    frame = small_frame().rename(
        columns={"user_id": "customer", "item_id": "sku", "rating": "stars", "timestamp": "ts"}
    )
    frame["extra"] = "x"
    write(frame, tmp_path / "a.csv")
    columns = ColumnNames(user="customer", item="sku", rating="stars", timestamp="ts")
    result = read_interactions(tmp_path, columns, "train")
    assert list(result.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert result["user_id"].iloc[0] == "42"


def test_numeric_ids_stay_strings(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": [42, 7, 42], "item_id": [1, 20, 300]})
    write(frame, tmp_path / "a.parquet")
    write(frame, tmp_path / "b.csv")
    result = read_interactions(tmp_path, DEFAULT, "train")
    assert result["user_id"].tolist() == ["42", "7", "42", "42", "7", "42"]
    assert result["item_id"].tolist()[:3] == ["1", "20", "300"]
    assert "rating" not in result.columns and "timestamp" not in result.columns


def test_float_parquet_ids_do_not_gain_a_decimal(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": [42.0, 7.0], "item_id": [1.0, 2.0]})
    write(frame, tmp_path / "a.parquet")
    result = read_interactions(tmp_path, DEFAULT, "train")
    assert result["user_id"].tolist() == ["42", "7"]


def test_leading_zero_ids_are_kept(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("user_id,item_id\n007,0001\n7,1\n")
    result = read_interactions(tmp_path, DEFAULT, "train")
    assert result["user_id"].tolist() == ["007", "7"]
    assert result["item_id"].tolist() == ["0001", "1"]


def test_iso_timestamps_become_unix_seconds(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        "user_id,item_id,timestamp\na,b,2020-01-01T00:00:00Z\na,c,2020-01-01T00:00:10Z\n"
    )
    result = read_interactions(tmp_path, DEFAULT, "train")
    assert result["timestamp"].tolist() == [1577836800, 1577836810]


# --------------------------------------------------------------------------- bad data


def test_missing_column_lists_columns_and_hyperparameter(tmp_path: Path) -> None:
    write(small_frame().rename(columns={"item_id": "movie"}), tmp_path / "a.csv")
    with pytest.raises(DataError) as error:
        read_interactions(tmp_path, DEFAULT, "train")
    message = str(error.value)
    assert "'item_id'" in message and "movie" in message and "item_column" in message
    assert "a.csv" in message


def test_misnamed_column_suggests_close_match(tmp_path: Path) -> None:
    write(small_frame().rename(columns={"user_id": "User_ID"}), tmp_path / "a.csv")
    with pytest.raises(DataError, match="did you mean 'User_ID'"):
        read_interactions(tmp_path, DEFAULT, "train")


def test_empty_directory_names_channel_and_path(tmp_path: Path) -> None:
    (tmp_path / "manifest").write_text("x")
    with pytest.raises(DataError) as error:
        read_interactions(tmp_path, DEFAULT, "validation")
    assert "'validation'" in str(error.value) and str(tmp_path) in str(error.value)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_interactions(tmp_path / "nope", DEFAULT, "train")


def test_header_only_files_are_an_empty_channel(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("user_id,item_id\n")
    (tmp_path / "b.csv").write_text("")
    with pytest.raises(DataError, match="'train' has no interactions"):
        read_interactions(tmp_path, DEFAULT, "train")


def test_corrupt_gzip_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "good.csv").write_text("user_id,item_id\na,b\n")
    (tmp_path / "bad.csv.gz").write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match=r"cannot read .*bad\.csv\.gz"):
        read_interactions(tmp_path, DEFAULT, "train")


def test_corrupt_parquet_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(DataError, match=r"cannot read .*bad\.parquet"):
        read_interactions(tmp_path, DEFAULT, "train")


def test_non_numeric_ratings_count_and_examples(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("user_id,item_id,rating\na,b,5\na,c,five\nb,c,good\nb,d,3\n")
    with pytest.raises(DataError) as error:
        read_interactions(tmp_path, DEFAULT, "train")
    message = str(error.value)
    assert "2 of 4 rows" in message and "'five'" in message and "rating_column" in message


def test_nan_ids_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("user_id,item_id\na,b\n,c\nd,e\n")
    with pytest.raises(DataError, match=r"1 rows have an empty or NaN user id"):
        read_interactions(tmp_path, DEFAULT, "train")


def test_nan_ids_in_parquet_are_rejected(tmp_path: Path) -> None:
    write(pd.DataFrame({"user_id": ["a", None], "item_id": ["b", "c"]}), tmp_path / "a.parquet")
    with pytest.raises(DataError, match="empty or NaN user id"):
        read_interactions(tmp_path, DEFAULT, "train")


def test_optional_column_in_some_files_only(tmp_path: Path) -> None:
    write(small_frame(), tmp_path / "a.csv")
    write(small_frame().drop(columns="rating"), tmp_path / "b.csv")
    with pytest.raises(DataError, match="some files have a rating column"):
        read_interactions(tmp_path, DEFAULT, "train")


# --------------------------------------------------------------------------- test negatives


def test_ncf_test_negative_format(tmp_path: Path) -> None:
    path = tmp_path / "ml.test.negative"
    path.write_text("(0,25)\t1064\t174\t2791\n(1,133)\t1072\t3154\t3368\n")
    frame = read_test_negatives(path, DEFAULT)
    assert frame["user_id"].tolist() == ["0", "1"]
    assert frame["item_id"].tolist() == ["25", "133"]
    assert frame["negative_item_ids"].tolist() == [
        ["1064", "174", "2791"],
        ["1072", "3154", "3368"],
    ]


def test_ncf_format_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "x.test.negative"
    path.write_text("(0,25)\t1\t2\n\n0,26\t3\t4\n")
    with pytest.raises(DataError) as error:
        read_test_negatives(path, DEFAULT)
    assert "x.test.negative line 3" in str(error.value)


def test_csv_negatives_with_custom_columns(tmp_path: Path) -> None:
    (tmp_path / "neg.csv").write_text("uid,iid,negative_item_ids\n042,7,1 2 3\nb,8,4 5 6\n")
    frame = read_test_negatives(tmp_path, ColumnNames(user="uid", item="iid"))
    assert frame["user_id"].tolist() == ["042", "b"]
    assert frame["negative_item_ids"].tolist() == [["1", "2", "3"], ["4", "5", "6"]]


def test_gzipped_ncf_negatives(tmp_path: Path) -> None:
    (tmp_path / "a.test.negative.gz").write_bytes(gzip.compress(b"(u1,i1)\ti2\ti3\n"))
    frame = read_test_negatives(tmp_path, DEFAULT)
    assert frame.iloc[0]["negative_item_ids"] == ["i2", "i3"]


def test_csv_negatives_without_negatives_column(tmp_path: Path) -> None:
    (tmp_path / "neg.csv").write_text("user_id,item_id,negs\na,b,1 2\n")
    with pytest.raises(DataError, match="negative_item_ids"):
        read_test_negatives(tmp_path, DEFAULT)


def test_csv_negatives_with_empty_list_names_line(tmp_path: Path) -> None:
    (tmp_path / "neg.csv").write_text("user_id,item_id,negative_item_ids\na,b,1 2\nc,d,\n")
    with pytest.raises(DataError, match="line 3"):
        read_test_negatives(tmp_path, DEFAULT)


# --------------------------------------------------------------------------- S3


@pytest.mark.slow
def test_reads_a_channel_from_s3(aws_env, tmp_path: Path) -> None:
    import boto3

    s3 = boto3.client("s3")  # AWS_ENDPOINT_URL points at the moto server
    s3.create_bucket(Bucket="ncf-data")
    frame = small_frame()
    csv_gz = gzip.compress(frame.iloc[:2].to_csv(index=False).encode())
    s3.put_object(Bucket="ncf-data", Key="interactions/train/part-0.csv.gz", Body=csv_gz)
    parquet_path = write(frame.iloc[2:], tmp_path / "p.parquet")
    s3.put_object(
        Bucket="ncf-data",
        Key="interactions/train/2024/part-1.parquet",
        Body=parquet_path.read_bytes(),
    )
    s3.put_object(Bucket="ncf-data", Key="interactions/train/manifest", Body=b"x")
    s3.put_object(Bucket="ncf-data", Key="interactions/other/part.csv", Body=b"user_id\n")
    s3.put_object(Bucket="ncf-data", Key="interactions/train_old/part.csv", Body=b"user_id\n")

    result = read_interactions("s3://ncf-data/interactions/train", DEFAULT, "train")
    # Files in sorted key order: 2024/part-1.parquet, then part-0.csv.gz.
    assert result["user_id"].tolist() == ["u3", "42", "42", "007"]
    assert result["rating"].tolist() == [1.0, 4.0, 5.0, 3.5]
    assert result["timestamp"].dtype == np.int64

    single = read_interactions("s3://ncf-data/interactions/train/part-0.csv.gz", DEFAULT, "train")
    assert single["user_id"].tolist() == ["42", "007"]

    with pytest.raises(DataError, match="no readable file under s3://ncf-data/empty"):
        read_interactions("s3://ncf-data/empty", DEFAULT, "train")
    with pytest.raises(DataError, match="cannot list"):
        read_interactions("s3://no-such-bucket/x", DEFAULT, "train")


def test_blank_string_ids_in_parquet_are_rejected(tmp_path: Path) -> None:
    write(pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", " "]}), tmp_path / "a.parquet")
    with pytest.raises(DataError, match="1 rows have an empty or NaN item id"):
        read_interactions(tmp_path, DEFAULT, "train")


def test_object_ids_with_mixed_types(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": pd.Series(["a", 7], dtype=object), "item_id": ["x", "y"]})
    write(frame.astype({"user_id": str}), tmp_path / "a.parquet")
    result = read_interactions(tmp_path, DEFAULT, "train")
    assert result["user_id"].tolist() == ["a", "7"]


def test_parquet_datetime_timestamps_become_unix_seconds(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a"],
            "item_id": ["b", "c"],
            "timestamp": pd.to_datetime(["2020-01-01 00:00:00", "2020-01-01 00:00:10"]),
        }
    )
    write(frame, tmp_path / "a.parquet")
    result = read_interactions(tmp_path, DEFAULT, "train")
    assert result["timestamp"].tolist() == [1577836800, 1577836810]
    assert result["timestamp"].dtype == np.int64
