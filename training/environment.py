"""The SageMaker training environment: one read-only view of ``/opt/ml``.

Built once in ``training.main`` and passed down; nothing else reads ``/opt/ml``
or ``SM_*`` variables. ``SAGEMAKER_BASE_DIR`` relocates ``/opt/ml`` (the
training toolkit's convention), so the same code runs on a laptop. Files are
read by ``Environment.from_environ`` / ``from_base_dir``, never at import time;
the constructor takes plain values so tests can inject them.

Where ``SM_*`` variables are set (the training toolkit sets them, and a user
running the container locally may), they override what the files say:

- ``SM_HPS``: a JSON object of hyperparameters, laid over ``hyperparameters.json``.
- ``SM_CHANNEL_<NAME>``: the location of a channel; a local path or an
  ``s3://`` URI (read with boto3, for the container run outside SageMaker).
- ``SM_MODEL_DIR``, ``SM_OUTPUT_DATA_DIR``, ``SM_CURRENT_HOST``, ``SM_HOSTS``.

``TF_CONFIG``, if set, replaces the one a multi-instance job builds from
``resourceconfig.json`` (``training.cluster.tf_config``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.errors import ConfigError

DEFAULT_BASE_DIR = "/opt/ml"


def decode_hyperparameters(raw: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-decode each string value, keeping the raw string where that fails.

    SageMaker passes every hyperparameter as a string: ``"3"`` becomes ``3``,
    ``"[64, 32]"`` a list, ``"true"`` ``True``, and ``"neumf"`` stays ``"neumf"``.
    """
    decoded: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, str):
            try:
                decoded[name] = json.loads(value)
            except ValueError:
                decoded[name] = value
        else:
            decoded[name] = value
    return decoded


def _read_json(path: Path, default: Any) -> Any:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise ConfigError(f"{path} is not valid JSON: {error}") from error


@dataclass(frozen=True)
class Environment:
    """What a training job is given and where it writes.

    Attributes:
        base_dir: The ``/opt/ml`` directory (``SAGEMAKER_BASE_DIR``).
        hyperparameters: Decoded hyperparameters (see ``decode_hyperparameters``).
        input_data_config: ``inputdataconfig.json``: channel name to its settings
            (``TrainingInputMode`` is ``File``, ``FastFile`` or ``Pipe``).
        current_host: This host's name (``algo-1`` on a one-instance job).
        hosts: Every host of the job.
        environ: The ``SM_*`` variables that override the files, and ``TF_CONFIG``.
    """

    base_dir: Path
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    input_data_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    current_host: str = "algo-1"
    hosts: tuple[str, ...] = ("algo-1",)
    environ: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Environment:
        """Read the environment from ``SAGEMAKER_BASE_DIR`` (default ``/opt/ml``)."""
        environ = dict(os.environ if environ is None else environ)
        return cls.from_base_dir(base_dir_of(environ), environ)

    @classmethod
    def from_base_dir(cls, base_dir: Path, environ: Mapping[str, str] | None = None) -> Environment:
        """Read ``input/config/*.json`` under ``base_dir``, then apply ``SM_*`` overrides.

        Raises:
            ConfigError: A config file is not valid JSON, or ``SM_HPS`` is not an object.
        """
        environ = {
            k: v for k, v in (environ or {}).items() if k.startswith("SM_") or k == "TF_CONFIG"
        }
        config_dir = base_dir / "input" / "config"
        raw_hps = _read_json(config_dir / "hyperparameters.json", {})
        hyperparameters = decode_hyperparameters(raw_hps)
        if "SM_HPS" in environ:
            try:
                overrides = json.loads(environ["SM_HPS"])
            except ValueError as error:
                raise ConfigError(f"SM_HPS is not valid JSON: {error}") from error
            if not isinstance(overrides, dict):
                raise ConfigError(f"SM_HPS must be a JSON object, got {environ['SM_HPS']!r}")
            hyperparameters.update(decode_hyperparameters(overrides))
        resource = _read_json(config_dir / "resourceconfig.json", {})
        current_host = environ.get("SM_CURRENT_HOST", resource.get("current_host", "algo-1"))
        hosts = resource.get("hosts", [current_host])
        if "SM_HOSTS" in environ:
            hosts = json.loads(environ["SM_HOSTS"])
        return cls(
            base_dir=base_dir,
            hyperparameters=hyperparameters,
            input_data_config=_read_json(config_dir / "inputdataconfig.json", {}),
            current_host=current_host,
            hosts=tuple(hosts),
            environ=environ,
        )

    @property
    def model_dir(self) -> Path:
        """Where the model goes (``model/``); SageMaker uploads it as ``model.tar.gz``."""
        return Path(self.environ.get("SM_MODEL_DIR", self.base_dir / "model"))

    @property
    def output_data_dir(self) -> Path:
        """Where the training report goes (``output/data/``)."""
        return Path(self.environ.get("SM_OUTPUT_DATA_DIR", self.base_dir / "output" / "data"))

    @property
    def failure_file(self) -> Path:
        """``output/failure``: its first 1,024 characters become the FailureReason."""
        return self.base_dir / "output" / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        """``checkpoints/``: SageMaker syncs it with ``CheckpointConfig.S3Uri``."""
        return self.base_dir / "checkpoints"

    @property
    def tf_config(self) -> str | None:
        """A ``TF_CONFIG`` given in the environment (JSON), if any."""
        return self.environ.get("TF_CONFIG")

    def input_mode(self, channel: str) -> str | None:
        """The channel's ``TrainingInputMode`` (``File``, ``FastFile``, ``Pipe``), if declared."""
        settings = self.input_data_config.get(channel)
        return None if settings is None else str(settings.get("TrainingInputMode", "File"))

    def channel_location(self, channel: str, uri: str | None = None) -> str | Path | None:
        """Where ``channel``'s data is, or ``None`` when the job has no such channel.

        Precedence: ``uri`` (a ``<channel>_uri`` hyperparameter), then
        ``SM_CHANNEL_<NAME>``, then ``input/data/<channel>/`` if it exists or the
        channel is declared in ``inputdataconfig.json``.

        Raises:
            ConfigError: The channel is declared in Pipe mode, which this
                algorithm does not read.
        """
        if uri:
            return uri if uri.startswith("s3://") else Path(uri)
        override = self.environ.get(f"SM_CHANNEL_{channel.upper()}")
        if override:
            return override if override.startswith("s3://") else Path(override)
        if self.input_mode(channel) == "Pipe":
            raise ConfigError(
                f"channel {channel!r} uses TrainingInputMode Pipe; this algorithm reads "
                "File or FastFile mode channels only"
            )
        local = self.base_dir / "input" / "data" / channel
        if local.exists() or channel in self.input_data_config:
            return local
        return None


def base_dir_of(environ: Mapping[str, str]) -> Path:
    """The ``/opt/ml`` directory: ``SAGEMAKER_BASE_DIR`` if set."""
    return Path(environ.get("SAGEMAKER_BASE_DIR", DEFAULT_BASE_DIR))
