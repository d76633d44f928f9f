//! The counterexample of the PBGD-Free paper (method.md, section 4b):
//!
//! f(u, v) = 10 v + u²,   g(u, v) = (v − u + 1)²,   u ∈ [−8, 1.5].
//!
//! w*(u) = u − 1 and v_γ*(u) = argmin [γ⁻¹f + g](u, ·) = u − 1 − 5/γ, so
//! F(u) = f(u, w*(u)) = u² + 10u − 10 and F_γ(u) = u² + 10u − 10 − 25/γ: both have
//! ∇ = 2u + 10, zero at u = −5 (the penalty bias is in the value, −25/γ, not in the point).
//! PBGD-Free's direction ∇_u f(u, v) = 2u drops the O(1) term γ(∇_u g(u, v_γ*) − ∇_u g(u, w*)) =
//! 10 and stalls at u = 0.
//!
//! The box on v. The authors also box v in [−8, 1.5]. The library's lower-level variable is
//! unconstrained (the [`Problem`] trait has no projection on v, and every solver's v and w steps
//! are plain gradient steps), and oracles that clamp to a box the steps ignore would disagree
//! with them (a clamped g* with free v steps makes g − g* negative for u < −7 and moves the
//! minimum of L_γ to the corner u = −8).
//! So this problem takes v ∈ R. The authors' box is inactive wherever w*(u) and v_γ*(u) lie in
//! [−8, 1.5], that is for u ∈ [−7 + 5/γ, 1.5] — which contains both end points of the claim
//! (u = −5: w* = −6; u = 0: w* = −1) and, for γ ≥ 10, the starts u ∈ [−6.5, 1.5] the
//! `followups` experiment draws; there the two readings agree.

use crate::problem::{Level, PenaltyOptimum, Problem, Smoothness};

/// Lower end of the box on u.
pub const LO: f64 = -8.0;
/// Upper end of the box on u.
pub const HI: f64 = 1.5;

/// The counterexample (no data, no settings).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counterexample;

impl Counterexample {
    /// F(u) = f(u, w*(u)).
    pub fn hyper_objective(u: f64) -> f64 {
        u * u + 10.0 * u - 10.0
    }

    /// ∇F_γ(u) = 2u + 10 (every γ > 0).
    pub fn reduced_gradient(u: f64) -> f64 {
        2.0 * u + 10.0
    }

    /// The bilevel solution u* = −5.
    pub const SOLUTION: f64 = -5.0;

    /// Where PBGD-Free stalls: u = 0.
    pub const STALL: f64 = 0.0;
}

impl Problem for Counterexample {
    fn name(&self) -> String {
        "counterexample".into()
    }
    fn dim_u(&self) -> usize {
        1
    }
    fn dim_v(&self) -> usize {
        1
    }
    fn f(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        if let Some(gu) = gu {
            gu[0] = 2.0 * u[0];
        }
        if let Some(gv) = gv {
            gv[0] = 10.0;
        }
        10.0 * v[0] + u[0] * u[0]
    }
    fn g(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        let s = v[0] - u[0] + 1.0;
        if let Some(gu) = gu {
            gu[0] = -2.0 * s;
        }
        if let Some(gv) = gv {
            gv[0] = 2.0 * s;
        }
        s * s
    }
    fn ll_solution(&self, u: &[f64], w: &mut [f64]) -> bool {
        w[0] = u[0] - 1.0;
        true
    }
    fn has_ll_solution(&self) -> bool {
        true
    }
    fn penalty_v_solution(&self, u: &[f64], gamma: f64, v: &mut [f64]) -> bool {
        if !(gamma > 0.0 && gamma.is_finite()) {
            return false;
        }
        v[0] = u[0] - 1.0 - 5.0 / gamma;
        true
    }
    fn has_penalty_v_solution(&self) -> bool {
        true
    }
    fn project_u(&self, u: &mut [f64]) {
        u[0] = u[0].clamp(LO, HI);
    }
    fn is_constrained(&self) -> bool {
        true
    }
    /// Hessians: f has diag(2, 0); g has 2 [[1, −1], [−1, 1]] (eigenvalue 4), 2 in v alone.
    fn smoothness(&self) -> Option<Smoothness> {
        Some(Smoothness {
            lf: 2.0,
            lg: 4.0,
            lg_vv: 2.0,
        })
    }
    fn bilevel_optimum(&self) -> Option<f64> {
        Some(Self::hyper_objective(Self::SOLUTION))
    }
    /// min L_γ = F_γ(−5) = −35 − 25/γ at (−5, −6 − 5/γ): F_γ is a convex parabola in u.
    fn penalty_optimum(&self, gamma: f64) -> Option<PenaltyOptimum> {
        (gamma > 0.0 && gamma.is_finite()).then(|| PenaltyOptimum {
            value: Self::hyper_objective(Self::SOLUTION) - 25.0 / gamma,
            point: Some((
                vec![Self::SOLUTION],
                vec![Self::SOLUTION - 1.0 - 5.0 / gamma],
            )),
        })
    }
    fn hvp(
        &self,
        level: Level,
        _u: &[f64],
        _v: &[f64],
        du: &[f64],
        dv: &[f64],
        hu: &mut [f64],
        hv: &mut [f64],
    ) {
        match level {
            Level::Upper => {
                hu[0] = 2.0 * du[0];
                hv[0] = 0.0;
            }
            Level::Lower => {
                hu[0] = 2.0 * (du[0] - dv[0]);
                hv[0] = 2.0 * (dv[0] - du[0]);
            }
        }
    }
}
