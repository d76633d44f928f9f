//! BOME (Liu et al., NeurIPS 2022), method.md section 4.
//!
//! q(u, v) = g(u, v) − g(u, w_T) with w_T from T gradient steps on g(u, ·) started at v_k (held
//! fixed when differentiating q). Each iteration steps along d = ∇f + λ_k ∇q with
//! λ_k = max((φ_k − ⟨∇f, ∇q⟩)/‖∇q‖², 0), φ_k = η ‖∇q‖², so that ⟨d, ∇q⟩ ≥ η‖∇q‖² (q decreases
//! at first order). Step: ξ_k = c/(ℓ_f + λ_k ℓ_g) by the [`StepRule`] evaluated at λ_k (safe
//! for any λ_k), times `u_step_ratio` on the u block.
//!
//! BOME has no penalty constant: the records evaluate L_γ at a fixed `report_gamma`.

use super::{Batches, InnerLoop, Solver, State, StepRule, Steps, ValueFunction};
use crate::error::{Error, Result};
use crate::linalg::dot;
use crate::problem::{Problem, Smoothness, eval_g};

/// BOME with the control barrier φ = η‖∇q‖².
#[derive(Debug, Clone)]
pub struct Bome {
    /// η in φ = η‖∇q‖².
    pub eta: f64,
    /// Step rule, evaluated at the current λ_k.
    pub step: StepRule,
    /// Step of the u block relative to the v block.
    pub u_step_ratio: f64,
    /// How w_T is computed: Gd{steps: T, warm: true} starts each inner run at v_k (BOME's
    /// choice), warm: false from 0; Exact uses the problem's lower-level solution.
    pub inner: InnerLoop,
    /// γ of the L_γ written in the records.
    pub report_gamma: f64,
    /// Smoothness overrides.
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
    last_lambda: f64,
}

impl Bome {
    /// BOME with η, T warm inner steps (from v_k) and L_γ reported at `report_gamma`;
    /// default step rule c = 0.5.
    pub fn new(eta: f64, inner_steps: usize, report_gamma: f64) -> Self {
        Bome {
            eta,
            step: StepRule::default(),
            u_step_ratio: 1.0,
            inner: InnerLoop::Gd {
                steps: inner_steps,
                warm: true,
                beta: None,
            },
            report_gamma,
            smoothness_override: None,
            batch: None,
            batches: None,
            s: None,
            vf: None,
            buf: Default::default(),
            last: (f64::NAN, f64::NAN),
            last_lambda: 0.0,
        }
    }

    /// Sets the step rule.
    pub fn with_step(mut self, step: StepRule) -> Self {
        self.step = step;
        self
    }

    /// Sets the u-block step ratio.
    pub fn with_u_step_ratio(mut self, r: f64) -> Self {
        self.u_step_ratio = r;
        self
    }

    /// Sets how w_T is computed.
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

    /// λ of the last iteration.
    pub fn last_lambda(&self) -> f64 {
        self.last_lambda
    }
}

impl Solver for Bome {
    fn name(&self) -> String {
        let batch = super::batch::name_suffix(self.batch);
        match self.inner {
            InnerLoop::Gd { steps, .. } => format!("BOME (eta={}, T={steps}{batch})", self.eta),
            InnerLoop::Exact => format!("BOME (eta={}, exact w{batch})", self.eta),
        }
    }

    fn init(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()> {
        if !(self.eta.is_finite() && self.eta > 0.0) {
            return Err(Error::setting(
                "eta",
                self.eta,
                "BOME's eta must be finite and > 0 (typical: 0.1 to 1)",
            ));
        }
        self.step.validate()?;
        crate::error::check_positive("u_step_ratio", self.u_step_ratio)?;
        crate::error::check_gamma("report_gamma", self.report_gamma)?;
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
        let a = self.step.alpha(0.0, &s);
        self.last = (a, a * self.u_step_ratio);
        Ok(())
    }

    fn step(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()> {
        let s = self.s.expect("init sets smoothness");
        let [fu, fv, gu, gv, hu] = &mut self.buf;
        let vf = self.vf.as_mut().expect("init sets w");
        if let InnerLoop::Gd { warm: true, .. } = vf.inner {
            vf.set(&state.v);
        }
        // `moving` drives the inner steps, `est` the gradients (see Batches::draw_pair).
        let (moving, est) = super::batch::draw_pair(self.batches.as_mut(), &mut state.rng);
        vf.update_batch(problem, &state.u, moving);
        problem.f(&state.u, &state.v, Some(fu), Some(fv));
        eval_g(problem, &state.u, &state.v, est, Some(gu), Some(gv));
        vf.value_batch(problem, &state.u, est, Some(hu));
        // ∇q = (∇_u g(u, v) − ∇_u g(u, w_T), ∇_v g(u, v)); gu becomes ∇_u q.
        for i in 0..gu.len() {
            gu[i] -= hu[i];
        }
        let nq2 = dot(gu, gu) + dot(gv, gv);
        let fq = dot(fu, gu) + dot(fv, gv);
        let lam = if nq2 > 0.0 {
            ((self.eta * nq2 - fq) / nq2).max(0.0)
        } else {
            0.0
        };
        self.last_lambda = lam;
        let xi = self.step.alpha(lam, &s);
        let xu = xi * self.u_step_ratio;
        self.last = (xi, xu);
        for i in 0..fv.len() {
            state.v[i] -= xi * (fv[i] + lam * gv[i]);
        }
        for i in 0..fu.len() {
            state.u[i] -= xu * (fu[i] + lam * gu[i]);
        }
        problem.project_u(&mut state.u);
        Ok(())
    }

    fn gamma(&self, _iter: usize) -> f64 {
        self.report_gamma
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
