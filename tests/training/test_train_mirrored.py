"""One host, several devices: the ``MirroredStrategy`` branch, on CPU split into logical devices.

CI machines have no GPUs, so the branch a host with several GPUs takes runs here
on the CPU split into two logical devices (``tf.config.set_logical_device_configuration``),
in a fresh process, since that must happen before TensorFlow starts. The same
code runs: ``make_distribution`` picks ``MirroredStrategy`` over the devices, the
NCF fit runs Keras' ``train_step`` on both replicas with the gradients reduced
(``DistributedSteps``; the softmax loss's sampled candidates too), the learning rate
follows the global batch, and the search and the refit run under it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ncf_test_support import REPO_ROOT

pytestmark = pytest.mark.slow

SCRIPT = """
import json, logging, sys
from dataclasses import replace
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True)

from training import trainer
from training.cluster import Cluster
from training.config import TrainingConfig
from training.dataset import build_dataset
from training.distributed import make_distribution
from training.search import AUTO_FAMILIES
from training.synthetic import make_interactions

frame = make_interactions(num_users=300, num_items=120, interactions_per_user=20)
latest = frame.groupby("user_id").tail(1)
dataset = build_dataset(frame.drop(latest.index), None, latest)
config = TrainingConfig.from_hyperparameters({
    "model_type": "gmf", "gmf_dim": 16, "epochs": 4, "batch_size": 128, "learning_rate": 0.01,
    "early_stopping_patience": 0, "full_ranking": False, "tuning": "off", "refit": False,
})
distribution = make_distribution(Cluster(), None, device_type="CPU")
assert distribution is not None
out = {"replicas": distribution.num_replicas}
from training.signals import StopFlag
message = {"op": "trial", "number": 3, "params": {"learning_rate": 0.0031, "model_type": "gmf"}}
out["broadcast"] = distribution.broadcast(message, StopFlag(), "a test")
for name, used in (("mirrored", distribution), ("plain", None)):
    result = trainer.train(config, dataset, tmp / name, emit=print, distribution=used)
    out[name] = result.test
# A softmax over sampled candidates (120 items, 30 drawn per batch) under the strategy.
sampled = replace(config, model_type="neumf", loss="softmax", softmax_candidates=30)
out["sampled_softmax"] = trainer.train(
    sampled, dataset, tmp / "sampled", emit=print, distribution=distribution
).test
search = replace(
    config, model_type="auto", tuning="auto", tuning_trials=AUTO_FAMILIES.index("gmf") + 1,
    refit=True, epochs=2,
)
result = trainer.train(search, dataset, tmp / "search", emit=print, distribution=distribution)
out["search"] = {"trials": [t["state"] for t in result.search.trials], "test": result.test}
print("RESULT " + json.dumps(out))
"""


def test_one_host_mirrors_over_its_devices(tmp_path) -> None:
    code = f"from pathlib import Path\ntmp = Path({str(tmp_path)!r})\n{SCRIPT}"
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["replicas"] == 2
    assert "MirroredStrategy over 2 CPU devices" in done.stdout
    # Both replicas are handed the chief's message: it arrives once, not summed twice.
    assert result["broadcast"] == [
        {"op": "trial", "number": 3, "params": {"learning_rate": 0.0031, "model_type": "gmf"}},
        False,
    ]
    assert "2 replicas: global batch 256 (batch_size 128 per replica)" in done.stdout
    # As good as one device: the reduced gradients train the same model.
    assert result["mirrored"]["hr"] == pytest.approx(result["plain"]["hr"], abs=0.05)
    assert result["mirrored"]["hr"] > 0.5  # far above chance (0.1)
    assert result["sampled_softmax"]["hr"] > 0.2  # chance is 0.1
    # The search's gmf trial and refit run under the strategy; the others on the host alone.
    assert result["search"]["trials"] == ["complete"] * len(result["search"]["trials"])
    assert result["search"]["test"]["hr"] > 0.5
