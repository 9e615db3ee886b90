"""Two `train` processes as two hosts of one job, on MultiWorkerMirroredStrategy over gRPC.

Each process gets its own ``/opt/ml`` (``SAGEMAKER_BASE_DIR``) with
``resourceconfig.json`` naming hosts ``algo-1`` and ``algo-2``, and a real
``TF_CONFIG`` with two free localhost ports (on SageMaker the hosts resolve and
``TF_CONFIG`` is built on port 8890; here both share one machine, so each needs
its own port).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from ncf_test_support import PROGRAMS, REPO_ROOT, SageMakerLayout, free_port
from train_support import parse_metric_lines

from ncf_contract.model_dir import load_model_dir
from training.search import AUTO_FAMILIES
from training.synthetic import make_interactions

pytestmark = pytest.mark.slow

HOSTS = ("algo-1", "algo-2")
HYPERPARAMETERS: dict[str, object] = {
    "model_type": "gmf",
    "gmf_dim": 16,
    "epochs": 4,
    "batch_size": 128,
    "learning_rate": 0.01,
    "early_stopping_patience": 0,
    "full_ranking": False,
    # The search across hosts has its own tests; here the settings to train are given.
    "tuning": "off",
    "refit": False,
}


@dataclass
class Host:
    """One host of the job: its ``/opt/ml`` and its ``train`` process."""

    name: str
    layout: SageMakerLayout
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        """Its stdout and stderr (a file: nothing blocks on a full pipe)."""
        return self.layout.base_dir.parent / "train.log"

    @property
    def stdout(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait(self, timeout: float = 600) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)


def make_hosts(tmp_path: Path, frames: dict[str, pd.DataFrame], hosts=HOSTS, **hps) -> list[Host]:
    """Every host's ``/opt/ml`` with the same (replicated) channels and hyperparameters."""
    made = []
    for host in hosts:
        layout = SageMakerLayout(tmp_path / host / "opt_ml")
        layout.base_dir.mkdir(parents=True)
        for channel, frame in frames.items():
            layout.write_channel(channel, frame)
        layout.write_config(
            {**HYPERPARAMETERS, "distribution": "multi_worker_mirrored", **hps},
            channels=tuple(frames),
        )
        (layout.base_dir / "input" / "config" / "resourceconfig.json").write_text(
            json.dumps({"current_host": host, "hosts": list(hosts)})
        )
        made.append(Host(host, layout))
    return made


def start(hosts: list[Host], stdout: dict[str, int] | None = None) -> None:
    """Start every host's ``train`` with a TF_CONFIG on free localhost ports.

    ``stdout`` gives a host its own standard output (a file descriptor); its
    standard error still goes to its log.
    """
    workers = [f"localhost:{free_port()}" for _ in hosts]
    for index, host in enumerate(hosts):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        with host.log.open("wb") as log:
            own = (stdout or {}).get(host.name)
            host.process = subprocess.Popen(
                PROGRAMS["train"],
                cwd=REPO_ROOT,
                env={
                    **os.environ,
                    "SAGEMAKER_BASE_DIR": str(host.layout.base_dir),
                    "TF_CONFIG": json.dumps(tf_config),
                    "TF_CPP_MIN_LOG_LEVEL": "2",
                },
                stdout=log if own is None else own,
                stderr=subprocess.STDOUT if own is None else log,
            )


def wait_for_line(host: Host, prefix: str, timeout: float = 600) -> None:
    """Wait until ``host`` has printed a line that starts with ``prefix``."""
    assert host.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and host.process.poll() is None:
        if any(line.startswith(prefix) for line in host.stdout.splitlines()):
            return
        time.sleep(0.5)
    raise AssertionError(f"{host.name} never printed {prefix!r}:\n{host.stdout[-4000:]}")


def most_threads_until_done(hosts: list[Host]) -> int:
    """Wait for every host to end; the most threads any of them ran at once."""
    most = 0
    while any(host.process is not None and host.process.poll() is None for host in hosts):
        for host in hosts:
            assert host.process is not None
            with contextlib.suppress(OSError, AttributeError):
                status = Path(f"/proc/{host.process.pid}/status").read_text()
                found = re.search(r"^Threads:\s+(\d+)", status, flags=re.MULTILINE)
                most = max(most, int(found.group(1)))  # type: ignore[union-attr]
        time.sleep(0.5)
    return most


