//! Penalty-based bilevel gradient descent (PBGD): Jacobi and Gauss–Seidel updates, and
//! V-PBGD (γ ramped linearly). Specification: method.md, section 4.

use super::{Batches, GammaSchedule, InnerLoop, Solver, State, StepRule, Steps, ValueFunction};
use crate::error::{Error, Result};
use crate::linalg::axpy;
use crate::penalty::Penalty;
use crate::problem::{PenaltyStep, Problem, Smoothness};
use serde::{Deserialize, Serialize};

/// How the two blocks are updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Update {
    /// Simultaneous step on (u, v) from the same point (pairs with joint PL).
    Jacobi,
    /// Step on v first, then on u at the fresh v (pairs with blockwise PL).
    GaussSeidel,
}

/// How the v block is updated (Gauss–Seidel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VBlock {
    /// `v_steps` gradient steps on L_γ(u, ·) with the outer step α.
    #[default]
    Gradient,
    /// v ← argmin_v L_γ(u, v), the problem's closed form ([`Problem::penalty_v_solution`]).
    /// The u step is then a projected gradient step on φ(u) = min_v L_γ(u, v) (Danskin), whose
    /// curvature no longer includes the v block's, so it takes its own step rule (`u_step`).
    Exact,
}

/// PBGD on L_γ = f + γ (g − g*).
#[derive(Debug, Clone)]
pub struct Pbgd {
    /// Jacobi or Gauss–Seidel.
    pub update: Update,
    /// γ over iterations.
    pub gamma: GammaSchedule,
    /// Outer step rule.
    pub step: StepRule,
    /// Gradient steps on v per iteration (Gauss–Seidel only).
    pub v_steps: usize,
    /// Gradient steps or the exact minimizer on the v block (Gauss–Seidel only).
    pub v_block: VBlock,
    /// Step rule of the u block when it differs from `step` (required with an exact v block).
    pub u_step: Option<StepRule>,
    /// Value-function estimate; None picks exact where available, else 10 warm steps.
    pub inner: Option<InnerLoop>,
    /// Smoothness overrides (None: the problem's, else estimated at the start point).
    pub smoothness: Option<Smoothness>,
    /// Mini-batch size (None: full gradients). Each iteration draws two independent batches
    /// without replacement from the run's seeded stream ([`Batches::draw_pair`]): one for the
    /// steps that move v (Gauss–Seidel) and the inner steps on w, one for the gradient
    /// estimates ∇g(u, v) and ∇_u g(u, w) at the moved points (the same batch for both); f
    /// stays exact. Gradient v block only.
    pub batch: Option<usize>,
    batches: Option<Batches>,
    resolved: Option<Smoothness>,
    vf: Option<ValueFunction>,
    pen: Option<Penalty>,
    last_alpha: f64,
    last_alpha_v: f64,
}

impl Pbgd {
    /// PBGD with the given update and fixed γ; default steps and inner loop.
    pub fn new(update: Update, gamma: f64) -> Self {
        Pbgd {
            update,
            gamma: GammaSchedule::Constant(gamma),
            step: StepRule::default(),
            v_steps: 1,
            v_block: VBlock::Gradient,
            u_step: None,
            inner: None,
            smoothness: None,
            batch: None,
            batches: None,
            resolved: None,
            vf: None,
            pen: None,
            last_alpha: f64::NAN,
            last_alpha_v: f64::NAN,
        }
    }

    /// Jacobi PBGD with fixed γ.
    pub fn jacobi(gamma: f64) -> Self {
        Self::new(Update::Jacobi, gamma)
    }

    /// Gauss–Seidel PBGD with fixed γ.
    pub fn gauss_seidel(gamma: f64) -> Self {
        Self::new(Update::GaussSeidel, gamma)
    }

    /// V-PBGD (Shen & Chen): Jacobi steps, γ ramped linearly from `start` to `end` over
    /// `iters` iterations, α = α₀ · min(1, 1/γ). `alpha0 = None` takes c/(ℓ_f + ℓ_g), c = 0.5.
    pub fn v_pbgd(start: f64, end: f64, iters: usize, alpha0: Option<f64>) -> Self {
        let mut p = Self::new(Update::Jacobi, end);
        p.gamma = GammaSchedule::Linear { start, end, iters };
        p.step = StepRule::InverseGamma {
            alpha0: alpha0.unwrap_or(f64::NAN),
        };
        p
    }

    /// Sets the step rule.
    pub fn with_step(mut self, step: StepRule) -> Self {
        self.step = step;
        self
    }

    /// Sets the γ schedule.
    pub fn with_gamma(mut self, gamma: GammaSchedule) -> Self {
        self.gamma = gamma;
        self
    }

    /// Sets the value-function estimate.
    pub fn with_inner(mut self, inner: InnerLoop) -> Self {
        self.inner = Some(inner);
        self
    }

