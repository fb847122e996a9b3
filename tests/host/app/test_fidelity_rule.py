"""One fidelity rule for verify and run --check, routing included."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edgemoe.host.app.fidelity import budget_misses, compare, within_budget
from edgemoe.host.app.run import _check_pair


@dataclass
class Pair:
    """The two things :func:`compare` reads of a run: tokens and routes."""

    tokens: np.ndarray
    routes: list


BUDGETS = {"rel_rms": 0.05, "cosine": 0.99, "routing_agreement": 0.9}


def test_the_rule_checks_routing_where_there_is_routing():
    assert budget_misses(BUDGETS, 0.01, 0.999) == []
    assert budget_misses(BUDGETS, 0.01, 0.999, routing_agreement=0.95) == []
    assert budget_misses(BUDGETS, 0.01, 0.999, routing_agreement=0.5) == [
        "routing_agreement 0.5000 < 0.9"
    ]
    assert budget_misses(BUDGETS, 0.1, 0.9) == ["rel_rms 0.1 > 0.05", "cosine 0.9000000 < 0.99"]


def test_run_check_fails_on_routing_alone():
    x = np.ones((1, 4, 8))
    same = [np.eye(4, dtype=bool)[None]]
    other = [np.eye(4, dtype=bool)[None, ::-1]]
    ok = _check_pair(x, x, BUDGETS, (same, same))
    assert ok["within_budget"] and "missed" not in ok
    bad = _check_pair(x, x, BUDGETS, (same, other))
    assert not bad["within_budget"]
    assert bad["missed"] == ["routing_agreement 0.0000 < 0.9"]


def test_a_flipped_token_is_the_routing_budgets_not_rel_rms():
    """rel_rms and cosine budget the tokens that route alike; a token that takes another
    expert set is left to the routing budget, and is still reported in the all-token
    figure."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 200, 16))
    out = ref * (1 + 1e-4)
    out[1, 7] = rng.normal(size=16)  # a flipped token: another output altogether
    routes_ref = [np.zeros((2, 200, 4), bool) for _ in range(2)]
    for r in routes_ref:
        r[..., :2] = True
    routes_out = [r.copy() for r in routes_ref]
    routes_out[1][1, 7] = [True, False, True, False]
    m = compare(Pair(ref, routes_ref), Pair(out, routes_out))
    assert m.rel_rms > 0.05 and m.rel_rms_same_route == pytest.approx(1e-4, rel=1e-3)
    assert m.routing_mismatches == 1
    budgets = {"rel_rms": 5e-3, "cosine": 0.99995, "routing_agreement": 0.99}
    assert within_budget(m, budgets) == []
    # more flips than the routing budget allows: missed
    assert within_budget(m, {**budgets, "routing_agreement": 0.9999}) != []
    # an arithmetic error on tokens that route alike is not excused
    out[0, 3] += 1.0
    m = compare(Pair(ref, routes_ref), Pair(out, routes_out))
    assert any("rel_rms" in x for x in within_budget(m, budgets))
