"""Memory of the default model's training per parameter: where one device runs out.

Builds the default model (GMF, ``gmf_dim`` 64) for ``--users`` x ``--items``,
compiles it with Adam as training does, fits a few batches of 2048 and reports
the process's peak resident memory above the baseline (TensorFlow loaded, no
model) divided by the parameter count: bytes per parameter with the optimiser
state and the step's temporaries. The README's ParameterServerStrategy note
uses the figure.

Usage: .venv/bin/python benchmarks/embedding_memory.py [--users 2000000] [--items 200000]
"""

from __future__ import annotations

import argparse
import resource

import keras
import numpy as np

from training.families.ncf_model import NCF


def peak_bytes() -> int:
    """The process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2_000_000)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    batch = 2048
    users = rng.integers(0, args.users, size=batch * 8).astype(np.int32)
    items = rng.integers(0, args.items, size=batch * 8).astype(np.int32)
    labels = rng.integers(0, 2, size=(batch * 8, 1)).astype(np.float32)
    # Warm TensorFlow up on a tiny model first, so the baseline holds the runtime itself.
    tiny = NCF(10, 10, model_type="gmf", gmf_dim=args.dim, gmf_regularization=0.005).build_all()
    tiny.compile(optimizer=keras.optimizers.Adam(0.003), loss="binary_crossentropy")
    tiny.fit((users % 10, items % 10), labels, batch_size=batch, epochs=1, verbose=0)
    baseline = peak_bytes()

    model = NCF(
        args.users, args.items, model_type="gmf", gmf_dim=args.dim, gmf_regularization=0.005
    ).build_all()
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="binary_crossentropy")
    model.optimizer.build(model.trainable_variables)
    built = peak_bytes()
    model.fit((users, items), labels, batch_size=batch, epochs=1, verbose=0)
    trained = peak_bytes()
    parameters = model.count_params()
    print(
        f"GMF {args.users:,} users x {args.items:,} items x d={args.dim}: "
        f"{parameters:,} parameters; peak RSS above baseline: built with Adam state "
        f"{(built - baseline) / parameters:.1f} B/parameter, during training steps "
        f"{(trained - baseline) / parameters:.1f} B/parameter "
        f"({(trained - baseline) / 2**30:.2f} GiB)"
    )


if __name__ == "__main__":
    main()
