"""bilevel.run, bilevel.study and their Result."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from .problems import Problem
from .solvers import Solver, solver_table

__all__ = ["Result", "run", "study", "RUN_KEYS"]

#: Keys of the `[run]` table accepted as keyword arguments of :func:`run` and :func:`study`.
RUN_KEYS = (
    "max_iter",
    "record_every",
    "grad_tol",
    "rel_tol",
    "target",
    "dist_tol",
    "max_time_s",
    "monitor_inner_steps",
    "divergence_factor",
)


class Result:
    """The outcome of one run.

    Attributes: ``u``, ``v`` (final point; after a divergence the last recorded finite one), ``status``
    ("converged", "max-iterations", "time-limit", "interrupted", "diverged"), ``detail``
    (which tolerance was met, or why it diverged), ``iterations``, ``trace`` (dict of NumPy
    arrays, one per trace column, in :attr:`columns` order, as in the CLI's CSV), ``seed``,
    ``solver`` and ``problem`` (names as in traces), ``trace_csv`` (the CSV text `bilevel
    run` writes). Named views: ``sample_weights``, ``model`` (cleaning), ``w1``, ``w2``
    (representation learning).
    """

    def __init__(self, out: Dict[str, Any], built: "_core.BuiltProblem") -> None:
        self.u: np.ndarray = out["u"]
        self.v: np.ndarray = out["v"]
        self.status: str = out["status"]
        self.detail: str = out["detail"]
        self.iterations: int = out["iterations"]
        self.trace: Dict[str, np.ndarray] = dict(out["trace"])
        self.columns: List[str] = list(out["columns"])
        self.trace_csv: str = out["trace_csv"]
        self.seed: int = out["seed"]
        self.solver: str = out["solver"]
        self.problem: str = out["problem"]
        # What the defaults rule chose (None when a solver was given).
        self.defaults_rule: Optional[List[str]] = built.defaults_rule
        # Named views (the problem's own, as `bilevel run` writes them), computed now so a
        # Result pickles without the Rust problem.
        self._views: Dict[str, Any] = dict(built.solution_views(self.u, self.v))
        self._built = built

    def __getstate__(self) -> Dict[str, Any]:
        # The Rust problem stays behind: a Result crosses processes as NumPy data.
        state = dict(self.__dict__)
        state["_built"] = None
        return state

    def _view(self, name: str) -> np.ndarray:
        try:
            return self._views[name]
        except KeyError:
            raise AttributeError(
                f"`{name}` is not defined for problem {self.problem!r}"
            ) from None

    @property
    def sample_weights(self) -> np.ndarray:
        """Cleaning: ψ_i = sigmoid(u_scale · u_i), one weight in (0, 1) per training sample."""
        return self._view("sample_weights")

    @property
    def model(self) -> np.ndarray:
        """Cleaning: the linear model W (features × classes); scores are X @ W."""
        return self._view("model")

    @property
    def w1(self) -> np.ndarray:
        """Representation learning: the backbone W1 (m × h), u in column-major order."""
        return self._view("w1")

    @property
    def w2(self) -> np.ndarray:
        """Representation learning: the head W2 (h × n), v in column-major order."""
        return self._view("w2")

    @property
    def flagged(self) -> np.ndarray:
        """Cleaning: True for the training samples the solution distrusts (ψ_i < ½)."""
        return self._view("flagged")

    @property
    def views(self) -> Dict[str, Any]:
        """Every named array of the solution (the files `bilevel run` writes beside u and v)."""
        return dict(self._views)

    def assess(self) -> Optional[Dict[str, Any]]:
        """The problem's assessment of this solution, as in `bilevel run`'s report: for cleaning,
        accuracies of the unweighted, oracle, iterate and retrained models, the gap closed and
        the cleaning scores. None when the problem has none."""
        import json

        if self._built is None:
            raise RuntimeError(
                "assess() needs the problem, which a pickled Result does not carry; "
                "call it in the process that ran the solver"
            )
        text = self._built.assess(self.u, self.v)
        return None if text is None else json.loads(text)

    @property
    def last(self) -> Dict[str, float]:
        """The final record as a dict of column → value."""
        return {k: self.trace[k][-1].item() for k in self.columns if len(self.trace[k])}

    def to_pandas(self) -> Any:
        """The trace as a pandas DataFrame (needs pandas, which bilevel does not depend on)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("Result.to_pandas() needs pandas: pip install pandas") from e
        return pd.DataFrame({k: self.trace[k] for k in self.columns})

    def __repr__(self) -> str:
        d = f" ({self.detail})" if self.detail else ""
        return (
            f"Result(problem={self.problem!r}, solver={self.solver!r}, seed={self.seed}, "
            f"status={self.status!r}{d}, iterations={self.iterations})"
        )


def _config(
    solver: Union[Solver, Mapping[str, Any]],
    start: Optional[Tuple[Any, Any]],
    box: Optional[Tuple[float, float]],
    dims: Optional[Tuple[int, int]],
    options: Dict[str, Any],
) -> Dict[str, Any]:
    unknown = sorted(set(options) - set(RUN_KEYS))
    if unknown:
        raise TypeError(
            f"unknown run option(s) {', '.join(unknown)}; allowed: {', '.join(RUN_KEYS)}"
        )
    cfg: Dict[str, Any] = {
        "solver": solver_table(solver),
        "run": {k: v for k, v in options.items() if v is not None},
    }
    if start is not None and box is not None:
        raise ValueError("give either `start` or `box`, not both")
    if start is not None:
        u0, v0 = start
        # Sizes and finiteness are checked by the config code (the CLI's messages).
        cfg["start"] = {
            "u0": np.asarray(u0, dtype=np.float64).reshape(-1).tolist(),
            "v0": np.asarray(v0, dtype=np.float64).reshape(-1).tolist(),
        }
    elif box is not None:
        lo, hi = box
        cfg["start"] = {"box": [float(lo), float(hi)]}
    return cfg


def run(
    problem: Problem,
    solver: Optional[Union[Solver, Mapping[str, Any]]] = None,
    *,
    seed: int = 0,
    start: Optional[Tuple[Any, Any]] = None,
    box: Optional[Tuple[float, float]] = None,
    **options: Any,
) -> Result:
    """Runs `solver` on `problem`, as `bilevel run` runs one seed of a config.

    Without a solver (hyper-cleaning on arrays only) the data-driven defaults rule chooses the
    solver, the scales, γ, the u step, the start and the stop from the training and validation
    data (docs/cleaning.md, "Defaults and how each is chosen"); ``Result.defaults_rule`` lists
    what it chose.

    ``seed`` seeds the run's randomness (and the start point with ``box``). ``start =
    (u0, v0)`` starts from a given point; ``box = (lo, hi)`` draws every coordinate uniformly;
    by default the problem's recommended start (as in `bilevel run`). Keyword options are
    the `[run]` keys: max_iter (default 1000), record_every (1), grad_tol, rel_tol, target,
    dist_tol, max_time_s, monitor_inner_steps (100), divergence_factor (1e8).

    The GIL is released while Rust computes. Ctrl-C stops the run after the current
    iteration and raises KeyboardInterrupt with the partial Result as its ``partial``
    attribute. Bad settings or data raise ValueError with the CLI's message. A divergence is
    not an exception: the Result has status "diverged" and the trace up to it.
    """
    if solver is None:
        # The data-driven defaults rule (hyper-cleaning on arrays), as `bilevel run` without
        # [solver]: settings, steps, start and stop from the training and validation data.
        built = problem.build(rule=True, max_iter=options.get("max_iter"))
        cfg = _config({"kind": "pbgd"}, start, box, (built.dim_u, built.dim_v), options)
        del cfg["solver"]
    else:
        built = problem.build()
        cfg = _config(solver, start, box, (built.dim_u, built.dim_v), options)
    out = _core.run(built, cfg, int(seed))
    res = Result(out, built)
    exc = out.get("interrupt")
    if exc is not None:
        exc.partial = res
        raise exc
    return res


def _run_task(task: Tuple[Problem, Dict[str, Any], int]) -> Result:
    """One start of a study (module level so executors can pickle it)."""
    problem, cfg, seed = task
    built = problem.build()
    out = _core.run(built, cfg, seed)
    res = Result(out, built)
    exc = out.get("interrupt")
    if exc is not None:
        exc.partial = res
        raise exc
    return res


def study(
    problem: Problem,
    solver: Union[Solver, Mapping[str, Any]],
    starts: Union[int, Sequence[Tuple[Any, Any]]] = 8,
    *,
    seed: int = 0,
    box: Tuple[float, float] = (-1.0, 1.0),
    executor: Any = None,
    **options: Any,
) -> List[Result]:
    """Many runs of `solver` on `problem` from many starts, in start order.

    ``starts`` is a number n (n points uniform in ``box``, drawn from ``seed`` as the
    library's many-start studies draw them) or a list of (u0, v0). Start i runs with seed
    ``seed + i``. ``executor`` is any ``concurrent.futures.Executor`` (a process pool, or
    ``dask.distributed.Client.get_executor()`` for a cluster): each task is (problem,
    settings, seed), which pickles, so results are the same as with ``executor=None`` (one
    process, one run after the other), bit for bit. Problems from Python functions hold
    callables and only work with executors that can ship them (threads, or cloudpickle).
    Options are the `[run]` keys as in :func:`run`.
    """
    built = problem.build()
    dims = (built.dim_u, built.dim_v)
    if isinstance(starts, (int, np.integer)):
        if starts < 1:
            raise ValueError(f"starts = {starts}: give at least 1 start")
        lo, hi = box
        points = _core.uniform_starts(built, int(seed), int(starts), float(lo), float(hi))
    else:
        points = list(starts)
        if not points:
            raise ValueError("starts = []: give at least 1 start")
    tasks = [
        (problem, _config(solver, (u0, v0), None, dims, options), int(seed) + i)
        for i, (u0, v0) in enumerate(points)
    ]
    if executor is None:
        return [_run_task(t) for t in tasks]
    return list(executor.map(_run_task, tasks))
