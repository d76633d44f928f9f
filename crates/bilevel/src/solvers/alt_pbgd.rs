//! ALT-PBGD (Jiang, Xiao, Chen, Chen, 2025): gradient descent on the reduced penalty
//! F_γ(u) = min_v L_γ(u, v), whose smoothness does not grow with γ. Specification: method.md,
//! section 4b.
//!
//! Per iteration, at u_k: the v block moves toward v_γ*(u_k) = argmin [γ⁻¹f + g](u_k, ·) and the
//! value-function copy w toward w*(u_k) = argmin g(u_k, ·) — exactly where the problem has the
//! closed forms, else by warm-started gradient steps under an [`InnerRule`]; then
//! u ← Proj(u − η ∇_u L_γ(u_k, v, w)), the Danskin estimate of ∇F_γ(u_k), with η = c / ℓ_F and
//! ℓ_F the smoothness of F_γ estimated at the start, floored at ℓ_f with gradient blocks (not
//! c/(ℓ_f + γ ℓ_g)).

use super::{Solver, State, Steps, VBlock};
use crate::error::{Error, Result, check_gamma, check_positive};
use crate::linalg::{axpy, norm};
use crate::penalty::Penalty;
use crate::problem::{PenaltyStep, Problem, Smoothness};
use serde::{Deserialize, Serialize};

/// How many warm-started gradient steps the inner blocks (v toward v_γ*, w toward w*) take.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum InnerRule {
    /// A fixed number of steps on each block per iteration.
    Fixed { steps: usize },
    /// Steps until the block's gradient, in the units it enters ∇_u L_γ (‖∇_v L_γ(u, v)‖ for
    /// v, γ‖∇_v g(u, w)‖ for w), is at most ρ times the norm of the previous u direction, and
    /// at most `max_steps`. An error e in v (or w) moves the u direction by about γ ℓ_{g,uv}‖e‖
    /// ≤ (ℓ_{g,uv}/μ) times that gradient, so ρ sets the relative accuracy of the u direction up
    /// to the lower level's condition number.
    Accuracy { rho: f64, max_steps: usize },
}

impl Default for InnerRule {
    fn default() -> Self {
        InnerRule::Accuracy {
            rho: 0.1,
            max_steps: 200,
        }
    }
}

impl InnerRule {
    fn validate(&self) -> Result<()> {
        match *self {
            InnerRule::Fixed { steps: 0 } => Err(Error::setting(
                "inner steps",
                0,
                "at least 1 inner step per iteration",
            )),
            InnerRule::Accuracy { rho, max_steps } => {
                check_positive("inner accuracy rho", rho)?;
                if max_steps == 0 {
                    return Err(Error::setting(
                        "inner max_steps",
                        0,
                        "at least 1 inner step per iteration",
                    ));
                }
                Ok(())
            }
            InnerRule::Fixed { .. } => Ok(()),
        }
    }

    fn max_steps(&self) -> usize {
        match *self {
            InnerRule::Fixed { steps } => steps,
            InnerRule::Accuracy { max_steps, .. } => max_steps,
        }
    }
}

/// Step rule of a u step that does not shrink with γ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum ReducedStep {
    /// η = c / ℓ, with ℓ the smoothness of F_γ (ALT-PBGD: estimated at the start point) or of
    /// f (PBGD-Free).
    Smoothness { c: f64 },
    /// A fixed η.
    Fixed(f64),
}

impl Default for ReducedStep {
    fn default() -> Self {
        ReducedStep::Smoothness { c: 0.5 }
    }
}

impl ReducedStep {
    pub(crate) fn validate(&self) -> Result<()> {
        match *self {
            ReducedStep::Smoothness { c } => check_positive("u step constant c", c),
            ReducedStep::Fixed(eta) => check_positive("u step eta", eta),
        }
    }
}

