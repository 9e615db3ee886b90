"""Serving large catalogs: load time, top-10 latency, memory and recall, exact against approximate.

For each catalog size and model type, writes a synthetic model directory (GMF d=64, or
NeuMF with GMF 64 and MLP [64, 32, 16]; ``--users`` users; user and item embeddings drawn
around shared cluster centres, so there is structure to find; 0-50 seen items per user)
under ``--cache`` and, in a fresh child process per retrieval mode (one BLAS / OpenMP
thread: "one core"), measures:

- ``load_s``: ``Recommender.from_model_dir`` (reading, precomputation and, for
  ``approximate``, building the index): what stands between a worker's start and /ping.
- ``p50_ms`` / ``p99_ms``: one recommend request (one user, k=10, seen items excluded)
  at a time, ``--requests`` requests over random users.
- ``peak_rss_gb``: the child's peak RSS (``os.wait4``).
- ``recall@10``: the share of the exact top 10 found by the approximate path (returned
  lists), and for NeuMF also ``first_stage_recall@10``: the share of the exact top 10 among
  the first stage's candidates (what re-scoring can recover at best).

Each model directory is written by ``save_model_dir``, so it carries the first-stage index
exactly when a trained model would (``ncf_contract.first_stage``: a GMF tower and at least
``APPROXIMATE_FROM_ITEMS`` items); a cached directory without it gets it added by the same
code (``save_first_stage_index``). Rows then also give ``index_export_s`` (what adding it
took: first-stage vectors, k-means, assignment, fingerprint, write; only when it was added
in this run), ``index_build_s`` (the k-means and assignment alone, from
``first_stage.json``), ``index_file_mb`` (``first_stage.faiss`` on disk) and, for the
approximate rows, ``index`` (``stored``: read from the directory; ``built``: at load).
``--index built`` serves each model from a view of its directory without the index files
(symlinks to the other files, ``<cache>/<model>-without-index``), as a directory exported
before the index was stored: the side-by-side baseline of the stored index.

With ``--serve`` each row also starts the real ``serve`` (nginx + gunicorn, the default
two workers, ``NCF_RETRIEVAL`` set to the row's mode) on the model and measures:

- ``start_to_ping_s``: from starting ``serve`` to the first 200 on ``/ping``.
- ``serve_pss_gb``: the proportional set size summed over every process of the server
  once healthy (pages shared copy-on-write between the master and its workers count
  once), and ``serve_max_rss_gb``, the largest single process's RSS.

Usage: .venv/bin/python benchmarks/serve_catalog.py --items 100000,1000000 --models gmf,neumf
    [--serve]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from serve_load import free_port, stop, wait_healthy

RESULTS = Path(__file__).resolve().parent / "results"


def write_model(directory: Path, model_type: str, num_users: int, num_items: int) -> None:
    """A synthetic model directory with clustered embeddings (see the module docstring)."""
    from ncf_contract.model_dir import ModelArtifacts, ModelMetadata, save_model_dir
    from ncf_contract.seen import SeenItems

    rng = np.random.default_rng(0)
    clusters = 256

    def clustered(rows: int, dim: int, centres: np.ndarray) -> np.ndarray:
        picks = rng.integers(0, clusters, rows)
        noise = rng.normal(scale=0.6, size=(rows, dim)).astype(np.float32)
        return (0.3 * (centres[picks] + noise)).astype(np.float32)

    weights: dict[str, np.ndarray] = {}
    gmf_centres = rng.normal(size=(clusters, 64)).astype(np.float32)
    weights["gmf_user_embedding"] = clustered(num_users, 64, gmf_centres)
    weights["gmf_item_embedding"] = clustered(num_items, 64, gmf_centres)
    head, layers = 64, 0
    if model_type == "neumf":
        mlp_centres = rng.normal(size=(clusters, 32)).astype(np.float32)
        weights["mlp_user_embedding"] = clustered(num_users, 32, mlp_centres)
        weights["mlp_item_embedding"] = clustered(num_items, 32, mlp_centres)
        width = 64
        for layer, units in enumerate((32, 16)):
            weights[f"mlp_kernel_{layer}"] = rng.normal(
                scale=width**-0.5, size=(width, units)
            ).astype(np.float32)
            weights[f"mlp_bias_{layer}"] = np.zeros(units, np.float32)
            width = units
        head, layers = 64 + width, 2
    weights["output_kernel"] = rng.uniform(0.5, 1.5, size=(head, 1)).astype(np.float32)
    weights["output_bias"] = np.zeros(1, np.float32)
    counts = rng.integers(0, 51, num_users)
    indices = rng.integers(0, num_items, int(counts.sum())).astype(np.int32)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    for user in range(num_users):  # distinct and sorted per row
        row = np.unique(indices[indptr[user] : indptr[user + 1]])
        indices[indptr[user] : indptr[user] + len(row)] = row
        counts[user] = len(row)
    keep = np.concatenate(
        [indices[indptr[u] : indptr[u] + counts[u]] for u in range(num_users)]
    ).astype(np.int32)
    save_model_dir(
        directory,
        ModelArtifacts(
            metadata=ModelMetadata(
                model_type=model_type,
                feedback="implicit",
                output_activation="sigmoid",
                num_mlp_layers=layers,
            ),
            weights=weights,
            user_ids=np.array([f"u{n}" for n in range(num_users)]),
            item_ids=np.array([f"i{n}" for n in range(num_items)]),
            item_popularity=rng.integers(0, 1000, num_items).astype(np.int64),
            seen=SeenItems.from_csr(np.concatenate([[0], np.cumsum(counts)]), keep, num_items),
        ),
    )


def ensure_first_stage_index(model_dir: Path) -> dict[str, float]:
    """Add the first-stage index to a cached directory written before it was stored.

    Returns the index's figures for the row (none when the model needs no index).
    """
    from ncf_contract import first_stage
    from ncf_contract.model_dir import load_model_dir, save_first_stage_index

    figures: dict[str, float] = {}
    index_file, info_file = (
        model_dir / first_stage.INDEX_FILE,
        model_dir / first_stage.INDEX_INFO_FILE,
    )
    if not index_file.is_file():
        artifacts = load_model_dir(model_dir)
        started = time.perf_counter()
        if save_first_stage_index(model_dir, artifacts) is not None:
            figures["index_export_s"] = round(time.perf_counter() - started, 2)
    if index_file.is_file():
        info = first_stage.IndexInfo.from_json(info_file.read_text())
        figures["index_build_s"] = info.build_seconds
        figures["index_file_mb"] = round(index_file.stat().st_size / 1e6, 1)
    return figures


def without_index(model_dir: Path) -> Path:
    """A view of ``model_dir`` without the first-stage index files (symlinks to the rest)."""
    from ncf_contract import first_stage

    view = model_dir.with_name(f"{model_dir.name}-without-index")
    view.mkdir(exist_ok=True)
    for entry in model_dir.iterdir():
        link = view / entry.name
        index_files = (first_stage.INDEX_FILE, first_stage.INDEX_INFO_FILE)
        if entry.name not in index_files and not link.is_symlink():
            link.symlink_to(entry.resolve())
    return view


def measure(model_dir: Path, retrieval: str, requests: int) -> dict[str, object]:
    """One retrieval mode in this process (the child): load time, latency and recall."""
    from inference.instances import RecommendRequest
    from inference.recommender import Recommender
    from inference.retrieval import RetrievalSettings
    from inference.scoring import NcfScorer

    mode, candidates, nprobe = retrieval.split(":")
    settings = RetrievalSettings(mode=mode, candidates=int(candidates), nprobe=int(nprobe))
    started = time.perf_counter()
    recommender = Recommender.from_model_dir(model_dir, retrieval=settings)
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(1)
    users = rng.integers(0, len(recommender.user_ids), requests)
    latencies, lists = [], []
    for user in users:
        request = [RecommendRequest(user_id=f"u{user}", k=10)]
        began = time.perf_counter()
        prediction = recommender.recommend(request)[0]
        latencies.append(time.perf_counter() - began)
        lists.append([int(item["item_id"][1:]) for item in prediction["items"]])
    result: dict[str, object] = {
        "load_s": round(load_s, 2),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 2),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 2),
    }
    if recommender.approximate is not None:
        result["index"] = recommender.approximate.origin
        assert isinstance(recommender.scorer, NcfScorer)
        exact_found = first_stage = 0
        for user, found in zip(users[:100], lists[:100], strict=False):
            logits = recommender.scorer.logits_all_items(np.array([user]))[0]
            logits[recommender.seen.row(int(user))] = -np.inf
            exact = set(np.argsort(-logits, kind="stable")[:10].tolist())
            exact_found += len(exact & set(found))
            found_first = recommender.approximate.search(
                recommender.scorer.first_stage_query(int(user)),
                recommender.retrieval.candidates,
                recommender.seen.row(int(user)),
            )
            first_stage += len(exact & set(found_first.tolist()))
        result["recall@10"] = exact_found / (10 * min(100, len(lists)))
        result["first_stage_recall@10"] = first_stage / (10 * min(100, len(lists)))
    return result


def run_child(model_dir: Path, retrieval: str, requests: int) -> dict[str, object]:
    """``measure`` in a child process; ``retrieval`` is ``mode:candidates:nprobe``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", str(model_dir), retrieval, str(requests)],
        env=env,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"child failed for {model_dir} {retrieval}")
    return {**json.loads(output.splitlines()[-1]), "peak_rss_gb": usage.ru_maxrss / 1e6}


