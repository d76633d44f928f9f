//! The closed forms over full-rank backbones: f*_full and Z*, the flag, the penalty optimum
//! Z_γ for each γ (cached), the lower-level head W2* = (X_trn W1)⁺ Y_trn; the constants of the
//! convergence theory (smoothness bound, PL constant); and the pseudo-inverse helpers they
//! share (an SVD per solve, or a Cholesky of a k × k Gram matrix on the head's fast paths).

use super::RepLearning;
use crate::error::{Error, Result};
use crate::kernels::{matmul_par, par_for};
use crate::problem::Smoothness;
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::solvers::Solve;
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// Relative tolerance of every pseudo-inverse (singular values ≤ tol · σ_max are dropped).
pub const PINV_RTOL: f64 = 1e-10;

/// The penalty optimum over full-rank backbones for one γ.
#[derive(Debug, Clone)]
pub struct PenaltySolution {
    /// γ.
    pub gamma: f64,
    /// Minimum-norm least-squares solution Z_γ of [X_val; √γ X_trn] Z = [Y_val; √γ Y_trn].
    pub z: Mat<f64>,
    /// min L_γ over full-rank backbones.
    pub value: f64,
    /// f at Z_γ.
    pub f: f64,
    /// Lower-level gap at Z_γ (g(Z_γ) − g*_full).
    pub ll_gap: f64,
}

/// Singular values of `a` (non-increasing).
pub(super) fn singular_values(what: &str, a: MatRef<'_, f64>) -> Result<Vec<f64>> {
    if a.nrows() == 0 || a.ncols() == 0 {
        return Ok(Vec::new());
    }
    a.singular_values()
        .map_err(|_| Error::data(what, "the singular value decomposition did not converge"))
}

/// Numerical rank with the relative tolerance [`PINV_RTOL`].
pub(super) fn rank_of(s: &[f64]) -> usize {
    let top = s.first().copied().unwrap_or(0.0);
    s.iter()
        .filter(|&&x| x > PINV_RTOL * top && x > 0.0)
        .count()
}

/// The lower half of a Aᵀ (what a Cholesky or a lower-side eigensolver reads; the upper half
/// stays zero), threaded where large.
fn lower_gram(a: MatRef<'_, f64>) -> Mat<f64> {
    let k = a.nrows();
    let mut g = Mat::zeros(k, k);
    let (lower, full) = (BlockStructure::TriangularLower, BlockStructure::Rectangular);
    let par = par_for(k * k * a.ncols() / 2);
    let at = a.transpose();
    triangular::matmul(
        g.as_mut(),
        lower,
        Accum::Replace,
        a,
        full,
        at,
        full,
        1.0,
        par,
    );
    g
}

/// Writes Bᵀ (B Bᵀ)⁻¹ R into `out` (column-major, B.ncols() × R.ncols()) and returns true
/// when the Cholesky factor of B Bᵀ is well conditioned (κ(B)² below about 1e10); false
/// otherwise, leaving the caller to fall back to the SVD.
fn solve_by_row_gram(b: MatRef<'_, f64>, r: MatRef<'_, f64>, out: &mut [f64]) -> bool {
    let k = b.nrows();
    let gram = lower_gram(b);
    let Ok(llt) = gram.as_ref().llt(faer::Side::Lower) else {
        return false;
    };
    let l = llt.L();
    let (lo, hi) = (0..k)
        .map(|i| l[(i, i)].abs())
        .fold((f64::INFINITY, 0.0f64), |(a, c), x| (a.min(x), c.max(x)));
    if !(hi > 0.0 && (lo / hi).powi(2) > 1e-10) {
        return false;
    }
    let c = llt.solve(r);
    let out = MatMut::from_column_major_slice_mut(out, b.ncols(), r.ncols());
    matmul(
        out,
        Accum::Replace,
        b.transpose(),
        c.as_ref(),
        1.0,
        Par::Seq,
    );
    true
}