    /// Overrides the smoothness constants.
    pub fn with_smoothness(mut self, s: Smoothness) -> Self {
        self.smoothness = Some(s);
        self
    }

    /// Sets the number of v steps per iteration (Gauss–Seidel).
    pub fn with_v_steps(mut self, n: usize) -> Self {
        self.v_steps = n;
        self
    }

    /// Gauss–Seidel with the exact v block: v ← argmin_v L_γ(u, ·), then a step of `u_step`
    /// on u.
    pub fn with_exact_v(mut self, u_step: StepRule) -> Self {
        self.update = Update::GaussSeidel;
        self.v_block = VBlock::Exact;
        self.u_step = Some(u_step);
        self
    }

    /// Mini-batch (stochastic) gradients of g with `size` samples per iteration (problems with
    /// [`Problem::batch_samples`] > 0; gradient v block).
    pub fn with_batch(mut self, size: usize) -> Self {
        self.batch = Some(size);
        self
    }

    /// Sets a separate step rule for the u block.
    pub fn with_u_step(mut self, u_step: StepRule) -> Self {
        self.u_step = Some(u_step);
        self
    }

    /// The smoothness constants in use (NaN where init did not need them).
    fn constants(&self) -> Smoothness {
        self.resolved.unwrap_or(Smoothness {
            lf: f64::NAN,
            lg: f64::NAN,
            lg_vv: f64::NAN,
        })
    }

    fn alpha(&self, gamma: f64) -> f64 {
        self.step.alpha(gamma, &self.constants())
    }

    fn alpha_u(&self, gamma: f64) -> f64 {
        self.u_step
            .unwrap_or(self.step)
            .alpha(gamma, &self.constants())
    }
}

impl Solver for Pbgd {
    fn name(&self) -> String {
        let kind = match (self.update, self.gamma, self.v_block) {
            (_, GammaSchedule::Linear { .. }, _) => "V-PBGD",
            (Update::Jacobi, _, _) => "PBGD-Jacobi",
            (Update::GaussSeidel, _, VBlock::Gradient) => "PBGD-GS",
            (Update::GaussSeidel, _, VBlock::Exact) => "PBGD-GS-exact-v",
        };
        let batch = super::batch::name_suffix(self.batch);
        match self.gamma {
            GammaSchedule::Constant(g) => format!("{kind} (gamma={g}{batch})"),
            GammaSchedule::Linear { start, end, iters } => {
                format!("{kind} (gamma {start}->{end} over {iters}{batch})")
            }
        }
    }