def kill_and_expect_named(victim: Host, survivor: Host, during: str) -> None:
    """Kill ``victim``: ``survivor`` fails with a FailureReason naming it, ``during`` what."""
    assert victim.process is not None
    victim.process.kill()
    assert survivor.wait(timeout=300) != 0
    failure = survivor.layout.failure_file.read_text()
    expected = f"host {survivor.name}: host {victim.name} stopped answering during {during}"
    assert failure.startswith(expected), failure


def split_frames() -> dict[str, pd.DataFrame]:
    frame = make_interactions(num_users=300, num_items=120, interactions_per_user=20)
    latest = frame.groupby("user_id").tail(1)
    return {"train": frame.drop(latest.index), "test": latest}


def test_two_workers_train_one_model_as_good_as_one_worker(tmp_path: Path) -> None:
    frames = split_frames()
    single = make_hosts(tmp_path / "single", frames, hosts=("algo-1",))
    pair = make_hosts(tmp_path / "pair", frames)
    start(pair)
    start(single)
    # A timeout on every collective would cost a sleeping thread each, thousands a second.
    assert most_threads_until_done(pair) < 1000
    codes = [host.wait() for host in (*pair, *single)]
    assert codes == [0, 0, 0], "\n\n".join(host.stdout[-3000:] for host in (*pair, *single))

    chief, worker = pair
    assert "MultiWorkerMirroredStrategy" in chief.stdout
    assert "2 replicas: global batch 256" in chief.stdout
    # One model, one report, one checkpoint: the chief's. The worker writes none of them.
    assert load_model_dir(chief.layout.model_dir).num_users == 300
    assert not worker.layout.model_dir.exists() or not any(worker.layout.model_dir.iterdir())
    assert (chief.layout.output_data_dir / "metrics.json").is_file()
    assert not worker.layout.output_data_dir.exists() or not any(
        worker.layout.output_data_dir.iterdir()
    )
    assert any(chief.layout.checkpoint_dir.iterdir())
    assert not worker.layout.checkpoint_dir.exists()
    # Metric lines (what SageMaker records) come from the chief only.
    assert not parse_metric_lines(worker.stdout)
    distributed = parse_metric_lines(chief.stdout)[-1]
    alone = parse_metric_lines(single[0].stdout)[-1]
    assert distributed["test:hr"] == pytest.approx(alone["test:hr"], abs=0.05)
    assert distributed["test:hr"] > 0.5  # far above chance (0.1)


def test_a_worker_killed_mid_epoch_fails_the_job_naming_it(tmp_path: Path) -> None:
    hosts = make_hosts(tmp_path, split_frames(), epochs=50)
    start(hosts)
    chief, worker = hosts
    wait_for_line(chief, "epoch=1 ")
    kill_and_expect_named(worker, chief, "epoch")
    assert not chief.layout.model_dir.exists() or not any(chief.layout.model_dir.iterdir())


def test_sigterm_on_one_worker_stops_both_and_the_next_job_resumes(tmp_path: Path) -> None:
    frames = split_frames()
    hosts = make_hosts(tmp_path, frames, epochs=200)
    start(hosts)
    chief, worker = hosts
    wait_for_line(chief, "epoch=1 ")
    assert worker.process is not None
    worker.process.send_signal(signal.SIGTERM)  # the worker only: the chief must stop too
    assert [host.wait() for host in hosts] == [0, 0], chief.stdout[-3000:] + worker.stdout[-3000:]
    stopped = re.search(r"the checkpoint after epoch (\d+) is where", chief.stdout)
    assert stopped, chief.stdout[-3000:]
    assert "stopped by SIGTERM during epoch" in worker.stdout.replace(": ", "=")
    assert not chief.layout.model_dir.exists() or not any(chief.layout.model_dir.iterdir())
    # SageMaker downloads the job's checkpoint S3 prefix onto every host of the next job.
    shutil.copytree(chief.layout.checkpoint_dir, worker.layout.checkpoint_dir)

    last = int(stopped.group(1))
    resumed = make_hosts(tmp_path / "next", frames, epochs=last + 2)
    for old_host, new_host in zip(hosts, resumed, strict=True):
        shutil.copytree(old_host.layout.checkpoint_dir, new_host.layout.checkpoint_dir)
    start(resumed)
    assert [host.wait() for host in resumed] == [0, 0], "\n".join(h.stdout for h in resumed)
    chief = resumed[0]
    assert f"resuming from checkpoint after epoch {last}" in chief.stdout
    epochs = [line.split()[0] for line in chief.stdout.splitlines() if line.startswith("epoch=")]
    assert epochs == [f"epoch={last + 1}", f"epoch={last + 2}"]
    assert load_model_dir(chief.layout.model_dir).num_users == 300


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"model_type": "ease"}, "model_type ease does not train across instances"),
        ({"distribution": "chief_only"}, "distribution=chief_only"),
    ],
)
def test_what_does_not_distribute_trains_on_the_chief_alone(
    tmp_path: Path, settings: dict[str, object], reason: str
) -> None:
    hosts = make_hosts(tmp_path, split_frames(), epochs=1, **settings)
    start(hosts)  # neither waits for the other: no strategy, no peer
    chief, worker = hosts
    assert [host.wait() for host in hosts] == [0, 0], chief.stdout[-3000:] + worker.stdout[-3000:]
    assert reason in worker.stdout and "the chief algo-1 trains alone" in worker.stdout
    assert reason in chief.stdout and "this host (the chief) trains alone" in chief.stdout
    assert load_model_dir(chief.layout.model_dir).num_users == 300
    assert not worker.layout.model_dir.exists() or not any(worker.layout.model_dir.iterdir())
    assert "MultiWorkerMirroredStrategy" not in chief.stdout


