//! The value-function estimate: a lower-level point w ≈ w*(u) whose g(u, w) stands for g*(u)
//! and whose ∇_u g(u, w) stands for ∇g*(u) (Danskin).

use crate::error::{Error, Result};
use crate::problem::{Problem, eval_g};
use serde::{Deserialize, Serialize};

/// How w is obtained at each outer iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum InnerLoop {
    /// The problem's exact lower-level solution (error if it has none).
    Exact,
    /// `steps` gradient steps on g(u, ·) with step β (None: 1/ℓ_{g,vv}), started from the
    /// previous w (`warm`) or from 0 (cold).
    Gd {
        steps: usize,
        warm: bool,
        beta: Option<f64>,
    },
}

impl InnerLoop {
    /// Exact where the problem can, else 10 warm gradient steps.
    pub fn default_for(problem: &dyn Problem) -> Self {
        if problem.has_ll_solution() {
            InnerLoop::Exact
        } else {
            InnerLoop::Gd {
                steps: 10,
                warm: true,
                beta: None,
            }
        }
    }
}

/// A value-function estimator with its own w buffer.
#[derive(Debug, Clone)]
pub struct ValueFunction {
    /// The configuration.
    pub inner: InnerLoop,
    /// Inner step β in use (Gd only).
    pub beta: f64,
    /// Current estimate of w*(u).
    pub w: Vec<f64>,
    gv: Vec<f64>,
}

impl ValueFunction {
    /// Validates the configuration against the problem. `lg_vv` sets the default β.
    pub fn new(problem: &dyn Problem, inner: InnerLoop, lg_vv: f64) -> Result<Self> {
        let beta = match inner {
            InnerLoop::Exact => {
                if !problem.has_ll_solution() {
                    return Err(Error::Unsupported(format!(
                        "problem {} has no exact lower-level solution; use an inner gradient loop (inner = gd)",
                        problem.name()
                    )));
                }
                0.0
            }
            InnerLoop::Gd { steps, beta, .. } => {
                if steps == 0 {
                    return Err(Error::setting(
                        "inner steps",
                        0,
                        "at least 1 inner gradient step is needed",
                    ));
                }
                let b = beta.unwrap_or(1.0 / lg_vv);
                crate::error::check_positive("inner step beta", b)?;
                b
            }
        };
        let n = problem.dim_v();
        Ok(ValueFunction {
            inner,
            beta,
            w: vec![0.0; n],
            gv: vec![0.0; n],
        })
    }

    /// The inner step β when w comes from gradient steps (None when exact).
    pub fn gd_beta(&self) -> Option<f64> {
        match self.inner {
            InnerLoop::Exact => None,
            InnerLoop::Gd { .. } => Some(self.beta),
        }
    }

    /// True when an update is one warm gradient step: w⁺ = w − β ∇_v g(u, w) at the current w,
    /// so its gradient can come from another evaluation at the same u
    /// ([`ValueFunction::step_along`]).
    pub fn is_single_warm_step(&self) -> bool {
        matches!(
            self.inner,
            InnerLoop::Gd {
                steps: 1,
                warm: true,
                ..
            }
        )
    }

    /// The update of a single warm step ([`ValueFunction::is_single_warm_step`]) with a
    /// gradient `gv` = ∇_v g(u, w) computed elsewhere: w ← w − β gv.
    pub fn step_along(&mut self, gv: &[f64]) {
        crate::linalg::axpy(-self.beta, gv, &mut self.w);
    }

    /// Starts w from `w0` (used by warm loops).
    pub fn set(&mut self, w0: &[f64]) {
        self.w.copy_from_slice(w0);
    }

    /// Updates w for upper-level point u.
    pub fn update(&mut self, problem: &dyn Problem, u: &[f64]) {
        self.update_with(problem, u, None)
    }

    /// Like [`ValueFunction::update`] with an explicit number of gradient steps.
    pub fn update_with(&mut self, problem: &dyn Problem, u: &[f64], steps_override: Option<usize>) {
        self.refresh(problem, u, steps_override, None)
    }

    /// Like [`ValueFunction::update`]; the gradient steps of an inner loop use the mini-batch
    /// estimate of ∇_v g ([`Problem::g_batch`]) when `batch` is given. The exact solution
    /// ignores the batch.
    pub fn update_batch(&mut self, problem: &dyn Problem, u: &[f64], batch: Option<&[usize]>) {
        self.refresh(problem, u, None, batch)
    }

    fn refresh(
        &mut self,
        problem: &dyn Problem,
        u: &[f64],
        steps_override: Option<usize>,
        batch: Option<&[usize]>,
    ) {
        match self.inner {
            InnerLoop::Exact => {
                problem.ll_solution(u, &mut self.w);
            }
            InnerLoop::Gd { steps, warm, .. } => {
                if !warm {
                    self.w.fill(0.0);
                }
                for _ in 0..steps_override.unwrap_or(steps) {
                    eval_g(problem, u, &self.w, batch, None, Some(&mut self.gv));
                    crate::linalg::axpy(-self.beta, &self.gv, &mut self.w);
                }
            }
        }
    }

    /// g(u, w) and, when given, ∇_u g(u, w): the estimates of g*(u) and ∇g*(u).
    pub fn value(&self, problem: &dyn Problem, u: &[f64], grad_u: Option<&mut [f64]>) -> f64 {
        self.value_batch(problem, u, None, grad_u)
    }

    /// Like [`ValueFunction::value`], the mini-batch estimate when `batch` is given.
    pub fn value_batch(
        &self,
        problem: &dyn Problem,
        u: &[f64],
        batch: Option<&[usize]>,
        grad_u: Option<&mut [f64]>,
    ) -> f64 {
        eval_g(problem, u, &self.w, batch, grad_u, None)
    }
}
