//! Hypergradient baselines on the nested objective F(u) = f(u, w*(u)): implicit
//! differentiation (AID, with conjugate gradient or a Neumann series) and iterative
//! differentiation (ITD, backpropagation through T unrolled lower-level steps). They promise
//! stationary points of F only; they are here to be compared with PBGD.
//!
//! Both use second-order products of g through [`Problem::hvp`]: with H = ∇²g and direction
//! (0, p), H (0, p) = (∇²_uv g · p, ∇²_vv g · p).

use super::{Solver, State, StepRule, Steps, resolve_smoothness};
use crate::error::{Error, Result};
use crate::linalg::{axpy, dot};
use crate::problem::{Level, Problem, Smoothness};
use serde::{Deserialize, Serialize};

/// How AID solves ∇²_vv g · p = ∇_v f.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum LinearSolve {
    /// Conjugate gradient, at most `iters` iterations, warm-started from the previous p;
    /// stops early at relative residual `tol`.
    Cg { iters: usize, tol: f64 },
    /// Truncated Neumann series β Σ_{k<terms} (I − β ∇²_vv g)^k ∇_v f.
    Neumann { terms: usize },
}

/// Settings shared by AID and ITD.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Common {
    step: StepRule,
    inner_steps: usize,
    beta: Option<f64>,
    smoothness: Option<Smoothness>,
}

// Builders shared by AID and ITD.
macro_rules! common_builders {
    ($t:ty) => {
        impl $t {
            /// Sets the outer step rule.
            pub fn with_step(mut self, step: StepRule) -> Self {
                self.common.step = step;
                self
            }

            /// Sets the lower-level step β.
            pub fn with_beta(mut self, beta: f64) -> Self {
                self.common.beta = Some(beta);
                self
            }

            /// Overrides the smoothness constants.
            pub fn with_smoothness(mut self, s: Smoothness) -> Self {
                self.common.smoothness = Some(s);
                self
            }
        }
    };
}
common_builders!(Aid);
common_builders!(Itd);

/// State shared by AID and ITD after `init`.
#[derive(Debug, Clone, Default)]
struct Work {
    alpha: f64,
    beta: f64,
    s: Option<Smoothness>,
    gv: Vec<f64>,
    fu: Vec<f64>,
    fv: Vec<f64>,
    hu: Vec<f64>,
    hv: Vec<f64>,
    zu: Vec<f64>,
}

impl Common {
    fn init(&self, problem: &dyn Problem, state: &State) -> Result<Work> {
        self.step.validate()?;
        if self.inner_steps == 0 {
            return Err(Error::setting(
                "inner steps",
                0,
                "at least 1 lower-level gradient step per iteration",
            ));
        }
        let s = resolve_smoothness(problem, &state.u, &state.v, self.smoothness)?;
        let beta = self.beta.unwrap_or(1.0 / s.lg_vv);
        crate::error::check_positive("inner step beta", beta)?;
        // The nested objective has no γ: the smoothness rule takes ℓ_f alone.
        let alpha = self.step.alpha(0.0, &s);
        let (nu, nv) = (problem.dim_u(), problem.dim_v());
        Ok(Work {
            alpha,
            beta,
            s: Some(s),
            gv: vec![0.0; nv],
            fu: vec![0.0; nu],
            fv: vec![0.0; nv],
            hu: vec![0.0; nu],
            hv: vec![0.0; nv],
            zu: vec![0.0; nu],
        })
    }

    fn steps(&self, w: &Work) -> Steps {
        Steps {
            alpha: w.alpha,
            alpha_v: w.beta,
            beta: Some(w.beta),
        }
    }
}

/// Implicit differentiation: T warm gradient steps on g(u, ·), then
/// ∇F ≈ ∇_u f − ∇²_uv g · p with ∇²_vv g · p = ∇_v f.
#[derive(Debug, Clone)]
pub struct Aid {
    common: Common,
    /// The linear solve.
    pub solve: LinearSolve,
    work: Work,
    p: Vec<f64>,
}

impl Aid {
    /// AID with `inner_steps` lower-level steps per iteration and the given linear solve;
    /// step α = c/ℓ_f (c = 0.5) unless changed with [`Aid::with_step`].
    pub fn new(inner_steps: usize, solve: LinearSolve) -> Self {
        Aid {
            common: Common {
                step: StepRule::default(),
                inner_steps,
                beta: None,
                smoothness: None,
            },
            solve,
            work: Work::default(),
            p: Vec::new(),
        }
    }
}

fn inner_descent(problem: &dyn Problem, u: &[f64], v: &mut [f64], w: &mut Work, steps: usize) {
    for _ in 0..steps {
        problem.g(u, v, None, Some(&mut w.gv));
        axpy(-w.beta, &w.gv, v);
    }
}

/// (hu, hv) = ∇²g (0, p) at (u, v).
fn hvp_v(problem: &dyn Problem, u: &[f64], v: &[f64], p: &[f64], w: &mut Work) {
    w.zu.fill(0.0);
    problem.hvp(Level::Lower, u, v, &w.zu, p, &mut w.hu, &mut w.hv);
}

impl Solver for Aid {
    fn name(&self) -> String {
        match self.solve {
            LinearSolve::Cg { iters, .. } => {
                format!("AID-CG (T={}, K={iters})", self.common.inner_steps)
            }
            LinearSolve::Neumann { terms } => {
                format!("AID-Neumann (T={}, K={terms})", self.common.inner_steps)
            }
        }
    }

