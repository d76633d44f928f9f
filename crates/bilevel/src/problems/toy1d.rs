//! The 1-D toy of Shen & Chen (ICML 2023), with the corrected ∂f/∂x (method.md, section 9).
//!
//! f(x, y) = cos(4y + 2) / (1 + e^{2 − 4x}) + ½ ln((4x − 2)² + 1),
//! g(x, y) = (x + y)² + x sin²(x + y),   x ∈ [0, 3].
//! For x ≥ 0, g ≥ 0 with equality exactly at y = −x, so S(x) = {−x} and g* ≡ 0;
//! F(x) = cos(2 − 4x) / (1 + e^{2 − 4x}) + ½ ln((4x − 2)² + 1).

use crate::error::{Error, Result};
use crate::problem::{Level, Problem};

/// The toy on the box [lo, hi] (default [0, 3]).
#[derive(Debug, Clone, Copy)]
pub struct Toy1d {
    lo: f64,
    hi: f64,
    solution: (f64, f64),
}

impl Default for Toy1d {
    fn default() -> Self {
        Toy1d::new(0.0, 3.0).expect("the default box is valid")
    }
}

impl Toy1d {
    /// The toy on [lo, hi]; needs 0 ≤ lo < hi (for x < 0 the lower level is not uniquely solved
    /// by y = −x).
    pub fn new(lo: f64, hi: f64) -> Result<Self> {
        if !(lo.is_finite() && hi.is_finite() && lo >= 0.0 && lo < hi) {
            return Err(Error::setting(
                "toy1d box",
                format!("[{lo}, {hi}]"),
                "need finite 0 <= lo < hi (the paper's box is [0, 3])",
            ));
        }
        let mut t = Toy1d {
            lo,
            hi,
            solution: (0.0, 0.0),
        };
        t.solution = t.scan_solution();
        Ok(t)
    }

    /// The box [lo, hi].
    pub fn bounds(&self) -> (f64, f64) {
        (self.lo, self.hi)
    }

    /// Global minimizer x* of F on the box and F(x*).
    pub fn bilevel_solution(&self) -> (f64, f64) {
        self.solution
    }

    /// F(x) = f(x, −x).
    pub fn hyper_objective(x: f64) -> f64 {
        let e = (2.0 - 4.0 * x).exp();
        (2.0 - 4.0 * x).cos() / (1.0 + e) + 0.5 * ((4.0 * x - 2.0).powi(2) + 1.0).ln()
    }

    fn hyper_derivative(x: f64) -> f64 {
        let e = (2.0 - 4.0 * x).exp();
        let c = (2.0 - 4.0 * x).cos();
        let s = (2.0 - 4.0 * x).sin();
        4.0 * s / (1.0 + e)
            + 4.0 * c * e / (1.0 + e).powi(2)
            + (16.0 * x - 8.0) / ((4.0 * x - 2.0).powi(2) + 1.0)
    }

    // A scan of 10⁴ cells, then bisection on F' inside the best cell (unless an end point wins).
    fn scan_solution(&self) -> (f64, f64) {
        let n = 10_000;
        let h = (self.hi - self.lo) / n as f64;
        let (mut best_x, mut best_f) = (self.lo, Self::hyper_objective(self.lo));
        for i in 1..=n {
            let x = self.lo + h * i as f64;
            let fx = Self::hyper_objective(x);
            if fx < best_f {
                best_f = fx;
                best_x = x;
            }
        }
        let (mut a, mut b) = ((best_x - h).max(self.lo), (best_x + h).min(self.hi));
        if Self::hyper_derivative(a) < 0.0 && Self::hyper_derivative(b) > 0.0 {
            for _ in 0..100 {
                let m = 0.5 * (a + b);
                if Self::hyper_derivative(m) < 0.0 {
                    a = m;
                } else {
                    b = m;
                }
            }
            best_x = 0.5 * (a + b);
            best_f = Self::hyper_objective(best_x);
        }
        (best_x, best_f)
    }
}

impl Problem for Toy1d {
    fn name(&self) -> String {
        "toy1d".into()
    }
    fn dim_u(&self) -> usize {
        1
    }
    fn dim_v(&self) -> usize {
        1
    }
    fn f(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        let (x, y) = (u[0], v[0]);
        let e = (2.0 - 4.0 * x).exp();
        let c = (4.0 * y + 2.0).cos();
        let q = (4.0 * x - 2.0).powi(2) + 1.0;
        if let Some(gu) = gu {
            // The square belongs to the denominator: d/dx 1/(1+e) = 4e/(1+e)².
            gu[0] = 4.0 * e * c / (1.0 + e).powi(2) + (16.0 * x - 8.0) / q;
        }
        if let Some(gv) = gv {
            gv[0] = -4.0 * (4.0 * y + 2.0).sin() / (1.0 + e);
        }
        c / (1.0 + e) + 0.5 * q.ln()
    }
    fn g(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        let (x, y) = (u[0], v[0]);
        let s = x + y;
        let (sn, cs) = s.sin_cos();
        if let Some(gu) = gu {
            gu[0] = 2.0 * s + sn * sn + 2.0 * x * sn * cs;
        }
        if let Some(gv) = gv {
            gv[0] = 2.0 * s + 2.0 * x * sn * cs;
        }
        s * s + x * sn * sn
    }
    fn ll_solution(&self, u: &[f64], w: &mut [f64]) -> bool {
        w[0] = -u[0];
        true
    }
    fn has_ll_solution(&self) -> bool {
        true
    }
    fn project_u(&self, u: &mut [f64]) {
        u[0] = u[0].clamp(self.lo, self.hi);
    }
    fn is_constrained(&self) -> bool {
        true
    }
    fn bilevel_optimum(&self) -> Option<f64> {
        Some(self.solution.1)
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
        let (x, y) = (u[0], v[0]);
        let (hxx, hxy, hyy) = match level {
            Level::Upper => {
                let e = (2.0 - 4.0 * x).exp();
                let (sn, c) = (4.0 * y + 2.0).sin_cos();
                let q = (4.0 * x - 2.0).powi(2) + 1.0;
                let l = 16.0 * x - 8.0;
                (
                    -16.0 * c * e * (1.0 - e) / (1.0 + e).powi(3) + 16.0 / q
                        - 2.0 * l * l / (q * q),
                    -16.0 * sn * e / (1.0 + e).powi(2),
                    -16.0 * c / (1.0 + e),
                )
            }
            Level::Lower => {
                let (s2, c2) = (2.0 * (x + y)).sin_cos();
                (
                    2.0 + 2.0 * s2 + 2.0 * x * c2,
                    2.0 + s2 + 2.0 * x * c2,
                    2.0 + 2.0 * x * c2,
                )
            }
        };
        hu[0] = hxx * du[0] + hxy * dv[0];
        hv[0] = hxy * du[0] + hyy * dv[0];
    }
}