#: A search of the NCF families and the ones that do not distribute: each family's default
#: settings come first (closed-form families, then gmf), so it ends with the first gmf trial.
SEARCH: dict[str, object] = {
    "model_type": "auto",
    "tuning": "auto",
    "tuning_trials": AUTO_FAMILIES.index("gmf") + 1,
    "epochs": 2,
    "refit": True,
}


def test_a_search_runs_its_ncf_trials_on_every_host_and_the_rest_on_the_chief(
    tmp_path: Path,
) -> None:
    hosts = make_hosts(tmp_path, split_frames(), **SEARCH)
    start(hosts)
    chief, worker = hosts
    assert [host.wait() for host in hosts] == [0, 0], chief.stdout[-3000:] + worker.stdout[-3000:]
    assert "MultiWorkerMirroredStrategy" in chief.stdout
    # EASE (and iALS) on the chief alone, and both logs say so; gmf on both hosts.
    assert "search trial 0: model_type ease does not train across instances; this host " in (
        chief.stdout
    )
    assert "model_type ease does not train across instances; the chief algo-1 fits it " in (
        worker.stdout
    )
    gmf_trial = AUTO_FAMILIES.index("gmf")
    assert f"search trial {gmf_trial} runs on every host: {{'model_type': 'gmf'" in worker.stdout
    assert "2 replicas: global batch 256" in worker.stdout
    # The chief alone writes: one journal, one model, one report; the trials are its own.
    metrics = json.loads((chief.layout.output_data_dir / "metrics.json").read_text())
    assert [t["state"] for t in metrics["search"]["trials"]] == ["complete"] * (gmf_trial + 1)
    assert metrics["refit"] is True
    assert load_model_dir(chief.layout.model_dir).num_users == 300
    assert not worker.layout.model_dir.exists() or not any(worker.layout.model_dir.iterdir())
    assert not worker.layout.checkpoint_dir.exists()
    assert not parse_metric_lines(worker.stdout)
    trial_lines = [line for line in chief.stdout.splitlines() if line.startswith("trial=")]
    assert len(trial_lines) == gmf_trial + 1, trial_lines


def test_a_chief_killed_mid_search_fails_the_waiting_worker_naming_it(tmp_path: Path) -> None:
    hosts = make_hosts(tmp_path, split_frames(), **{**SEARCH, "epochs": 50})
    start(hosts)
    chief, worker = hosts
    # Trial 0 (EASE) is done; the chief fits iALS alone while the worker waits for its next
    # message, with no collective timeout.
    wait_for_line(chief, "trial=0 ")
    kill_and_expect_named(chief, worker, "the hyperparameter search (waiting for the chief)")


def trial_numbers(stdout: str) -> set[int]:
    """The trials a chief finished (its ``trial=N`` metric lines)."""
    return {int(n) for n in re.findall(r"^trial=(\d+) ", stdout, flags=re.MULTILINE)}