/// ALT-PBGD on F_γ(u) = min_v L_γ(u, v).
#[derive(Debug, Clone)]
pub struct AltPbgd {
    /// Penalty constant γ.
    pub gamma: f64,
    /// v block: exact (closed-form v_γ*) or gradient steps; None: exact where the problem has it.
    pub v_block: Option<VBlock>,
    /// w block: exact (closed-form w*) or gradient steps; None: exact where the problem has it.
    pub w_block: Option<VBlock>,
    /// Inner steps of the gradient blocks.
    pub inner: InnerRule,
    /// u step.
    pub u_step: ReducedStep,
    /// Smoothness overrides for the inner steps (None: the problem's, else estimated).
    pub smoothness: Option<Smoothness>,
    /// Override of the smoothness ℓ_F of F_γ (None: estimated at the start point).
    pub reduced_smoothness: Option<f64>,
    v_res: VBlock,
    w_res: VBlock,
    beta_v: f64,
    beta_w: f64,
    eta: f64,
    l_reduced: f64,
    resolved: Option<Smoothness>,
    w: Vec<f64>,
    gbuf: Vec<f64>,
    pen: Option<Penalty>,
    last_du: f64,
    inner_steps: (usize, usize),
}

impl AltPbgd {
    /// ALT-PBGD with penalty γ, exact responses where the problem has them, the default inner
    /// rule and η = 0.5/ℓ_F.
    pub fn new(gamma: f64) -> Self {
        AltPbgd {
            gamma,
            v_block: None,
            w_block: None,
            inner: InnerRule::default(),
            u_step: ReducedStep::default(),
            smoothness: None,
            reduced_smoothness: None,
            v_res: VBlock::Gradient,
            w_res: VBlock::Gradient,
            beta_v: f64::NAN,
            beta_w: f64::NAN,
            eta: f64::NAN,
            l_reduced: f64::NAN,
            resolved: None,
            w: Vec::new(),
            gbuf: Vec::new(),
            pen: None,
            last_du: f64::NAN,
            inner_steps: (0, 0),
        }
    }

    /// Sets both blocks (gradient steps, or exact closed forms).
    pub fn with_blocks(mut self, v: VBlock, w: VBlock) -> Self {
        self.v_block = Some(v);
        self.w_block = Some(w);
        self
    }

    /// Sets the inner rule.
    pub fn with_inner(mut self, inner: InnerRule) -> Self {
        self.inner = inner;
        self
    }

    /// Sets the u step rule.
    pub fn with_u_step(mut self, s: ReducedStep) -> Self {
        self.u_step = s;
        self
    }

    /// Overrides the smoothness constants of f and g.
    pub fn with_smoothness(mut self, s: Smoothness) -> Self {
        self.smoothness = Some(s);
        self
    }

    /// The smoothness of F_γ in use (after `init`; NaN with a fixed η): the override, else
    /// the estimate at the start, floored at ℓ_f when a block takes gradient steps.
    pub fn reduced_smoothness_in_use(&self) -> f64 {
        self.l_reduced
    }

    /// Inner gradient steps taken so far on (v, w) (exact blocks count none).
    pub fn inner_steps(&self) -> (usize, usize) {
        self.inner_steps
    }

    fn resolve_block(
        asked: Option<VBlock>,
        available: bool,
        what: &str,
        problem: &dyn Problem,
    ) -> Result<VBlock> {
        match asked {
            None if available => Ok(VBlock::Exact),
            None => Ok(VBlock::Gradient),
            Some(VBlock::Exact) if !available => Err(Error::Unsupported(format!(
                "problem {} has no closed-form {what}; use gradient steps for that block",
                problem.name()
            ))),
            Some(b) => Ok(b),
        }
    }

