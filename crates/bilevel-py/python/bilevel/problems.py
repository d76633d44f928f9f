"""The problems bilevel solves: the shipped ones (with the settings of `bilevel run`'s
`[problem]` table, see docs/cli.md) and your own from Python functions.

A problem object only holds settings and arrays (it pickles, so studies can ship it to other
processes); the Rust problem is built by the CLI's config code at each run, so every run starts
from the same state and matches `bilevel run` bit for bit. Keys left at ``None`` take the CLI's
defaults.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from . import _core
from ._checks import as_matrix, label_codes

__all__ = [
    "Problem",
    "Example1",
    "Toy1d",
    "Quadratic",
    "Replearn",
    "Cleaning",
    "FunctionProblem",
]


class Problem:
    """Base class of bilevel problems: min_u f(u, v*(u)) with v*(u) ∈ argmin_v g(u, v).

    Use a shipped problem (:class:`Example1`, :class:`Toy1d`, :class:`Quadratic`,
    :class:`Replearn`, :class:`Cleaning`) or :meth:`Problem.from_functions`.
    """

    kind: str = ""

    def _table(self) -> Dict[str, Any]:
        raise NotImplementedError

    def _data(self) -> Optional[Dict[str, Any]]:
        return None

    def _user(self) -> Optional[Any]:
        return None

    def build(self, rule: bool = False, max_iter: Optional[int] = None) -> "_core.BuiltProblem":
        """Builds the Rust problem (settings checked by the CLI's config code; a bad setting
        raises ValueError with the CLI's message). ``rule=True`` (hyper-cleaning on arrays)
        builds it under the data-driven defaults rule of `bilevel run`, which then supplies the
        solver, its steps, the start and the stop; ``max_iter`` replaces the rule's guard."""
        return _core.build_problem(self._table(), self._data(), self._user(), rule, max_iter)

    @property
    def dims(self) -> Tuple[int, int]:
        """(dim_u, dim_v)."""
        b = self.build()
        return b.dim_u, b.dim_v

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self._table().items() if k != "kind")
        return f"{type(self).__name__}({items})"

    @staticmethod
    def from_functions(
        dim_u: int,
        dim_v: int,
        f: Callable[[np.ndarray, np.ndarray], Tuple[float, Any, Any]],
        g: Callable[[np.ndarray, np.ndarray], Tuple[float, Any, Any]],
        *,
        ll_solution: Optional[Callable[[np.ndarray], Any]] = None,
        smoothness: Optional[Tuple[float, float, float]] = None,
        optimum: Optional[float] = None,
        project_u: Optional[Callable[[np.ndarray], Any]] = None,
        bounds: Optional[Tuple[float, float]] = None,
        name: Optional[str] = None,
    ) -> "FunctionProblem":
        """A problem from Python callables.

        ``f(u, v)`` and ``g(u, v)`` get float64 NumPy vectors and return
        ``(value, grad_u, grad_v)`` (array-likes: NumPy, lists, JAX or torch arrays are
        converted), so ``jax.value_and_grad(fun, argnums=(0, 1))`` fits after a small wrapper.
        Optional hooks unlock more: ``ll_solution(u)`` returns the exact lower-level
        minimizer (``inner="exact"`` and exact g* in the records), ``smoothness`` =
        ``(lf, lg, lg_vv)`` sets the default step sizes, ``optimum`` is the known optimal
        value of f, ``project_u(u)`` returns the projection of u onto its feasible set and
        ``bounds = (lo, hi)`` clips every coordinate of u. Every solver runs on it; each call
        takes the GIL (see docs/performance.md, "Python boundary", for the cost).
        """
        return FunctionProblem(
            dim_u,
            dim_v,
            f,
            g,
            ll_solution=ll_solution,
            smoothness=smoothness,
            optimum=optimum,
            project_u=project_u,
            bounds=bounds,
            name=name,
        )


class _Settings(Problem):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    def _table(self) -> Dict[str, Any]:
        return {"kind": self.kind, **self.settings}


