"""Reading interaction logs from a SageMaker channel directory, a file, or ``s3://``.

Every reader returns a :class:`pandas.DataFrame` with *normalised* column names
(``user_id``, ``item_id`` and, when the data has them, ``rating`` and
``timestamp``) whatever the configured column names were. Ids are strings
everywhere: CSV/TSV id columns are read as text (``"042"`` stays ``"042"``) and
numeric Parquet id columns are converted without a float detour (``42`` becomes
``"42"``, never ``"42.0"``).

Accepted files (a channel may hold many, in nested folders; anything else, e.g.
SageMaker's manifest or ``.crc`` files, is ignored): ``*.csv``, ``*.tsv``,
``*.csv.gz``, ``*.tsv.gz``, ``*.parquet``. CSV and TSV files have a header row.
All work is vectorised (pandas / pyarrow); there is no Python loop over rows.

The attribute channels ``items`` and ``users`` (:func:`read_attributes`) are
read by the same code, with a :class:`TextFormat` from the hyperparameters:
also ``*.dat`` / ``*.txt`` (optionally gzipped), a field delimiter
(``attribute_delimiter``), column names for header-less files
(``item_columns`` / ``user_columns``) and an encoding (``attribute_encoding``).
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.errors import DataError

logger = logging.getLogger(__name__)

USER = "user_id"
ITEM = "item_id"
RATING = "rating"
TIMESTAMP = "timestamp"
NEGATIVES = "negative_item_ids"

#: The hyperparameter that sets each configurable column name (named in error messages).
COLUMN_HYPERPARAMETERS = {
    "user": "user_column",
    "item": "item_column",
    "rating": "rating_column",
    "timestamp": "timestamp_column",
}

INTERACTION_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".parquet")
#: Attribute tables are often exported as ``.dat`` / ``.txt`` (MovieLens' ``movies.dat``).
ATTRIBUTE_SUFFIXES = (*INTERACTION_SUFFIXES, ".dat", ".dat.gz", ".txt", ".txt.gz")
#: ``test_negatives`` also accepts the NCF paper's ``*.test.negative`` files (and plain text).
NEGATIVES_SUFFIXES = (*INTERACTION_SUFFIXES, ".negative", ".negative.gz", ".txt", ".txt.gz")

_EXAMPLES = 5


@dataclass(frozen=True)
class ColumnNames:
    """The column names of the input data (hyperparameters ``*_column``)."""

    user: str = USER
    item: str = ITEM
    rating: str = RATING
    timestamp: str = TIMESTAMP


@dataclass(frozen=True)
class TextFormat:
    """How delimited text files are laid out (Parquet ignores all but nothing of it).

    Attributes:
        delimiter: The field delimiter; ``None``: a tab for ``*.tsv``, else a comma.
        names: Column names for files without a header row; ``None``: the first row.
        encoding: The text encoding.
        hyperparameters: The hyperparameters that set ``delimiter``, ``names`` and
            ``encoding``, named in error messages.
    """

    delimiter: str | None = None
    names: tuple[str, ...] | None = None
    encoding: str = "utf-8"
    hyperparameters: tuple[str, str, str] = ("", "", "")


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Source:
    """One readable file: a local path or an S3 object."""

    name: str  # what error messages show: a path or an s3:// URI
    local: Path | None = None
    bucket: str | None = None
    key: str | None = None

    def open_bytes(self) -> io.BytesIO | Path:
        if self.local is not None:
            return self.local
        body = _s3_client().get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
        return io.BytesIO(body)


def _matches(name: str, suffixes: tuple[str, ...]) -> bool:
    base = name.rsplit("/", 1)[-1]
    if base.startswith((".", "_")):  # hidden files, _SUCCESS, .part-0.csv.crc
        return False
    return base.lower().endswith(suffixes)


def _s3_client():  # boto3 clients are generated at run time
    try:
        import boto3
    except ImportError as error:  # pragma: no cover - boto3 is a train dependency
        raise DataError("reading s3:// channels needs boto3 (pip install boto3)") from error
    # boto3 >= 1.28 honours AWS_ENDPOINT_URL itself; passing it explicitly also
    # covers older releases and makes the behaviour obvious.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return boto3.client("s3", endpoint_url=endpoint or None)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise DataError(f"{uri!r} is not a valid S3 URI; expected s3://bucket/prefix")
    return bucket, prefix


def list_sources(location: str | Path, channel: str, suffixes: tuple[str, ...]) -> list[_Source]:
    """The readable files under ``location``, sorted by name.

    Raises:
        DataError: The location does not exist, cannot be listed, or holds no
            readable file.
    """
    text = str(location)
    accepted = ", ".join(f"*{suffix}" for suffix in suffixes)
    if text.startswith("s3://"):
        bucket, prefix = split_s3_uri(text)
        sources: list[_Source] = []
        try:
            paginator = _s3_client().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for entry in page.get("Contents", []):
                    key = entry["Key"]
                    # A prefix names a folder (or one object): s3://b/train does not
                    # pick up s3://b/train_old/...
                    in_folder = not prefix or prefix.endswith("/") or key == prefix
                    in_folder = in_folder or key.startswith(prefix + "/")
                    if in_folder and not key.endswith("/") and _matches(key, suffixes):
                        sources.append(_Source(f"s3://{bucket}/{key}", bucket=bucket, key=key))
        except DataError:
            raise
        except Exception as error:
            raise DataError(
                f"channel {channel!r}: cannot list {text}: {error}. Check the URI, the "
                "credentials and AWS_ENDPOINT_URL."
            ) from error
        if not sources:
            raise DataError(
                f"channel {channel!r} is empty: no readable file under {text} "
                f"(accepted: {accepted})"
            )
        return sorted(sources, key=lambda source: source.name)

    path = Path(location)
    if not path.exists():
        raise DataError(f"channel {channel!r}: {path} does not exist")
    if path.is_file():
        files = [path]
    else:
        files = sorted(
            candidate
            for candidate in path.rglob("*")
            if candidate.is_file() and _matches(candidate.name, suffixes)
        )
    if not files:
        raise DataError(
            f"channel {channel!r} is empty: no readable file in {path} (accepted: {accepted})"
        )
    return [_Source(str(file), local=file) for file in files]


# --------------------------------------------------------------------------- parsing


def _read_table(
    source: _Source, string_columns: list[str] | None, text_format: TextFormat | None = None
) -> pd.DataFrame:
    """Read one file; ``string_columns`` (``None``: every column) are read as text where present."""
    name = source.name.lower()
    text_format = text_format or TextFormat()
    try:
        handle = source.open_bytes()
        if name.endswith(".parquet"):
            return pd.read_parquet(handle)
        separator = text_format.delimiter or ("\t" if name.endswith((".tsv", ".tsv.gz")) else ",")
        compression = "gzip" if name.endswith(".gz") else None
        return pd.read_csv(
            handle,
            sep=separator,
            compression=compression,
            header=None if text_format.names else "infer",
            names=list(text_format.names) if text_format.names else None,
            encoding=text_format.encoding,
            dtype=str if string_columns is None else dict.fromkeys(string_columns, str),
            keep_default_na=False,
            na_values=[""] if string_columns is None else {c: [""] for c in string_columns},
            skipinitialspace=True,
            engine="c" if len(separator) == 1 else "python",
        )
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except UnicodeDecodeError as error:
        setting = text_format.hyperparameters[2] or "the encoding"
        raise DataError(
            f"cannot read {source.name}: its bytes are not valid {text_format.encoding} "
            f"({error.reason}); set the hyperparameter {setting} to the "
            "file's encoding (e.g. latin-1)"
        ) from error
    except LookupError as error:  # an unknown codec name
        setting = text_format.hyperparameters[2] or "the encoding"
        raise DataError(
            f"{setting}={text_format.encoding!r} is not an encoding: {error}"
        ) from error
    except Exception as error:
        raise DataError(f"cannot read {source.name}: {type(error).__name__}: {error}") from error


def _ids_as_strings(values: pd.Series) -> pd.Series:
    """Ids as text (missing stays missing); integral numbers without a trailing ``.0``.

    Text columns keep their string dtype (Arrow-backed ``str`` on pandas 3), which
    factorizes far faster than Python objects.
    """
    if isinstance(values.dtype, pd.StringDtype):
        return values
    missing = values.isna()
    if pd.api.types.is_float_dtype(values):
        finite = values[~missing]
        if bool((finite == np.floor(finite)).all()):
            values = values.astype("Int64")
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        text = values.astype(str)
    else:  # object: mixed Python values
        text = values.map(str, na_action="ignore")
    if missing.any():
        text = text.where(~missing)
    return text


def _check_columns(
    frame: pd.DataFrame, required: dict[str, str], source: _Source, channel: str
) -> None:
    found = [str(column) for column in frame.columns]
    for role, column in required.items():
        if column in frame.columns:
            continue
        hint = ""
        close = [name for name in found if name.strip().lower() == column.strip().lower()]
        if close:
            hint = f" (did you mean {close[0]!r}?)"
        raise DataError(
            f"channel {channel!r}: {source.name} has no {role} column {column!r}{hint}; "
            f"columns found: {found}. Set the hyperparameter "
            f"{COLUMN_HYPERPARAMETERS[role]} to the right name."
        )


def _numeric(
    values: pd.Series, role: str, column: str, channel: str, source_names: str
) -> pd.Series:
    """Convert a rating/timestamp column to numbers, or say which rows are not."""
    if pd.api.types.is_datetime64_any_dtype(values) and not values.isna().any():
        # Parquet timestamps: unix seconds, whatever the unit and time zone.
        if getattr(values.dt, "tz", None) is None:
            values = values.dt.tz_localize("UTC")
        return values.astype("datetime64[ns, UTC]").astype("int64") // 10**9
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        converted = values
    else:
        converted = pd.to_numeric(values, errors="coerce")
    bad = converted.isna().to_numpy()
    if bad.any() and role == "timestamp" and not pd.api.types.is_numeric_dtype(values):
        # Dates as text: ISO 8601 and friends become unix seconds.
        try:
            parsed = pd.to_datetime(values, utc=True, format="mixed")
        except (ValueError, TypeError):
            parsed = None
        if parsed is not None and not parsed.isna().any():
            return (parsed.astype("datetime64[ns, UTC]").astype("int64") // 10**9).astype(np.int64)
    if bad.any():
        examples = values[bad].head(_EXAMPLES).tolist()
        raise DataError(
            f"channel {channel!r}: {int(bad.sum())} of {len(values)} rows have a missing or "
            f"non-numeric {role} in column {column!r} (examples: {examples}) in {source_names}. "
            f"Fix those rows, or set {COLUMN_HYPERPARAMETERS[role]} to the right column."
        )
    infinite = np.isinf(converted.to_numpy(dtype=np.float64))
    if infinite.any():
        rows = np.flatnonzero(infinite)[:_EXAMPLES].tolist()
        raise DataError(
            f"channel {channel!r}: {int(infinite.sum())} of {len(values)} rows have an infinite "
            f"{role} in column {column!r} (rows {rows} counting from 0) in {source_names}; "
            f"every {role} must be a finite number"
        )
    return converted


def _check_ids_filled(ids: pd.Series, role: str, column: str, channel: str, where: str) -> None:
    """Raise a DataError naming the first rows whose id is empty or NaN."""
    empty = (ids.isna() | (ids.str.strip().str.len() == 0)).to_numpy()
    if empty.any():
        rows = np.flatnonzero(empty)[:_EXAMPLES].tolist()
        raise DataError(
            f"channel {channel!r}: {int(empty.sum())} rows have an empty or NaN {role} id "
            f"(column {column!r}, first rows {rows} counting from 0) in {where}; "
            "drop or fill those rows"
        )


def read_interactions(location: str | Path, columns: ColumnNames, channel: str) -> pd.DataFrame:
    """Read every interaction file of a channel into one normalised frame.

    Args:
        location: A local file or directory (searched recursively) or an
            ``s3://bucket/prefix`` URI (read with boto3, honouring
            ``AWS_ENDPOINT_URL`` and the normal credential chain).
        columns: The configured column names.
        channel: The channel name, for error messages.

    Returns:
        Columns ``user_id`` and ``item_id`` (object dtype, Python ``str``),
        plus ``rating`` (float64) and ``timestamp`` (int64, or float64 if the
        data has fractional times) when every file has those columns. Rows keep
        their file order; files are taken in sorted name order.

    Raises:
        DataError: Missing or misnamed columns, an empty channel, an
            unreadable file, non-numeric ratings or timestamps, empty ids.
    """
    sources = list_sources(location, channel, INTERACTION_SUFFIXES)
    required = {"user": columns.user, "item": columns.item}
    optional = {"rating": columns.rating, "timestamp": columns.timestamp}
    wanted = {
        USER: columns.user,
        ITEM: columns.item,
        RATING: columns.rating,
        TIMESTAMP: columns.timestamp,
    }
    parts: list[pd.DataFrame] = []
    has_optional: dict[str, list[bool]] = {role: [] for role in optional}
    for source in sources:
        raw = _read_table(source, [columns.user, columns.item])
        if raw.shape[1] == 0 and raw.shape[0] == 0:
            # A blank file: nothing to check, contributes nothing.
            continue
        _check_columns(raw, required, source, channel)
        part = pd.DataFrame(
            {normal: raw[given] for normal, given in wanted.items() if given in raw.columns}
        )
        for role, column in optional.items():
            has_optional[role].append(column in raw.columns)
        part[USER] = _ids_as_strings(part[USER])
        part[ITEM] = _ids_as_strings(part[ITEM])
        parts.append(part)
    if not parts or sum(len(part) for part in parts) == 0:
        raise DataError(
            f"channel {channel!r} has no interactions: {len(sources)} file(s) under {location} "
            "hold no data rows"
        )
    for role, flags in has_optional.items():
        if any(flags) and not all(flags):
            missing = [p for p, flag in zip(sources, flags, strict=False) if not flag]
            raise DataError(
                f"channel {channel!r}: some files have a {role} column "
                f"{optional[role]!r} and some do not (e.g. {missing[0].name}); "
                "give every file the same columns"
            )
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    where = str(location)
    for column, role in ((USER, "user"), (ITEM, "item")):
        _check_ids_filled(frame[column], role, wanted[column], channel, where)
    if RATING in frame.columns:
        frame[RATING] = _numeric(frame[RATING], "rating", columns.rating, channel, where).astype(
            np.float64
        )
    if TIMESTAMP in frame.columns:
        stamps = _numeric(frame[TIMESTAMP], "timestamp", columns.timestamp, channel, where)
        if pd.api.types.is_float_dtype(stamps) and bool((stamps == np.floor(stamps)).all()):
            stamps = stamps.astype(np.int64)
        frame[TIMESTAMP] = stamps
    logger.info("channel %s: %d interactions from %d file(s)", channel, len(frame), len(sources))
    return frame.reset_index(drop=True)


# --------------------------------------------------------------------------- attributes


def read_attributes(
    location: str | Path, id_column: str, role: str, channel: str, text_format: TextFormat
) -> pd.DataFrame:
    """Read an attribute channel (``items`` or ``users``): one row per id.

    Args:
        location: As for :func:`read_interactions`.
        id_column: The id column's name (``item_column`` / ``user_column``).
        role: ``"item"`` or ``"user"``, for error messages.
        channel: The channel name, for error messages.
        text_format: Delimiter, header names and encoding of text files.

    Returns:
        Column ``item_id`` / ``user_id`` (str) first, then every other column as
        text (missing values stay missing; Parquet numbers become their string).

    Raises:
        DataError: No id column, an empty or duplicate id (the message gives
            examples), undecodable bytes (naming the file and the encoding
            hyperparameter), an empty channel.
    """
    sources = list_sources(location, channel, ATTRIBUTE_SUFFIXES)
    normal = ITEM if role == "item" else USER
    parts = []
    for source in sources:
        raw = _read_table(source, None, text_format)
        if raw.shape[1] == 0 and raw.shape[0] == 0:
            continue
        try:
            _check_columns(raw, {role: id_column}, source, channel)
        except DataError as error:
            if text_format.names is None:
                names_hyperparameter = text_format.hyperparameters[1]
                raise DataError(
                    f"{error} If the file has no header row, set {names_hyperparameter} to "
                    "its column names."
                ) from error
            raise
        part = pd.DataFrame({str(column): _ids_as_strings(raw[column]) for column in raw.columns})
        part = part.rename(columns={id_column: normal})
        parts.append(part[[normal, *[c for c in part.columns if c != normal]]])
    if not parts or sum(len(part) for part in parts) == 0:
        raise DataError(f"channel {channel!r} has no rows: the files under {location} are empty")
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    ids = frame[normal]
    _check_ids_filled(ids, role, id_column, channel, str(location))
    duplicated = ids.duplicated(keep=False).to_numpy()
    if duplicated.any():
        examples = sorted(set(ids[duplicated].head(4 * _EXAMPLES).tolist()))[:_EXAMPLES]
        raise DataError(
            f"channel {channel!r}: {int(ids[duplicated].nunique())} {role} id(s) have more than "
            f"one row (examples: {examples}) in {location}; give each {role} one row"
        )
    logger.info("channel %s: %d %ss from %d file(s)", channel, len(frame), role, len(sources))
    return frame.reset_index(drop=True)


# --------------------------------------------------------------------------- test negatives


def _read_text(source: _Source) -> str:
    try:
        handle = source.open_bytes()
        data = handle.read_bytes() if isinstance(handle, Path) else handle.getvalue()
        if source.name.lower().endswith(".gz"):
            import gzip

            data = gzip.decompress(data)
        return data.decode("utf-8")
    except Exception as error:
        raise DataError(f"cannot read {source.name}: {type(error).__name__}: {error}") from error


def _parse_ncf_negatives(text: str, source: _Source) -> pd.DataFrame:
    """``(user,item)`` then tab-separated negative ids, one line each, no header."""
    lines = pd.Series(text.splitlines(), dtype=object)
    line_numbers = np.arange(1, len(lines) + 1)
    keep = lines.str.strip().str.len().to_numpy() > 0
    lines, line_numbers = lines[keep].reset_index(drop=True), line_numbers[keep]
    head_and_rest = lines.str.strip().str.split(r"\s+", n=1, regex=True)
    head = head_and_rest.str[0]
    rest = head_and_rest.str[1].fillna("")
    pair = head.str.extract(r"^\(([^,()]+),([^,()]+)\)$")
    bad = pair.isna().any(axis=1).to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source.name} line {line_numbers[first]}: expected '(user,item)' followed by "
            f"tab-separated negative item ids, found {lines[first][:80]!r} "
            f"({int(bad.sum())} malformed line(s))"
        )
    return pd.DataFrame(
        {
            USER: pair[0].str.strip().astype(object),
            ITEM: pair[1].str.strip().astype(object),
            NEGATIVES: rest.str.split().astype(object),
            "_line": line_numbers,
        }
    )


def read_test_negatives(
    location: str | Path, columns: ColumnNames, channel: str = "test_negatives"
) -> pd.DataFrame:
    """Read fixed evaluation negatives, in either accepted format.

    Formats (detected per file from its first non-blank line):

    * the NCF paper's ``.test.negative``: no header, each line
      ``(user,item)`` then the negative item ids, tab-separated;
    * CSV/TSV (optionally gzipped) or Parquet with columns ``<user column>``,
      ``<item column>`` and ``negative_item_ids`` (ids separated by spaces).

    Returns:
        Columns ``user_id`` (str), ``item_id`` (str, the held-out item) and
        ``negative_item_ids`` (object column, one Python ``list`` of ``str`` per
        row; rows may differ in length here, :func:`training.evaluation.
        resolve_test_negatives` turns them into a rectangular index array).

    Raises:
        DataError: An empty channel, an unreadable file, a malformed line (the
            message names the file and the line number) or missing columns.
    """
    sources = list_sources(location, channel, NEGATIVES_SUFFIXES)
    parts = []
    for source in sources:
        lowered = source.name.lower()
        if lowered.endswith(".parquet"):
            raw = _read_table(source, [columns.user, columns.item])
            text = None
        else:
            text = _read_text(source)
            first = next((line for line in text.splitlines() if line.strip()), "")
            if not first:
                continue
            raw = None
        if text is not None and first.lstrip().startswith("("):
            parts.append(_parse_ncf_negatives(text, source))
            continue
        if raw is None:
            separator = "\t" if "\t" in first else ","
            try:
                raw = pd.read_csv(
                    io.StringIO(text),
                    sep=separator,
                    dtype=str,
                    keep_default_na=False,
                    skipinitialspace=True,
                )
            except Exception as error:
                raise DataError(
                    f"cannot read {source.name}: {type(error).__name__}: {error}"
                ) from error
        _check_columns(raw, {"user": columns.user, "item": columns.item}, source, channel)
        if NEGATIVES not in raw.columns:
            raise DataError(
                f"channel {channel!r}: {source.name} has no {NEGATIVES!r} column; columns "
                f"found: {[str(c) for c in raw.columns]}. Expected either the NCF "
                "'.test.negative' format or columns user, item, negative_item_ids "
                "(ids separated by spaces)."
            )
        negatives = raw[NEGATIVES]
        first_value = negatives.dropna().iloc[0] if negatives.notna().any() else ""
        if isinstance(first_value, str):
            negatives = negatives.fillna("").astype(str).str.split()
        else:  # Parquet list column: already one sequence per row
            negatives = negatives.map(lambda value: [str(v) for v in value])
        part = pd.DataFrame(
            {
                USER: _ids_as_strings(raw[columns.user]),
                ITEM: _ids_as_strings(raw[columns.item]),
                NEGATIVES: negatives,
                "_line": np.arange(2, len(raw) + 2),
            }
        )
        bad = (
            part[USER].isna()
            | (part[USER].astype(str).str.len() == 0)
            | part[ITEM].isna()
            | (part[ITEM].astype(str).str.len() == 0)
            | (negatives.str.len() == 0)
        ).to_numpy()
        if bad.any():
            first_bad = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source.name} line {part['_line'].iloc[first_bad]}: empty user, item or "
                f"negative_item_ids ({int(bad.sum())} such row(s))"
            )
        parts.append(part)
    if not parts or sum(len(part) for part in parts) == 0:
        raise DataError(f"channel {channel!r} has no rows: the files under {location} are empty")
    frame = pd.concat(parts, ignore_index=True).drop(columns="_line")
    frame[USER] = frame[USER].astype(object)
    frame[ITEM] = frame[ITEM].astype(object)
    return frame
