"""EASE and iALS on MovieLens-1M (the NCF split, exact test negatives), through the real `train`.

Each run is ``benchmarks/train_ml1m.py``'s: the real ``train`` program in a
subprocess on channels converted into a temporary directory. EASE is run with
each ``--ease-l2`` value; the one with the best validation HR@10 (the split
``train`` carves from the training pairs) is chosen and only its test figures
are printed, so the test split is reported once. iALS runs once with its
defaults (plus any ``--ials-hp name=value``); ``train`` keeps its best
iteration on validation.

Usage: .venv/bin/python benchmarks/families_ml1m.py [--ease-l2 500 800 1500] [--skip-ials]
"""

from __future__ import annotations

import argparse
from typing import Any

from train_ml1m import run_ours


def _line(name: str, run: dict[str, Any]) -> str:
    timings = run["timings"]
    return (
        f"{name}: test HR@10={run['hr@10']:.4f} NDCG@10={run['ndcg@10']:.4f} "
        f"(full ranking HR@10={run['full_hr@10']:.4f} NDCG@10={run['full_ndcg@10']:.4f}); "
        f"fit {timings['training_seconds']:.1f} s, "
        f"validation {timings['validation_seconds']:.1f} s, "
        f"train process {run['train_subprocess_seconds']:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ease-l2", type=float, nargs="*", default=[500.0, 800.0, 1500.0])
    parser.add_argument("--ials-hp", action="append", default=[], help="name=value")
    parser.add_argument("--skip-ials", action="store_true")
    args = parser.parse_args()

    if args.ease_l2:
        runs = {}
        for l2 in args.ease_l2:
            run = run_ours({"model_type": "ease", "ease_l2": str(l2)})
            runs[l2] = run
            validation = run["validation"]
            print(
                f"ease l2={l2:g}: validation HR@10={validation['hr']:.4f} "
                f"NDCG@10={validation['ndcg']:.4f}; fit {run['timings']['training_seconds']:.1f} s",
                flush=True,
            )
        chosen = max(runs, key=lambda l2: runs[l2]["validation"]["hr"])
        print(_line(f"ease (l2={chosen:g}, chosen on validation)", runs[chosen]), flush=True)
    if not args.skip_ials:
        hyperparameters = {"model_type": "ials", **dict(a.split("=", 1) for a in args.ials_hp)}
        run = run_ours(hyperparameters)
        print(
            f"ials {hyperparameters}: validation HR@10={run['validation']['hr']:.4f} "
            f"(best iteration {run['best_epoch']} of {run['epochs_run']})",
            flush=True,
        )
        print(_line("ials", run), flush=True)


if __name__ == "__main__":
    main()