class Example1(_Settings):
    """Example 1 of the paper: f = ½(u − 2 sin v)², g = ½(u − v)² (no settings)."""

    kind = "example1"

    def __init__(self) -> None:
        super().__init__()


class Toy1d(_Settings):
    """The 1-D toy of Shen & Chen with u in the box [lo, hi] (default [0, 3])."""

    kind = "toy1d"

    def __init__(self, lo: Optional[float] = None, hi: Optional[float] = None) -> None:
        super().__init__(lo=lo, hi=hi)


class Quadratic(_Settings):
    """A generated quadratic bilevel problem with closed-form optima: sizes du, dv and the
    data seed (default 0)."""

    kind = "quadratic"

    def __init__(self, du: int, dv: int, seed: Optional[int] = None) -> None:
        super().__init__(du=du, dv=dv, seed=seed)


class Replearn(_Settings):
    """Representation learning with a two-layer linear network: u = W1 (m × h), v = W2
    (h × n), both column-major in the flat vectors (see :attr:`Result.w1`).

    ``Replearn(regime=..., seed=..., ...)`` generates an instance (keys of `bilevel run`:
    regime "certified-global" | "intermediate" | "general", seed, n_trn, n_val, m, h, n,
    noise, cond, scaling "sum" | "mean"); :meth:`from_arrays` takes your data.
    """

    kind = "replearn"

    def __init__(
        self,
        regime: Optional[str] = None,
        seed: Optional[int] = None,
        *,
        n_trn: Optional[int] = None,
        n_val: Optional[int] = None,
        m: Optional[int] = None,
        h: Optional[int] = None,
        n: Optional[int] = None,
        noise: Optional[float] = None,
        cond: Optional[float] = None,
        scaling: Optional[str] = None,
    ) -> None:
        super().__init__(
            regime=regime,
            seed=seed,
            n_trn=n_trn,
            n_val=n_val,
            m=m,
            h=h,
            n=n,
            noise=noise,
            cond=cond,
            scaling=scaling,
        )
        self.arrays: Optional[Dict[str, np.ndarray]] = None

    @classmethod
    def from_arrays(
        cls,
        X: Any,
        Y: Any,
        X_val: Any,
        Y_val: Any,
        h: int,
        *,
        scaling: Optional[str] = None,
    ) -> "Replearn":
        """An instance on data X (N × m), Y (N × n), X_val (N' × m), Y_val (N' × n) with hidden
        width h ≥ m (as `data_dir` and `h` in a config file)."""
        p = cls(h=h, scaling=scaling)
        X = as_matrix("X", X)
        X_val = as_matrix("X_val", X_val)
        p.arrays = {
            "X": X,
            "Y": as_matrix("Y", Y, rows=X.shape[0]),
            "X_val": X_val,
            "Y_val": as_matrix("Y_val", Y_val, rows=X_val.shape[0]),
        }
        return p

    def _data(self) -> Optional[Dict[str, Any]]:
        return self.arrays


