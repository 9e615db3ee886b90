"""Selection constraints: parsing ``validation_constraint`` and checking metrics against it."""

from __future__ import annotations

import math

import pytest

from training.constraints import Constraint, all_hold, describe, parse_constraints
from training.errors import ConfigError


def test_parse_one_and_several_terms() -> None:
    assert parse_constraints("coverage>=0.3") == (Constraint("coverage", ">=", 0.3),)
    parsed = parse_constraints(" coverage >= 0.3 , gini<=9e-1")
    assert parsed == (Constraint("coverage", ">=", 0.3), Constraint("gini", "<=", 0.9))
    assert describe(parsed) == "coverage>=0.3,gini<=0.9"
    assert parse_constraints(None) == () == parse_constraints("  ")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("coverage>0.3", "'coverage>0.3' is not"),
        ("coverage=0.3", "is not"),
        ("hr>=0.5", "unknown metric 'hr'"),
        ("ild_attributes>=0.5", "unknown metric"),
        ("coverage>=lots", "finite number"),
        ("coverage>=nan", "finite number"),
        ("coverage>=inf", "finite number"),
        ("coverage>=0.3,", "'' is not"),
    ],
)
def test_bad_constraints_name_the_term(text: str, named: str) -> None:
    with pytest.raises(ConfigError, match="validation_constraint") as error:
        parse_constraints(text)
    assert named in str(error.value)


def test_constraints_hold_only_within_their_bounds() -> None:
    coverage, gini = Constraint("coverage", ">=", 0.3), Constraint("gini", "<=", 0.9)
    assert coverage.holds({"coverage": 0.3}) and not coverage.holds({"coverage": 0.29})
    assert gini.holds({"gini": 0.9}) and not gini.holds({"gini": 0.91})
    assert not coverage.holds({}) and not coverage.holds({"coverage": math.nan})
    assert all_hold((coverage, gini), {"coverage": 0.5, "gini": 0.5})
    assert not all_hold((coverage, gini), {"coverage": 0.5, "gini": 0.95})
    assert all_hold((), {})
