"""One fidelity rule for verify and run --check, routing included."""

from __future__ import annotations

import numpy as np

from edgemoe.host.app.fidelity import budget_misses
from edgemoe.host.app.run import _check_pair

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
