"""Slow clients: the slowest ``/ping`` while N clients send their bodies one byte a second.

Starts ``serve`` (nginx + gunicorn) and, with ``--gunicorn-alone``, the same gunicorn
listening on the port itself (``serve`` before issue 17), each on the model that
``benchmarks/train_ml1m.py`` writes, opens ``--clients`` connections that send their
headers and then one body byte per second, and asks ``/ping`` once a second (5 s
timeout) for ``--duration`` seconds.

Usage::

    .venv/bin/python benchmarks/slow_clients.py [--clients 8] [--duration 15] [--gunicorn-alone]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from serve_load import GUNICORN_ALONE, RESULTS, free_port, stop, wait_healthy


def slowest_ping(port: int, clients: int, duration: float) -> tuple[float, int, int]:
    """(slowest /ping in s, failed pings, pings) beside ``clients`` slow connections."""
    slow = []
    for _ in range(clients):
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        slow.append(conn)
    slowest, failed, pings = 0.0, 0, 0
    end = time.monotonic() + duration
    try:
        while time.monotonic() < end:
            for conn in slow:
                with contextlib.suppress(OSError):  # closed by the server: counted by /ping
                    conn.send(b" ")
            started = time.monotonic()
            pings += 1
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as reply:
                    failed += reply.status != 200
            except OSError:
                failed += 1
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(max(0.0, 1 - (time.monotonic() - started)))
    finally:
        for conn in slow:
            conn.close()
    return slowest, failed, pings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=RESULTS / "ml1m-model")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--gunicorn-alone", action="store_true")
    args = parser.parse_args()
    servers = {"serve (nginx)": [sys.executable, "-m", "inference"]}
    if args.gunicorn_alone:
        servers["gunicorn alone"] = [sys.executable, "-c", GUNICORN_ALONE]
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "opt_ml"
        base.mkdir()
        (base / "model").symlink_to(args.model_dir.resolve())
        for name, command in servers.items():
            port = free_port()
            env = {
                **os.environ,
                "SAGEMAKER_BASE_DIR": str(base),
                "SAGEMAKER_BIND_TO_PORT": str(port),
                "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
                "OPENBLAS_NUM_THREADS": "1",
            }
            server = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                wait_healthy(server, f"http://127.0.0.1:{port}", time.perf_counter())
                slowest, failed, pings = slowest_ping(port, args.clients, args.duration)
            finally:
                stop(server)
            print(
                f"{name}: {args.clients} slow clients for {args.duration:.0f} s: slowest /ping "
                f"{slowest:.2f} s, {failed} of {pings} pings failed (5 s timeout)"
            )


if __name__ == "__main__":
    main()
