//! Solvers. Each one implements [`Solver`]: it knows how to take one iteration on any
//! [`Problem`]; the shared run loop ([`crate::run`]) owns everything else (limits, stopping,
//! divergence, records, observers).

mod alt_pbgd;
mod batch;
mod bome;
mod f2sa;
mod hypergrad;
mod pbgd;
mod pbgd_free;
mod rules;
mod value;

pub use alt_pbgd::{AltPbgd, InnerRule, ReducedStep};
pub use batch::Batches;
pub use bome::Bome;
pub use f2sa::F2sa;
pub use hypergrad::{Aid, Itd, LinearSolve};
pub use pbgd::{Pbgd, Update, VBlock};
pub use pbgd_free::PbgdFree;
pub use rules::{GammaSchedule, StepRule, estimate_smoothness, resolve_smoothness};
pub use value::{InnerLoop, ValueFunction};

use crate::error::Result;
use crate::problem::{Problem, Smoothness};
use rand_chacha::ChaCha8Rng;

/// The iterate and the solver-independent context of a run.
#[derive(Debug, Clone)]
pub struct State {
    /// Upper-level variable.
    pub u: Vec<f64>,
    /// Lower-level variable.
    pub v: Vec<f64>,
    /// Completed iterations.
    pub iter: usize,
    /// Seeded randomness for stochastic solvers (mini-batches); derived from the run's seed.
    pub rng: ChaCha8Rng,
}

/// Step sizes in force, reported in divergence errors and traces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steps {
    /// Outer step size α (u block; also v block for Jacobi).
    pub alpha: f64,
    /// Step of the v block when it differs from α.
    pub alpha_v: f64,
    /// Inner (value-function) step β, if an inner loop runs.
    pub beta: Option<f64>,
}

/// One iteration of a bilevel method.
pub trait Solver: Send {
    /// Name with the key settings, for traces and reports.
    fn name(&self) -> String;

    /// Prepares a run from the start state: validates settings against the problem, estimates
    /// smoothness and step sizes.
    fn init(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()>;

    /// Takes one iteration from `state.iter` to `state.iter + 1` (the loop increments `iter`).
    fn step(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()>;

    /// Penalty constant at iteration `iter` (what L_γ in the records uses; 0 for methods on
    /// the nested objective, whose records then show L_0 = f).
    fn gamma(&self, iter: usize) -> f64;

    /// Step sizes in force.
    fn steps(&self) -> Steps;

    /// Smoothness constants in use (after `init`).
    fn smoothness(&self) -> Option<Smoothness> {
        None
    }

    /// The solver's current estimate of a lower-level minimizer at the current u, if it keeps
    /// one (used by the monitor to warm-start its own estimate).
    fn ll_estimate(&self) -> Option<&[f64]> {
        None
    }

    /// Inner-loop configuration, used by the monitor when g* has no closed form.
    fn inner(&self) -> Option<InnerLoop> {
        None
    }
}
