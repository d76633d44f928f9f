"""bilevel.HyperCleaner: data hyper-cleaning with scikit-learn's estimator conventions."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from . import _core
from ._checks import as_matrix, label_codes
from ._run import Result, run
from .problems import Cleaning

__all__ = ["HyperCleaner"]


class HyperCleaner:
    """Learns a weight per training sample so that a linear model trained on the weighted
    samples does well on a small clean validation set; samples with weight < ½ are flagged
    as untrustworthy (typically mislabelled).

    ``fit(X, y, X_val, y_val)`` runs PBGD on the cleaning problem built by the CLI's config
    code. With no solver (the default) it is `bilevel run`'s data-driven defaults rule for a
    cleaning config without ``[solver]``: features scaled by their training standard
    deviation, λ = 0.1 N, γ = 100 N'/N, Gauss–Seidel PBGD with the exact lower-level blocks,
    the u step from the first gradient and a stop at half the starting stationarity, all from
    the training and validation data only (docs/cleaning.md, "Defaults and how each is
    chosen"); every setting given explicitly replaces the rule's value. Labels may be integers,
    bools or strings; ``classes_`` holds the sorted distinct labels of y and y_val.

    Parameters
    ----------
    loss : "least-squares" | "softmax-cross-entropy" | None
    lambda_ : ridge λ ≥ 0 on the model (the config key ``lambda``)
    bound, u_scale, exact_solve : as the config keys
    solver : a :mod:`bilevel.solvers` object or dict; None (default) means the defaults rule
    max_iter, record_every, grad_tol, rel_tol, max_time_s : the `[run]` keys (None: the rule's
        guard of 1000 iterations and a record every iteration, or `bilevel run`'s defaults
        with a solver)
    seed : the run's seed

    Attributes (after fit)
    ----------------------
    sample_weight_ : ψ_i per training sample, in (0, 1)
    flagged_ : boolean mask, True where ψ_i < ½
    coef_ : the model, classes × features (predictions are argmax over X @ coef_.T)
    classes_ : the class labels
    n_features_in_ : number of features
    result_ : the :class:`bilevel.Result` of the run (trace, status)
    defaults_rule_ : what the defaults rule chose, a line per setting (None with a solver)
    """

    def __init__(
        self,
        *,
        loss: Optional[str] = None,
        lambda_: Optional[float] = None,
        bound: Optional[float] = None,
        u_scale: Optional[float] = None,
        exact_solve: Optional[str] = None,
        solver: Any = None,
        max_iter: Optional[int] = None,
        record_every: Optional[int] = None,
        grad_tol: Optional[float] = None,
        rel_tol: Optional[float] = None,
        max_time_s: Optional[float] = None,
        seed: int = 0,
    ) -> None:
        self.loss = loss
        self.lambda_ = lambda_
        self.bound = bound
        self.u_scale = u_scale
        self.exact_solve = exact_solve
        self.solver = solver
        self.max_iter = max_iter
        self.record_every = record_every
        self.grad_tol = grad_tol
        self.rel_tol = rel_tol
        self.max_time_s = max_time_s
        self.seed = seed

    _PARAMS = (
        "loss",
        "lambda_",
        "bound",
        "u_scale",
        "exact_solve",
        "solver",
        "max_iter",
        "record_every",
        "grad_tol",
        "rel_tol",
        "max_time_s",
        "seed",
    )

    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The constructor parameters (scikit-learn convention)."""
        return {k: getattr(self, k) for k in self._PARAMS}

    def set_params(self, **params: Any) -> "HyperCleaner":
        """Sets constructor parameters; returns self (scikit-learn convention)."""
        for k, v in params.items():
            if k not in self._PARAMS:
                raise ValueError(
                    f"Invalid parameter {k!r} for estimator {type(self).__name__}; "
                    f"valid parameters: {', '.join(self._PARAMS)}"
                )
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        init = HyperCleaner()
        changed = [
            f"{k}={getattr(self, k)!r}"
            for k in self._PARAMS
            if getattr(self, k) is not getattr(init, k) and getattr(self, k) != getattr(init, k)
        ]
        return f"HyperCleaner({', '.join(changed)})"

    def _solver(self) -> Any:
        # None: the data-driven defaults rule.
        return self.solver

    def fit(self, X: Any, y: Any, X_val: Any, y_val: Any) -> "HyperCleaner":
        """Learns the sample weights and the model. X, X_val: samples × features; y, y_val:
        class labels (y possibly noisy, y_val trusted). Returns self."""
        X = as_matrix("X", X)
        X_val = as_matrix("X_val", X_val)
        ya = np.asarray(y)
        yv = np.asarray(y_val)
        if ya.ndim != 1 or yv.ndim != 1:
            raise ValueError(
                f"`y` and `y_val` must be 1-D arrays of class labels; got shapes "
                f"{ya.shape} and {yv.shape}"
            )
        try:
            classes = np.unique(np.concatenate([ya, yv]))
        except TypeError as e:
            raise ValueError(f"`y` / `y_val`: labels cannot be sorted: {e}") from None
        if len(classes) < 2:
            raise ValueError(
                f"`y` and `y_val` hold {len(classes)} class(es); at least 2 are needed"
            )
        codes, classes = label_codes(
            [("y", ya, X.shape[0]), ("y_val", yv, X_val.shape[0])], classes=classes
        )
        problem = Cleaning(
            X,
            codes[0],
            X_val,
            codes[1],
            classes=len(classes),
            loss=self.loss,
            lambda_=self.lambda_,
            bound=self.bound,
            u_scale=self.u_scale,
            exact_solve=self.exact_solve,
        )
        res: Result = run(
            problem,
            self._solver(),
            seed=self.seed,
            max_iter=self.max_iter,
            record_every=self.record_every,
            grad_tol=self.grad_tol,
            rel_tol=self.rel_tol,
            max_time_s=self.max_time_s,
        )
        if res.status == "diverged":
            raise RuntimeError(
                f"hyper-cleaning diverged ({res.detail}); try a smaller gamma or step size"
            )
        self.result_ = res
        self.defaults_rule_ = res.defaults_rule
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        self.sample_weight_ = res.sample_weights
        self.flagged_ = self.sample_weight_ < 0.5
        self.coef_ = np.ascontiguousarray(res.model.T)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            try:
                from sklearn.exceptions import NotFittedError
            except ImportError:  # pragma: no cover
                NotFittedError = RuntimeError  # type: ignore[misc,assignment]
            raise NotFittedError(
                "This HyperCleaner instance is not fitted yet; call fit(X, y, X_val, y_val) first"
            )

    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores X @ coef_.T (samples × classes)."""
        self._check_fitted()
        X = as_matrix("X", X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"`X` has {X.shape[1]} features, but HyperCleaner was fitted with "
                f"{self.n_features_in_}"
            )
        w = np.ascontiguousarray(self.coef_.T.reshape(-1, order="F"))
        return _core.scores(X, w, len(self.classes_))

    def predict(self, X: Any) -> np.ndarray:
        """The class of highest score for each row of X."""
        scores = self.decision_function(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def score(self, X: Any, y: Any) -> float:
        """Accuracy of :meth:`predict` on (X, y)."""
        return float(np.mean(self.predict(X) == np.asarray(y)))