    fn init(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()> {
        match self.solve {
            LinearSolve::Cg { iters, tol } => {
                if iters == 0 {
                    return Err(Error::setting("cg iters", 0, "at least 1"));
                }
                if !(tol >= 0.0 && tol.is_finite()) {
                    return Err(Error::setting("cg tol", tol, "must be finite and >= 0"));
                }
            }
            LinearSolve::Neumann { terms } => {
                if terms == 0 {
                    return Err(Error::setting("neumann terms", 0, "at least 1"));
                }
            }
        }
        self.work = self.common.init(problem, state)?;
        self.p = vec![0.0; problem.dim_v()];
        Ok(())
    }

    fn step(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()> {
        let w = &mut self.work;
        inner_descent(problem, &state.u, &mut state.v, w, self.common.inner_steps);
        problem.f(&state.u, &state.v, Some(&mut w.fu), Some(&mut w.fv));
        match self.solve {
            LinearSolve::Cg { iters, tol } => {
                // r = b − A p (warm start from the previous p).
                hvp_v(problem, &state.u, &state.v, &self.p.clone(), w);
                let mut r: Vec<f64> = w.fv.iter().zip(&w.hv).map(|(b, a)| b - a).collect();
                let mut d = r.clone();
                let mut rr = dot(&r, &r);
                let stop = tol * tol * dot(&w.fv, &w.fv);
                for _ in 0..iters {
                    if rr <= stop {
                        break;
                    }
                    hvp_v(problem, &state.u, &state.v, &d, w);
                    let dad = dot(&d, &w.hv);
                    if dad <= 0.0 {
                        // Not positive definite along d: keep the current p.
                        break;
                    }
                    let a = rr / dad;
                    axpy(a, &d, &mut self.p);
                    axpy(-a, &w.hv, &mut r);
                    let rr_new = dot(&r, &r);
                    let b = rr_new / rr;
                    rr = rr_new;
                    for (di, ri) in d.iter_mut().zip(&r) {
                        *di = ri + b * *di;
                    }
                }
            }
            LinearSolve::Neumann { terms } => {
                // p = β Σ_k (I − βH)^k b, accumulated with term t ← t − β H t.
                let mut t = w.fv.clone();
                self.p.fill(0.0);
                for _ in 0..terms {
                    axpy(w.beta, &t, &mut self.p);
                    hvp_v(problem, &state.u, &state.v, &t, w);
                    axpy(-w.beta, &w.hv, &mut t);
                }
            }
        }
        hvp_v(problem, &state.u, &state.v, &self.p.clone(), w);
        for i in 0..w.fu.len() {
            state.u[i] -= w.alpha * (w.fu[i] - w.hu[i]);
        }
        problem.project_u(&mut state.u);
        Ok(())
    }

    fn gamma(&self, _iter: usize) -> f64 {
        0.0
    }

    fn steps(&self) -> Steps {
        self.common.steps(&self.work)
    }

    fn smoothness(&self) -> Option<Smoothness> {
        self.work.s
    }
}

/// Iterative differentiation: T gradient steps on g(u, ·) from the current v (warm), and
/// the exact gradient of u ↦ f(u, w_T(u)) by backpropagation through those steps.
#[derive(Debug, Clone)]
pub struct Itd {
    common: Common,
    work: Work,
    path: Vec<Vec<f64>>,
}

impl Itd {
    /// ITD with `inner_steps` unrolled steps; step α = c/ℓ_f (c = 0.5) unless changed.
    pub fn new(inner_steps: usize) -> Self {
        Itd {
            common: Common {
                step: StepRule::default(),
                inner_steps,
                beta: None,
                smoothness: None,
            },
            work: Work::default(),
            path: Vec::new(),
        }
    }
}

impl Solver for Itd {
    fn name(&self) -> String {
        format!("ITD (T={})", self.common.inner_steps)
    }

    fn init(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()> {
        self.work = self.common.init(problem, state)?;
        self.path = vec![vec![0.0; problem.dim_v()]; self.common.inner_steps];
        Ok(())
    }

    fn step(&mut self, problem: &dyn Problem, state: &mut State) -> Result<()> {
        let w = &mut self.work;
        let t_max = self.common.inner_steps;
        for t in 0..t_max {
            self.path[t].copy_from_slice(&state.v);
            inner_descent(problem, &state.u, &mut state.v, w, 1);
        }
        problem.f(&state.u, &state.v, Some(&mut w.fu), Some(&mut w.fv));
        // Reverse pass: a ← (I − β ∇²_vv g(w_t)) a, d_u −= β ∇²_uv g(w_t) a.
        let mut a = w.fv.clone();
        let mut du = w.fu.clone();
        for t in (0..t_max).rev() {
            hvp_v(problem, &state.u, &self.path[t], &a, w);
            axpy(-w.beta, &w.hu, &mut du);
            axpy(-w.beta, &w.hv, &mut a);
        }
        axpy(-w.alpha, &du, &mut state.u);
        problem.project_u(&mut state.u);
        Ok(())
    }

    fn gamma(&self, _iter: usize) -> f64 {
        0.0
    }

    fn steps(&self) -> Steps {
        self.common.steps(&self.work)
    }

    fn smoothness(&self) -> Option<Smoothness> {
        self.work.s
    }
}
