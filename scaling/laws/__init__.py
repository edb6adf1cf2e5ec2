"""Scaling laws: fit, judge by extrapolation, save, reload, plan.

    law = scaling.laws.fit(df, x="params", y="error", form="saturating_power", bootstrap=1000)
    law.predict(1e7); law.solve(0.1); law.interval(1e7); law.save("error_vs_params.json")
    law = scaling.laws.load("error_vs_params.json")

Forms (params keyed by exactly these names):
    power              y = A x^-alpha
    saturating_power   y = E + A x^-alpha           (E in (0, min y]: fit error = 1 - accuracy)
    sigmoid_log        y = R0 + (A - R0) / (1 + (C_mid / x)^B)   (bounded accuracy vs a resource)
    exp_power          y = exp(-a x^-b)             (coverage / pass@k vs k)
    log_linear         y = a + b log x
    chinchilla         y = E + A / N^alpha + B / D^beta,  x = [N, D]
    logistic           y = R0 + (A - R0) / (1 + exp(k (x - x0)))  (accuracy from a task loss x)

Two steps: ``fit_ladder`` (task loss from N and D, then accuracy from the loss; ``Ladder``).
"""

from scaling.errors import LawError
from scaling.laws.forms import FORMS, RESOURCE_FORMS, SINGLE_INPUT_FORMS
from scaling.laws.ladder import Ladder, fit_ladder
from scaling.laws.law import Law
from scaling.laws.planning import Allocation, ComputeOptimal, allocate, compute_optimal
from scaling.laws.saved import load

_FITTING = ("Holdout", "fit", "holdout")  # the fitter compiles with jax: loaded on first use


def __getattr__(name: str):
    if name in _FITTING:
        from scaling.laws import fitting

        return getattr(fitting, name)
    raise AttributeError(f"module 'scaling.laws' has no attribute {name!r}")


__all__ = [
    "FORMS",
    "RESOURCE_FORMS",
    "SINGLE_INPUT_FORMS",
    "Allocation",
    "ComputeOptimal",
    "Holdout",
    "Ladder",
    "Law",
    "LawError",
    "allocate",
    "compute_optimal",
    "fit",
    "fit_ladder",
    "holdout",
    "load",
]
