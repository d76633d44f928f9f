//! Example 1 of Xiao & Chen (method.md, section 5): a benign penalty landscape over a nested
//! objective with spurious stationary points.
//!
//! f(u, v) = ½ (u − 2 sin v)², g(u, v) = ½ (u − v)². S(u) = {u}, g* ≡ 0,
//! F(u) = ½ (u − 2 sin u)².

use crate::problem::{Level, PenaltyOptimum, Problem, Smoothness};

/// Example 1 (scalar u and v).
#[derive(Debug, Clone, Copy, Default)]
pub struct Example1;

/// The non-zero root of u = 2 sin u, by Newton's method from 1.9.
pub fn nonzero_root() -> f64 {
    let mut u: f64 = 1.9;
    for _ in 0..50 {
        let r = u - 2.0 * u.sin();
        let d = 1.0 - 2.0 * u.cos();
        u -= r / d;
    }
    u
}

impl Example1 {
    /// The nested objective F(u) = ½ (u − 2 sin u)².
    pub fn hyper_objective(u: f64) -> f64 {
        0.5 * (u - 2.0 * u.sin()).powi(2)
    }

    /// F'(u) = (u − 2 sin u)(1 − 2 cos u).
    pub fn hyper_gradient(u: f64) -> f64 {
        (u - 2.0 * u.sin()) * (1.0 - 2.0 * u.cos())
    }

    /// The global minimizers of L_γ (and of the bilevel problem): (0, 0) and ±(r, r) with
    /// r = 2 sin r ≈ 1.8955. They do not depend on γ.
    pub fn global_minimizers() -> [(f64, f64); 3] {
        let r = nonzero_root();
        [(0.0, 0.0), (r, r), (-r, -r)]
    }

    /// Stationary points of F in [lo, hi]: the roots of u = 2 sin u (global minima, F = 0) and
    /// of cos u = ½ (u = ±π/3 + 2πk: local maxima near the origin, spurious local minima
    /// further out), sorted.
    pub fn stationary_points(lo: f64, hi: f64) -> Vec<f64> {
        let r = nonzero_root();
        let mut pts: Vec<f64> = vec![0.0, r, -r];
        let third = std::f64::consts::FRAC_PI_3;
        let tau = std::f64::consts::TAU;
        let kmax = (hi.abs().max(lo.abs()) / tau).ceil() as i64 + 1;
        for k in -kmax..=kmax {
            pts.push(third + tau * k as f64);
            pts.push(-third + tau * k as f64);
        }
        pts.retain(|&p| p >= lo && p <= hi);
        pts.sort_by(f64::total_cmp);
        pts
    }

    /// Distance from (u, v) to the nearest global minimizer.
    pub fn distance_to_global(u: f64, v: f64) -> f64 {
        Self::global_minimizers()
            .iter()
            .map(|&(a, b)| (u - a).hypot(v - b))
            .fold(f64::INFINITY, f64::min)
    }
}

impl Problem for Example1 {
    fn name(&self) -> String {
        "example1".into()
    }
    fn dim_u(&self) -> usize {
        1
    }
    fn dim_v(&self) -> usize {
        1
    }
    fn f(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        let r = u[0] - 2.0 * v[0].sin();
        if let Some(gu) = gu {
            gu[0] = r;
        }
        if let Some(gv) = gv {
            gv[0] = -2.0 * v[0].cos() * r;
        }
        0.5 * r * r
    }
    fn g(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        let r = u[0] - v[0];
        if let Some(gu) = gu {
            gu[0] = r;
        }
        if let Some(gv) = gv {
            gv[0] = -r;
        }
        0.5 * r * r
    }
    fn ll_solution(&self, u: &[f64], w: &mut [f64]) -> bool {
        w[0] = u[0];
        true
    }
    fn has_ll_solution(&self) -> bool {
        true
    }
    fn smoothness(&self) -> Option<Smoothness> {
        // The paper's experiment uses α = 0.5/(1 + γ), that is c = 0.5 with ℓ_f = ℓ_g = 1.
        // These are the constants of the run rule, not Hessian bounds: ∇²g has norm 2 and ∇²f
        // varies with the point. Users can override them.
        Some(Smoothness {
            lf: 1.0,
            lg: 1.0,
            lg_vv: 1.0,
        })
    }
    fn bilevel_optimum(&self) -> Option<f64> {
        Some(0.0)
    }
    fn penalty_optimum(&self, _gamma: f64) -> Option<PenaltyOptimum> {
        // L_γ ≥ 0 with equality exactly at the three global minimizers.
        Some(PenaltyOptimum {
            value: 0.0,
            point: None,
        })
    }
    fn penalty_optimum_distance(&self, u: &[f64], v: &[f64], _gamma: f64) -> Option<f64> {
        Some(Self::distance_to_global(u[0], v[0]))
    }
    fn hvp(
        &self,
        level: Level,
        u: &[f64],
        v: &[f64],
        du: &[f64],
        dv: &[f64],
        hu: &mut [f64],
        hv: &mut [f64],
    ) {
        let (a, b) = match level {
            Level::Upper => {
                let (s, c) = v[0].sin_cos();
                let r = u[0] - 2.0 * s;
                // ∇²f = [[1, −2c], [−2c, 4c² + 2 s r]].
                let h12 = -2.0 * c;
                let h22 = 4.0 * c * c + 2.0 * s * r;
                (du[0] + h12 * dv[0], h12 * du[0] + h22 * dv[0])
            }
            Level::Lower => (du[0] - dv[0], dv[0] - du[0]),
        };
        hu[0] = a;
        hv[0] = b;
    }
}
