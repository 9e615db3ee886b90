"""Selection constraints: bounds on beyond-accuracy metrics that a chosen epoch or trial must meet.

The ``validation_constraint`` hyperparameter is a comma-separated list of
``<metric><op><bound>`` terms, ``op`` one of ``>=`` and ``<=``, ``metric`` one
of the beyond-accuracy metrics of ``training.beyond_accuracy`` measured on the
validation users' top-k lists: ``coverage>=0.3`` picks the most accurate epoch
(and, in a search, trial) whose lists recommend at least 30% of the catalogue;
``coverage>=0.3,gini<=0.9`` asks for both. An epoch that misses a bound is
never selected, however accurate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from training import beyond_accuracy
from training.errors import ConfigError, UserFacingError

#: Metrics a constraint may bound (``ild_attributes`` needs item attributes, which no
#: channel provides yet).
CONSTRAINABLE = tuple(
    name for name in beyond_accuracy.METRIC_NAMES if name != beyond_accuracy.ILD_ATTRIBUTES
)


class ConstraintNotMetError(UserFacingError):
    """No epoch (or trial) met ``validation_constraint``: there is no model to publish."""

    def __init__(
        self, constraints: tuple[Constraint, ...], history: list[dict[str, float]]
    ) -> None:
        closest = []
        for constraint in constraints:
            seen = [
                (record[constraint.metric], int(record["epoch"]))
                for record in history
                if constraint.metric in record
            ]
            if seen:
                pick = max if constraint.operator == ">=" else min
                value, epoch = pick(seen)
                closest.append(f"{constraint.metric} {value:.4g} (epoch {epoch})")
        super().__init__(
            f"no epoch met validation_constraint {describe(constraints)}"
            + (f"; the closest: {', '.join(closest)}" if closest else "")
            + "; relax the bound, or train longer or differently (e.g. more regularization "
            "spreads recommendations), or drop validation_constraint"
        )


_TERM = re.compile(r"^\s*([a-z_]+)\s*(>=|<=)\s*([^\s]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric op bound``, e.g. ``coverage >= 0.3``."""

    metric: str
    operator: str
    bound: float

    def holds(self, metrics: Mapping[str, float]) -> bool:
        """Whether ``metrics[self.metric]`` meets the bound (a missing or NaN value does not)."""
        value = metrics.get(self.metric, math.nan)
        if math.isnan(value):
            return False
        return value >= self.bound if self.operator == ">=" else value <= self.bound

    def __str__(self) -> str:
        return f"{self.metric}{self.operator}{self.bound:g}"


def parse_constraints(text: str | None) -> tuple[Constraint, ...]:
    """The constraints of a ``validation_constraint`` value (``None`` or blank: none).

    Raises:
        ConfigError: A term is not ``<metric><op><bound>``, names an unknown metric or
            has a bound that is not a finite number; the message names the term.
    """
    if text is None or not text.strip():
        return ()
    constraints = []
    for term in text.split(","):
        match = _TERM.match(term)
        if match is None:
            raise ConfigError(
                f"validation_constraint: {term.strip()!r} is not <metric>>=<number> or "
                f"<metric><=<number> (e.g. coverage>=0.3); metrics: {', '.join(CONSTRAINABLE)}"
            )
        metric, operator, raw_bound = match.groups()
        if metric not in CONSTRAINABLE:
            raise ConfigError(
                f"validation_constraint: unknown metric {metric!r} in {term.strip()!r}; "
                f"metrics: {', '.join(CONSTRAINABLE)}"
            )
        try:
            bound = float(raw_bound)
        except ValueError:
            bound = math.nan
        if not math.isfinite(bound):
            raise ConfigError(
                f"validation_constraint: the bound in {term.strip()!r} must be a finite number"
            )
        constraints.append(Constraint(metric, operator, bound))
    return tuple(constraints)


def all_hold(constraints: tuple[Constraint, ...], metrics: Mapping[str, float]) -> bool:
    """Whether every constraint holds for ``metrics`` (true with no constraints)."""
    return all(constraint.holds(metrics) for constraint in constraints)


def describe(constraints: tuple[Constraint, ...]) -> str:
    """The constraints as the hyperparameter spells them (``coverage>=0.3,gini<=0.9``)."""
    return ",".join(str(constraint) for constraint in constraints)
