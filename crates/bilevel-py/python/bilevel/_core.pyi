"""Type stubs of the Rust extension `bilevel._core` (crates/bilevel-py/src)."""

from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

PROBLEM_KINDS: List[Tuple[str, str]]
SOLVER_KINDS: List[Tuple[str, str]]

class BuiltProblem:
    """A problem built by the CLI's config code (or from Python functions)."""

    @property
    def name(self) -> str: ...
    @property
    def dim_u(self) -> int: ...
    @property
    def dim_v(self) -> int: ...
    @property
    def metric_names(self) -> List[str]: ...
    @property
    def family(self) -> str: ...
    @property
    def shape(self) -> List[int]: ...
    def weights(self, u: np.ndarray) -> np.ndarray: ...
    def solution_views(self, u: np.ndarray, v: np.ndarray) -> Dict[str, Any]: ...
    @property
    def defaults_rule(self) -> Optional[List[str]]: ...
    def assess(self, u: np.ndarray, v: np.ndarray) -> Optional[str]: ...
    def f(self, u: np.ndarray, v: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]: ...
    def g(self, u: np.ndarray, v: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]: ...

class FunctionProblem:
    """Rust side of bilevel.Problem.from_functions."""

    def __init__(
        self,
        dim_u: int,
        dim_v: int,
        f: Callable[[np.ndarray, np.ndarray], Any],
        g: Callable[[np.ndarray, np.ndarray], Any],
        ll_solution: Optional[Callable[[np.ndarray], Any]] = None,
        smoothness: Optional[Tuple[float, float, float]] = None,
        optimum: Optional[float] = None,
        project_u: Optional[Callable[[np.ndarray], Any]] = None,
        bounds: Optional[Tuple[float, float]] = None,
        name: Optional[str] = None,
    ) -> None: ...
    @property
    def calls(self) -> Tuple[int, int]: ...

def build_problem(
    problem: Dict[str, Any],
    data: Optional[Dict[str, Any]] = None,
    user: Optional[FunctionProblem] = None,
    rule: bool = False,
    max_iter: Optional[int] = None,
) -> BuiltProblem: ...
def run(problem: BuiltProblem, config: Dict[str, Any], seed: int) -> Dict[str, Any]: ...
def uniform_starts(
    problem: BuiltProblem, seed: int, n: int, lo: float, hi: float
) -> List[Tuple[np.ndarray, np.ndarray]]: ...
def scores(x: np.ndarray, w: np.ndarray, n: int) -> np.ndarray: ...
