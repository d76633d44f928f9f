//! Data hyper-cleaning (method.md section 7): Figure 4 of the paper (the certified regime)
//! and the realistic cleaning study (Gaussian clusters with label flips, Fashion-MNIST).
//!
//! `fig4`: the paper-regime runs and their claims; `study`: the realistic study, its runs
//! and the Fashion-MNIST settings.

mod fig4;
mod study;

pub use fig4::Fig4;
pub use study::{CleaningStudy, FM_C, FM_GAMMA, FM_ITERS, FM_LAMBDA};

use crate::solvers::Solver;

type MakeSolver = Box<dyn Fn() -> Box<dyn Solver> + Sync>;
