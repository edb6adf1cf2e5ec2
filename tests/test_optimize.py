import jax
import jax.numpy as jnp
import numpy as np

from scaling.laws.optimize import minimize_batch


def rosenbrock(x, scale):
    return scale * (1.0 - x[0]) ** 2 + 100.0 * scale * (x[1] - x[0] ** 2) ** 2


def test_batched_bfgs_solves_rosenbrock_from_every_start():
    starts = np.random.default_rng(0).uniform(-2, 2, size=(64, 2))
    with jax.enable_x64(True):
        res = jax.jit(lambda x0, s: minimize_batch(rosenbrock, x0, shared=(s,), maxiter=500))(
            jnp.asarray(starts), jnp.float64(1.0)
        )
    x = np.asarray(res.x_IxJ)
    assert np.asarray(res.converged_I).all()
    np.testing.assert_allclose(x, np.ones_like(x), atol=1e-6)


def test_per_start_arguments_give_each_start_its_own_problem():
    # minimise sum_i w_i (x - c_i)^2: the minimiser is the w-weighted mean of c.
    c = jnp.array([0.0, 1.0, 4.0])
    w = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [2.0, 1.0, 1.0]])

    def f(x, w_row, c):
        return jnp.sum(w_row * (x[0] - c) ** 2)

    with jax.enable_x64(True):
        res = minimize_batch(f, jnp.zeros((3, 1)), per_start=(jnp.asarray(w),), shared=(c,), maxiter=100)
    np.testing.assert_allclose(np.asarray(res.x_IxJ)[:, 0], (w @ np.asarray(c)) / w.sum(1), atol=1e-8)


def test_non_finite_start_is_marked_not_converged():
    with jax.enable_x64(True):
        res = minimize_batch(lambda x: jnp.sum(jnp.log(x) ** 2), jnp.array([[-1.0], [2.0]]), maxiter=100)
    assert np.isinf(np.asarray(res.f_I)[0]) and not bool(res.converged_I[0])
    assert abs(float(res.x_IxJ[1, 0]) - 1.0) < 1e-6
