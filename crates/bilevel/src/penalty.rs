//! The penalty reformulation L_γ(u, v) = f(u, v) + γ (g(u, v) − g*(u)), with g*(u) and
//! ∇g*(u) = ∇_u g(u, w*(u)) (Danskin) taken at a lower-level point w.

use crate::linalg::axpy;
use crate::problem::{PenaltyStep, Problem, eval_g};

/// Values at one evaluation of L_γ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PenaltyValue {
    /// f(u, v).
    pub f: f64,
    /// g(u, v).
    pub g: f64,
    /// g(u, w), standing for g*(u).
    pub g_star: f64,
    /// L_γ = f + γ (g − g(u, w)).
    pub l: f64,
}

impl PenaltyValue {
    /// From [f(u, v), g(u, v), g(u, w)] at penalty constant γ.
    fn at([f, g, g_star]: [f64; 3], gamma: f64) -> Self {
        PenaltyValue {
            f,
            g,
            g_star,
            l: f + gamma * (g - g_star),
        }
    }
}

/// Evaluator of L_γ and its gradient blocks, with buffers allocated once.
#[derive(Debug, Clone)]
pub struct Penalty {
    /// ∇_u L_γ after [`Penalty::eval`] with `grad_u`.
    pub du: Vec<f64>,
    /// ∇_v L_γ after [`Penalty::eval`] with `grad_v`.
    pub dv: Vec<f64>,
    /// ∇_v g(u, w) after a successful [`Penalty::eval_with_inner`].
    pub gw: Vec<f64>,
    gu: Vec<f64>,
    gv: Vec<f64>,
    hu: Vec<f64>,
}

impl Penalty {
    /// Buffers for a problem with `nu` upper and `nv` lower variables.
    pub fn new(nu: usize, nv: usize) -> Self {
        Penalty {
            du: vec![0.0; nu],
            dv: vec![0.0; nv],
            gw: vec![0.0; nv],
            gu: vec![0.0; nu],
            gv: vec![0.0; nv],
            hu: vec![0.0; nu],
        }
    }

    /// Evaluates L_γ at (u, v) with g* estimated by g(u, w); fills `du` = ∇_u f + γ(∇_u g(u, v)
    /// − ∇_u g(u, w)) when `grad_u`, and `dv` = ∇_v f + γ ∇_v g(u, v) when `grad_v`. Uses the
    /// problem's fused [`Problem::penalty_eval`] where it has one.
    #[allow(clippy::too_many_arguments)]
    pub fn eval(
        &mut self,
        problem: &dyn Problem,
        u: &[f64],
        v: &[f64],
        w: &[f64],
        gamma: f64,
        grad_u: bool,
        grad_v: bool,
    ) -> PenaltyValue {
        self.eval_batch(problem, u, v, w, gamma, grad_u, grad_v, None)
    }

    /// Like [`Penalty::eval`], with both g terms (at v and at w) replaced by their unbiased
    /// mini-batch estimates on the same batch ([`Problem::g_batch`]) when `batch` is given;
    /// f stays exact. Full-data evaluations use the problem's fused
    /// [`Problem::penalty_eval`] where it has one.
    #[allow(clippy::too_many_arguments)]
    pub fn eval_batch(
        &mut self,
        problem: &dyn Problem,
        u: &[f64],
        v: &[f64],
        w: &[f64],
        gamma: f64,
        grad_u: bool,
        grad_v: bool,
        batch: Option<&[usize]>,
    ) -> PenaltyValue {
        let fused = if batch.is_none() {
            let du = grad_u.then_some(&mut self.du[..]);
            let dv = grad_v.then_some(&mut self.dv[..]);
            problem.penalty_eval(u, v, w, gamma, du, dv)
        } else {
            None
        };
        let values = match fused {
            Some(values) => values,
            None => self.eval_separately(problem, u, v, w, gamma, grad_u, grad_v, batch),
        };
        PenaltyValue::at(values, gamma)
    }

    /// Like [`Penalty::eval`], and also fills `gw` = ∇_v g(u, w) from the same evaluation,
    /// through the problem's [`Problem::penalty_eval_inner`]; None (nothing written) when the
    /// problem has no such method.
    #[allow(clippy::too_many_arguments)]
    pub fn eval_with_inner(
        &mut self,
        problem: &dyn Problem,
        u: &[f64],
        v: &[f64],
        w: &[f64],
        gamma: f64,
        grad_u: bool,
        grad_v: bool,
    ) -> Option<PenaltyValue> {
        let du = grad_u.then_some(&mut self.du[..]);
        let dv = grad_v.then_some(&mut self.dv[..]);
        let values = problem.penalty_eval_inner(u, v, w, gamma, du, dv, &mut self.gw)?;
        Some(PenaltyValue::at(values, gamma))
    }

    /// One gradient step on L_γ ([`PenaltyStep`]: the optional inner step on w first, then u
    /// and v from the same evaluation), through the problem's fused [`Problem::penalty_step`]
    /// where it has one, else an evaluation ([`Penalty::eval`]) and vector updates. The
    /// gradient buffers `du` and `dv` are left unspecified when the fused step ran.
    pub fn step(
        &mut self,
        problem: &dyn Problem,
        u: &mut [f64],
        v: &mut [f64],
        w: &mut [f64],
        gamma: f64,
        step: PenaltyStep,
    ) -> PenaltyValue {
        if let Some(values) = problem.penalty_step(u, v, w, gamma, step) {
            return PenaltyValue::at(values, gamma);
        }
        if let Some(beta) = step.inner_beta {
            problem.g(u, w, None, Some(&mut self.gv));
            axpy(-beta, &self.gv, w);
        }
        let (grad_u, grad_v) = (step.alpha_u.is_some(), step.alpha_v.is_some());
        let value = self.eval(problem, u, v, w, gamma, grad_u, grad_v);
        if let Some(a) = step.alpha_u {
            axpy(-a, &self.du, u);
        }
        if let Some(a) = step.alpha_v {
            axpy(-a, &self.dv, v);
        }
        value
    }

    /// [f(u, v), g(u, v), g(u, w)] and the gradient blocks from three separate calls.
    #[allow(clippy::too_many_arguments)]
    fn eval_separately(
        &mut self,
        problem: &dyn Problem,
        u: &[f64],
        v: &[f64],
        w: &[f64],
        gamma: f64,
        grad_u: bool,
        grad_v: bool,
        batch: Option<&[usize]>,
    ) -> [f64; 3] {
        let f = problem.f(
            u,
            v,
            grad_u.then_some(&mut self.du[..]),
            grad_v.then_some(&mut self.dv[..]),
        );
        let g = eval_g(
            problem,
            u,
            v,
            batch,
            grad_u.then_some(&mut self.gu[..]),
            grad_v.then_some(&mut self.gv[..]),
        );
        let g_star = eval_g(
            problem,
            u,
            w,
            batch,
            grad_u.then_some(&mut self.hu[..]),
            None,
        );
        if grad_u {
            for ((d, a), b) in self.du.iter_mut().zip(&self.gu).zip(&self.hu) {
                *d += gamma * (a - b);
            }
        }
        if grad_v {
            axpy(gamma, &self.gv, &mut self.dv);
        }
        [f, g, g_star]
    }
}