    fn init(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()> {
        self.gamma.validate()?;
        if let StepRule::InverseGamma { alpha0 } = self.step
            && !alpha0.is_nan()
        {
            self.step.validate()?;
        }
        if !matches!(self.step, StepRule::InverseGamma { .. }) {
            self.step.validate()?;
        }
        if self.v_steps == 0 {
            return Err(Error::setting(
                "v_steps",
                0,
                "at least 1 step on v per iteration",
            ));
        }
        if let Some(u_step) = self.u_step {
            u_step.validate()?;
        }
        if self.v_block == VBlock::Exact {
            if self.update != Update::GaussSeidel {
                return Err(Error::setting(
                    "v_block",
                    "exact",
                    "an exact v block needs update = gauss-seidel",
                ));
            }
            if !problem.has_penalty_v_solution() {
                return Err(Error::Unsupported(format!(
                    "problem {} has no closed-form minimizer of L_gamma(u, .); use v_block = gradient",
                    problem.name()
                )));
            }
            if self.u_step.is_none() {
                return Err(Error::setting(
                    "u_step",
                    "missing",
                    "an exact v block needs its own u step (the default c/(l_f + gamma l_g) is \
                     set by the v block's curvature); give u_step, e.g. u_step = { fixed = 0.1 }",
                ));
            }
        }
        if self.batch.is_some() && self.v_block == VBlock::Exact {
            return Err(Error::setting(
                "batch_size",
                self.batch.unwrap_or(0),
                "mini-batches need v_block = gradient (the exact v block solves on all samples)",
            ));
        }
        self.batches = Batches::optional(problem, self.batch)?;
        let inner = self
            .inner
            .unwrap_or_else(|| InnerLoop::default_for(problem));
        // With an exact v block, an exact inner solve and a u step that does not depend on
        // them, no step uses the smoothness constants: skip their (power-iteration) estimate.
        let needs_smoothness = self.v_block == VBlock::Gradient
            || inner != InnerLoop::Exact
            || self.u_step.unwrap_or(self.step).needs_smoothness();
        let mut lg_vv = f64::NAN;
        if needs_smoothness {
            let s = super::resolve_smoothness(problem, &state.u, &state.v, self.smoothness)?;
            if let StepRule::InverseGamma { alpha0 } = self.step
                && alpha0.is_nan()
            {
                self.step = StepRule::InverseGamma {
                    alpha0: 0.5 / (s.lf + s.lg),
                };
            }
            self.resolved = Some(s);
            lg_vv = s.lg_vv;
        }
        let mut vf = ValueFunction::new(problem, inner, lg_vv)?;
        // A warm inner loop starts from the LL variable itself, the natural first guess.
        vf.set(&state.v);
        self.vf = Some(vf);
        self.pen = Some(Penalty::new(problem.dim_u(), problem.dim_v()));
        self.last_alpha = self.alpha_u(self.gamma.at(0));
        self.last_alpha_v = self.alpha(self.gamma.at(0));
        Ok(())
    }

    fn step(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()> {
        let gamma = self.gamma.at(state.iter);
        let alpha = self.alpha(gamma);
        let alpha_u = self.alpha_u(gamma);
        self.last_alpha = alpha_u;
        self.last_alpha_v = alpha;
        let pen = self.pen.as_mut().expect("init sets the penalty buffers");
        let vf = self.vf.as_mut().expect("init sets the value function");
        // `moving` drives the inner steps on w and the v steps, `est` the gradients at the
        // moved points (see Batches::draw_pair).
        let (moving, est) = super::batch::draw_pair(self.batches.as_mut(), &mut state.rng);
        match self.update {
            Update::Jacobi => {
                if est.is_none() {
                    // Full gradients: one step through the problem's fused kernel where it has
                    // one, with a single warm inner step folded in.
                    let inner_beta = vf.is_single_warm_step().then_some(vf.beta);
                    if inner_beta.is_none() {
                        vf.update(problem, &state.u);
                    }
                    let step = PenaltyStep {
                        alpha_u: Some(alpha_u),
                        alpha_v: Some(alpha),
                        inner_beta,
                    };
                    pen.step(problem, &mut state.u, &mut state.v, &mut vf.w, gamma, step);
                } else {
                    vf.update_batch(problem, &state.u, moving);
                    pen.eval_batch(problem, &state.u, &state.v, &vf.w, gamma, true, true, est);
                    axpy(-alpha_u, &pen.du, &mut state.u);
                    axpy(-alpha, &pen.dv, &mut state.v);
                }
                problem.project_u(&mut state.u);
            }
            Update::GaussSeidel => {
                // A single warm inner step at u_k does not depend on v: where the problem
                // can, its gradient comes from the first v step's evaluation (one pass over
                // the data instead of two).
                let fuse = moving.is_none() && vf.is_single_warm_step();
                let mut w_grad = false;
                match self.v_block {
                    VBlock::Gradient => {
                        for s in 0..self.v_steps {
                            let (u, v, w) = (&state.u, &state.v, &vf.w);
                            let fused = s == 0
                                && fuse
                                && pen
                                    .eval_with_inner(problem, u, v, w, gamma, false, true)
                                    .is_some();
                            if !fused {
                                pen.eval_batch(problem, u, v, w, gamma, false, true, moving);
                            }
                            w_grad |= fused;
                            axpy(-alpha, &pen.dv, &mut state.v);
                        }
                    }
                    VBlock::Exact => {
                        if !problem.penalty_v_solution(&state.u, gamma, &mut state.v) {
                            return Err(Error::Unsupported(format!(
                                "the exact v block of {} failed at iteration {} (singular system); use v_block = gradient",
                                problem.name(),
                                state.iter
                            )));
                        }
                    }
                }
                // The u-step uses the fresh v and a value function refreshed at u_k.
                if w_grad {
                    vf.step_along(&pen.gw);
                } else {
                    vf.update_batch(problem, &state.u, moving);
                }
                if est.is_none() {
                    let step = PenaltyStep {
                        alpha_u: Some(alpha_u),
                        ..PenaltyStep::default()
                    };
                    pen.step(problem, &mut state.u, &mut state.v, &mut vf.w, gamma, step);
                } else {
                    pen.eval_batch(problem, &state.u, &state.v, &vf.w, gamma, true, false, est);
                    axpy(-alpha_u, &pen.du, &mut state.u);
                }
                problem.project_u(&mut state.u);
            }
        }
        Ok(())
    }

    fn gamma(&self, iter: usize) -> f64 {
        self.gamma.at(iter)
    }

    fn steps(&self) -> Steps {
        let beta = self.vf.as_ref().and_then(ValueFunction::gd_beta);
        let alpha_v = match self.v_block {
            VBlock::Exact => f64::NAN,
            VBlock::Gradient => self.last_alpha_v,
        };
        Steps {
            alpha: self.last_alpha,
            alpha_v,
            beta,
        }
    }

    // The constants in use, not the user's override field of the same name.
    #[allow(clippy::misnamed_getters)]
    fn smoothness(&self) -> Option<Smoothness> {
        self.resolved
    }

    fn ll_estimate(&self) -> Option<&[f64]> {
        self.vf.as_ref().map(|vf| vf.w.as_slice())
    }

    fn inner(&self) -> Option<InnerLoop> {
        self.vf.as_ref().map(|vf| vf.inner)
    }
}
