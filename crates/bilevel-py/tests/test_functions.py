"""Problem.from_functions: user problems from Python callables, on every solver."""

import numpy as np
import pytest

import bilevel
from bilevel import problems as P
from bilevel import solvers as S


def f(u, v):
    r = u[0] - 2.0 * np.sin(v[0])
    return 0.5 * r * r, np.array([r]), np.array([-2.0 * np.cos(v[0]) * r])


def g(u, v):
    d = u[0] - v[0]
    return 0.5 * d * d, [d], [-d]  # lists are fine


def example1(**hooks):
    return bilevel.Problem.from_functions(1, 1, f, g, **hooks)


def test_matches_builtin_example1():
    kw = dict(box=(-4.0, 4.0), max_iter=500, record_every=10, seed=1)
    mine = bilevel.run(example1(ll_solution=lambda u: u, smoothness=(1.0, 1.0, 1.0)), S.Pbgd(gamma=10.0, inner="exact"), **kw)
    ref = bilevel.run(P.Example1(), S.Pbgd(gamma=10.0, inner="exact"), **kw)
    np.testing.assert_allclose(mine.trace["l_gamma"], ref.trace["l_gamma"], rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(mine.u, ref.u, rtol=1e-9)


SOLVERS = [
    S.Pbgd(gamma=10.0),
    S.Pbgd(update="gauss-seidel", gamma=10.0, inner="gd"),
    S.VPbgd(gamma_start=1.0, gamma_end=10.0, gamma_iters=50),
    S.F2sa(),
    S.Bome(),
    S.Aid(),
    S.Itd(),
]


@pytest.mark.parametrize("solver", SOLVERS, ids=repr)
def test_every_solver_runs(solver):
    p = example1(smoothness=(5.0, 1.0, 1.0))
    res = bilevel.run(p, solver, max_iter=30, box=(-1.0, 1.0))
    assert res.status in ("max-iterations", "converged")
    assert np.isfinite(res.u).all()
    assert p.calls[0] > 0 and p.calls[1] > 0


def test_bounds_and_projection():
    p = example1(bounds=(0.5, 2.0))
    res = bilevel.run(p, S.Pbgd(gamma=10.0), start=([3.0], [0.0]), max_iter=50)
    assert 0.5 <= res.u[0] <= 2.0
    p2 = example1(project_u=lambda u: np.clip(u, 1.0, 1.5))
    res2 = bilevel.run(p2, S.Pbgd(gamma=10.0), start=([3.0], [0.0]), max_iter=50)
    assert 1.0 <= res2.u[0] <= 1.5


def test_python_errors_propagate():
    def bad(u, v):
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError, match="boom"):
        bilevel.run(bilevel.Problem.from_functions(1, 1, bad, g), S.Pbgd(gamma=1.0), max_iter=10)
    with pytest.raises(ValueError, match=r"f's grad_u has 2 entries, expected 1"):
        bilevel.run(
            bilevel.Problem.from_functions(1, 1, lambda u, v: (0.0, [1.0, 2.0], [0.0]), g),
            S.Pbgd(gamma=1.0),
            max_iter=10,
        )
    with pytest.raises(ValueError, match="must return a tuple"):
        bilevel.run(bilevel.Problem.from_functions(1, 1, lambda u, v: 1.0, g), S.Pbgd(gamma=1.0), max_iter=2)
    with pytest.raises(ValueError, match="`f` must be callable"):
        bilevel.Problem.from_functions(1, 1, 3, g)


def test_float32_gradients_are_converted():
    def f32(u, v):
        val, gu, gv = f(u, v)
        return np.float32(val), gu.astype(np.float32), gv.astype(np.float32)

    res = bilevel.run(bilevel.Problem.from_functions(1, 1, f32, g, smoothness=(1.0, 1.0, 1.0)), S.Pbgd(gamma=10.0), max_iter=20)
    assert np.isfinite(res.u).all()
