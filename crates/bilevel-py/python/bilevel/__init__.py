"""bilevel: penalty-based bilevel optimization (PBGD, V-PBGD, F²SA, BOME, AID, ITD) in Rust,
from Python with NumPy in and out.

    import bilevel
    res = bilevel.run(bilevel.problems.Example1(), bilevel.solvers.Pbgd(gamma=10), box=(-4, 4))
    res.u, res.v, res.status, res.trace["l_gamma"]

The settings, defaults and error messages are those of the `bilevel run` command's config
files (docs/cli.md); the same settings and seed give the same numbers bit for bit. See
docs/python.md.
"""

from . import problems, solvers
from ._core import PROBLEM_KINDS, SOLVER_KINDS
from ._run import RUN_KEYS, Result, run, study
from .estimator import HyperCleaner
from .problems import Problem

__all__ = [
    "run",
    "study",
    "Result",
    "Problem",
    "HyperCleaner",
    "problems",
    "solvers",
    "RUN_KEYS",
    "PROBLEM_KINDS",
    "SOLVER_KINDS",
]
