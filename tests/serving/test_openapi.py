"""schemathesis against a real ``serve`` (nginx + gunicorn), from ``inference/openapi.yaml``.

Issue 17 asked for the fuzzing that found its defects to be part of the project: at
least 2,000 generated requests, valid ones and invalid ones, for every operation and
every request content type. Throughout, no response is a 5xx, every response matches
the description (status, content type, body schema), no gunicorn worker restarts, and
``/ping`` answers 200 within 2 s.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
import serving_support
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from serving_support import REPO_ROOT, Server, start_server, stop, wait_for_ping

pytestmark = pytest.mark.slow

random_model_dir = serving_support.random_model_dir  # the shared fixture, under its own name

OPENAPI = REPO_ROOT / "inference" / "openapi.yaml"
JSONL = "application/jsonlines"
CSV = "text/csv"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: (method, path, generation mode, request content type, examples); 2,300 in all at most.
RUNS = [
    ("GET", "/ping", GenerationMode.POSITIVE, None, 50),
    ("GET", "/execution-parameters", GenerationMode.POSITIVE, None, 50),
    ("POST", "/invocations", GenerationMode.POSITIVE, "application/json", 800),
    ("POST", "/invocations", GenerationMode.NEGATIVE, "application/json", 600),
    ("POST", "/invocations", GenerationMode.POSITIVE, JSONL, 400),
    ("POST", "/invocations", GenerationMode.POSITIVE, CSV, 400),
]
MINIMUM_CASES = 2000


# Ids the random model knows (u0.., i0..) as well as any text, odd separators included.
ids = st.sampled_from(["u1", "u7", "i2", "i9", "stranger"]) | st.text(max_size=6)
# The three instance kinds (valid, and with values out of range), and arbitrary objects.
instances = st.one_of(
    st.fixed_dictionaries(
        {"user_id": ids},
        optional={
            "k": st.integers(min_value=-2, max_value=1002),
            "exclude_seen": st.booleans(),
            "exclude_item_ids": st.lists(ids, max_size=3),
            "candidate_item_ids": st.lists(ids, max_size=3),
            "diversity": st.floats(min_value=-0.5, max_value=1.5),
            "popularity_penalty": st.floats(min_value=0, max_value=1),
        },
    ),
    st.fixed_dictionaries({"user_id": ids, "item_ids": st.lists(ids, max_size=4)}),
    st.fixed_dictionaries({"item_id": ids}, optional={"k": st.integers(0, 20)}),
    st.dictionaries(
        st.sampled_from(["user_id", "item_id", "k", "item_ids"]), ids | st.integers(), max_size=3
    ),
)
json_lines = st.lists(
    st.one_of(instances.map(lambda value: json.dumps(value, ensure_ascii=False)), st.text()),
    min_size=1,
    max_size=6,
)
jsonlines_bodies = st.tuples(json_lines, st.sampled_from(["\n", "\r\n"])).map(
    lambda parts: parts[1].join(parts[0]).encode()
)


def _csv(rows: list[tuple[str, int | None]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for user_id, k in rows:
        writer.writerow([user_id] if k is None else [user_id, k])
    return out.getvalue().encode()


csv_bodies = st.lists(
    st.tuples(ids, st.none() | st.integers(min_value=-5, max_value=1005)), min_size=1, max_size=6
).map(_csv) | st.binary(max_size=100)

schemathesis.openapi.media_type(JSONL, jsonlines_bodies)
schemathesis.openapi.media_type(CSV, csv_bodies)


@pytest.fixture(scope="module")
def server(random_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("openapi") / "opt_ml"
    base.mkdir()
    (base / "model").symlink_to(random_model_dir)
    running = start_server(base, base.parent / "serve.log")
    try:
        wait_for_ping(running)
        yield running
    finally:
        stop(running)


def test_openapi_description_is_valid_and_names_every_route() -> None:
    schema = schemathesis.openapi.from_path(OPENAPI)
    operations = {(method, path) for method, path, *_ in RUNS}
    for method, path in operations:
        assert schema[path][method] is not None
    content = yaml.safe_load(OPENAPI.read_text())["paths"]["/invocations"]["post"]
    assert set(content["requestBody"]["content"]) == {"application/json", JSONL, CSV}
    assert sum(run[-1] for run in RUNS) >= MINIMUM_CASES


def test_schemathesis_finds_no_5xx_no_worker_restart_and_ping_stays_fast(server: Server) -> None:
    schema = schemathesis.openapi.from_path(OPENAPI)
    pings: list[tuple[int, float]] = []
    done = threading.Event()

    def watch_ping() -> None:
        while not done.is_set():
            started = time.monotonic()
            try:
                status = requests.get(f"{server.url}/ping", timeout=5).status_code
            except requests.RequestException:
                status = 0
            pings.append((status, time.monotonic() - started))
            done.wait(0.2)

    watcher = threading.Thread(target=watch_ping)
    watcher.start()
    calls: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    session = requests.Session()
    try:
        for method, path, mode, media_type, examples in RUNS:
            label = f"{method} {path} {mode.value} {media_type or ''}".strip()
            strategy = schema[path][method].as_strategy(generation_mode=mode, media_type=media_type)

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                phases=[Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def check(case: schemathesis.Case) -> None:
                response = case.call(base_url=server.url, session=session, timeout=30)
                calls[label] += 1  # noqa: B023 - check() runs within this iteration
                statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS)

            check()
    finally:
        done.set()
        watcher.join()
    total = sum(calls.values())
    print(f"schemathesis: {total} requests {dict(calls)}; statuses {dict(statuses)}")
    assert total >= MINIMUM_CASES, calls
    assert not [status for status in statuses if status >= 500], statuses
    assert statuses[200] > 0 and statuses[400] > 0, statuses
    slow_or_failed = [
        (status, seconds) for status, seconds in pings if status != 200 or seconds >= 2
    ]
    assert len(pings) > 20 and not slow_or_failed, slow_or_failed
    log = server.log()
    assert log.count("Booting worker with pid") == 2, log[-3000:]
    for sign_of_trouble in ("WORKER TIMEOUT", "Worker exiting", "unexpected fault", "Traceback"):
        assert sign_of_trouble not in log, log[-3000:]
