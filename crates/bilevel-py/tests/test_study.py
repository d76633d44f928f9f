"""bilevel.study: many starts, any concurrent.futures executor, identical results."""

import concurrent.futures as cf
import multiprocessing as mp

import numpy as np
import pytest

import bilevel
from bilevel import problems as P
from bilevel import solvers as S

PROBLEM = P.Quadratic(3, 4, seed=1)
SOLVER = S.Pbgd(gamma=10.0)


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.seed == y.seed
        np.testing.assert_array_equal(x.u, y.u)
        np.testing.assert_array_equal(x.v, y.v)
        for c in x.columns:
            if c != "time_s":
                np.testing.assert_array_equal(x.trace[c], y.trace[c])


def test_study_matches_single_runs():
    res = bilevel.study(PROBLEM, SOLVER, starts=4, seed=7, box=(-2.0, 2.0), max_iter=50)
    assert [r.seed for r in res] == [7, 8, 9, 10]
    # Start i is the i-th uniform draw of the seed, run with seed + i.
    points = bilevel._core.uniform_starts(PROBLEM.build(), 7, 4, -2.0, 2.0)
    singles = [
        bilevel.run(PROBLEM, SOLVER, seed=7 + i, start=pt, max_iter=50) for i, pt in enumerate(points)
    ]
    _same(res, singles)
    explicit = bilevel.study(PROBLEM, SOLVER, starts=points[1:2], seed=8, max_iter=50)
    _same(explicit, singles[1:2])


def _processes(max_workers):
    # spawn, not fork: this process runs Rust (rayon) and, in the same pytest session, JAX
    # threads; forking a multithreaded process can deadlock the child.
    return cf.ProcessPoolExecutor(max_workers=max_workers, mp_context=mp.get_context("spawn"))


@pytest.mark.parametrize("pool", [cf.ThreadPoolExecutor, _processes], ids=["threads", "processes"])
def test_executors_give_identical_results(pool):
    ref = bilevel.study(PROBLEM, SOLVER, starts=5, seed=3, max_iter=40)
    with pool(max_workers=2) as ex:
        got = bilevel.study(PROBLEM, SOLVER, starts=5, seed=3, max_iter=40, executor=ex)
    _same(ref, got)


def test_cleaning_arrays_across_processes():
    rng = np.random.default_rng(0)
    X, Xv = rng.normal(size=(40, 3)), rng.normal(size=(15, 3))
    y, yv = rng.integers(0, 2, 40), rng.integers(0, 2, 15)
    p = P.Cleaning(X, np.array(["a", "b"])[y], Xv, np.array(["a", "b"])[yv])
    s = S.Pbgd(update="gauss-seidel", gamma=10.0)
    ref = bilevel.study(p, s, starts=3, max_iter=30)
    with _processes(2) as ex:
        got = bilevel.study(p, s, starts=3, max_iter=30, executor=ex)
    _same(ref, got)
    np.testing.assert_array_equal(ref[2].sample_weights, got[2].sample_weights)


def test_dask_local_cluster():
    distributed = pytest.importorskip(
        "dask.distributed", reason="dask[distributed] is not installed (pip install 'dask[distributed]')"
    )
    ref = bilevel.study(PROBLEM, SOLVER, starts=4, seed=11, max_iter=40)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            got = bilevel.study(PROBLEM, SOLVER, starts=4, seed=11, max_iter=40, executor=client.get_executor())
    _same(ref, got)
