"""EASE's inversion on MovieLens-1M: Cholesky (``potrf`` + ``potri``, in place) against LU.

The Gram matrix of the NCF training pairs (3,706 items) plus ``λ I`` is inverted
by ``training.families.ease``'s Cholesky routine and by ``scipy.linalg.inv``
(LU), alternately, ``--rounds`` times on the same machine; prints each time and
the best of each, and checks both give the same inverse.

Usage: .venv/bin/python benchmarks/ease_inverse.py [--rounds 2] [--l2 500]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp

from training.families.ease import _invert_positive_definite

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-1m-ncf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--l2", type=float, default=500.0)
    args = parser.parse_args()
    pairs = pd.read_csv(DATA / "ml-1m.train.pairs", sep="\t", header=None).to_numpy()
    shape = (int(pairs[:, 0].max()) + 1, int(pairs[:, 1].max()) + 1)
    binary = sp.csr_array((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=shape)
    started = time.perf_counter()
    gram = (binary.T @ binary).toarray(order="C")
    gram[np.diag_indices(len(gram))] += args.l2
    print(f"Gram {gram.shape} in {time.perf_counter() - started:.1f} s", flush=True)
    times: dict[str, list[float]] = {"cholesky": [], "lu": []}
    for _ in range(args.rounds):
        work = gram.copy()
        started = time.perf_counter()
        cholesky = _invert_positive_definite(work)
        times["cholesky"].append(time.perf_counter() - started)
        started = time.perf_counter()
        lu = scipy.linalg.inv(gram, check_finite=False)
        times["lu"].append(time.perf_counter() - started)
        np.testing.assert_allclose(cholesky, lu, rtol=1e-6, atol=1e-12)
        print({name: f"{values[-1]:.2f} s" for name, values in times.items()}, flush=True)
    best = {name: min(values) for name, values in times.items()}
    print(
        f"best of {args.rounds}: cholesky {best['cholesky']:.2f} s, LU {best['lu']:.2f} s, "
        f"LU / cholesky = {best['lu'] / best['cholesky']:.2f}x; load average "
        f"{os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
