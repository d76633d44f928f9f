//! Penalty-constant schedules, step-size rules and smoothness estimation.

use crate::error::{Result, check_gamma, check_positive};
use crate::problem::{Level, Problem, Smoothness};
use serde::{Deserialize, Serialize};

/// How γ evolves over iterations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum GammaSchedule {
    /// Fixed γ.
    Constant(f64),
    /// γ ramped linearly from `start` to `end` over `iters` iterations, then held
    /// (V-PBGD of Shen & Chen).
    Linear { start: f64, end: f64, iters: usize },
}

impl GammaSchedule {
    /// γ at iteration `k`.
    pub fn at(&self, k: usize) -> f64 {
        match *self {
            GammaSchedule::Constant(g) => g,
            GammaSchedule::Linear { start, end, iters } => {
                if iters == 0 || k >= iters {
                    end
                } else {
                    start + (end - start) * k as f64 / iters as f64
                }
            }
        }
    }

    /// Largest γ the schedule reaches.
    pub fn max(&self) -> f64 {
        match *self {
            GammaSchedule::Constant(g) => g,
            GammaSchedule::Linear { start, end, .. } => start.max(end),
        }
    }

    /// Checks that every γ is finite and > 0.
    pub fn validate(&self) -> Result<()> {
        match *self {
            GammaSchedule::Constant(g) => check_gamma("gamma", g),
            GammaSchedule::Linear { start, end, .. } => {
                check_gamma("gamma start", start)?;
                check_gamma("gamma end", end)
            }
        }
    }
}

/// Outer step-size rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum StepRule {
    /// α = c / (ℓ_f + γ ℓ_g), with smoothness from the problem or estimated (the default,
    /// c = 0.5).
    Smoothness { c: f64 },
    /// A fixed α.
    Fixed(f64),
    /// α = α₀ · min(1, 1/γ) (V-PBGD).
    InverseGamma { alpha0: f64 },
}

impl Default for StepRule {
    fn default() -> Self {
        StepRule::Smoothness { c: 0.5 }
    }
}

impl StepRule {
    /// α for penalty constant γ.
    pub fn alpha(&self, gamma: f64, s: &Smoothness) -> f64 {
        match *self {
            StepRule::Smoothness { c } => c / (s.lf + gamma * s.lg),
            StepRule::Fixed(a) => a,
            StepRule::InverseGamma { alpha0 } => alpha0 * (1.0f64).min(1.0 / gamma),
        }
    }

    /// True when α depends on the smoothness constants (which may then have to be estimated).
    pub fn needs_smoothness(&self) -> bool {
        match *self {
            StepRule::Smoothness { .. } => true,
            StepRule::Fixed(_) => false,
            StepRule::InverseGamma { alpha0 } => alpha0.is_nan(),
        }
    }

    /// Checks the constants.
    pub fn validate(&self) -> Result<()> {
        match *self {
            StepRule::Smoothness { c } => check_positive("step constant c", c),
            StepRule::Fixed(a) => check_positive("step size alpha", a),
            StepRule::InverseGamma { alpha0 } => check_positive("step size alpha0", alpha0),
        }
    }
}

/// Smoothness constants for a run: the user's overrides first, then the problem's own, then
/// power-iteration estimates at the start point.
pub fn resolve_smoothness(
    problem: &dyn Problem,
    u: &[f64],
    v: &[f64],
    overrides: Option<Smoothness>,
) -> Result<Smoothness> {
    let s = match overrides.or_else(|| problem.smoothness()) {
        Some(s) => s,
        None => estimate_smoothness(problem, u, v, 30),
    };
    check_positive("smoothness lf", s.lf.max(f64::MIN_POSITIVE))?;
    check_positive("smoothness lg", s.lg)?;
    check_positive("smoothness lg_vv", s.lg_vv)?;
    Ok(s)
}

/// Power iteration on Hessian-vector products at (u, v): estimates ℓ_f, ℓ_g (joint) and
/// ℓ_{g,vv}. Estimates are local; a floor keeps them away from 0 where a Hessian vanishes at
/// the start point.
pub fn estimate_smoothness(
    problem: &dyn Problem,
    u: &[f64],
    v: &[f64],
    iters: usize,
) -> Smoothness {
    let lf = power_iteration(problem, Level::Upper, u, v, false, iters);
    let lg = power_iteration(problem, Level::Lower, u, v, false, iters);
    let lg_vv = power_iteration(problem, Level::Lower, u, v, true, iters);
    let floor = 1e-8 * (1.0 + lf.max(lg));
    Smoothness {
        lf: lf.max(floor),
        lg: lg.max(floor),
        lg_vv: lg_vv.max(floor),
    }
}

fn power_iteration(
    problem: &dyn Problem,
    level: Level,
    u: &[f64],
    v: &[f64],
    v_only: bool,
    iters: usize,
) -> f64 {
    let (nu, nv) = (u.len(), v.len());
    // Deterministic, non-degenerate start direction.
    let mut du: Vec<f64> = (0..nu)
        .map(|i| {
            if v_only {
                0.0
            } else {
                1.0 + 0.1 * ((i * 7 % 13) as f64)
            }
        })
        .collect();
    let mut dv: Vec<f64> = (0..nv).map(|i| 1.0 + 0.1 * ((i * 5 % 11) as f64)).collect();
    let mut hu = vec![0.0; nu];
    let mut hv = vec![0.0; nv];
    let mut lambda = 0.0;
    for _ in 0..iters {
        let n = crate::linalg::norm(&du).hypot(crate::linalg::norm(&dv));
        if n == 0.0 || !n.is_finite() {
            return lambda;
        }
        du.iter_mut().chain(dv.iter_mut()).for_each(|x| *x /= n);
        problem.hvp(level, u, v, &du, &dv, &mut hu, &mut hv);
        if v_only {
            hu.fill(0.0);
        }
        lambda = crate::linalg::norm(&hu).hypot(crate::linalg::norm(&hv));
        std::mem::swap(&mut du, &mut hu);
        std::mem::swap(&mut dv, &mut hv);
    }
    lambda
}
