import numpy as np
import pytest

import scaling.laws as sl
from scaling.errors import LawError


def chinchilla_law(E=1.7, A=400.0, B=1500.0, alpha=0.34, beta=0.3):
    rng = np.random.default_rng(0)
    N, D = 10 ** rng.uniform(7, 10, 60), 10 ** rng.uniform(9, 12, 60)
    L = E + A / N**alpha + B / D**beta
    return sl.fit({"N": N, "D": D, "L": L}, ["N", "D"], "L", "chinchilla")


def test_compute_optimal_matches_brute_force_along_the_budget():
    law = chinchilla_law()
    C = 1e21
    opt = sl.compute_optimal(law, C)
    N = np.logspace(6, 13, 200001)
    loss = law.predict(np.column_stack([N, C / (6 * N)]))
    assert float(opt.N_opt) == pytest.approx(N[np.argmin(loss)], rel=1e-3)
    assert float(opt.loss) == pytest.approx(loss.min(), rel=1e-9)
    p = law.params
    assert opt.a == pytest.approx(p["beta"] / (p["alpha"] + p["beta"]))
    # N_opt grows as C^a: doubling the exponent's base.
    two = sl.compute_optimal(law, [C, 1e3 * C])
    assert two.N_opt[1] / two.N_opt[0] == pytest.approx(1e3**opt.a)


def test_compute_optimal_rejects_other_forms():
    x = np.logspace(2, 5, 10)
    with pytest.raises(LawError, match="chinchilla"):
        sl.compute_optimal(sl.fit({"x": x, "y": 3 * x**-0.5}, "x", "y", "power"), 1e20)


def power_law(A, alpha, name):
    x = np.logspace(0, 8, 12)
    return sl.fit({name: x, "err": A * x**-alpha}, name, "err", "power")


def test_allocate_splits_a_budget_like_the_closed_form():
    # err = A x^-a + B z^-b with cost x + z = C: the optimum satisfies a A x^-a / x = b B z^-b / z.
    laws = {"train": power_law(3.0, 0.5, "train"), "test": power_law(2.0, 0.25, "test")}
    alloc = sl.allocate(1e4, laws, {"train": 1.0, "test": 1.0}, goal="min")
    x, z = alloc.amounts["train"], alloc.amounts["test"]
    assert x + z == pytest.approx(1e4)
    assert 0.5 * 3.0 * x**-1.5 == pytest.approx(0.25 * 2.0 * z**-1.25, rel=1e-4)
    grid = np.linspace(1, 1e4 - 1, 100001)
    brute = (3.0 * grid**-0.5 + 2.0 * (1e4 - grid) ** -0.25).min()
    assert alloc.value == pytest.approx(brute, rel=1e-6)
    assert sum(alloc.shares.values()) == pytest.approx(1.0)


def test_allocate_with_costs_and_a_custom_combination():
    # Success needs both stages: accuracy = p_train * p_test; maximise it.
    x = np.logspace(0, 6, 12)
    acc = {n: sl.fit({n: x, "acc": np.exp(-c * x**-0.5)}, n, "acc", "exp_power") for n, c in [("t", 4.0), ("s", 1.0)]}
    alloc = sl.allocate(1e3, acc, {"t": 2.0, "s": lambda z: 0.5 * z}, combine=lambda p: p["t"] * p["s"])
    assert alloc.spend["t"] + alloc.spend["s"] == pytest.approx(1e3)
    assert alloc.amounts["t"] == pytest.approx(alloc.spend["t"] / 2.0)
    better = [
        alloc.value >= acc["t"].predict(f * 500) * acc["s"].predict((1e3 - f * 1e3) * 2) - 1e-12
        for f in np.linspace(0.01, 0.99, 99)
    ]
    assert all(better)


def test_allocate_rejects_mismatched_axes():
    laws = {"a": power_law(1.0, 0.5, "a")}
    with pytest.raises(LawError, match="same axes"):
        sl.allocate(10.0, laws, {"b": 1.0})
    with pytest.raises(LawError, match="budget must be positive"):
        sl.allocate(-1.0, laws, {"a": 1.0})


def test_cheapest_mix_minimises_train_plus_inference_compute():
    from scaling.laws.planning import cheapest_mix

    C = np.geomspace(1e11, 1e15, 12)
    a, alpha, Q = 1.45e12, 0.8, 1e6
    frontier = sl.fit({"C": C, "tokens": a * C**-alpha}, "C", "tokens", "power", bootstrap=50)
    N = lambda c: np.sqrt(c / 120.0)  # noqa: E731  (20 tokens per parameter: C = 6 N * 20 N)
    mix = cheapest_mix(frontier, N, queries=Q, flops_range=(1e11, 1e16))
    # total = C + k C^(1/2 - alpha), k = 2 Q a / sqrt(120): the minimum is at C = ((alpha - 1/2) k)^(1 / (1/2 + alpha))
    k = 2 * Q * a / np.sqrt(120.0)
    expected = ((alpha - 0.5) * k) ** (1 / (0.5 + alpha))
    assert 1e12 < expected < 1e14
    assert mix.train_flops == pytest.approx(expected, rel=0.01)
    assert mix.total_flops == pytest.approx(expected + k * expected ** (0.5 - alpha), rel=0.01)
    assert mix.tokens == pytest.approx(a * expected**-alpha, rel=0.02)
    lo, hi = mix.train_flops_interval
    assert lo <= mix.train_flops * 1.01 and mix.train_flops <= hi * 1.01
    assert cheapest_mix(frontier, N, queries=0, flops_range=(1e11, 1e16)).train_flops == pytest.approx(1e11)
