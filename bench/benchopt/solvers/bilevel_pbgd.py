"""PBGD from the `bilevel` package as a solver of benchopt's bilevel benchmark
(benchmark_bilevel). Copy this file into the benchmark's `solvers/` folder.

The benchmark's oracles f_inner(inner_var, outer_var, start, batch_size) and
f_outer(...) are JAX functions; `jax.value_and_grad` gives their values and gradients and
`bilevel.Problem.from_functions` hands them to the Rust solver with u = outer_var,
v = inner_var. Each `callback()` of benchopt's loop is followed by `n_iter_per_callback` PBGD
iterations continued from the current point (a restart of the run: the point carries over, the
inner loop's warm start does not).
"""

from benchopt import BaseSolver

try:  # benchopt >= 1.5 deprecates safe_import_context
    from benchopt import safe_import_context
except ImportError:  # pragma: no cover
    safe_import_context = None


def _imports():
    global np, jax, bilevel, partial
    import numpy as np
    import jax
    import bilevel
    from functools import partial


if safe_import_context is not None:
    with safe_import_context() as import_ctx:
        _imports()
else:  # pragma: no cover
    _imports()


class Solver(BaseSolver):
    """Penalty-based bilevel gradient descent (Xiao & Chen, ICLR 2025), in Rust."""

    name = "bilevel-PBGD"
    requirements = ["pip:bilevel", "pip:jax"]
    sampling_strategy = "callback"
    parameters = {
        "gamma": [10.0],
        "update": ["jacobi"],
        "inner_steps": [10],
        "n_iter_per_callback": [10],
    }

    def set_objective(
        self, f_inner, f_outer, n_inner_samples, n_outer_samples, inner_var0, outer_var0
    ):
        f_in = partial(f_inner, start=0, batch_size=n_inner_samples)
        f_out = partial(f_outer, start=0, batch_size=n_outer_samples)
        self.shapes = (np.shape(inner_var0), np.shape(outer_var0))
        self.inner_var0 = np.asarray(inner_var0, dtype=np.float64).ravel()
        self.outer_var0 = np.asarray(outer_var0, dtype=np.float64).ravel()
        vg_in = jax.jit(jax.value_and_grad(f_in, argnums=(0, 1)))
        vg_out = jax.jit(jax.value_and_grad(f_out, argnums=(0, 1)))
        s_in, s_out = self.shapes

        def oracle(vg):
            def fun(u, v):
                val, (g_inner, g_outer) = vg(v.reshape(s_in), u.reshape(s_out))
                return float(val), np.ravel(g_outer), np.ravel(g_inner)

            return fun

        self.problem = bilevel.Problem.from_functions(
            self.outer_var0.size, self.inner_var0.size, oracle(vg_out), oracle(vg_in),
            name="benchopt",
        )
        self.solver = bilevel.solvers.Pbgd(
            update=self.update, gamma=self.gamma, inner="gd", inner_steps=self.inner_steps
        )

    def run(self, callback):
        u, v = self.outer_var0.copy(), self.inner_var0.copy()
        self._set(u, v)
        while callback():
            res = bilevel.run(
                self.problem, self.solver, start=(u, v),
                max_iter=self.n_iter_per_callback, record_every=self.n_iter_per_callback,
            )
            if res.status == "diverged":
                break
            u, v = res.u, res.v
            self._set(u, v)

    def _set(self, u, v):
        s_in, s_out = self.shapes
        self.inner_var, self.outer_var = v.reshape(s_in), u.reshape(s_out)

    def get_result(self):
        return dict(inner_var=self.inner_var, outer_var=self.outer_var)