def test_sigterm_mid_search_stops_both_hosts_and_the_next_job_redoes_no_finished_trial(
    tmp_path: Path,
) -> None:
    frames = split_frames()
    settings = {"model_type": "gmf", "tuning": "auto", "tuning_trials": 3, "epochs": 6}
    hosts = make_hosts(tmp_path, frames, refit=True, **settings)
    start(hosts)
    chief, worker = hosts
    wait_for_line(chief, "trial=0 ")
    assert worker.process is not None
    worker.process.send_signal(signal.SIGTERM)  # the worker only: the chief's search stops too
    assert [host.wait() for host in hosts] == [0, 0], chief.stdout[-3000:] + worker.stdout[-3000:]
    assert "SIGTERM received" in worker.stdout and "SIGTERM received" not in chief.stdout
    assert "stopped by SIGTERM; checkpoint in" in chief.stdout
    assert not chief.layout.model_dir.exists() or not any(chief.layout.model_dir.iterdir())
    finished = trial_numbers(chief.stdout)
    assert 0 in finished and len(finished) < 3, chief.stdout[-3000:]

    # SageMaker downloads the job's checkpoint S3 prefix onto every host of the next job.
    resumed = make_hosts(tmp_path / "next", frames, refit=True, **settings)
    for new_host in resumed:
        shutil.copytree(chief.layout.checkpoint_dir, new_host.layout.checkpoint_dir)
    start(resumed)
    chief, worker = resumed
    assert [host.wait() for host in resumed] == [0, 0], chief.stdout[-3000:] + worker.stdout[-3000:]
    assert f"resuming the hyperparameter search: {len(finished)} trial(s) done" in chief.stdout
    assert not trial_numbers(chief.stdout) & finished
    metrics = json.loads((chief.layout.output_data_dir / "metrics.json").read_text())
    states = [t["state"] for t in metrics["search"]["trials"]]
    assert states.count("complete") + states.count("pruned") == 3, states  # the cut-off one reran
    # The refit of the chosen gmf runs under the strategy on both hosts.
    assert "refit: gmf on train + validation" in worker.stdout
    assert load_model_dir(chief.layout.model_dir).num_users == 300


@contextlib.contextmanager
def blockable_stdout(log: Path) -> Iterator[tuple[int, threading.Event]]:
    """A pipe for a process's stdout, copied to ``log`` until the event is set.

    Once the event is set the pipe is filled, so the process's next write to its
    stdout blocks: the process is alive (its threads still answer heartbeats) but
    its main thread is stuck, as a host whose log pipe backs up is.
    """
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    block = threading.Event()

    def copy() -> None:
        with log.open("ab") as out:
            while not block.is_set():
                if select.select([read_end], [], [], 0.2)[0]:
                    out.write(os.read(read_end, 65536))
                    out.flush()
        # A description of its own: O_NONBLOCK on the process's would make its writes fail.
        filler = os.open(f"/proc/self/fd/{write_end}", os.O_WRONLY | os.O_NONBLOCK)
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(filler, b"#" * 4096)
        os.close(filler)

    copier = threading.Thread(target=copy, daemon=True)
    copier.start()
    try:
        yield write_end, block
    finally:
        block.set()
        copier.join()
        os.close(read_end)
        os.close(write_end)


def test_a_worker_that_hangs_fails_the_job_after_the_collective_timeout_naming_it(
    tmp_path: Path,
) -> None:
    hosts = make_hosts(tmp_path, split_frames(), epochs=200, collective_timeout=10)
    chief, worker = hosts
    with blockable_stdout(worker.log) as (worker_stdout, hang):
        start(hosts, stdout={worker.name: worker_stdout})
        wait_for_line(chief, "epoch=1 ")
        hang.set()  # the worker's next log line blocks its main thread; its heartbeats go on
        hung = time.monotonic()
        try:
            assert chief.wait(timeout=240) != 0
            waited = time.monotonic() - hung
            failure = chief.layout.failure_file.read_text()
            assert re.match(
                r"host algo-1: host algo-2 stopped answering during epoch \d+ "
                r"\(no answer within collective_timeout=10 s\)",
                failure,
            ), failure
            assert waited >= 10, waited
            assert not chief.layout.model_dir.exists() or not any(chief.layout.model_dir.iterdir())
        finally:
            assert worker.process is not None
            worker.process.kill()
            worker.wait()
