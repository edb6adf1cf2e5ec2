"""Planning with fitted laws: compute-optimal model size and budget splits between axes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from scaling.errors import LawError
from scaling.laws.law import Law


@dataclass(frozen=True)
class ComputeOptimal:
    """Compute-optimal allocation under C = 6 N D for L = E + A/N^alpha + B/D^beta.

    N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b with a = beta/(alpha+beta), b = alpha/(alpha+beta),
    G = (alpha A / (beta B))^(1/(alpha+beta)). Intervals come from the law's bootstrap draws.
    """

    C: np.ndarray
    N_opt: np.ndarray
    D_opt: np.ndarray
    loss: np.ndarray
    a: float
    b: float
    G: float
    N_interval: tuple[np.ndarray, np.ndarray] | None = None
    D_interval: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def tokens_per_param(self) -> np.ndarray:
        return self.D_opt / self.N_opt


def _optimum(E, A, B, alpha, beta, C):
    s = alpha + beta
    G = (alpha * A / (beta * B)) ** (1.0 / s)
    N = G * (C / 6.0) ** (beta / s)
    D = (C / 6.0) / N
    return N, D, E + A / N**alpha + B / D**beta, G


def compute_optimal(law: Law, C, level: float = 0.95) -> ComputeOptimal:
    """N_opt and D_opt (and the loss there) for compute budget(s) ``C`` under C = 6 N D."""
    if law.form != "chinchilla":
        raise LawError(f"compute_optimal needs a 'chinchilla' law, got {law.form!r}")
    p = law.params
    if p["alpha"] <= 0 or p["beta"] <= 0:
        raise LawError(f"compute_optimal needs positive exponents, got alpha={p['alpha']:.4g}, beta={p['beta']:.4g}")
    C = np.asarray(C, dtype=np.float64)
    if np.any(~np.isfinite(C)) or np.any(C <= 0):
        raise LawError("compute budget C must be positive and finite")
    N, D, loss, G = _optimum(p["E"], p["A"], p["B"], p["alpha"], p["beta"], C)
    s = p["alpha"] + p["beta"]
    N_int = D_int = None
    if law.samples is not None and len(law.samples):
        E, A, B, al, be = (law.samples[:, i : i + 1] for i in range(5))
        with np.errstate(all="ignore"):
            Ns, Ds, _, _ = _optimum(E, A, B, al, be, np.atleast_1d(C)[None, :])
        q = [50 * (1 - level), 50 * (1 + level)]
        N_int = tuple(np.nanpercentile(Ns, q, axis=0))
        D_int = tuple(np.nanpercentile(Ds, q, axis=0))
    return ComputeOptimal(C, N, D, loss, p["beta"] / s, p["alpha"] / s, float(G), N_int, D_int)


@dataclass(frozen=True)
class Allocation:
    """A budget split: the amount of each axis's resource, what it costs, and the predicted metric."""

    budget: float
    amounts: dict[str, float]
    spend: dict[str, float]
    value: float

    @property
    def shares(self) -> dict[str, float]:
        return {k: v / self.budget for k, v in self.spend.items()}


def _cost_fn(name: str, cost) -> Callable[[float], float]:
    if callable(cost):
        return cost
    if not (isinstance(cost, (int, float)) and cost > 0):
        raise LawError(f"cost of axis {name!r} must be a positive number per unit or a callable, got {cost!r}")
    return lambda x: cost * x


def _amount_for(cost: Callable[[float], float], spend: float) -> float:
    """Invert a monotone cost function: the amount of resource that ``spend`` buys."""
    if spend <= 0:
        return 0.0
    lo, hi = 1e-300, 1.0
    while cost(hi) < spend:
        hi *= 2.0
        if hi > 1e300:
            raise LawError("cost function never reaches the budget")
    return float(optimize.brentq(lambda x: cost(x) - spend, lo, hi, rtol=1e-14, xtol=1e-300))


