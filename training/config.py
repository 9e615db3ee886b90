"""The typed training configuration, converted once from decoded hyperparameters.

Every hyperparameter a user may pass is a field of ``TrainingConfig``; its
metadata says what is allowed. An unknown name or a bad value raises
``ConfigError`` naming the hyperparameter, the value received and what is
allowed, so the job's FailureReason tells the user what to change.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ncf_contract.families import (
    DEFAULT_FAMILY,
    IMPLICIT_ONLY_FAMILIES,
    MODEL_FAMILIES,
    NCF_FAMILIES,
)
from training.cluster import CHIEF_ONLY, LEARNING_RATE_SCALINGS, MULTI_WORKER_MIRRORED
from training.constraints import Constraint, parse_constraints
from training.errors import ConfigError

#: ``model_type`` that lets the search choose the family.
AUTO = "auto"

#: ``loss`` values: the NCF paper's binary log loss on each positive and ``num_negatives``
#: sampled negatives, or a softmax cross-entropy of each positive against the catalog
#: (``softmax_candidates``).
POINTWISE, SOFTMAX = "pointwise", "softmax"
LOSSES = (POINTWISE, SOFTMAX)

#: Hyperparameters SageMaker itself adds (tuning, script mode); ignored, never an error.
_RESERVED_PREFIXES = ("sagemaker_", "_")


def _choice(*allowed: str) -> dict[str, Any]:
    return {"kind": "choice", "allowed": allowed}


def _int(low: int, high: int | None = None) -> dict[str, Any]:
    return {"kind": "int", "low": low, "high": high}


def _float(low: float, high: float | None = None, low_open: bool = False) -> dict[str, Any]:
    return {"kind": "float", "low": low, "high": high, "low_open": low_open}


_BOOL: dict[str, Any] = {"kind": "bool"}
_STR: dict[str, Any] = {"kind": "str"}
_OPTIONAL_STR: dict[str, Any] = {"kind": "optional_str"}
_OPTIONAL_FLOAT: dict[str, Any] = {"kind": "optional_float"}
_LAYERS: dict[str, Any] = {"kind": "layers"}
_OPTIONAL_NAMES: dict[str, Any] = {"kind": "optional_names"}
_ATTRIBUTE_KINDS: dict[str, Any] = {"kind": "attribute_kinds"}
_OPTIONAL_POSITIVE: dict[str, Any] = {"kind": "optional_float", "low": 0.0, "low_open": True}

#: The kinds of attribute column (see ``training.attributes``); the values of
#: ``item_attribute_kinds`` / ``user_attribute_kinds``.
ATTRIBUTE_KINDS = ("categorical", "multi", "numeric", "text")


@dataclass(frozen=True)
class TrainingConfig:
    """Every training hyperparameter, typed; defaults tuned on MovieLens-1M (see BENCHMARKS.md).

    The default model is GMF (d=64, per-example L2 0.005): on MovieLens-1M it ranks as
    well as NeuMF (HR@10 0.7031 vs 0.7030, seed 42) in 105 s instead of 155 s, and is
    steadier across seeds (0.7015 vs 0.6974 with seed 7), in line with Rendle et al. (2020),
    who found a tuned dot product ahead of learned MLP similarities. ``mlp_regularization`` defaults
    to the value that worked best for NeuMF, so ``model_type=neumf`` alone gets it too.
    See the README's hyperparameter table for what each one means.
    """

    model_type: str = field(default=AUTO, metadata=_choice(AUTO, *MODEL_FAMILIES))
    feedback: str = field(default="implicit", metadata=_choice("implicit", "explicit"))
    epochs: int = field(default=10, metadata=_int(1, 10_000))
    batch_size: int = field(default=2048, metadata=_int(1, 1 << 20))
    learning_rate: float = field(default=0.003, metadata=_float(0.0, 10.0, low_open=True))
    learning_rate_decay: float = field(default=0.8, metadata=_float(0.0, 1.0, low_open=True))
    optimizer: str = field(default="adam", metadata=_choice("adam", "sgd", "adagrad", "rmsprop"))
    sparse_updates: bool = field(default=True, metadata=_BOOL)
    num_negatives: int = field(default=4, metadata=_int(1, 1000))
    loss: str = field(default=AUTO, metadata=_choice(AUTO, *LOSSES))
    softmax_candidates: int = field(default=4096, metadata=_int(1, 1 << 24))
    gmf_dim: int = field(default=64, metadata=_int(1, 4096))
    mlp_layers: tuple[int, ...] = field(default=(64, 32, 16), metadata=_LAYERS)
    gmf_regularization: float = field(default=0.005, metadata=_float(0.0))
    mlp_regularization: float = field(default=0.005, metadata=_float(0.0))
    dropout: float = field(default=0.0, metadata=_float(0.0, 0.95))
    pretrain: bool = field(default=False, metadata=_BOOL)
    pretrain_epochs: int = field(default=10, metadata=_int(1, 10_000))
    ials_factors: int = field(default=64, metadata=_int(1, 4096))
    ials_regularization: float = field(default=0.1, metadata=_float(0.0))
    ials_alpha: float = field(default=4.0, metadata=_float(0.0))
    ials_iterations: int = field(default=15, metadata=_int(1, 10_000))
    ials_members: int = field(default=3, metadata=_int(1, 64))
    ease_l2: float = field(default=500.0, metadata=_float(0.0, low_open=True))
    ease_max_items: int = field(default=20_000, metadata=_int(2))
    blend_ease_weight: float = field(default=0.5, metadata=_float(0.0, 1.0))
    early_stopping_patience: int = field(default=2, metadata=_int(0, 10_000))
    validation_metric: str = field(default="hr", metadata=_choice("hr", "ndcg"))
    validation_constraint: str | None = field(default=None, metadata=_OPTIONAL_STR)
    top_k: int = field(default=10, metadata=_int(1, 10_000))
    num_eval_negatives: int = field(default=99, metadata=_int(1, 100_000))
    full_ranking: bool = field(default=True, metadata=_BOOL)
    seed: int = field(default=42, metadata=_int(0, 2**32 - 1))
    distribution: str = field(
        default=MULTI_WORKER_MIRRORED, metadata=_choice(MULTI_WORKER_MIRRORED, CHIEF_ONLY)
    )
    learning_rate_scaling: str = field(default="auto", metadata=_choice(*LEARNING_RATE_SCALINGS))
    collective_timeout: float = field(default=300.0, metadata=_float(0.0))
    min_rating: float | None = field(default=None, metadata=_OPTIONAL_FLOAT)
    user_column: str = field(default="user_id", metadata=_STR)
    item_column: str = field(default="item_id", metadata=_STR)
    rating_column: str = field(default="rating", metadata=_STR)
    timestamp_column: str = field(default="timestamp", metadata=_STR)
    train_uri: str | None = field(default=None, metadata=_OPTIONAL_STR)
    validation_uri: str | None = field(default=None, metadata=_OPTIONAL_STR)
    test_uri: str | None = field(default=None, metadata=_OPTIONAL_STR)
    test_negatives_uri: str | None = field(default=None, metadata=_OPTIONAL_STR)
    # Attribute channels ``items`` and ``users`` (training.attributes).
    items_uri: str | None = field(default=None, metadata=_OPTIONAL_STR)
    users_uri: str | None = field(default=None, metadata=_OPTIONAL_STR)
    item_columns: tuple[str, ...] | None = field(default=None, metadata=_OPTIONAL_NAMES)
    user_columns: tuple[str, ...] | None = field(default=None, metadata=_OPTIONAL_NAMES)
    item_attribute_kinds: dict[str, str] = field(default_factory=dict, metadata=_ATTRIBUTE_KINDS)
    user_attribute_kinds: dict[str, str] = field(default_factory=dict, metadata=_ATTRIBUTE_KINDS)
    attribute_separator: str = field(default="|", metadata=_STR)
    attribute_delimiter: str | None = field(default=None, metadata=_OPTIONAL_STR)
    attribute_encoding: str = field(default="utf-8", metadata=_STR)
    attribute_min_filled: float = field(default=0.5, metadata=_float(0.0, 1.0))
    text_max_features: int = field(default=5000, metadata=_int(1, 1 << 22))
    # Time (training.recency): half-life and window in days of unix-second timestamps.
    recency_half_life: float | None = field(default=None, metadata=_OPTIONAL_POSITIVE)
    trending_window: float | None = field(default=None, metadata=_OPTIONAL_POSITIVE)
    tuning: str = field(default="auto", metadata=_choice("auto", "off"))
    tuning_budget: float = field(default=300.0, metadata=_float(0.0))
    tuning_trials: int = field(default=30, metadata=_int(0, 100_000))
    refit: bool = field(default=True, metadata=_BOOL)
    #: The hyperparameters the job was given explicitly (never searched); not a hyperparameter.
    fixed: frozenset[str] = field(default=frozenset(), metadata={"kind": "internal"})

    @classmethod
    def from_hyperparameters(cls, hyperparameters: Mapping[str, Any]) -> TrainingConfig:
        """Convert decoded hyperparameters (see ``decode_hyperparameters``).

        Raises:
            ConfigError: An unknown name (the message lists the valid ones) or a
                bad value (the message names it, the value received and what is
                allowed).
        """
        specs = {spec.name: spec for spec in fields(cls) if spec.metadata["kind"] != "internal"}
        unknown = sorted(
            name
            for name in hyperparameters
            if name not in specs and not name.startswith(_RESERVED_PREFIXES)
        )
        if unknown:
            raise ConfigError(
                f"unknown hyperparameter(s) {', '.join(unknown)}; "
                f"valid names are: {', '.join(sorted(specs))}"
            )
        values = {
            name: _convert(name, value, specs[name].metadata)
            for name, value in hyperparameters.items()
            if name in specs
        }
        config = cls(**values, fixed=frozenset(values))
        config.check()
        return config

    def check(self) -> None:
        """Cross-field rules.

        Raises:
            ConfigError: The combination is not supported.
        """
        if self.pretrain and self.model_type not in ("neumf", AUTO):
            raise ConfigError(
                f"hyperparameter pretrain=true applies to model_type neumf only, "
                f"got model_type {self.model_type!r}; set model_type=neumf or pretrain=false"
            )
        parse_constraints(self.validation_constraint)
        if self.model_type in IMPLICIT_ONLY_FAMILIES and self.feedback != "implicit":
            raise ConfigError(
                f"model_type {self.model_type} learns from implicit feedback only, got "
                f"feedback {self.feedback!r}; set feedback=implicit (with min_rating to keep "
                "only good ratings) or use model_type gmf, mlp or neumf for ratings"
            )
        if self.loss == SOFTMAX and (
            self.feedback != "implicit" or self.model_type not in (AUTO, *NCF_FAMILIES)
        ):
            raise ConfigError(
                f"hyperparameter loss=softmax trains gmf, mlp or neumf on implicit feedback, got "
                f"model_type {self.model_type!r} with feedback {self.feedback!r}; "
                "set loss=auto or pointwise"
            )
        if self.model_type in ("mlp", "neumf") and self.mlp_layers[0] % 2:
            raise ConfigError(
                f"hyperparameter mlp_layers must start with an even size (it is twice the MLP "
                f"embedding size), got {list(self.mlp_layers)}"
            )

    @property
    def selection_constraints(self) -> tuple[Constraint, ...]:
        """``validation_constraint`` parsed (``training.constraints``); empty without one."""
        return parse_constraints(self.validation_constraint)

    def to_json(self) -> dict[str, Any]:
        """The hyperparameters as plain JSON values (``fixed`` is not one)."""
        values = asdict(self)
        for name in ("mlp_layers", "item_columns", "user_columns"):
            if values[name] is not None:
                values[name] = list(values[name])
        del values["fixed"]
        return values

    @property
    def family(self) -> str:
        """The family to fit without a search: ``model_type``; for auto, gmf (neumf to pretrain)."""
        if self.model_type != AUTO:
            return self.model_type
        return "neumf" if self.pretrain else DEFAULT_FAMILY

    def loss_for(self, family: str) -> str:
        """The loss ``family`` trains with, when no search chooses it.

        ``auto`` lets the in-job search choose between the two for GMF trials
        (``training.search``); a fit without a search uses the pointwise loss, which ranked
        as well on validation on MovieLens-1M and better on ml-1m-half at the default
        settings, in a third of the time (BENCHMARKS.md). The families that are not trained
        by gradient descent (and the hybrid) ignore it.
        """
        if family not in NCF_FAMILIES or self.feedback != "implicit" or self.loss == AUTO:
            return POINTWISE
        return self.loss

    @property
    def searches(self) -> bool:
        """Whether the job runs a hyperparameter search before its final fit."""
        return self.tuning == "auto" and (self.tuning_trials > 0 and self.tuning_budget > 0)


def _bad(name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"hyperparameter {name}={value!r} is not valid: expected {allowed}")


def _convert(name: str, value: Any, spec: Mapping[str, Any]) -> Any:  # noqa: PLR0911, PLR0912
    kind = spec["kind"]
    if kind == "choice":
        if value not in spec["allowed"]:
            raise _bad(name, value, f"one of {', '.join(spec['allowed'])}")
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _bad(name, value, "true or false")
    if kind in ("str", "optional_str"):
        if value is None and kind == "optional_str":
            return None
        if not isinstance(value, str) or not value:
            raise _bad(name, value, "a non-empty string")
        return value
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        low, high = spec["low"], spec["high"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(name, value, f"an integer ≥ {low}")
        if value < low or (high is not None and value > high):
            raise _bad(name, value, f"an integer in [{low}, {high}]" if high else f"≥ {low}")
        return value
    if kind in ("float", "optional_float"):
        if value is None and kind == "optional_float":
            return None
        if isinstance(value, str) and kind == "optional_float" and value.lower() == "none":
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(name, value, "a number")
        if not math.isfinite(value):
            raise _bad(name, value, "a finite number (not NaN or infinity)")
        low, high = spec.get("low"), spec.get("high")
        if low is not None and (value < low or (spec.get("low_open") and value == low)):
            bound = f"> {low}" if spec.get("low_open") else f"≥ {low}"
            raise _bad(name, value, f"a number {bound}")
        if high is not None and value > high:
            raise _bad(name, value, f"a number ≤ {high}")
        return float(value)
    if kind in ("optional_names", "attribute_kinds"):
        return _convert_attribute_setting(name, value, kind)
    if kind == "layers":
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, str):  # "64,32,16" as a convenience
            try:
                value = [int(part) for part in value.replace(" ", "").split(",") if part]
            except ValueError:
                raise _bad(name, value, "a list of positive integers, e.g. [64, 32, 16]") from None
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            raise _bad(name, value, "a list of positive integers, e.g. [64, 32, 16]")
        return tuple(value)
    raise AssertionError(f"unknown spec kind {kind}")


def _convert_attribute_setting(name: str, value: Any, kind: str) -> Any:
    """``item_columns`` / ``user_columns`` and ``*_attribute_kinds`` values."""
    if kind == "optional_names":
        if value is None:
            return None
        if isinstance(value, str):  # "item_id,title,genres" as a convenience
            value = [part.strip() for part in value.split(",")]
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v for v in value)
            or len(set(value)) != len(value)
        ):
            raise _bad(name, value, 'a list of distinct column names, e.g. ["item_id", "title"]')
        return tuple(value)
    if kind == "attribute_kinds":
        if isinstance(value, str):  # JSON text, as SageMaker passes every hyperparameter
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        if not isinstance(value, dict) or not all(
            isinstance(column, str) and kind_ in ATTRIBUTE_KINDS for column, kind_ in value.items()
        ):
            raise _bad(
                name,
                value,
                f"an object of column name to one of {', '.join(ATTRIBUTE_KINDS)}, "
                'e.g. {"title": "text"}',
            )
        return dict(value)
    raise AssertionError(f"unknown spec kind {kind}")
