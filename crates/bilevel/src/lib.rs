//! # bilevel
//!
//! Bilevel optimization, min over (u, v) of f(u, v) subject to v ∈ argmin_w g(u, w), solved to
//! global optimality where the theory allows it with penalty-based bilevel gradient descent
//! (PBGD; Xiao & Chen, ICLR 2025), and honest reports of how close a run got elsewhere.
//!
//! The pieces, in the order a newcomer meets them:
//! - [`Problem`]: f, g and their gradients, plus optional certified answers;
//! - [`solvers`]: PBGD with Jacobi and Gauss–Seidel updates, V-PBGD, step and γ rules;
//! - [`run()`]: the one run loop (limits, stopping, divergence, records, observers);
//! - [`trace`]: per-iteration records, written as CSV or JSON;
//! - [`diagnostics`]: gradient checks and PL ratios;
//! - [`problems`]: shipped problems with certified optima.

pub mod data;
pub mod diagnostics;
pub mod error;
pub mod experiments;
mod kernels;
pub mod limits;
pub mod linalg;
pub mod npy;
pub mod penalty;
pub mod problem;
pub mod problems;
pub mod run;
pub mod seeds;
pub mod solution;
pub mod solvers;
pub mod study;
mod team;
pub mod trace;

pub use error::{Error, Result};
pub use problem::{Level, PenaltyOptimum, PenaltyStep, Problem, Smoothness};
pub use run::{RunError, RunOptions, RunOutput, run};
pub use solvers::{GammaSchedule, InnerLoop, Pbgd, Solver, StepRule, Update};
pub use trace::{Observer, Record, Status, Trace};
