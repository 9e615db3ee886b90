"""Encoding, filtering, duplicate collapse and the validation split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.dataset import Vocabulary, build_dataset
from training.errors import DataError
from training.synthetic import make_interactions


def frame(rows: list[tuple], columns=("user_id", "item_id", "rating", "timestamp")) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns[: len(rows[0])]))


def raw_pairs(dataset, part) -> set[tuple[str, str]]:
    return set(
        zip(
            dataset.users.ids[part.user_index].tolist(),
            dataset.items.ids[part.item_index].tolist(),
            strict=True,
        )
    )


def test_vocabulary_index_of() -> None:
    vocabulary = Vocabulary(np.array(["a", "b", "42"], dtype=object))
    assert vocabulary.index_of(["42", "a", "zz"]).tolist() == [2, 0, -1]
    assert vocabulary.index_of(np.array([42])).tolist() == [2]
    assert len(vocabulary) == 3


def test_leave_latest_out_by_timestamp() -> None:
    train = frame(
        [
            ("u1", "a", 5.0, 30),
            ("u1", "b", 5.0, 10),
            ("u1", "c", 5.0, 20),
            ("u2", "a", 5.0, 5),
            ("u2", "d", 5.0, 50),
            ("u3", "b", 5.0, 1),  # a single interaction: stays in train
        ]
    )
    dataset = build_dataset(train, None, None)
    assert dataset.validation_source == "leave_latest_out"
    assert raw_pairs(dataset, dataset.validation) == {("u1", "a"), ("u2", "d")}
    assert raw_pairs(dataset, dataset.train) == {("u1", "b"), ("u1", "c"), ("u2", "a"), ("u3", "b")}
    assert not set(raw_pairs(dataset, dataset.validation)) & raw_pairs(dataset, dataset.train)


def test_leave_random_out_is_seeded_and_deterministic() -> None:
    data = make_interactions().drop(columns=["rating", "timestamp"])
    first = build_dataset(data, None, None, seed=3)
    again = build_dataset(data, None, None, seed=3)
    other = build_dataset(data, None, None, seed=4)
    assert first.validation_source == "leave_random_out"
    assert np.array_equal(first.validation.item_index, again.validation.item_index)
    assert not np.array_equal(first.validation.item_index, other.validation.item_index)
    # One held-out row per user, and every row accounted for exactly once.
    assert len(np.unique(first.validation.user_index)) == len(first.validation) == 200
    assert len(first.train) + len(first.validation) == len(data)


def test_leave_latest_out_on_synthetic_data_picks_each_users_max_time() -> None:
    data = make_interactions()
    dataset = build_dataset(data, None, None, seed=0)
    latest = data.loc[data.groupby("user_id")["timestamp"].idxmax()]
    assert raw_pairs(dataset, dataset.validation) == set(
        zip(latest["user_id"], latest["item_id"], strict=True)
    )


def test_validation_channel_is_used_as_given() -> None:
    train = frame([("u1", "a"), ("u1", "b"), ("u2", "a")], ("user_id", "item_id"))
    validation = frame([("u1", "c"), ("u9", "a")], ("user_id", "item_id"))
    test = frame([("u2", "z")], ("user_id", "item_id"))
    dataset = build_dataset(train, validation, test)
    assert dataset.validation_source == "channel"
    assert len(dataset.train) == 3
    # Vocabulary is the union of all channels, sorted; popularity counts train only.
    assert dataset.users.ids.tolist() == ["u1", "u2", "u9"]
    assert dataset.items.ids.tolist() == ["a", "b", "c", "z"]
    assert dataset.item_popularity.tolist() == [2, 1, 0, 0]
    assert raw_pairs(dataset, dataset.test) == {("u2", "z")}
    assert dataset.train_seen.row(0).tolist() == [0, 1]
    assert dataset.all_seen.row(0).tolist() == [0, 1, 2]
    assert dataset.all_seen.row(1).tolist() == [0, 3]


def test_test_negatives_ids_join_the_vocabulary() -> None:
    train = frame([("u1", "a"), ("u1", "b"), ("u2", "a")], ("user_id", "item_id"))
    negatives = pd.DataFrame(
        {"user_id": ["u1"], "item_id": ["c"], "negative_item_ids": [["d", "a"]]}
    )
    dataset = build_dataset(
        train, frame([("u2", "b")], ("user_id", "item_id")), None, test_negatives=negatives
    )
    assert dataset.items.ids.tolist() == ["a", "b", "c", "d"]


def test_implicit_threshold_and_duplicate_collapse() -> None:
    train = frame(
        [
            ("u1", "a", 5.0, 1),
            ("u1", "a", 4.0, 2),  # duplicate: collapses
            ("u1", "b", 2.0, 3),  # below threshold: dropped
            ("u1", "c", 4.0, 4),
            ("u2", "a", 4.5, 1),
            ("u2", "c", 3.0, 2),
        ]
    )
    validation = frame([("u1", "d", 1.0, 9), ("u2", "d", 5.0, 9)])
    dataset = build_dataset(train, validation, None, min_rating=3.5)
    assert raw_pairs(dataset, dataset.train) == {("u1", "a"), ("u1", "c"), ("u2", "a")}
    assert len(dataset.train) == 3
    assert raw_pairs(dataset, dataset.validation) == {("u2", "d")}
    assert "b" not in dataset.items.ids.tolist()


def test_explicit_keeps_latest_rating() -> None:
    train = frame(
        [
            ("u1", "a", 1.0, 50),
            ("u1", "a", 5.0, 10),
            ("u1", "b", 3.0, 1),
            ("u2", "a", 2.0, 1),
            ("u2", "a", 4.0, 1),  # same time: the later row wins
        ]
    )
    dataset = build_dataset(train, frame([("u2", "b", 3.0, 5)]), None, feedback="explicit")
    assert dataset.train.rating is not None
    ratings = {
        pair: float(rating)
        for pair, rating in zip(
            zip(
                dataset.users.ids[dataset.train.user_index],
                dataset.items.ids[dataset.train.item_index],
                strict=True,
            ),
            dataset.train.rating,
            strict=True,
        )
    }
    assert ratings == {("u1", "a"): 1.0, ("u1", "b"): 3.0, ("u2", "a"): 4.0}
    assert dataset.train.rating is not None and dataset.train.rating.dtype == np.float32


def test_explicit_without_ratings_fails() -> None:
    with pytest.raises(DataError, match="explicit feedback predicts ratings"):
        build_dataset(
            frame([("u1", "a"), ("u2", "b")], ("user_id", "item_id")),
            None,
            None,
            feedback="explicit",
        )


def test_min_rating_without_ratings_fails() -> None:
    with pytest.raises(DataError, match="min_rating=4"):
        build_dataset(
            frame([("u1", "a"), ("u2", "b")], ("user_id", "item_id")), None, None, min_rating=4
        )


def test_too_few_users_or_items_names_counts() -> None:
    with pytest.raises(DataError, match=r"1 user\(s\) and 2 item\(s\)"):
        build_dataset(frame([("u1", "a"), ("u1", "b")], ("user_id", "item_id")), None, None)
    data = frame(
        [("u1", "a", 1.0), ("u2", "b", 1.0), ("u2", "a", 5.0)], ("user_id", "item_id", "rating")
    )
    with pytest.raises(DataError, match=r"rating >= 4.*lower min_rating"):
        build_dataset(data, None, None, min_rating=4)


def test_no_user_with_two_interactions_needs_a_validation_channel() -> None:
    with pytest.raises(DataError, match="provide a validation channel"):
        build_dataset(frame([("u1", "a"), ("u2", "b")], ("user_id", "item_id")), None, None)


def test_statistics_are_plain_json() -> None:
    import json

    dataset = build_dataset(make_interactions(), None, None)
    stats = dataset.statistics()
    json.dumps(stats)
    assert stats["num_users"] == 200 and stats["validation_interactions"] == 200


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 8), st.integers(0, 3)), min_size=3, max_size=40
    ),
    st.integers(0, 1000),
)
def test_leave_latest_out_property(rows: list[tuple[int, int, int]], seed: int) -> None:
    data = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).astype(
        {"user_id": str, "item_id": str}
    )
    if data["user_id"].nunique() < 2 or data["item_id"].nunique() < 2:
        return
    collapsed = data.drop_duplicates(["user_id", "item_id"], keep="last")
    if (collapsed.groupby("user_id").size() < 2).all():
        return
    dataset = build_dataset(data, None, None, seed=seed)
    held = raw_pairs(dataset, dataset.validation)
    kept = raw_pairs(dataset, dataset.train)
    # Split is a partition of the collapsed pairs.
    assert held.isdisjoint(kept)
    assert held | kept == set(zip(collapsed["user_id"], collapsed["item_id"], strict=True))
    latest_time: dict[tuple[str, str], int] = {}
    for user_number, item_number, stamp in rows:
        key = (str(user_number), str(item_number))
        latest_time[key] = max(latest_time.get(key, -1), stamp)
    sizes = collapsed.groupby("user_id").size()
    assert {user for user, _ in held} == set(sizes[sizes >= 2].index)
    for user, item in held:
        # The held-out pair is (one of) the user's latest.
        user_times = [t for (u, _), t in latest_time.items() if u == user]
        assert latest_time[(user, item)] == max(user_times)
