"""Property tests: random bodies and headers at /invocations never give a 5xx."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import serving_support
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.app import create_app
from inference.recommender import Recommender
from inference.settings import ServingSettings
from ncf_contract.model_dir import load_model_dir

random_model_dir = serving_support.random_model_dir  # the shared fixture, under its own name

CONTENT_TYPES = [
    "application/json",
    "application/jsonlines",
    "text/csv",
    "application/json; charset=utf-8",
    "application/x-jsonlines",
    "text/plain",
    "",
    "*/*",
    "application/json;;;",
]
FIELDS = [
    "user_id",
    "item_id",
    "k",
    "item_ids",
    "exclude_seen",
    "exclude_item_ids",
    "candidate_item_ids",
    "instances",
    "other",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from(["u1", "u2", "i1", "i3", "stranger", "0", "10"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
instances = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5)
json_bodies = st.one_of(
    instances.map(json.dumps),
    st.lists(instances, max_size=4).map(lambda items: json.dumps({"instances": items})),
    st.lists(instances, max_size=4).map(lambda items: "\n".join(map(json.dumps, items))),
    json_values.map(json.dumps),
)
bodies = st.one_of(
    json_bodies,
    json_bodies.map(str.encode),
    st.binary(max_size=200),
    st.text(max_size=200),
    st.lists(
        st.tuples(st.sampled_from(["u1", "x", "", '"q"']), st.text(max_size=4)), max_size=5
    ).map(lambda rows: "\n".join(",".join(row) for row in rows)),
)
# Header values as an HTTP client can send them: printable ASCII.
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
accepts = st.one_of(
    st.none(),
    st.sampled_from([*CONTENT_TYPES, "text/csv;q=0", "*/*;q=0.1, image/png"]),
    header_text,
)


@pytest.fixture(scope="module")
def client(random_model_dir: Path) -> FlaskClient:
    recommender = Recommender(load_model_dir(random_model_dir))
    return create_app(ServingSettings(model_dir=random_model_dir), recommender).test_client()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=bodies,
    content_type=st.one_of(st.sampled_from(CONTENT_TYPES), header_text),
    accept=accepts,
)
def test_random_requests_never_give_a_5xx(
    client: FlaskClient, body: str | bytes, content_type: str, accept: str | None
) -> None:
    headers = {"Content-Type": content_type}
    if accept is not None:
        headers["Accept"] = accept
    response = client.post("/invocations", data=body, headers=headers)
    assert response.status_code < 500, (response.status_code, response.data)
    if response.status_code >= 400:
        assert "error" in json.loads(response.data)