    /// Moves v toward v_γ*(u): exact, or gradient steps of β_v on γ⁻¹f + g (β_v/γ on L_γ)
    /// until `tol` (‖∇_v L_γ‖) or `max` steps. Returns the steps taken.
    #[allow(clippy::too_many_arguments)]
    fn v_update(
        &self,
        problem: &dyn Problem,
        pen: &mut Penalty,
        u: &[f64],
        v: &mut [f64],
        w: &[f64],
        tol: f64,
        max: usize,
    ) -> Result<usize> {
        if self.v_res == VBlock::Exact {
            if !problem.penalty_v_solution(u, self.gamma, v) {
                return Err(Error::Unsupported(format!(
                    "the exact v block of {} failed (singular system); use gradient steps",
                    problem.name()
                )));
            }
            return Ok(0);
        }
        let a = self.beta_v / self.gamma;
        for s in 0..max {
            pen.eval(problem, u, v, w, self.gamma, false, true);
            if norm(&pen.dv) <= tol {
                return Ok(s);
            }
            axpy(-a, &pen.dv, v);
        }
        Ok(max)
    }

    /// Moves w toward w*(u), like [`AltPbgd::v_update`] with ‖γ ∇_v g(u, w)‖ against `tol`.
    fn w_update(
        &self,
        problem: &dyn Problem,
        gbuf: &mut [f64],
        u: &[f64],
        w: &mut [f64],
        tol: f64,
        max: usize,
    ) -> usize {
        if self.w_res == VBlock::Exact {
            problem.ll_solution(u, w);
            return 0;
        }
        for s in 0..max {
            problem.g(u, w, None, Some(gbuf));
            if self.gamma * norm(gbuf) <= tol {
                return s;
            }
            axpy(-self.beta_w, gbuf, w);
        }
        max
    }

    /// ∇_u L_γ(u, v, w) after moving (v, w) toward the responses at u: exact blocks solve,
    /// gradient blocks take steps until `tol` or `max` steps; (v, w) are updated in place, the
    /// gradient is left in `pen.du`.
    #[allow(clippy::too_many_arguments)]
    fn responded_gradient(
        &mut self,
        problem: &dyn Problem,
        pen: &mut Penalty,
        u: &[f64],
        v: &mut [f64],
        w: &mut [f64],
        tol: f64,
        max: usize,
    ) -> Result<()> {
        let mut gbuf = std::mem::take(&mut self.gbuf);
        let r = self.v_update(problem, pen, u, v, w, tol, max);
        self.w_update(problem, &mut gbuf, u, w, tol, max);
        self.gbuf = gbuf;
        r?;
        pen.eval(problem, u, v, w, self.gamma, true, false);
        Ok(())
    }

    /// One gradient the smoothness estimate differences: (v, w) restarted from the responses
    /// `from`, then [`ESTIMATE_PROBE_STEPS`] steps per gradient block at u; left in `pen.du`.
    fn probe_gradient(
        &mut self,
        problem: &dyn Problem,
        pen: &mut Penalty,
        u: &[f64],
        (v, w): (&mut [f64], &mut [f64]),
        from: (&[f64], &[f64]),
    ) -> Result<()> {
        v.copy_from_slice(from.0);
        w.copy_from_slice(from.1);
        self.responded_gradient(problem, pen, u, v, w, -1.0, ESTIMATE_PROBE_STEPS)
    }

