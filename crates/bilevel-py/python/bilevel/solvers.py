"""The solvers, with the settings and defaults of `bilevel run`'s `[solver]` table
(docs/cli.md). A setting left at ``None`` takes the CLI's default; bad settings raise
ValueError with the CLI's message. A plain dict ``{"kind": "pbgd", "gamma": 10}`` works
wherever a solver object does.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

__all__ = [
    "Solver",
    "Pbgd",
    "VPbgd",
    "AltPbgd",
    "PbgdFree",
    "F2sa",
    "Bome",
    "Aid",
    "Itd",
    "solver_table",
]

SmoothnessArg = Optional[Union[Tuple[float, float, float], Mapping[str, float]]]


def _smoothness(s: SmoothnessArg) -> Optional[Dict[str, float]]:
    if s is None:
        return None
    if isinstance(s, Mapping):
        return dict(s)
    lf, lg, lg_vv = s
    return {"lf": lf, "lg": lg, "lg_vv": lg_vv}


class Solver:
    """A solver kind with its settings (the keys of its `[solver]` table)."""

    kind: str = ""

    def __init__(self, **settings: Any) -> None:
        if "smoothness" in settings:
            settings["smoothness"] = _smoothness(settings["smoothness"])
        self.settings = settings

    def table(self) -> Dict[str, Any]:
        """The `[solver]` table: kind and the settings given."""
        return {"kind": self.kind, **{k: v for k, v in self.settings.items() if v is not None}}

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.table().items() if k != "kind")
        return f"{type(self).__name__}({items})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Solver) and self.table() == other.table()


class Pbgd(Solver):
    """Penalty-based bilevel gradient descent on L_γ = f + γ (g − g*).

    update: "jacobi" (default) or "gauss-seidel"; gamma (fixed γ) or a linear ramp
    gamma_start, gamma_end, gamma_iters; at most one step rule: c (α = c/(ℓ_f + γ ℓ_g), default
    0.5), alpha (fixed), alpha0 (α = alpha0·min(1, 1/γ)); v_steps (Gauss–Seidel);
    v_block "gradient" | "exact" (Gauss–Seidel, problems with a closed form; needs u_alpha);
    inner "exact" | "gd" with inner_steps, inner_warm, inner_beta; batch_size (mini-batch
    gradients of g); smoothness = (lf, lg, lg_vv).
    """

    kind = "pbgd"

    def __init__(
        self,
        *,
        update: Optional[str] = None,
        gamma: Optional[float] = None,
        gamma_start: Optional[float] = None,
        gamma_end: Optional[float] = None,
        gamma_iters: Optional[int] = None,
        c: Optional[float] = None,
        alpha: Optional[float] = None,
        alpha0: Optional[float] = None,
        v_steps: Optional[int] = None,
        v_block: Optional[str] = None,
        u_alpha: Optional[float] = None,
        inner: Optional[str] = None,
        inner_steps: Optional[int] = None,
        inner_warm: Optional[bool] = None,
        inner_beta: Optional[float] = None,
        batch_size: Optional[int] = None,
        smoothness: SmoothnessArg = None,
    ) -> None:
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})


class VPbgd(Solver):
    """V-PBGD: Jacobi steps with γ ramped linearly (gamma_start, gamma_end, gamma_iters, all
    required) and α = alpha0 · min(1, 1/γ); inner keys and smoothness as for :class:`Pbgd`."""

    kind = "v-pbgd"

    def __init__(
        self,
        *,
        gamma_start: Optional[float] = None,
        gamma_end: Optional[float] = None,
        gamma_iters: Optional[int] = None,
        alpha0: Optional[float] = None,
        inner: Optional[str] = None,
        inner_steps: Optional[int] = None,
        inner_warm: Optional[bool] = None,
        inner_beta: Optional[float] = None,
        smoothness: SmoothnessArg = None,
    ) -> None:
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})


class F2sa(Solver):
    """F²SA (Kwon et al.): λ ramped from lambda0 (default 1) to lambda_max (default 100) over
    ramp_iters (default 1000); c or alpha; u_step_ratio; inner keys; batch_size; smoothness."""

    kind = "f2sa"

    def __init__(
        self,
        *,
        lambda0: Optional[float] = None,
        lambda_max: Optional[float] = None,
        ramp_iters: Optional[int] = None,
        c: Optional[float] = None,
        alpha: Optional[float] = None,
        u_step_ratio: Optional[float] = None,
        inner: Optional[str] = None,
        inner_steps: Optional[int] = None,
        inner_warm: Optional[bool] = None,
        inner_beta: Optional[float] = None,
        batch_size: Optional[int] = None,
        smoothness: SmoothnessArg = None,
    ) -> None:
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})


class Bome(Solver):
    """BOME (Liu et al.): eta (default 0.5), inner_steps (default 10), report_gamma (default
    10); c or alpha; u_step_ratio; batch_size; smoothness."""

    kind = "bome"

    def __init__(
        self,
        *,
        eta: Optional[float] = None,
        inner_steps: Optional[int] = None,
        report_gamma: Optional[float] = None,
        c: Optional[float] = None,
        alpha: Optional[float] = None,
        u_step_ratio: Optional[float] = None,
        batch_size: Optional[int] = None,
        smoothness: SmoothnessArg = None,
    ) -> None:
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})


class Aid(Solver):
    """Implicit differentiation on F(u) = f(u, v*(u)): solve "cg" (default; iters, tol) or
    "neumann" (terms); inner_steps (default 10), beta; c or alpha (α = c/ℓ_f); smoothness."""

    kind = "aid"

    def __init__(
        self,
        *,
        solve: Optional[str] = None,
        inner_steps: Optional[int] = None,
        iters: Optional[int] = None,
        tol: Optional[float] = None,
        terms: Optional[int] = None,
        beta: Optional[float] = None,
        c: Optional[float] = None,
        alpha: Optional[float] = None,
        smoothness: SmoothnessArg = None,
    ) -> None:
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})


class Itd(Solver):
    """Iterative differentiation through inner_steps (default 10) unrolled lower-level steps
    of size beta; c or alpha; smoothness."""

    kind = "itd"

    def __init__(
        self,
        *,
        inner_steps: Optional[int] = None,
        beta: Optional[float] = None,
        c: Optional[float] = None,
        alpha: Optional[float] = None,
        smoothness: SmoothnessArg = None,
    ) -> None:
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})


class AltPbgd(Solver):
    """ALT-PBGD: projected descent on the reduced penalty F_γ(u) = min_v L_γ(u, v) with a step
    from F_γ's smoothness, which does not shrink with γ (gamma required). v_block / w_block
    "exact" (default where the problem has the closed forms) or "gradient"; inner_steps (a
    fixed count) or the accuracy rule inner_rho (default 0.1) / inner_max_steps (200); c
    (η = c/ℓ_F, default 0.5) or alpha; reduced_smoothness (ℓ_F; default the estimate at the
    start, floored at ℓ_f when a block takes gradient steps); smoothness."""

    kind = "alt-pbgd"

    def __init__(
        self,
        *,
        gamma: Optional[float] = None,
        v_block: Optional[str] = None,
        w_block: Optional[str] = None,
        inner_steps: Optional[int] = None,
        inner_rho: Optional[float] = None,
        inner_max_steps: Optional[int] = None,
        c: Optional[float] = None,
        alpha: Optional[float] = None,
        reduced_smoothness: Optional[float] = None,
        smoothness: SmoothnessArg = None,
    ) -> None:
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})


class PbgdFree(Solver):
    """PBGD-Free: v_steps (default 1) warm steps of size beta on γ⁻¹f + g, then u along
    ∇_u f only (no value function; gamma required); c (η = c/ℓ_f, default 0.5) or alpha;
    smoothness. It can stall where the upper level is not flat: attach the flatness
    diagnostic through `bilevel run` ([observe] flatness = true) to see it."""

    kind = "pbgd-free"

    def __init__(
        self,
        *,
        gamma: Optional[float] = None,
        v_steps: Optional[int] = None,
        beta: Optional[float] = None,
        c: Optional[float] = None,
        alpha: Optional[float] = None,
        smoothness: SmoothnessArg = None,
    ) -> None:
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})


def solver_table(solver: Union[Solver, Mapping[str, Any]]) -> Dict[str, Any]:
    """The `[solver]` table of a solver object or dict."""
    if isinstance(solver, Solver):
        return solver.table()
    if isinstance(solver, Mapping):
        t = dict(solver)
        if "smoothness" in t:
            t["smoothness"] = _smoothness(t["smoothness"])
        return t
    raise TypeError(
        f"solver must be a bilevel.solvers.Solver or a dict with a 'kind'; got {type(solver).__name__}"
    )