/// Minimum-norm least-squares solution A⁺ B, pseudo-inverse with relative tolerance
/// [`PINV_RTOL`].
pub fn pinv_solve(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Result<Mat<f64>> {
    let mut x = Mat::zeros(a.ncols(), b.ncols());
    pinv_solve_into(a, b, x.as_mut())?;
    Ok(x)
}

fn pinv_solve_into(a: MatRef<'_, f64>, b: MatRef<'_, f64>, x: MatMut<'_, f64>) -> Result<()> {
    pinv_solve_scaled(a, b, x, None)
}

/// A⁺ B where singular values ≤ PINV_RTOL · `scale` count as zero (`scale` defaults to σ_max(A)).
/// X_val P needs the scale of X_val: where P is zero up to rounding, its own σ_max is rounding
/// noise and a self-relative tolerance would invert it.
pub(super) fn pinv_solve_scaled(
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    mut x: MatMut<'_, f64>,
    scale: Option<f64>,
) -> Result<()> {
    let svd = a
        .thin_svd()
        .map_err(|_| Error::data("least-squares solve", "the SVD did not converge"))?;
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    let k = s.nrows();
    let top = scale.unwrap_or(if k > 0 { s[0] } else { 0.0 });
    let r = (0..k)
        .filter(|&i| s[i] > PINV_RTOL * top && s[i] > 0.0)
        .count();
    if r == 0 {
        x.fill(0.0);
        return Ok(());
    }
    // x = V_r diag(1/s) U_rᵀ b.
    let mut c = Mat::zeros(r, b.ncols());
    matmul(
        c.as_mut(),
        Accum::Replace,
        u.get(.., ..r).transpose(),
        b,
        1.0,
        Par::Seq,
    );
    for i in 0..r {
        let inv = 1.0 / s[i];
        for j in 0..c.ncols() {
            c[(i, j)] *= inv;
        }
    }
    matmul(x, Accum::Replace, v.get(.., ..r), c.as_ref(), 1.0, Par::Seq);
    Ok(())
}

pub(super) fn frob(a: MatRef<'_, f64>) -> f64 {
    a.norm_l2()
}

pub(super) fn half_sq_residual(x: MatRef<'_, f64>, z: MatRef<'_, f64>, y: MatRef<'_, f64>) -> f64 {
    let mut r = y.to_owned();
    matmul(r.as_mut(), Accum::Replace, x, z, 1.0, Par::Seq);
    let mut s = 0.0;
    for j in 0..r.ncols() {
        for i in 0..r.nrows() {
            let d = r[(i, j)] - y[(i, j)];
            s += d * d;
        }
    }
    0.5 * s
}

impl RepLearning {
    /// f*_full: the optimum of f over full-rank backbones (the global bilevel optimum only when
    /// [`RepLearning::is_certified`]).
    pub fn f_star_full(&self) -> f64 {
        self.f_full
    }

    /// g* over full-rank backbones: the least-squares residual ½‖X_trn Z0 − Y_trn‖² (0 when
    /// X_trn has full row rank).
    pub fn g_star_full(&self) -> f64 {
        self.g_full
    }

    /// The orthogonal projector onto the row space of the stacked data [X_trn; X_val] (m × m):
    /// the part of a product Z = W1 W2 that the losses see, on which the distance to the
    /// penalty optimum is measured ([`Problem::penalty_optimum_distance`]).
    ///
    /// [`Problem::penalty_optimum_distance`]: crate::problem::Problem::penalty_optimum_distance
    pub fn row_projector(&self) -> &Mat<f64> {
        &self.row_proj
    }

    /// Z* = Z0 + P (X_val P)⁺ (Y_val − X_val Z0), the optimal product over full-rank backbones.
    pub fn z_star(&self) -> &Mat<f64> {
        &self.z_star
    }

    /// Z0 = X_trn⁺ Y_trn.
    pub fn z0(&self) -> &Mat<f64> {
        &self.z0
    }

    /// f at the degenerate feasible point W1 = 0: ½‖Y_val‖² (scaled).
    pub fn f_at_zero_backbone(&self) -> f64 {
        self.f_zero
    }

    /// ½‖Y_val‖² and ½‖Y_trn‖² (scaled): the reference magnitudes of the relative tolerances.
    pub fn target_scales(&self) -> (f64, f64) {
        (
            0.5 * self.norms.y_val_f.powi(2),
            0.5 * self.norms.y_trn_f.powi(2),
        )
    }

    /// The flag of method.md section 6: a known feasible point (W1 = 0) has a lower f than
    /// f*_full, so f*_full is not the bilevel optimum.
    pub fn flagged(&self) -> bool {
        self.f_zero < self.f_full * (1.0 - 1e-12)
    }

    /// True when a point a solver reached is feasible within `ll_tol` (lower-level gap) and
    /// has f below f*_full by more than `f_tol`: it then also flags the instance.
    pub fn flags_point(&self, f: f64, ll_gap: f64, ll_tol: f64, f_tol: f64) -> bool {
        ll_gap <= ll_tol && f < self.f_full - f_tol
    }

    /// Stacked X_γ = [X_val; √γ X_trn] and Y_γ = [Y_val; √γ Y_trn].
    pub fn stacked(&self, gamma: f64) -> (Mat<f64>, Mat<f64>) {
        let (nt, nv) = self.samples();
        let r = gamma.sqrt();
        let x = Mat::from_fn(nt + nv, self.m, |i, j| {
            if i < nv {
                self.x_val[(i, j)]
            } else {
                r * self.x_trn[(i - nv, j)]
            }
        });
        let y = Mat::from_fn(nt + nv, self.n, |i, j| {
            if i < nv {
                self.y_val[(i, j)]
            } else {
                r * self.y_trn[(i - nv, j)]
            }
        });
        (x, y)
    }

    /// σ⁺_min(X_γ), the smallest non-zero singular value of [X_val; √γ X_trn].
    pub fn sigma_min_plus(&self, gamma: f64) -> Result<f64> {
        let (x, _) = self.stacked(gamma);
        let s = singular_values("X_gamma", x.as_ref())?;
        let r = rank_of(&s);
        Ok(if r == 0 { 0.0 } else { s[r - 1] })
    }

    /// The penalty optimum over full-rank backbones for γ (cached).
    pub fn penalty_solution(&self, gamma: f64) -> Result<PenaltySolution> {
        crate::error::check_gamma("gamma", gamma)?;
        if let Some(p) = self
            .cache
            .lock()
            .expect("cache lock")
            .iter()
            .find(|p| p.gamma == gamma)
        {
            return Ok(p.clone());
        }
        let (x, y) = self.stacked(gamma);
        let z = pinv_solve(x.as_ref(), y.as_ref())?;
        let f = half_sq_residual(self.x_val.as_ref(), z.as_ref(), self.y_val.as_ref());
        let g = half_sq_residual(self.x_trn.as_ref(), z.as_ref(), self.y_trn.as_ref());
        let ll_gap = g - self.g_full;
        let p = PenaltySolution {
            gamma,
            z,
            value: f + gamma * ll_gap,
            f,
            ll_gap,
        };
        let mut c = self.cache.lock().expect("cache lock");
        if c.len() > 16 {
            c.remove(0);
        }
        c.push(p.clone());
        Ok(p)
    }

    /// Writes W2* = (X_trn W1)⁺ Y_trn into `w`. Fast paths by Cholesky where the pseudo-inverse
    /// has a closed form: A = X_trn W1 of full row rank gives A⁺ = Aᵀ(AAᵀ)⁻¹; X_trn of full
    /// column rank and W1 of full row rank give A⁺ = W1⁺ X_trn⁺, so W2* = W1ᵀ(W1W1ᵀ)⁻¹ Z0.
    /// Ill-conditioned cases (κ(A)² beyond about 1e10) fall back to the SVD with relative
    /// tolerance [`PINV_RTOL`].
    pub fn ll_head(&self, u: &[f64], w: &mut [f64]) -> bool {
        let (m, h, n) = (self.m, self.h, self.n);
        let nt = self.x_trn.nrows();
        let w1 = MatRef::from_column_major_slice(u, m, h);
        let mut a = Mat::zeros(nt, h);
        matmul_par(a.as_mut(), self.x_trn.as_ref(), w1, par_for(nt * m * h));
        let solved = if nt <= h {
            // A of full row rank: W2* = Aᵀ (A Aᵀ)⁻¹ Y_trn.
            solve_by_row_gram(a.as_ref(), self.y_trn.as_ref(), w)
        } else {
            // X_trn of full column rank, W1 of full row rank: W2* = W1ᵀ (W1 W1ᵀ)⁻¹ Z0.
            self.trn_full_col_rank && solve_by_row_gram(w1, self.z0.as_ref(), w)
        };
        if solved {
            return true;
        }
        let out = MatMut::from_column_major_slice_mut(w, h, n);
        pinv_solve_into(a.as_ref(), self.y_trn.as_ref(), out).is_ok()
    }

    /// Smallest singular values σ_min(W1) (of its min(m, h)) and σ_min(W2) (of its min(h, n)).
    pub fn sigma_min_layers(&self, u: &[f64], v: &[f64]) -> (f64, f64) {
        let w1 = MatRef::from_column_major_slice(u, self.m, self.h);
        let w2 = MatRef::from_column_major_slice(v, self.h, self.n);
        // σ²_min from the lower half of the smaller Gram matrix (accurate to rounding of
        // σ²_max, enough for a diagnostic): by Lanczos on its inverse where the Gram matrix is
        // large (a record's cost at the benchmark sizes was mostly these eigenvalues), all
        // eigenvalues where it is small or singular.
        let smin = |a: MatRef<'_, f64>| {
            let a = if a.nrows() <= a.ncols() {
                a
            } else {
                a.transpose()
            };
            let (k, g) = (a.nrows(), lower_gram(a));
            let lanczos = (k >= 64).then(|| crate::linalg::spd_min_eig(g.as_ref(), 1e-10, 300));
            let l = lanczos.flatten().or_else(|| {
                g.self_adjoint_eigenvalues(faer::Side::Lower)
                    .ok()
                    .and_then(|e| e.first().copied())
            });
            l.map_or(f64::NAN, |x| x.max(0.0).sqrt())
        };
        (smin(w1), smin(w2))
    }

    /// The PL constant of method.md section 6 at (W1, W2):
    /// (σ²_min(W1) + σ²_min(W2)) · σ⁺_min(X_γ)², given σ⁺_min(X_γ).
    pub fn pl_constant(&self, u: &[f64], v: &[f64], sigma_x: f64) -> f64 {
        let (a, b) = self.sigma_min_layers(u, v);
        (a * a + b * b) * sigma_x * sigma_x
    }

    /// Smoothness bound along a PBGD run started from W1 with orthonormal rows scaled by `s`
    /// and W2 = 0.
    ///
    /// The Hessian of ½‖X W1 W2 − Y‖² is bounded by ‖X‖²(‖W1‖² + ‖W2‖²) + ‖X‖ ‖R‖ (R the
    /// residual). Gradient flow from W2 = 0 keeps W1ᵀW1 − W2W2ᵀ = s² QᵀQ and the columns of W2
    /// in the row space of W1₀, which gives ‖W2‖² ≤ min(‖Z‖, ‖Z‖²/s²) and
    /// ‖W1‖² ≤ s² + ‖W2‖². ‖Z‖ is bounded by twice the larger of ‖Z*‖ and the least-squares
    /// solution of the stacked system (a margin for overshoot), and ‖R‖ ≤ ‖Y‖ + ‖X‖ ‖Z‖ (spectral
    /// norms throughout).
    pub fn smoothness_bound(&self, s: f64) -> Smoothness {
        let d = &self.norms;
        let z = 2.0 * d.z_ref.max(1e-12);
        let w2 = z.min(z * z / (s * s));
        let w = s * s + 2.0 * w2;
        let lf = d.x_val * d.x_val * w + d.x_val * (d.y_val + d.x_val * z);
        let lg = d.x_trn * d.x_trn * w + d.x_trn * (d.y_trn + d.x_trn * z);
        let lg_vv = d.x_trn * d.x_trn * (s * s + w2);
        Smoothness { lf, lg, lg_vv }
    }
}