    /// Power iteration on one-sided differences of ∇F_γ at u0 (10 products): |largest
    /// eigenvalue| of the Hessian of F_γ there, a local estimate.
    ///
    /// The responses at u0 are solved to 1e-10 of the start's inner gradients (at most
    /// [`ESTIMATE_BASE_STEPS`] gradient steps per block). Each difference then compares two
    /// gradients computed the same way, [`ESTIMATE_PROBE_STEPS`] steps per block from those
    /// responses, at u0 and at u0 + h d: the maps are the same, so their errors cancel to first
    /// order, and the γ-sized parts of the v and w blocks' partial responses cancel each other.
    /// Its cost is bounded by about 2 (base + 11 × probe) steps per block whatever the lower
    /// level's conditioning (it had been 11 solves to 1e-10, 43 s on the medium
    /// representation-learning instance).
    fn estimate_reduced_smoothness(
        &mut self,
        problem: &dyn Problem,
        u0: &[f64],
        v0: &[f64],
        w0: &[f64],
    ) -> Result<f64> {
        let (nu, nv) = (problem.dim_u(), problem.dim_v());
        let mut pen = Penalty::new(nu, nv);
        let (mut v, mut w) = (v0.to_vec(), w0.to_vec());
        pen.eval(problem, u0, &v, &w, self.gamma, false, true);
        problem.g(u0, &w, None, Some(&mut self.gbuf));
        let scale = norm(&pen.dv).max(self.gamma * norm(&self.gbuf)).max(1e-300);
        let tol = 1e-10 * scale;
        self.responded_gradient(
            problem,
            &mut pen,
            u0,
            &mut v,
            &mut w,
            tol,
            ESTIMATE_BASE_STEPS,
        )?;
        let (vr, wr) = (v.clone(), w.clone());
        // The reference gradient through the same map as the probes.
        self.probe_gradient(problem, &mut pen, u0, (&mut v, &mut w), (&vr, &wr))?;
        let g0 = pen.du.clone();
        let h = 1e-5 * (1.0 + norm(u0));
        let mut d: Vec<f64> = (0..nu).map(|i| 1.0 + 0.1 * ((i * 7 % 13) as f64)).collect();
        let mut up = vec![0.0; nu];
        let mut lambda = 0.0;
        for _ in 0..10 {
            let n = norm(&d);
            if n == 0.0 || !n.is_finite() {
                break;
            }
            d.iter_mut().for_each(|x| *x /= n);
            for ((p, a), b) in up.iter_mut().zip(u0).zip(&d) {
                *p = a + h * b;
            }
            self.probe_gradient(problem, &mut pen, &up, (&mut v, &mut w), (&vr, &wr))?;
            for ((x, a), b) in d.iter_mut().zip(&pen.du).zip(&g0) {
                *x = (a - b) / h;
            }
            lambda = norm(&d);
        }
        Ok(lambda)
    }
}

/// Step cap per gradient block of the responses at the start used by the smoothness estimate.
const ESTIMATE_BASE_STEPS: usize = 1000;

/// Gradient steps per block of each gradient the smoothness estimate differences.
const ESTIMATE_PROBE_STEPS: usize = 100;

impl Solver for AltPbgd {
    fn name(&self) -> String {
        let blk = |b: Option<VBlock>| match b {
            None => "auto",
            Some(VBlock::Exact) => "exact",
            Some(VBlock::Gradient) => "gradient",
        };
        let inner = match self.inner {
            InnerRule::Fixed { steps } => format!("{steps} steps"),
            InnerRule::Accuracy { rho, max_steps } => format!("rho={rho}, max {max_steps}"),
        };
        format!(
            "ALT-PBGD (gamma={}, v={}, w={}, inner {inner})",
            self.gamma,
            blk(self.v_block),
            blk(self.w_block)
        )
    }

