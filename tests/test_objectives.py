import math

import pytest

from search.objectives import (FAILED, FEASIBLE, INFEASIBLE, Constraint, Fitness, Objective, ObjectiveSet,
                               crowding_distance, dominates, hypervolume_2d, non_dominated_sort, pareto_indices)


def test_objective_parse_forms():
    assert Objective.parse("accuracy") == Objective("accuracy", "max")
    assert Objective.parse("min:params") == Objective("params", "min")
    assert Objective.parse({"name": "latency_ms", "direction": "min"}).signed(3.0) == -3.0
    with pytest.raises(ValueError, match="direction"):
        Objective("x", "down")  # type: ignore[arg-type]


def test_constraint_parse_and_relative_violation():
    c = Constraint.parse("params<=1e6")
    assert (c.name, c.op, c.limit) == ("params", "<=", 1e6)
    assert c.violation({"params": 5e5}) == 0
    assert c.violation({"params": 1.5e6}) == pytest.approx(0.5)
    assert Constraint.parse("acc >= 90").violation({"acc": 81}) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="NAME<=LIMIT"):
        Constraint.parse("params = 3")
    with pytest.raises(KeyError, match="reported no 'params'"):
        c.violation({"accuracy": 1.0})


def test_fitness_tiers_order_failed_below_infeasible_below_feasible():
    objectives = ObjectiveSet.coerce({"objectives": ["accuracy"], "constraints": ["params<=100"]})
    ok = objectives.fitness({"accuracy": 10.0, "params": 50, "status": "ok"})
    big = objectives.fitness({"accuracy": 99.0, "params": 150})
    bigger = objectives.fitness({"accuracy": 99.0, "params": 300})
    failed = objectives.fitness({"status": "failed", "error": "boom"})
    nan = objectives.fitness({"accuracy": math.nan, "params": 1})
    assert ok == Fitness(FEASIBLE, 10.0)
    assert big.tier == INFEASIBLE and failed.tier == FAILED and nan.tier == FAILED
    assert failed < bigger < big < ok


def test_minimised_objective_is_negated():
    objectives = ObjectiveSet.coerce(["min:latency_ms", "accuracy"])
    assert objectives.fitness({"latency_ms": 2.0, "accuracy": 1}) > objectives.fitness({"latency_ms": 3.0,
                                                                                      "accuracy": 1})
    assert objectives.vector({"latency_ms": 2.0, "accuracy": 0.5}) == (-2.0, 0.5)


def test_dominance_and_non_dominated_sort():
    assert dominates((2, 2), (1, 2)) and not dominates((2, 2), (2, 2)) and not dominates((3, 1), (1, 3))
    points = [(1, 5), (2, 4), (3, 3), (1, 1), (2, 2), (0, 0), (3, 3)]
    assert non_dominated_sort(points) == [[0, 1, 2, 6], [4], [3], [5]]
    assert non_dominated_sort([]) == []


def test_crowding_distance_boundaries_infinite_and_interior_normalised():
    points = [(0.0, 4.0), (1.0, 3.0), (3.0, 1.0), (4.0, 0.0)]
    d = crowding_distance(points, [0, 1, 2, 3])
    assert d[0] == math.inf and d[3] == math.inf
    assert d[1] == pytest.approx(3 / 4 + 3 / 4)
    assert d[2] == pytest.approx(3 / 4 + 3 / 4)
    assert crowding_distance(points, [1, 2]) == {1: math.inf, 2: math.inf}


def test_pareto_indices_skip_failed_and_infeasible():
    objectives = ObjectiveSet.coerce({"objectives": ["accuracy", "min:params"], "constraints": ["params<=10"]})
    records = [{"accuracy": 0.9, "params": 8}, {"accuracy": 0.8, "params": 2}, {"accuracy": 0.7, "params": 5},
               {"accuracy": 0.99, "params": 50}, {"status": "failed"}, {"accuracy": 0.9, "params": 9}]
    assert pareto_indices(records, objectives) == [0, 1]


def test_hypervolume_2d():
    assert hypervolume_2d([(1, 3), (2, 2), (3, 1)], (0, 0)) == pytest.approx(6.0)
    assert hypervolume_2d([(1, 1), (1, 1)], (0, 0)) == pytest.approx(1.0)
    assert hypervolume_2d([(-1, 5)], (0, 0)) == 0.0
