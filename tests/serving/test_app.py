"""The Flask app through its test client: every instance kind, every content type, every error."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import serving_support
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from inference.app import create_app, create_app_from_settings
from inference.instances import MAX_K
from inference.recommender import Recommender
from inference.settings import ServingSettings
from ncf_contract.model_dir import load_model_dir

random_model_dir = serving_support.random_model_dir  # the shared fixture, under its own name

JSON = "application/json"
JSONL = "application/jsonlines"
CSV = "text/csv"


@pytest.fixture(scope="module")
def recommender(random_model_dir: Path) -> Recommender:
    return Recommender(load_model_dir(random_model_dir))


@pytest.fixture
def client(recommender: Recommender, random_model_dir: Path) -> FlaskClient:
    app = create_app(ServingSettings(model_dir=random_model_dir), recommender)
    return app.test_client()


def post(client: FlaskClient, body: object, content_type: str = JSON, **headers: str):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post("/invocations", data=data, content_type=content_type, headers=headers)


def expected_top_k(recommender: Recommender, user_id: str, k: int, exclude_seen: bool = True):
    user = recommender.user_index[user_id]
    logits = recommender.scorer.logits_all_items(np.array([user]))[0].astype(np.float64)
    if exclude_seen:
        logits[recommender.artifacts.seen.row(user)] = -np.inf
    order = np.argsort(-logits, kind="stable")[:k]
    scores = recommender.scorer.score_all_items(np.array([user]))[0]
    return [recommender.item_id_list[i] for i in order], scores[order]


# --- health and execution parameters ---------------------------------------------------


def test_ping_is_healthy_with_a_model(client: FlaskClient) -> None:
    response = client.get("/ping")
    assert response.status_code == 200


def test_ping_fails_and_logs_why_without_a_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        app = create_app_from_settings(ServingSettings(model_dir=tmp_path / "missing"))
    client = app.test_client()
    response = client.get("/ping")
    assert response.status_code == 503
    assert "does not exist" in error_of(response)
    assert "does not exist" in caplog.text
    assert post(client, {"user_id": "u1"}).status_code == 503


def test_ping_fails_on_a_corrupt_model(random_model_dir: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "model"
    corrupt.mkdir()
    for entry in random_model_dir.iterdir():
        (corrupt / entry.name).write_bytes(entry.read_bytes())
    (corrupt / "weights.npz").write_bytes(b"not a zip file")
    response = (
        create_app_from_settings(ServingSettings(model_dir=corrupt)).test_client().get("/ping")
    )
    assert response.status_code == 503
    assert "unreadable" in error_of(response)


def test_execution_parameters_defaults(client: FlaskClient) -> None:
    response = client.get("/execution-parameters")
    assert response.status_code == 200
    assert response.json == {
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }


def test_execution_parameters_honour_the_environment(recommender: Recommender) -> None:
    settings = ServingSettings.from_env(
        {
            "SAGEMAKER_BATCH": "true",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
            "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "3",
            "SAGEMAKER_BATCH_STRATEGY": "SingleRecord",
        }
    )
    assert settings.batch
    client = create_app(settings, recommender).test_client()
    assert client.get("/execution-parameters").json == {
        "MaxConcurrentTransforms": 3,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 20,
    }


def test_settings_from_the_environment() -> None:
    settings = ServingSettings.from_env(
        {
            "SAGEMAKER_BASE_DIR": "/tmp/base",
            "SAGEMAKER_BIND_TO_PORT": "9000",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
        }
    )
    assert settings.model_dir == Path("/tmp/base/model")
    assert (settings.port, settings.workers, settings.timeout) == (9000, 3, 30)
    assert ServingSettings.from_env({}).model_dir == Path("/opt/ml/model")
    assert ServingSettings.from_env({"NVIDIA_VISIBLE_DEVICES": "all"}).workers == 1


def test_bad_settings_name_the_variable() -> None:
    with pytest.raises(ValueError, match="SAGEMAKER_MODEL_SERVER_WORKERS"):
        ServingSettings.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "many"})


# --- top-k recommendations ---------------------------------------------------------------


def test_recommend_top_k_best_first_excluding_seen(
    client: FlaskClient, recommender: Recommender
) -> None:
    response = post(client, {"user_id": "u3", "k": 5})
    assert response.status_code == 200
    assert response.content_type == JSON
    (prediction,) = response.json["predictions"]
    assert prediction["user_id"] == "u3"
    assert "fallback" not in prediction
    item_ids, scores = expected_top_k(recommender, "u3", 5)
    assert [item["item_id"] for item in prediction["items"]] == item_ids
    np.testing.assert_allclose([item["score"] for item in prediction["items"]], scores, atol=1e-6)
    seen = set(recommender.item_ids[recommender.artifacts.seen.row(3)])
    assert seen and not seen & set(item_ids)


def test_recommend_k_defaults_to_10(client: FlaskClient) -> None:
    assert len(post(client, {"user_id": "u3"}).json["predictions"][0]["items"]) == 10


def test_recommend_including_seen(client: FlaskClient, recommender: Recommender) -> None:
    prediction = post(client, {"user_id": "u3", "k": 25, "exclude_seen": False}).json
    item_ids, _ = expected_top_k(recommender, "u3", 25, exclude_seen=False)
    assert [item["item_id"] for item in prediction["predictions"][0]["items"]] == item_ids


def test_recommend_k_larger_than_what_is_left(
    client: FlaskClient, recommender: Recommender
) -> None:
    seen = len(recommender.artifacts.seen.row(3))
    items = post(client, {"user_id": "u3", "k": MAX_K}).json["predictions"][0]["items"]
    assert len(items) == recommender.num_items - seen


def test_recommend_with_exclusions_and_candidates(
    client: FlaskClient, recommender: Recommender
) -> None:
    best, _ = expected_top_k(recommender, "u3", 3)
    excluded = post(client, {"user_id": "u3", "k": 3, "exclude_item_ids": best[:2]}).json
    excluded_ids = [item["item_id"] for item in excluded["predictions"][0]["items"]]
    assert excluded_ids[0] == best[2]
    assert not set(best[:2]) & set(excluded_ids)

    candidates = ["i1", "i2", "i3", "unknown-item"]
    ranked = post(
        client, {"user_id": "u3", "k": 10, "candidate_item_ids": candidates, "exclude_seen": False}
    ).json["predictions"][0]["items"]
    assert sorted(item["item_id"] for item in ranked) == ["i1", "i2", "i3"]
    scores = [item["score"] for item in ranked]
    assert scores == sorted(scores, reverse=True)


def test_numeric_user_id_is_its_string(client: FlaskClient) -> None:
    prediction = post(client, {"user_id": 7, "k": 2}).json["predictions"][0]
    assert prediction["user_id"] == "7"
    assert prediction["fallback"] == "popularity"  # ids are u0..; "7" is unknown


def test_unknown_user_gets_popular_items(client: FlaskClient, recommender: Recommender) -> None:
    prediction = post(client, {"user_id": "stranger", "k": 4}).json["predictions"][0]
    assert prediction["fallback"] == "popularity"
    popularity = recommender.artifacts.item_popularity
    expected = [recommender.item_id_list[i] for i in np.argsort(-popularity, kind="stable")[:4]]
    assert [item["item_id"] for item in prediction["items"]] == expected


# --- scores and similar items ---------------------------------------------------------------


def test_score_items_aligned_with_null_for_unknown(
    client: FlaskClient, recommender: Recommender
) -> None:
    prediction = post(client, {"user_id": "u2", "item_ids": ["i7", "nope", "i9"]}).json
    (result,) = prediction["predictions"]
    assert result["user_id"] == "u2"
    assert result["scores"][1] is None
    expected = recommender.scorer.score_pairs(np.array([2, 2]), np.array([7, 9]))
    np.testing.assert_allclose([result["scores"][0], result["scores"][2]], expected, atol=1e-6)


def test_score_for_unknown_user_falls_back(client: FlaskClient, recommender: Recommender) -> None:
    result = post(client, {"user_id": "stranger", "item_ids": ["i1", "x"]}).json["predictions"][0]
    assert result["fallback"] == "popularity"
    assert result["scores"] == [float(recommender.artifacts.item_popularity[1]), None]


def test_similar_items_by_cosine(client: FlaskClient, recommender: Recommender) -> None:
    prediction = post(client, {"item_id": "i4", "k": 3}).json["predictions"][0]
    vectors = recommender.scorer.item_vectors.astype(np.float64)
    cosine = vectors @ vectors[4]
    cosine[4] = -np.inf
    expected = [recommender.item_id_list[i] for i in np.argsort(-cosine)[:3]]
    assert prediction["item_id"] == "i4"
    assert [item["item_id"] for item in prediction["items"]] == expected
    np.testing.assert_allclose(
        [item["score"] for item in prediction["items"]], np.sort(cosine)[::-1][:3], atol=1e-5
    )


def test_unknown_similar_item_is_a_400_naming_it(client: FlaskClient) -> None:
    response = post(client, {"instances": [{"item_id": "i1"}, {"item_id": "ghost"}]})
    assert response.status_code == 400
    assert "instances[1].item_id" in error_of(response)
    assert "ghost" in error_of(response)


def test_mixed_instances_keep_their_order(client: FlaskClient) -> None:
    instances = [
        {"item_id": "i1", "k": 2},
        {"user_id": "u1", "k": 2},
        {"user_id": "u1", "item_ids": ["i1"]},
        {"user_id": "nobody", "k": 2},
        {"user_id": "u5", "k": 3},
    ]
    predictions = post(client, {"instances": instances}).json["predictions"]
    assert [p.get("user_id", p.get("item_id")) for p in predictions] == [
        "i1",
        "u1",
        "u1",
        "nobody",
        "u5",
    ]
    assert "scores" in predictions[2]
    assert len(predictions[4]["items"]) == 3
    single = post(client, {"user_id": "u5", "k": 3}).json["predictions"][0]
    assert predictions[4] == single  # batching does not change a result


# --- content types --------------------------------------------------------------------------


def test_json_lines_one_line_out_per_line_in(client: FlaskClient) -> None:
    lines = [{"user_id": f"u{n}", "k": 1 + n % 4} for n in range(12)] + [{"item_id": "i2"}]
    body = "\n".join(json.dumps(line) for line in lines) + "\n"
    response = post(client, body, JSONL)
    assert response.status_code == 200
    assert response.content_type == JSONL
    out = [json.loads(line) for line in response.data.decode().splitlines()]
    assert len(out) == len(lines)
    for sent, got in zip(lines[:-1], out[:-1], strict=True):
        assert got["user_id"] == sent["user_id"]
        assert len(got["items"]) == sent["k"]
    assert out[-1]["item_id"] == "i2"


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085"])
def test_json_lines_split_at_line_feeds_only(client: FlaskClient, separator: str) -> None:
    # U+2028, U+2029 and U+0085 are valid inside a JSON string: they belong to the id.
    user_ids = [f"a{separator}b", "u1", f"{separator}u2"]
    body = "\r\n".join(
        json.dumps({"user_id": user, "k": 2}, ensure_ascii=False) for user in user_ids
    )
    response = post(client, (body + "\n\n").encode(), JSONL)
    assert response.status_code == 200, response.data
    out = [json.loads(line) for line in response.data.decode().split("\n") if line]
    assert [line["user_id"] for line in out] == user_ids
    assert [line.get("fallback") for line in out] == ["popularity", None, "popularity"]


def test_json_lines_separated_by_a_unicode_separator_are_one_bad_line(client: FlaskClient) -> None:
    response = post(client, '{"user_id": "u1"}\u2028{"user_id": "u2"}', JSONL)
    assert response.status_code == 400
    assert response.json["error"].startswith("line 1 is not valid JSON")


def test_json_body_with_a_byte_order_mark_is_read(client: FlaskClient) -> None:
    body = "\ufeff" + json.dumps({"instances": [{"user_id": "u1", "k": 2}]})
    response = post(client, body.encode(), JSON)
    assert response.status_code == 200, response.data
    assert response.json["predictions"][0]["user_id"] == "u1"
    assert post(client, "\ufeff", JSON).status_code == 400  # a mark alone is an empty body


def test_csv_rows_in_and_out(client: FlaskClient) -> None:
    response = post(client, "u1,3\nu2\nstranger,2\n", CSV)
    assert response.status_code == 200
    assert response.content_type.startswith(CSV)
    rows = [row.split(",") for row in response.data.decode().splitlines()]
    assert [row[0] for row in rows] == ["u1", "u2", "stranger"]
    assert [len(row) - 1 for row in rows] == [3, 10, 2]
    as_json = post(client, {"user_id": "u1", "k": 3}).json["predictions"][0]["items"]
    assert rows[0][1:] == [item["item_id"] for item in as_json]


@pytest.mark.parametrize("body", ["\r0", '"u1\n', "u1\r\n", "\ufeffu1,2\n"])
def test_odd_csv_line_endings_and_quotes(client: FlaskClient, body: str) -> None:
    response = post(client, body, CSV)
    assert response.status_code == 200
    assert response.data.decode().count("\n") == 1


def test_csv_header_row_is_skipped(client: FlaskClient) -> None:
    response = post(client, "user_id,k\nu1,2\n", CSV)
    assert response.data.decode().count("\n") == 1


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (CSV, CSV),
        (JSONL, JSONL),
        ("*/*", JSON),
        ("text/csv;q=0.5, application/jsonlines", JSONL),
        ("application/json; charset=utf-8", JSON),
    ],
)
def test_accept_chooses_the_response_type(client: FlaskClient, accept: str, expected: str) -> None:
    response = post(client, {"user_id": "u1", "k": 2}, JSON, Accept=accept)
    assert response.status_code == 200
    assert response.content_type.split(";")[0] == expected


def test_missing_content_type_is_read_as_json(client: FlaskClient) -> None:
    response = client.post("/invocations", data=json.dumps({"user_id": "u1"}))
    assert response.status_code == 200


def test_content_type_parameters_are_ignored(client: FlaskClient) -> None:
    response = post(client, {"user_id": "u1"}, "application/json; charset=utf-8")
    assert response.status_code == 200


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "named"),
    [
        ("{not json", JSON, "not valid JSON"),
        ("", JSON, "empty"),
        ("   ", JSON, "empty"),
        ("", JSONL, "empty"),
        ("", CSV, "empty"),
        ("[1, 2]", JSON, "instance"),
        ('"u1"', JSON, "instance"),
        ("{}", JSON, "user_id"),
        ('{"k": 3}', JSON, "user_id"),
        ('{"user_id": ["u1"]}', JSON, "user_id"),
        ('{"user_id": null}', JSON, "user_id"),
        ('{"user_id": true}', JSON, "user_id"),
        ('{"user_id": ""}', JSON, "user_id"),
        ('{"user_id": "u1", "k": "10"}', JSON, "k"),
        ('{"user_id": "u1", "k": 1.5}', JSON, "k"),
        ('{"user_id": "u1", "k": true}', JSON, "k"),
        ('{"user_id": "u1", "k": 0}', JSON, "k"),
        ('{"user_id": "u1", "k": -3}', JSON, "k"),
        (f'{{"user_id": "u1", "k": {MAX_K + 1}}}', JSON, "k"),
        ('{"user_id": "u1", "exclude_seen": "yes"}', JSON, "exclude_seen"),
        ('{"user_id": "u1", "exclude_item_ids": "i1"}', JSON, "exclude_item_ids"),
        ('{"user_id": "u1", "candidate_item_ids": [{}]}', JSON, "candidate_item_ids[0]"),
        ('{"user_id": "u1", "item_ids": "i1"}', JSON, "item_ids"),
        ('{"user_id": "u1", "item_ids": [null]}', JSON, "item_ids[0]"),
        ('{"user_id": "u1", "colour": "red"}', JSON, "colour"),
        ('{"user_id": "u1", "item_id": "i1"}', JSON, "both"),
        ('{"item_id": "i1", "k": 0}', JSON, "k"),
        ('{"item_id": ["i1"]}', JSON, "item_id"),
        ('{"instances": {"user_id": "u1"}}', JSON, "instances"),
        ('{"instances": []}', JSON, "instances"),
        ('{"instances": [{"user_id": "u1"}, {"user_id": "u1", "k": 0}]}', JSON, "instances[1].k"),
        ('{"user_id": "u1"}\n{"user_id": "u1", "k": "x"}', JSONL, "line 2.k"),
        ('{"user_id": "u1"}\nnot json', JSONL, "line 2"),
        ("u1,abc\n", CSV, "k"),
        ("u1,3,4\n", CSV, "row 1"),
        ("u1,0\n", CSV, "row 1.k"),
        (b"\xff\xfe", JSONL, "UTF-8"),
        (b"\xff\xfe", CSV, "UTF-8"),
        (b"\xff\xfe", JSON, "JSON"),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    client: FlaskClient, body: str, content_type: str, named: str
) -> None:
    response = post(client, body, content_type)
    assert response.status_code == 400, response.data
    assert response.content_type == JSON
    assert named in error_of(response)


def test_unsupported_content_type_is_415(client: FlaskClient) -> None:
    response = post(client, "<user/>", "application/xml")
    assert response.status_code == 415
    assert "application/xml" in error_of(response)


def test_unsupported_accept_is_406(client: FlaskClient) -> None:
    response = post(client, {"user_id": "u1"}, JSON, Accept="image/png")
    assert response.status_code == 406
    assert "image/png" in error_of(response)


def test_body_over_the_limit_is_413(client: FlaskClient) -> None:
    response = post(client, b" " * (6 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert "6 MB" in error_of(response)


def test_body_at_the_limit_is_read(client: FlaskClient) -> None:
    body = json.dumps({"user_id": "u1"}).ljust(6 * 1024 * 1024)
    assert post(client, body).status_code == 200


@pytest.mark.parametrize(("extra", "status"), [(0, 200), (1, 413)])
def test_chunked_body_at_the_limit_is_read_and_over_it_is_413(
    client: FlaskClient, extra: int, status: int
) -> None:
    # A chunked body as gunicorn hands it over: Content-Length is ignored (Werkzeug reads
    # none when Transfer-Encoding is chunked) and the input stream is terminated.
    body = json.dumps({"user_id": "u1"}).ljust(6 * 1024 * 1024 + extra).encode()
    response = client.post(
        "/invocations",
        input_stream=io.BytesIO(body),
        content_type=JSON,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == status, response.data


def test_unknown_path_is_404_json(client: FlaskClient) -> None:
    response = client.get("/predict")
    assert response.status_code == 404
    assert "/predict" in error_of(response)


@pytest.mark.parametrize(("method", "path"), [("get", "/invocations"), ("post", "/ping")])
def test_wrong_method_is_405_json(client: FlaskClient, method: str, path: str) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert "not allowed" in error_of(response)


def test_unexpected_fault_is_a_logged_500_and_the_app_lives_on(
    client: FlaskClient,
    recommender: Recommender,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(requests: object, labels: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(recommender, "recommend", explode)
    with caplog.at_level(logging.ERROR):
        response = post(client, {"user_id": "u1"})
    assert response.status_code == 500
    assert response.json == {"error": "internal server error: RuntimeError"}
    assert "Traceback" in caplog.text and "boom" in caplog.text
    monkeypatch.undo()
    assert post(client, {"user_id": "u1"}).status_code == 200


def test_large_batches_are_scored_in_chunks_with_the_same_results(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import inference.recommender as recommender_module

    instances = [{"user_id": f"u{n % 30}", "k": 4} for n in range(10)] + [
        {"user_id": "nobody", "k": 2},
        *({"item_id": f"i{n}", "k": 3} for n in range(7)),
    ]
    whole = post(client, {"instances": instances}).json["predictions"]
    monkeypatch.setattr(recommender_module, "RECOMMEND_CHUNK", 3)
    chunked = post(client, {"instances": instances}).json["predictions"]
    assert chunked == whole
    assert [post(client, one).json["predictions"][0] for one in instances] == whole


def error_of(response: TestResponse) -> str:
    """The ``error`` of a JSON error body."""
    body = response.get_json()
    assert isinstance(body, dict), response.data
    return str(body["error"])