def server_processes(root: int) -> list[int]:
    """``root`` and every process descended from it."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    found = [root]
    for pid in parents:
        ancestor = pid
        while ancestor in parents and ancestor not in (root, 0, 1):
            ancestor = parents[ancestor]
        if ancestor == root and pid != root:
            found.append(pid)
    return found


def memory_gb(pids: list[int]) -> tuple[float, float]:
    """``(sum of Pss, largest Rss)`` in GB over ``pids`` (``/proc/PID/smaps_rollup``)."""
    pss_total, rss_max = 0, 0
    for pid in pids:
        try:
            fields = {
                line.split(":")[0]: int(line.split()[1])
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
            }
        except OSError:
            continue
        pss_total += fields.get("Pss", 0)
        rss_max = max(rss_max, fields.get("Rss", 0))
    return pss_total / 1e6, rss_max / 1e6


def measure_serve(model_dir: Path, mode: str, candidates: int, nprobe: int) -> dict[str, float]:
    """Start the real ``serve`` on ``model_dir``: seconds to the first healthy /ping, memory."""
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "opt_ml"
        base.mkdir()
        (base / "model").symlink_to(model_dir.resolve())
        port = free_port()
        env = {
            **os.environ,
            "SAGEMAKER_BASE_DIR": str(base),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "NCF_RETRIEVAL": mode,
            "NCF_ANN_CANDIDATES": str(candidates),
            "NCF_ANN_NPROBE": str(nprobe),
        }
        started = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "inference"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            start_to_ping = wait_healthy(server, f"http://127.0.0.1:{port}", started)
            time.sleep(1)  # let the second worker finish booting
            pss, rss = memory_gb(server_processes(server.pid))
        finally:
            stop(server)
    return {
        "start_to_ping_s": round(start_to_ping, 2),
        "serve_pss_gb": round(pss, 2),
        "serve_max_rss_gb": round(rss, 2),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(measure(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="100000,1000000")
    parser.add_argument("--models", default="gmf,neumf")
    parser.add_argument("--modes", default="exact,approximate")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--cache", type=Path, default=RESULTS / "catalog-models")
    parser.add_argument("--candidates", type=int, default=200, help="NCF_ANN_CANDIDATES")
    parser.add_argument("--nprobe", type=int, default=32, help="NCF_ANN_NPROBE")
    parser.add_argument(
        "--serve", action="store_true", help="also time the real serve's start to /ping"
    )
    parser.add_argument(
        "--index",
        choices=("stored", "built"),
        default="stored",
        help="serve the stored first-stage index, or build it at load (a view without it)",
    )
    args = parser.parse_args()
    for items in (int(float(n)) for n in args.items.split(",")):
        for model_type in args.models.split(","):
            model_dir = args.cache / f"{model_type}-{items}"
            if not (model_dir / "metadata.json").exists():
                write_model(model_dir, model_type, args.users, items)
            index_figures = ensure_first_stage_index(model_dir)
            if args.index == "built":
                model_dir = without_index(model_dir)
            for mode in args.modes.split(","):
                row: dict[str, object] = {"items": items, "model": model_type, "mode": mode}
                row.update(index_figures)
                index_figures.pop("index_export_s", None)  # paid once, reported once
                if mode != "exact":
                    row.update(candidates=args.candidates, nprobe=args.nprobe)
                if args.serve:
                    row.update(measure_serve(model_dir, mode, args.candidates, args.nprobe))
                retrieval = f"{mode}:{args.candidates}:{args.nprobe}"
                row.update(run_child(model_dir, retrieval, args.requests))
                row["load_average"] = round(os.getloadavg()[0], 1)  # other sessions' load
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
