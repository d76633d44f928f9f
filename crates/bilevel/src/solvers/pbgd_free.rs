//! PBGD-Free (Jiang, Xiao, Chen, Chen, 2025, Algorithm 1): no value function and no w. Per
//! iteration, K warm steps v ← v − β (γ⁻¹∇_v f + ∇_v g)(u_k, v), then
//! u ← Proj(u_k − η ∇_u f(u_k, v)). Specification: method.md, section 4b.
//!
//! The dropped term γ(∇_u g(u, v_γ*) − ∇_u g(u, w*)) is O(1) in general, so the method can stall
//! at a non-stationary point of F_γ unless the upper level is flat near w*(u)
//! ([`crate::diagnostics::FlatnessObserver`] measures that).

use super::{ReducedStep, Solver, State, Steps};
use crate::error::{Error, Result, check_gamma, check_positive};
use crate::linalg::axpy;
use crate::problem::{Problem, Smoothness};

/// PBGD-Free with penalty γ.
#[derive(Debug, Clone)]
pub struct PbgdFree {
    /// Penalty constant γ.
    pub gamma: f64,
    /// Warm steps on v per iteration (K; 1 in the theory).
    pub v_steps: usize,
    /// Step β on γ⁻¹f + g (None: 1/(ℓ_f/γ + ℓ_{g,vv})).
    pub beta: Option<f64>,
    /// u step (`Smoothness { c }`: η = c/ℓ_f).
    pub u_step: ReducedStep,
    /// Smoothness overrides (None: the problem's, else estimated at the start point).
    pub smoothness: Option<Smoothness>,
    beta_res: f64,
    eta: f64,
    resolved: Option<Smoothness>,
    fv: Vec<f64>,
    gv: Vec<f64>,
    gu: Vec<f64>,
}

impl PbgdFree {
    /// PBGD-Free with K = 1 and default steps.
    pub fn new(gamma: f64) -> Self {
        PbgdFree {
            gamma,
            v_steps: 1,
            beta: None,
            u_step: ReducedStep::default(),
            smoothness: None,
            beta_res: f64::NAN,
            eta: f64::NAN,
            resolved: None,
            fv: Vec::new(),
            gv: Vec::new(),
            gu: Vec::new(),
        }
    }

    /// Sets K, the v steps per iteration.
    pub fn with_v_steps(mut self, k: usize) -> Self {
        self.v_steps = k;
        self
    }

    /// Sets the v step β.
    pub fn with_beta(mut self, beta: f64) -> Self {
        self.beta = Some(beta);
        self
    }

    /// Sets the u step rule.
    pub fn with_u_step(mut self, s: ReducedStep) -> Self {
        self.u_step = s;
        self
    }

    /// Overrides the smoothness constants.
    pub fn with_smoothness(mut self, s: Smoothness) -> Self {
        self.smoothness = Some(s);
        self
    }
}

impl Solver for PbgdFree {
    fn name(&self) -> String {
        format!("PBGD-Free (gamma={}, K={})", self.gamma, self.v_steps)
    }

    fn init(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()> {
        check_gamma("gamma", self.gamma)?;
        if self.v_steps == 0 {
            return Err(Error::setting(
                "v_steps",
                0,
                "at least 1 step on v per iteration",
            ));
        }
        self.u_step.validate()?;
        if let Some(b) = self.beta {
            check_positive("v step beta", b)?;
        }
        let needs = self.beta.is_none() || matches!(self.u_step, ReducedStep::Smoothness { .. });
        if needs {
            self.resolved = Some(super::resolve_smoothness(
                problem,
                &state.u,
                &state.v,
                self.smoothness,
            )?);
        }
        let s = self.resolved;
        self.beta_res = match (self.beta, s) {
            (Some(b), _) => b,
            (None, Some(s)) => 1.0 / (s.lf / self.gamma + s.lg_vv),
            (None, None) => unreachable!("smoothness is resolved when beta is not given"),
        };
        self.eta = match (self.u_step, s) {
            (ReducedStep::Fixed(eta), _) => eta,
            (ReducedStep::Smoothness { c }, Some(s)) => c / s.lf,
            (ReducedStep::Smoothness { .. }, None) => unreachable!("resolved above"),
        };
        if !(self.eta.is_finite() && self.eta > 0.0) {
            return Err(Error::setting(
                "u step eta",
                self.eta,
                "c/l_f is not a positive number (l_f = 0?); give a fixed u step",
            ));
        }
        let (nu, nv) = (problem.dim_u(), problem.dim_v());
        self.fv = vec![0.0; nv];
        self.gv = vec![0.0; nv];
        self.gu = vec![0.0; nu];
        Ok(())
    }

    fn step(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()> {
        let a = self.beta_res / self.gamma;
        for _ in 0..self.v_steps {
            // ∇_v L_γ = ∇_v f + γ ∇_v g in one call where the problem fuses them (w = v: the
            // g*(u) term does not enter ∇_v), else two; β(γ⁻¹∇_v f + ∇_v g) = (β/γ) ∇_v L_γ.
            let fused = problem
                .penalty_eval(
                    &state.u,
                    &state.v,
                    &state.v,
                    self.gamma,
                    None,
                    Some(&mut self.fv),
                )
                .is_some();
            if !fused {
                problem.f(&state.u, &state.v, None, Some(&mut self.fv));
                problem.g(&state.u, &state.v, None, Some(&mut self.gv));
                axpy(self.gamma, &self.gv, &mut self.fv);
            }
            axpy(-a, &self.fv, &mut state.v);
        }
        problem.f(&state.u, &state.v, Some(&mut self.gu), None);
        axpy(-self.eta, &self.gu, &mut state.u);
        problem.project_u(&mut state.u);
        Ok(())
    }

    fn gamma(&self, _iter: usize) -> f64 {
        self.gamma
    }

    fn steps(&self) -> Steps {
        Steps {
            alpha: self.eta,
            alpha_v: self.beta_res / self.gamma,
            beta: None,
        }
    }

    #[allow(clippy::misnamed_getters)]
    fn smoothness(&self) -> Option<Smoothness> {
        self.resolved
    }
}
