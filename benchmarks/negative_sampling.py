"""One epoch's negative sampling at MovieLens-20M's shape: the bitset against drawing by rank.

Draws power-law interactions (``training.synthetic.make_power_law_interactions``, ML-20M's
138,493 users x 26,744 items) for each ``--sizes`` entry, then times
``training.sampling.sample_negatives`` for every interaction (``--negatives`` each, the
job's default 4) both ways on the same seen pairs, side by side: rejection against the
bitset of seen cells (the default up to ``BITSET_CELLS_LIMIT`` cells) and exact drawing by
rank (what the job used above the old one-byte-per-cell table's limit). The rank keys,
which the job keeps for every epoch, are timed apart from the draw; the bitset (too large
to keep at this shape) is built by every epoch's draw and timed with it. Both draws are
checked to contain no seen pair.

Usage: .venv/bin/python benchmarks/negative_sampling.py [--sizes 10e6,20e6] [--negatives 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import training.sampling as sampling
from ncf_contract.seen import SeenItems
from training.synthetic import make_power_law_interactions

ML20M_USERS, ML20M_ITEMS = 138_493, 26_744


def timed_draw(
    seen: SeenItems, users: np.ndarray, negatives: int, bitset: bool
) -> dict[str, float]:
    """One epoch's draw by one method, on a fresh copy of ``seen`` (no memo shared).

    ``kept_s``: building what the job keeps for every epoch (the rank keys; nothing for
    a bitset this large, which is built and dropped by each epoch's draw). ``epoch_s``: the
    draw as an epoch pays it (for the bitset, its build included). ``table_mb``: the keys
    kept, or the bitset held during the draw.
    """
    fresh = SeenItems.from_csr(seen.indptr, seen.indices, ML20M_ITEMS)
    limit = sampling.BITSET_CELLS_LIMIT
    sampling.BITSET_CELLS_LIMIT = limit if bitset else 0
    try:
        started = time.perf_counter()
        if bitset:
            table_mb = (fresh.num_users * ML20M_ITEMS + 7) // 8 / 1e6
        else:
            table_mb = sampling._gap_keys(fresh, ML20M_ITEMS).nbytes / 1e6
        kept = time.perf_counter() - started
        started = time.perf_counter()
        drawn = sampling.sample_negatives(
            users, fresh, ML20M_ITEMS, negatives, np.random.default_rng(0)
        )
        epoch = time.perf_counter() - started
    finally:
        sampling.BITSET_CELLS_LIMIT = limit
    assert not fresh.contains(np.repeat(users, negatives), drawn.ravel()).any()
    return {"kept_s": kept, "epoch_s": epoch, "table_mb": table_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10e6,20e6")
    parser.add_argument("--negatives", type=int, default=4)
    args = parser.parse_args()
    print("| interactions | method | kept for the job: build s | per epoch s | table MB |")
    print("|---|---|---|---|---|")
    for size in (int(float(text)) for text in args.sizes.split(",")):
        users, items = make_power_law_interactions(
            num_users=ML20M_USERS, num_items=ML20M_ITEMS, num_interactions=size, seed=0
        )
        seen = SeenItems.from_pairs(users, items, ML20M_USERS, ML20M_ITEMS)
        for name, bitset in (("by rank", False), ("bitset", True), ("by rank", False)):
            figures = timed_draw(seen, users.astype(np.int64), args.negatives, bitset)
            print(
                f"| {size:,} | {name} | {figures['kept_s']:.2f} | {figures['epoch_s']:.2f} | "
                f"{figures['table_mb']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
