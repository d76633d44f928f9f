"""Per-call cost of the Python boundary of Problem.from_functions.

Runs Example 1 (f = ½(u − 2 sin v)², g = ½(u − v)²) three ways: the built-in Rust problem,
the same problem from Python callables inside bilevel.run, and the callables alone in a Python
loop. (Python run − Python loop) / calls is the cost of the boundary per call (taking the GIL,
two NumPy arrays in, the tuple and gradients out).

    python examples/python/boundary_overhead.py [dim]
"""

import sys
import time

import numpy as np

import bilevel

D = int(sys.argv[1]) if len(sys.argv) > 1 else 1


def f(u, v):
    r = u - 2.0 * np.sin(v)
    return 0.5 * float(r @ r), r, -2.0 * np.cos(v) * r


def g(u, v):
    d = u - v
    return 0.5 * float(d @ d), d, -d


def best(fn, reps=5):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), out


ITERS = 20000
solver = bilevel.solvers.Pbgd(gamma=10.0, inner="exact")
opts = dict(start=(np.full(D, 3.0), np.full(D, -3.0)), max_iter=ITERS, record_every=ITERS)

problem = bilevel.Problem.from_functions(D, D, f, g, ll_solution=lambda u: u, smoothness=(1, 1, 1))
c0 = problem.calls
t_py, _ = best(lambda: bilevel.run(problem, solver, **opts), reps=3)
calls = (problem.calls[0] - c0[0] + problem.calls[1] - c0[1]) // 3

u, v = np.full(D, 3.0), np.full(D, -3.0)
n_f, n_g = problem.calls[0] // 3, problem.calls[1] // 3
def loop():
    for _ in range(n_f // 1):
        f(u, v)
    for _ in range(n_g):
        g(u, v)
t_loop, _ = best(loop, reps=3)
if D == 1:
    t_rust, _ = best(lambda: bilevel.run(bilevel.problems.Example1(), solver, **opts))
    print(f"built-in Rust Example 1: {t_rust / ITERS * 1e6:.2f} µs per iteration")
print(f"dim {D}: {ITERS} iterations, {calls} Python calls ({calls / ITERS:.1f} per iteration)")
print(f"Python problem in bilevel.run: {t_py / ITERS * 1e6:.2f} µs per iteration")
print(f"the callables alone: {t_loop / calls * 1e6:.2f} µs per call")
print(f"boundary overhead: {(t_py - t_loop) / calls * 1e6:.2f} µs per call")