def allocate(
    budget: float,
    laws: Mapping[str, Law],
    costs: Mapping[str, float | Callable[[float], float]],
    combine: Callable[[dict[str, float]], float] | None = None,
    goal: str = "max",
) -> Allocation:
    """Split ``budget`` between axes to maximise (``goal="max"``) or minimise the predicted metric.

    laws: axis -> single-input Law predicting the same metric from that axis's resource.
    costs: axis -> cost per unit of resource (e.g. FLOPs per thinking token) or a monotone
    callable resource -> cost. The metric of a split is ``combine({axis: law.predict(amount)})``;
    the default sums the per-axis predictions, which is right for separable terms such as
    Chinchilla's A/N^alpha + B/D^beta; pass e.g. ``lambda p: p["train"] * p["test"]`` otherwise.
    Spending constraint: sum of costs = budget; every axis gets a positive share.
    """
    if not laws:
        raise LawError("allocate needs at least one law")
    if set(costs) != set(laws):
        raise LawError(f"costs must name the same axes as laws: laws {sorted(laws)}, costs {sorted(costs)}")
    if goal not in ("max", "min"):
        raise LawError(f"goal must be 'max' or 'min', got {goal!r}")
    if not (np.isfinite(budget) and budget > 0):
        raise LawError(f"budget must be positive and finite, got {budget!r}")
    for name, law in laws.items():
        if law.spec.inputs != 1:
            raise LawError(f"law for axis {name!r} must take one input, it takes {law.x}")
    names = list(laws)
    cost_fns = {n: _cost_fn(n, costs[n]) for n in names}
    combine = combine or (lambda preds: float(sum(preds.values())))
    sign = -1.0 if goal == "max" else 1.0

    def split(z: np.ndarray) -> dict[str, float]:
        shares = np.exp(z - np.max(z))
        shares /= shares.sum()
        return {n: budget * s for n, s in zip(names, shares)}

    def evaluate(spend: dict[str, float]) -> tuple[dict[str, float], float]:
        amounts = {n: _amount_for(cost_fns[n], s) for n, s in spend.items()}
        preds = {n: float(laws[n].predict(amounts[n])) for n in names}
        return amounts, float(combine(preds))

    def objective(z):
        return sign * evaluate(split(np.concatenate([[0.0], z])))[1]

    if len(names) == 1:
        z = np.zeros(0)
    else:
        # Coarse search over log-shares, then polish: the objective is smooth but may be flat.
        grid = np.linspace(-12, 12, 49)
        candidates = np.array(np.meshgrid(*[grid] * (len(names) - 1), indexing="ij")).reshape(len(names) - 1, -1).T
        if len(candidates) > 5000:
            candidates = candidates[np.random.default_rng(0).choice(len(candidates), 5000, replace=False)]
        z0 = min(candidates, key=objective)
        z = optimize.minimize(
            objective, z0, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 4000}
        ).x
    spend = split(np.concatenate([[0.0], z]))
    amounts, value = evaluate(spend)
    return Allocation(budget=float(budget), amounts=amounts, spend=spend, value=value)


@dataclass(frozen=True)
class Mix:
    """Cheapest split between training compute and test-time tokens at one accuracy level."""

    train_flops: float
    tokens: float  # test-time tokens per problem
    params: float
    total_flops: float  # train_flops + queries * 2 * params * tokens
    train_flops_interval: tuple[float, float] | None = None
    total_flops_interval: tuple[float, float] | None = None


def cheapest_mix(
    frontier: Law,
    params_for_flops: Callable[[np.ndarray], np.ndarray],
    queries: float,
    flops_range: tuple[float, float],
    level: float = 0.95,
) -> Mix:
    """Minimise total = C + queries * 2 N(C) tokens(C) over training FLOPs C in ``flops_range``.

    frontier: tokens per problem needed for a fixed accuracy as a function of training FLOPs C
    (``scaling analyze``'s ``tradeoff_acc*`` laws); params_for_flops: model size N trained with C
    (inference costs 2 N FLOPs per token); queries: problems solved with the model. With bootstrap
    samples on the law, intervals come from re-solving with every sample.
    """
    if not (queries >= 0 and 0 < flops_range[0] < flops_range[1]):
        raise LawError(f"need queries >= 0 and 0 < lo < hi flops_range, got {queries}, {flops_range}")
    C = np.geomspace(*flops_range, 2001)
    N = np.asarray(params_for_flops(C), float)

    def total(tokens):
        return C + queries * 2.0 * N * tokens

    cost = total(np.asarray(frontier.predict(C), float))
    i = int(np.argmin(cost))
    mix = dict(train_flops=float(C[i]), tokens=float(frontier.predict(C[i])), params=float(N[i]))
    if frontier.samples is None or len(frontier.samples) == 0:
        return Mix(**mix, total_flops=float(cost[i]))
    tokens_per_draw, _ = frontier.predict_draws(C)  # (bootstrap draws, budgets C)
    costs = total(tokens_per_draw)
    best = costs.argmin(axis=1)
    q = [50 * (1 - level), 50 * (1 + level)]
    c_lo, c_hi = np.percentile(C[best], q)
    t_lo, t_hi = np.percentile(costs[np.arange(len(best)), best], q)
    return Mix(**mix, total_flops=float(cost[i]), train_flops_interval=(c_lo, c_hi), total_flops_interval=(t_lo, t_hi))