class Cleaning(_Settings):
    """Data hyper-cleaning: per-sample weights ψ_i = sigmoid(u_scale · u_i) on the training
    loss of a linear model W (m × classes, the lower level), validation loss as the upper
    level. u has one entry per training sample, v = W column-major.

    ``Cleaning(X, y, X_val, y_val, ...)`` uses your arrays (as ``data = "files"`` in a config
    file): X, X_val are samples × features (any real dtype, converted to float64), y, y_val
    class labels (integers or bools are 0-based class indices as in the CLI's label files;
    strings or other labels are mapped to the sorted distinct labels, see
    :attr:`classes_`). Optional: X_test / y_test, the known corruption mask ``corrupted``
    (enables precision / recall / F1 in the trace), ``classes``. Settings as in
    `bilevel run`: loss "least-squares" | "softmax-cross-entropy", ``lambda_`` (ridge; the
    key ``lambda``), bound, u_scale, exact_solve "auto" | "direct" | "warm-cg".
    :meth:`generated` builds the CLI's generated data sets instead.
    """

    kind = "cleaning"

    def __init__(
        self,
        X: Any,
        y: Any,
        X_val: Any,
        y_val: Any,
        *,
        X_test: Any = None,
        y_test: Any = None,
        corrupted: Any = None,
        classes: Optional[int] = None,
        loss: Optional[str] = None,
        lambda_: Optional[float] = None,
        bound: Optional[float] = None,
        u_scale: Optional[float] = None,
        exact_solve: Optional[str] = None,
    ) -> None:
        super().__init__(
            data="files",
            # Stand-ins for the file names: the arrays below replace the files.
            files={"train_x": "<X>", "train_y": "<y>", "val_x": "<X_val>", "val_y": "<y_val>"},
            loss=loss,
            bound=bound,
            u_scale=u_scale,
            exact_solve=exact_solve,
        )
        self.settings["lambda"] = lambda_
        X = as_matrix("X", X)
        X_val = as_matrix("X_val", X_val, )
        if X_val.shape[1] != X.shape[1]:
            raise ValueError(
                f"`X_val` has {X_val.shape[1]} features but `X` has {X.shape[1]}"
            )
        named = [("y", y, X.shape[0]), ("y_val", y_val, X_val.shape[0])]
        arrays: Dict[str, Any] = {"X": X, "X_val": X_val}
        if (X_test is None) != (y_test is None):
            raise ValueError("give both `X_test` and `y_test`, or neither")
        if X_test is not None:
            Xt = as_matrix("X_test", X_test)
            if Xt.shape[1] != X.shape[1]:
                raise ValueError(
                    f"`X_test` has {Xt.shape[1]} features but `X` has {X.shape[1]}"
                )
            arrays["X_test"] = Xt
            named.append(("y_test", y_test, Xt.shape[0]))
        codes, self.classes_ = label_codes(named)
        arrays["y"], arrays["y_val"] = codes[0], codes[1]
        if X_test is not None:
            arrays["y_test"] = codes[2]
        if corrupted is not None:
            c = np.asarray(corrupted).reshape(-1)
            if c.shape[0] != X.shape[0]:
                raise ValueError(
                    f"`corrupted` has {c.shape[0]} entries but `X` has {X.shape[0]} samples"
                )
            if not (c.dtype == np.bool_ or np.isin(c, [0, 1]).all()):
                raise ValueError("`corrupted` holds booleans (or 0 / 1), one per training sample")
            arrays["corrupted"] = [bool(b) for b in c.tolist()]
        if classes is None and self.classes_ is not None:
            classes = len(self.classes_)
        arrays["classes"] = classes
        self.arrays: Optional[Dict[str, Any]] = arrays

    @classmethod
    def generated(cls, data: str = "clusters", **settings: Any) -> "Cleaning":
        """A generated or packaged data set of `bilevel run`: data = "paper" | "clusters" |
        "fashion-mnist", with its keys (seed, n_trn, n_val, n_test, m, classes, p,
        separation, dir) and the model settings (loss, lambda_, bound, u_scale,
        exact_solve)."""
        p = cls.__new__(cls)
        if "lambda_" in settings:
            settings["lambda"] = settings.pop("lambda_")
        _Settings.__init__(p, data=data, **settings)
        p.arrays = None
        p.classes_ = None
        return p

    def _data(self) -> Optional[Dict[str, Any]]:
        return self.arrays


class FunctionProblem(Problem):
    """A problem defined by Python callables; see :meth:`Problem.from_functions`."""

    kind = "function"

    def __init__(
        self,
        dim_u: int,
        dim_v: int,
        f: Callable[..., Any],
        g: Callable[..., Any],
        **hooks: Any,
    ) -> None:
        self._rust = _core.FunctionProblem(dim_u, dim_v, f, g, **hooks)
        self.dim_u, self.dim_v = dim_u, dim_v

    def _table(self) -> Dict[str, Any]:
        return {"kind": "function", "dim_u": self.dim_u, "dim_v": self.dim_v}

    def _user(self) -> Optional[Any]:
        return self._rust

    @property
    def calls(self) -> Tuple[int, int]:
        """Number of calls of (f, g) so far."""
        return self._rust.calls
