"""The straightforward server the serving benchmark compares against (not the product).

What most Flask + Keras examples do: load the Keras model, and per request build
the (user, every item) pairs, call ``model.predict`` on them, sort the whole
catalog in Python/NumPy and return JSON. It answers only the top-k row of the
table, for known users, which is all the benchmark sends.

Run under gunicorn (sync workers, one per CPU, as the examples do):
``NAIVE_MODEL_DIR=... gunicorn --chdir benchmarks -w 2 serve_naive:app``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from flask import Flask, Response, request

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ncf_contract.model_dir import ModelArtifacts, load_model_dir
from training.families.ncf_model import NCF


def load_keras_model(model_dir: Path) -> tuple[NCF, ModelArtifacts]:
    """The Keras NCF with the weights of ``model_dir``, and the artifacts."""
    artifacts = load_model_dir(model_dir)
    weights = artifacts.weights
    meta = artifacts.metadata
    mlp_layers = None
    if "mlp_user_embedding" in weights:
        mlp_layers = [2 * weights["mlp_user_embedding"].shape[1]] + [
            weights[f"mlp_kernel_{n}"].shape[1] for n in range(meta.num_mlp_layers)
        ]
    model = NCF(
        artifacts.num_users,
        artifacts.num_items,
        model_type=meta.model_type,
        gmf_dim=weights["gmf_user_embedding"].shape[1] if "gmf_user_embedding" in weights else None,
        mlp_layers=mlp_layers,
        output_activation=meta.output_activation,
    ).build_all()
    if model.use_gmf:
        model.gmf_user.set_weights([weights["gmf_user_embedding"]])
        model.gmf_item.set_weights([weights["gmf_item_embedding"]])
    if model.use_mlp:
        model.mlp_user.set_weights([weights["mlp_user_embedding"]])
        model.mlp_item.set_weights([weights["mlp_item_embedding"]])
        for n, dense in enumerate(model.mlp_dense):
            dense.set_weights([weights[f"mlp_kernel_{n}"], weights[f"mlp_bias_{n}"]])
    model.output_dense.set_weights([weights["output_kernel"], weights["output_bias"]])
    return model, artifacts


MODEL, ARTIFACTS = load_keras_model(Path(os.environ["NAIVE_MODEL_DIR"]))
USER_INDEX = {user_id: n for n, user_id in enumerate(ARTIFACTS.user_ids)}
app = Flask(__name__)


@app.get("/ping")
def ping() -> Response:
    return Response("{}", mimetype="application/json")


@app.post("/invocations")
def invocations() -> Response:
    instance = json.loads(request.data)
    user = USER_INDEX[str(instance["user_id"])]
    k = int(instance.get("k", 10))
    items = np.arange(ARTIFACTS.num_items)
    users = np.full(ARTIFACTS.num_items, user)
    scores = MODEL.predict([users, items], batch_size=len(items), verbose=0)[:, 0]
    scores[ARTIFACTS.seen.row(user)] = -np.inf
    best = np.argsort(-scores)[:k]
    predictions = [
        {
            "user_id": str(instance["user_id"]),
            "items": [{"item_id": ARTIFACTS.item_ids[i], "score": float(scores[i])} for i in best],
        }
    ]
    return Response(json.dumps({"predictions": predictions}), mimetype="application/json")
