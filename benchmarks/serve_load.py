"""Serving load test: ``serve`` against a Flask + ``model.predict`` server.

With ``--gunicorn-alone`` it also measures gunicorn as ``serve`` configures it but
listening on the port itself, without nginx in front (``serve`` before issue 17).

Both servers run on localhost with the MovieLens-1M model that
``benchmarks/train_ml1m.py`` writes to ``benchmarks/results/ml1m-model``
(6,040 users, 3,706 items). ``wrk`` (with ``serve_topk.lua``) asks each for the
top 10 of a random known user, one user per request, at several concurrency
levels. Reported per level: requests/s and p50 / p99 latency. Also: the time
from starting the process to the first 200 on ``/ping``, and the slowest
``/ping`` while ``serve`` is under the heaviest load.

Usage::

    .venv/bin/python benchmarks/train_ml1m.py          # once, for the model
    .venv/bin/python benchmarks/serve_load.py [--duration 10] [--concurrency 1 4 16 64]
        [--gunicorn-alone] [--skip-naive]

Prints a Markdown table and writes ``benchmarks/results/serve_load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LUA = REPO / "benchmarks" / "serve_topk.lua"
RESULT_LINE = re.compile(r"RESULT (.*)")
#: gunicorn as ``serve`` configures it, listening on the port itself, without nginx in front.
GUNICORN_ALONE = (
    "import os; from inference.server import InferenceServer; "
    "from inference.settings import ServingSettings; "
    "import inference.app; "
    "settings = ServingSettings.from_env(); "
    "InferenceServer(settings, f'0.0.0.0:{settings.port}').run()"
)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ping_ms(url: str, timeout: float = 10) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0
    return status, (time.perf_counter() - started) * 1000


def wait_healthy(process: subprocess.Popen[bytes], url: str, started: float) -> float:
    """Seconds from ``started`` to the first 200 on ``/ping``."""
    while time.perf_counter() - started < 300:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        if ping_ms(url, timeout=1)[0] == 200:
            return time.perf_counter() - started
        time.sleep(0.02)
    raise SystemExit("server never became healthy")


def wrk(url: str, concurrency: int, duration: int) -> dict[str, float]:
    threads = min(concurrency, 2)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = RESULT_LINE.search(output)
    if match is None:
        raise SystemExit(f"no RESULT line from wrk:\n{output}")
    fields = dict(pair.split("=") for pair in match.group(1).split())
    return {name: float(value) for name, value in fields.items()}


def workers_cpu_s(root: int) -> float:
    """User + system CPU seconds of ``root`` and all its descendants (nginx, gunicorn, workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for pid, seconds in cpu.items():
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            total += seconds
    return total


def stop(process: subprocess.Popen[bytes]) -> float:
    """SIGTERM; seconds until the process exited."""
    started = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return time.perf_counter() - started


def run_levels(
    name: str, url: str, levels: list[int], duration: int, watch_ping: bool, server_pid: int
) -> list[dict[str, float]]:
    rows = []
    for concurrency in levels:
        worst_ping = [0.0]
        failed_pings = [0]
        done = threading.Event()

        def watch(done: threading.Event, worst: list[float], failed: list[int]) -> None:
            while not done.is_set():
                status, elapsed = ping_ms(url, timeout=10)
                worst[0] = max(worst[0], elapsed)
                failed[0] += status != 200
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, args=(done, worst_ping, failed_pings), daemon=True)
        if watch_ping:
            watcher.start()
        cpu_before = workers_cpu_s(server_pid)
        result = wrk(url, concurrency, duration)
        cpu_after = workers_cpu_s(server_pid)
        done.set()
        # Server CPU per request: robust to other load on the machine, unlike requests/s.
        result["server_cpu_us_per_request"] = (cpu_after - cpu_before) / result["requests"] * 1e6
        result["load_average"] = os.getloadavg()[0]
        if watch_ping:
            watcher.join()
            result["worst_ping_ms"] = worst_ping[0]
            result["failed_pings"] = failed_pings[0]
        result["concurrency"] = concurrency
        print(f"{name:>8} c={concurrency:<3} {json.dumps(result)}", flush=True)
        rows.append(result)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=RESULTS / "ml1m-model")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--naive-duration", type=int, default=10)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--workers", help="SAGEMAKER_MODEL_SERVER_WORKERS for serve")
    parser.add_argument("--threads", help="NCF_SERVER_THREADS for serve")
    parser.add_argument(
        "--gunicorn-alone",
        action="store_true",
        help="also measure gunicorn without nginx in front (serve before issue 17)",
    )
    args = parser.parse_args()
    if not (args.model_dir / "weights.npz").exists():
        raise SystemExit(f"{args.model_dir} has no model; run benchmarks/train_ml1m.py first")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    report: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
        f"{platform.platform()}",
        "model_dir": str(args.model_dir),
        "duration_s": args.duration,
    }
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "opt_ml"
        base.mkdir()
        (base / "model").symlink_to(args.model_dir.resolve())

        servers = {"serve": [sys.executable, "-m", "inference"]}
        if args.gunicorn_alone:
            servers["gunicorn"] = [sys.executable, "-c", GUNICORN_ALONE]
        for name, command in servers.items():
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env = {
                **os.environ,
                "SAGEMAKER_BASE_DIR": str(base),
                "SAGEMAKER_BIND_TO_PORT": str(port),
                "OPENBLAS_NUM_THREADS": "1",  # as serve's main sets it
                "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
            }
            if args.workers:
                env["SAGEMAKER_MODEL_SERVER_WORKERS"] = args.workers
            if args.threads:
                env["NCF_SERVER_THREADS"] = args.threads
            started = time.perf_counter()
            server = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                report[f"{name}_start_to_ping_s"] = wait_healthy(server, url, started)
                print(f"{name} healthy after {report[f'{name}_start_to_ping_s']:.2f} s")
                wrk(url, 4, 2)  # warm-up
                report[name] = run_levels(
                    name, url, args.concurrency, args.duration, True, server.pid
                )
            finally:
                report[f"{name}_sigterm_exit_s"] = stop(server)

        if not args.skip_naive:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env = {
                **os.environ,
                "NAIVE_MODEL_DIR": str(args.model_dir.resolve()),
                "PYTHONPATH": str(REPO),
                "TF_CPP_MIN_LOG_LEVEL": "2",
            }
            started = time.perf_counter()
            naive = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--chdir",
                    str(REPO / "benchmarks"),
                    "-w",
                    str(os.cpu_count() or 1),
                    "-b",
                    f"127.0.0.1:{port}",
                    "--timeout",
                    "120",
                    "serve_naive:app",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                report["naive_start_to_ping_s"] = wait_healthy(naive, url, started)
                print(f"naive server healthy after {report['naive_start_to_ping_s']:.2f} s")
                wrk(url, 2, 2)  # warm-up (tf.function tracing)
                report["naive"] = run_levels(
                    "naive", url, args.concurrency, args.naive_duration, False, naive.pid
                )
            finally:
                stop(naive)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_load.json").write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(
        "| server | concurrency | requests/s | p50 ms | p99 ms | worst /ping ms "
        "| server CPU µs/request | load average |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in ("serve", "gunicorn", "naive"):
        for row in report.get(name, []):
            ping = f"{row['worst_ping_ms']:.1f}" if "worst_ping_ms" in row else "-"
            print(
                f"| {name} | {row['concurrency']:.0f} | {row['rps']:.0f} | {row['p50_ms']:.2f} "
                f"| {row['p99_ms']:.2f} | {ping} | {row['server_cpu_us_per_request']:.0f} "
                f"| {row['load_average']:.1f} |"
            )
    if "naive" in report:
        best = max(row["rps"] for row in report["serve"])
        best_naive = max(row["rps"] for row in report["naive"])
        print(f"\nbest throughput ratio serve / naive: {best / best_naive:.0f}x")
    print(
        f"serve start -> /ping 200: {report['serve_start_to_ping_s']:.2f} s; "
        f"SIGTERM -> exit: {report['serve_sigterm_exit_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
