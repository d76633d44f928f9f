//! F²SA (Kwon et al., ICML 2023), deterministic form, method.md section 4:
//!
//! ```text
//! z ← z − β ∇_v g(u, z)                                   (T steps, warm)
//! v ← v − α (∇_v f(u, v) + λ ∇_v g(u, v))
//! u ← Proj(u − ξ (∇_u f(u, v) + λ (∇_u g(u, v) − ∇_u g(u, z))))
//! ```
//!
//! All three updates use the iterate (u_k, v_k) (simultaneous, as in the paper's algorithm),
//! λ_k increases by a [`GammaSchedule`], α_k = c/(ℓ_f + λ_k ℓ_g) by the [`StepRule`] and
//! ξ_k = ratio · α_k with a separate `u_step_ratio`.

use super::{Batches, GammaSchedule, InnerLoop, Solver, State, StepRule, Steps, ValueFunction};
use crate::error::Result;
use crate::problem::{Problem, Smoothness, eval_g};

/// F²SA with an increasing multiplier λ.
#[derive(Debug, Clone)]
pub struct F2sa {
    /// λ over iterations (increasing; the records' γ is λ_k).
    pub lambda: GammaSchedule,
    /// Step rule of the v block, evaluated at λ_k.
    pub step: StepRule,
    /// ξ_k / α_k: step of the u block relative to the v block.
    pub u_step_ratio: f64,
    /// How z is updated (default: 1 warm gradient step per iteration with β = 1/ℓ_{g,vv}).
    pub inner: InnerLoop,
    /// Smoothness overrides (None: the problem's, else estimated at the start point).
    pub smoothness_override: Option<Smoothness>,
    /// Mini-batch size (None: full gradients): each iteration draws two independent batches
    /// without replacement from the run's seeded stream ([`Batches::draw_pair`]), one for the
    /// inner steps, one for the g gradients at v and at the lower-level estimate; f stays
    /// exact.
    pub batch: Option<usize>,
    batches: Option<Batches>,
    s: Option<Smoothness>,
    vf: Option<ValueFunction>,
    buf: [Vec<f64>; 5],
    last: (f64, f64),
}

impl F2sa {
    /// λ ramped linearly from `lambda0` to `lambda_max` over `ramp_iters` iterations, then held;
    /// default steps (c = 0.5, ξ = α), one warm z step per iteration.
    pub fn new(lambda0: f64, lambda_max: f64, ramp_iters: usize) -> Self {
        F2sa {
            lambda: GammaSchedule::Linear {
                start: lambda0,
                end: lambda_max,
                iters: ramp_iters,
            },
            step: StepRule::default(),
            u_step_ratio: 1.0,
            inner: InnerLoop::Gd {
                steps: 1,
                warm: true,
                beta: None,
            },
            smoothness_override: None,
            batch: None,
            batches: None,
            s: None,
            vf: None,
            buf: Default::default(),
            last: (f64::NAN, f64::NAN),
        }
    }

    /// Sets the λ schedule.
    pub fn with_lambda(mut self, lambda: GammaSchedule) -> Self {
        self.lambda = lambda;
        self
    }

    /// Sets the v-block step rule.
    pub fn with_step(mut self, step: StepRule) -> Self {
        self.step = step;
        self
    }

    /// Sets ξ/α.
    pub fn with_u_step_ratio(mut self, r: f64) -> Self {
        self.u_step_ratio = r;
        self
    }

    /// Sets the z update.
    pub fn with_inner(mut self, inner: InnerLoop) -> Self {
        self.inner = inner;
        self
    }

    /// Mini-batch (stochastic) gradients of g with `size` samples per iteration (problems with
    /// [`Problem::batch_samples`] > 0).
    pub fn with_batch(mut self, size: usize) -> Self {
        self.batch = Some(size);
        self
    }

    /// Overrides the smoothness constants.
    pub fn with_smoothness(mut self, s: Smoothness) -> Self {
        self.smoothness_override = Some(s);
        self
    }
}

impl Solver for F2sa {
    fn name(&self) -> String {
        let batch = super::batch::name_suffix(self.batch);
        match self.lambda {
            GammaSchedule::Constant(l) => format!("F2SA (lambda={l}{batch})"),
            GammaSchedule::Linear { start, end, iters } => {
                format!("F2SA (lambda {start}->{end} over {iters}{batch})")
            }
        }
    }

    fn init(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()> {
        self.lambda.validate()?;
        self.step.validate()?;
        crate::error::check_positive("u_step_ratio", self.u_step_ratio)?;
        self.batches = Batches::optional(problem, self.batch)?;
        let s = super::resolve_smoothness(problem, &state.u, &state.v, self.smoothness_override)?;
        self.s = Some(s);
        let mut vf = ValueFunction::new(problem, self.inner, s.lg_vv)?;
        vf.set(&state.v);
        self.vf = Some(vf);
        let (nu, nv) = (problem.dim_u(), problem.dim_v());
        self.buf = [
            vec![0.0; nu],
            vec![0.0; nv],
            vec![0.0; nu],
            vec![0.0; nv],
            vec![0.0; nu],
        ];
        let a = self.step.alpha(self.lambda.at(0), &s);
        self.last = (a, a * self.u_step_ratio);
        Ok(())
    }

    fn step(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()> {
        let lam = self.lambda.at(state.iter);
        let s = self.s.expect("init sets smoothness");
        let alpha = self.step.alpha(lam, &s);
        let xi = alpha * self.u_step_ratio;
        self.last = (alpha, xi);
        let [fu, fv, gu, gv, hu] = &mut self.buf;
        let vf = self.vf.as_mut().expect("init sets z");
        // `moving` drives the inner steps, `est` the gradients (see Batches::draw_pair).
        let (moving, est) = super::batch::draw_pair(self.batches.as_mut(), &mut state.rng);
        vf.update_batch(problem, &state.u, moving);
        problem.f(&state.u, &state.v, Some(fu), Some(fv));
        eval_g(problem, &state.u, &state.v, est, Some(gu), Some(gv));
        vf.value_batch(problem, &state.u, est, Some(hu));
        for i in 0..fv.len() {
            state.v[i] -= alpha * (fv[i] + lam * gv[i]);
        }
        for i in 0..fu.len() {
            state.u[i] -= xi * (fu[i] + lam * (gu[i] - hu[i]));
        }
        problem.project_u(&mut state.u);
        Ok(())
    }

    fn gamma(&self, iter: usize) -> f64 {
        self.lambda.at(iter)
    }

    fn steps(&self) -> Steps {
        let beta = self.vf.as_ref().and_then(ValueFunction::gd_beta);
        Steps {
            alpha: self.last.1,
            alpha_v: self.last.0,
            beta,
        }
    }

    fn smoothness(&self) -> Option<Smoothness> {
        self.s
    }

    fn ll_estimate(&self) -> Option<&[f64]> {
        self.vf.as_ref().map(|vf| vf.w.as_slice())
    }

    fn inner(&self) -> Option<InnerLoop> {
        self.vf.as_ref().map(|vf| vf.inner)
    }
}