    fn init(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()> {
        check_gamma("gamma", self.gamma)?;
        self.inner.validate()?;
        self.u_step.validate()?;
        if let Some(l) = self.reduced_smoothness {
            check_positive("reduced smoothness", l)?;
        }
        self.v_res = Self::resolve_block(
            self.v_block,
            problem.has_penalty_v_solution(),
            "minimizer of L_gamma(u, .)",
            problem,
        )?;
        self.w_res = Self::resolve_block(
            self.w_block,
            problem.has_ll_solution(),
            "lower-level solution",
            problem,
        )?;
        let (nu, nv) = (problem.dim_u(), problem.dim_v());
        self.w = state.v.clone();
        self.gbuf = vec![0.0; nv];
        self.inner_steps = (0, 0);
        let gradient_blocks = self.v_res == VBlock::Gradient || self.w_res == VBlock::Gradient;
        if gradient_blocks {
            let s = super::resolve_smoothness(problem, &state.u, &state.v, self.smoothness)?;
            // γ⁻¹f + g is (ℓ_f/γ + ℓ_{g,vv})-smooth in v; g(u, ·) is ℓ_{g,vv}-smooth.
            self.beta_v = 1.0 / (s.lf / self.gamma + s.lg_vv);
            self.beta_w = 1.0 / s.lg_vv;
            self.resolved = Some(s);
        }
        if self.w_res == VBlock::Exact {
            problem.ll_solution(&state.u, &mut self.w);
        }
        let mut pen = Penalty::new(nu, nv);
        self.eta = match self.u_step {
            ReducedStep::Fixed(eta) => eta,
            ReducedStep::Smoothness { c } => {
                let l = match self.reduced_smoothness {
                    Some(l) => l,
                    None => {
                        let w0 = self.w.clone();
                        let est =
                            self.estimate_reduced_smoothness(problem, &state.u, &state.v, &w0)?;
                        // The estimate is local. With gradient blocks, whose steps use the
                        // smoothness at the start, a step that moves u far invalidates them:
                        // where F_γ is flat at the start (representation learning with h ≥ m)
                        // the estimate is near 0 and c/est diverged. ℓ_f (γ-independent, a
                        // term of the global bound on ℓ_F) floors it there. Exact blocks need
                        // no floor (on hyper-cleaning it would cut the step a hundredfold).
                        match self.resolved {
                            Some(s) => est.max(s.lf),
                            None => est,
                        }
                    }
                };
                if !(l.is_finite() && l > 0.0) {
                    return Err(Error::setting(
                        "reduced smoothness",
                        l,
                        "the estimate of F_gamma's smoothness at the start point is not positive; \
                         give reduced_smoothness or a fixed u step",
                    ));
                }
                self.l_reduced = l;
                c / l
            }
        };
        if matches!(self.inner, InnerRule::Accuracy { .. }) {
            pen.eval(
                problem, &state.u, &state.v, &self.w, self.gamma, true, false,
            );
            self.last_du = norm(&pen.du);
        }
        self.pen = Some(pen);
        Ok(())
    }

    fn step(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()> {
        let mut pen = self.pen.take().expect("init sets the penalty buffers");
        let mut w = std::mem::take(&mut self.w);
        let mut gbuf = std::mem::take(&mut self.gbuf);
        let max = self.inner.max_steps();
        let tol = match self.inner {
            InnerRule::Fixed { .. } => -1.0,
            InnerRule::Accuracy { rho, .. } => rho * self.last_du,
        };
        let res = self.v_update(problem, &mut pen, &state.u, &mut state.v, &w, tol, max);
        let sv = match res {
            Ok(s) => s,
            Err(e) => {
                self.pen = Some(pen);
                self.w = w;
                self.gbuf = gbuf;
                return Err(e);
            }
        };
        let sw = self.w_update(problem, &mut gbuf, &state.u, &mut w, tol, max);
        self.inner_steps.0 += sv;
        self.inner_steps.1 += sw;
        if tol >= 0.0 {
            // The accuracy rule needs ‖d_u‖: evaluate, then step.
            pen.eval(problem, &state.u, &state.v, &w, self.gamma, true, false);
            self.last_du = norm(&pen.du);
            axpy(-self.eta, &pen.du, &mut state.u);
        } else {
            let step = PenaltyStep {
                alpha_u: Some(self.eta),
                ..PenaltyStep::default()
            };
            pen.step(
                problem,
                &mut state.u,
                &mut state.v,
                &mut w,
                self.gamma,
                step,
            );
        }
        problem.project_u(&mut state.u);
        self.pen = Some(pen);
        self.w = w;
        self.gbuf = gbuf;
        Ok(())
    }

    fn gamma(&self, _iter: usize) -> f64 {
        self.gamma
    }

    fn steps(&self) -> Steps {
        Steps {
            alpha: self.eta,
            alpha_v: match self.v_res {
                VBlock::Exact => f64::NAN,
                VBlock::Gradient => self.beta_v / self.gamma,
            },
            beta: (self.w_res == VBlock::Gradient).then_some(self.beta_w),
        }
    }

    // The constants in use, not the user's override field of the same name.
    #[allow(clippy::misnamed_getters)]
    fn smoothness(&self) -> Option<Smoothness> {
        self.resolved
    }

    fn ll_estimate(&self) -> Option<&[f64]> {
        (!self.w.is_empty()).then_some(self.w.as_slice())
    }
}
