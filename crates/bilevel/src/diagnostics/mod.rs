//! Diagnostics: finite-difference gradient checks and empirical PL ratios.

mod flatness;
pub use flatness::{
    FlatnessFit, FlatnessObserver, FlatnessRow, LeastNormResponses, fit_flatness,
    reduced_gradient_norm,
};

use crate::problem::{Level, Problem, eval_level};
use crate::trace::Trace;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

/// Relative errors of the analytic partial gradients against central differences.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GradCheck {
    /// ∂f/∂u.
    pub f_u: f64,
    /// ∂f/∂v.
    pub f_v: f64,
    /// ∂g/∂u.
    pub g_u: f64,
    /// ∂g/∂v.
    pub g_v: f64,
}

impl GradCheck {
    /// Largest of the four errors.
    pub fn max(&self) -> f64 {
        self.f_u.max(self.f_v).max(self.g_u).max(self.g_v)
    }
}

/// Compares analytic gradients with central differences at (u, v).
///
/// Blocks of at most `max_coords` entries are checked coordinate by coordinate; larger blocks
/// along 8 seeded random directions (directional derivative against ⟨∇, d⟩). The error of a
/// block is ‖fd − analytic‖ / max(‖analytic‖, ‖fd‖, 1e-12), or the largest directional error
/// relative to ‖∇‖‖d‖.
pub fn gradient_check(problem: &dyn Problem, u: &[f64], v: &[f64], max_coords: usize) -> GradCheck {
    let err = |level: Level, block_u: bool| {
        let mut gu = vec![0.0; u.len()];
        let mut gv = vec![0.0; v.len()];
        eval_level(problem, level, u, v, Some(&mut gu), Some(&mut gv));
        let grad = if block_u { gu } else { gv };
        let n = grad.len();
        if n == 0 {
            return 0.0;
        }
        let scale = crate::linalg::norm(if block_u { u } else { v });
        let h = 1e-6 * (1.0 + scale / (n as f64).sqrt());
        let eval_at = |d: &[f64], t: f64| {
            let mut up = u.to_vec();
            let mut vp = v.to_vec();
            let x = if block_u { &mut up } else { &mut vp };
            for (xi, di) in x.iter_mut().zip(d) {
                *xi += t * di;
            }
            eval_level(problem, level, &up, &vp, None, None)
        };
        let gn = crate::linalg::norm(&grad);
        if n <= max_coords {
            let mut fd = vec![0.0; n];
            let mut e = vec![0.0; n];
            for i in 0..n {
                e[i] = 1.0;
                fd[i] = (eval_at(&e, h) - eval_at(&e, -h)) / (2.0 * h);
                e[i] = 0.0;
            }
            let diff = crate::linalg::dist(&fd, &grad);
            diff / gn.max(crate::linalg::norm(&fd)).max(1e-12)
        } else {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut worst: f64 = 0.0;
            for _ in 0..8 {
                let d: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
                let dn = crate::linalg::norm(&d);
                let d: Vec<f64> = d.iter().map(|x| x / dn).collect();
                let fd = (eval_at(&d, h) - eval_at(&d, -h)) / (2.0 * h);
                let an = crate::linalg::dot(&grad, &d);
                worst = worst.max((fd - an).abs() / gn.max(1e-12));
            }
            worst
        }
    };
    GradCheck {
        f_u: err(Level::Upper, true),
        f_v: err(Level::Upper, false),
        g_u: err(Level::Lower, true),
        g_v: err(Level::Lower, false),
    }
}

/// Empirical PL ratios at one record: ½‖∇L_γ‖² / (L_γ − L_γ*), jointly and per block.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PlRatio {
    /// Iteration of the record.
    pub iter: usize,
    /// ½‖∇L_γ‖² / (L_γ − L*).
    pub joint: f64,
    /// ½‖∇_u L_γ‖² / (L_γ − L*).
    pub u: f64,
    /// ½‖∇_v L_γ‖² / (L_γ − L*).
    pub v: f64,
}

/// PL ratios along a trace, against the optimal value `l_star` of L_γ. Records whose gap is
/// below `min_gap` (where rounding dominates) are skipped.
pub fn pl_ratios(trace: &Trace, l_star: f64, min_gap: f64) -> Vec<PlRatio> {
    trace
        .records
        .iter()
        .filter_map(|r| {
            let gap = r.l_gamma - l_star;
            (gap > min_gap).then(|| PlRatio {
                iter: r.iter,
                joint: 0.5 * (r.grad_u * r.grad_u + r.grad_v * r.grad_v) / gap,
                u: 0.5 * r.grad_u * r.grad_u / gap,
                v: 0.5 * r.grad_v * r.grad_v / gap,
            })
        })
        .collect()
}
