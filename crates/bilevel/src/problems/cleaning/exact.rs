//! The lower-level fit W(ψ) = argmin_W Σ ψ_i ℓ_i + λ/2‖W‖². Least squares: the weighted Gram
//! XᵀΨX and right-hand side XᵀΨY (N m² flops, cached for the last u) and a direct m × m
//! solve (Cholesky, or an eigenvalue pseudo-inverse when λ = 0; m³). Cross-entropy:
//! accelerated gradient descent. The warm-started alternative is in `warm`.

use super::{Cleaning, CleaningLoss};
use crate::error::{Error, Result};
use crate::problem::Problem;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};

/// A u and the weighted Gram and right-hand side at ψ(u).
pub(super) type WeightedSystem = (Vec<f64>, std::sync::Arc<(Mat<f64>, Mat<f64>)>);

/// AᵀA (its lower triangle only: every consumer factors with `Side::Lower`, and the
/// triangular product costs half the flops) and AᵀB, multithreaded when the product is large
/// enough to pay for it.
fn gram_and_rhs(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> (Mat<f64>, Mat<f64>) {
    use faer::linalg::matmul::triangular::{BlockStructure, matmul as tri_matmul};
    let (nr, m) = (a.nrows(), a.ncols());
    let par = if nr * m * m > 50_000_000 {
        Par::rayon(0)
    } else {
        Par::Seq
    };
    let mut g = Mat::<f64>::zeros(m, m);
    tri_matmul(
        g.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        a.transpose(),
        BlockStructure::Rectangular,
        a,
        BlockStructure::Rectangular,
        1.0,
        par,
    );
    let mut r = Mat::<f64>::zeros(m, b.ncols());
    matmul(r.as_mut(), Accum::Replace, a.transpose(), b, 1.0, Par::Seq);
    (g, r)
}

/// Solves (A + ridge·I) X = B for symmetric positive semi-definite A: Cholesky when ridge > 0;
/// otherwise the minimum-norm solution through an eigen-decomposition with a relative
/// pseudo-inverse tolerance of 1e-10 (A is singular when there are fewer samples than
/// features). Reads the lower triangle of A only.
pub(super) fn solve_ridge(
    what: &str,
    mut a: Mat<f64>,
    b: MatRef<'_, f64>,
    ridge: f64,
) -> Result<Mat<f64>> {
    let m = a.nrows();
    if ridge > 0.0 {
        for i in 0..m {
            a[(i, i)] += ridge;
        }
        return crate::linalg::spd_solve(what, a.as_ref(), b);
    }
    let eig = a
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| Error::data(what, "eigenvalue computation did not converge"))?;
    let (uu, ss) = (eig.U(), eig.S().column_vector());
    let smax = (0..m).map(|k| ss[k].abs()).fold(0.0, f64::max);
    let tol = 1e-10 * smax;
    // X = U diag(1/s_k, s_k > tol) Uᵀ B.
    let mut ub = Mat::<f64>::zeros(m, b.ncols());
    matmul(
        ub.as_mut(),
        Accum::Replace,
        uu.transpose(),
        b,
        1.0,
        Par::Seq,
    );
    for k in 0..m {
        let inv = if ss[k] > tol { 1.0 / ss[k] } else { 0.0 };
        for j in 0..b.ncols() {
            ub[(k, j)] *= inv;
        }
    }
    let mut sol = Mat::<f64>::zeros(m, b.ncols());
    matmul(sol.as_mut(), Accum::Replace, uu, ub.as_ref(), 1.0, Par::Seq);
    Ok(sol)
}

/// A matrix as a column-major flat vector.
pub(super) fn flatten(x: MatRef<'_, f64>) -> Vec<f64> {
    (0..x.ncols())
        .flat_map(|j| (0..x.nrows()).map(move |i| x[(i, j)]))
        .collect()
}

impl Cleaning {
    /// The minimizer of Σ wts_i ℓ_i + λ/2‖W‖² (weights ≥ 0). Least squares: the m × m
    /// weighted ridge system Xᵀ diag(wts) X + λI (never an N × N matrix); when λ = 0 the
    /// minimum-norm solution through an eigenvalue pseudo-inverse with relative tolerance
    /// 1e-10 (the system is singular when m exceeds the number of weighted samples). Softmax
    /// cross-entropy: accelerated gradient descent to a relative gradient norm of 1e-10 (at
    /// most 20,000 iterations); needs λ > 0 or separable-free data to have a minimizer.
    pub fn fit(&self, wts: &[f64]) -> Result<Vec<f64>> {
        if wts.len() != self.data.train.len() {
            return Err(Error::dim(
                "sample weights",
                self.data.train.len(),
                wts.len(),
            ));
        }
        if let Some(i) = wts.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(Error::data(
                "sample weights",
                format!("weight {i} is negative or not finite"),
            ));
        }
        match self.s.loss {
            CleaningLoss::LeastSquares => self.fit_ls(wts),
            // Newton-CG where the ridge makes the fit strongly convex (the fallback keeps the
            // accelerated gradient loop).
            CleaningLoss::SoftmaxCrossEntropy => Ok(self
                .ce_solvable()
                .then(|| self.ce_fit(wts))
                .flatten()
                .unwrap_or_else(|| self.fit_ce(wts, None))),
        }
    }

    fn fit_ls(&self, wts: &[f64]) -> Result<Vec<f64>> {
        let (a, b) = self.weighted_system(wts);
        let sol = solve_ridge(
            "weighted ridge system X^T diag(psi) X + lambda I",
            a,
            b.as_ref(),
            self.s.lambda,
        )?;
        Ok(flatten(sol.as_ref()))
    }

    /// The weighted Gram XᵀΨX and right-hand side XᵀΨY of the training set for weights ψ:
    /// the N m² part of both exact solves (g* and the v block of L_γ), formed once per u.
    fn weighted_system(&self, wts: &[f64]) -> (Mat<f64>, Mat<f64>) {
        let (m, n) = self.shape();
        let x = &self.data.train.x;
        let nt = x.nrows();
        let sw: Vec<f64> = wts.iter().map(|w| w.sqrt()).collect();
        // Column by column: contiguous reads and writes (column-major storage).
        let scale_rows = |src: MatRef<'_, f64>, cols: usize| {
            let mut out = Mat::<f64>::zeros(nt, cols);
            for j in 0..cols {
                let (s, d) = (src.col(j), out.col_mut(j));
                for ((d, s), w) in d.iter_mut().zip(s.iter()).zip(&sw) {
                    *d = w * s;
                }
            }
            out
        };
        let xs = scale_rows(x.as_ref(), m);
        let ys = scale_rows(self.y_trn.as_ref(), n);
        gram_and_rhs(xs.as_ref(), ys.as_ref())
    }

    /// [`Cleaning::weighted_system`] at ψ(u), cached for the last u (the solver's v block,
    /// its g* and the monitor all ask at the same u).
    pub(super) fn system_at(&self, u: &[f64]) -> std::sync::Arc<(Mat<f64>, Mat<f64>)> {
        let mut c = self.system_cache.lock().expect("cache lock");
        if let Some((cu, sys)) = c.as_ref()
            && cu.as_slice() == u
        {
            return sys.clone();
        }
        let sys = std::sync::Arc::new(self.weighted_system(&self.weights(u)));
        *c = Some((u.to_vec(), sys.clone()));
        sys
    }

    /// X_valᵀX_val and X_valᵀY_val, formed on first use.
    pub(super) fn val_system(&self) -> &(Mat<f64>, Mat<f64>) {
        self.val_system
            .get_or_init(|| gram_and_rhs(self.data.val.x.as_ref(), self.y_val.as_ref()))
    }

    fn fit_ce(&self, wts: &[f64], start: Option<&[f64]>) -> Vec<f64> {
        let (m, n) = self.shape();
        // Smoothness of the weighted CE: ½ σ_max(diag(√w) X)² + λ (softmax Hessian ≤ ½ I).
        let x = &self.data.train.x;
        let mut d = vec![1.0; m];
        let mut sig2 = 0.0;
        for _ in 0..50 {
            let mut xd = Mat::<f64>::zeros(x.nrows(), 1);
            matmul(
                xd.as_mut(),
                Accum::Replace,
                x.as_ref(),
                crate::linalg::col(&d),
                1.0,
                Par::Seq,
            );
            for i in 0..x.nrows() {
                xd[(i, 0)] *= wts[i];
            }
            let mut nd = Mat::<f64>::zeros(m, 1);
            matmul(
                nd.as_mut(),
                Accum::Replace,
                x.transpose(),
                xd.as_ref(),
                1.0,
                Par::Seq,
            );
            let nv = crate::linalg::to_vec(nd.as_ref());
            sig2 = crate::linalg::norm(&nv);
            if sig2 == 0.0 {
                break;
            }
            d = nv.iter().map(|a| a / sig2).collect();
        }
        let l = 0.5 * sig2 * 1.01 + self.s.lambda;
        let mut wk: Vec<f64> = start.map_or_else(|| vec![0.0; m * n], |s| s.to_vec());
        let mut yk = wk.clone();
        let mut g = vec![0.0; m * n];
        self.weighted_objective(wts, &wk, Some(&mut g));
        let g0 = crate::linalg::norm(&g).max(1e-300);
        let mut t = 1.0f64;
        for _ in 0..20_000 {
            self.weighted_objective(wts, &yk, Some(&mut g));
            let gn = crate::linalg::norm(&g);
            if gn <= 1e-10 * g0 {
                wk.copy_from_slice(&yk);
                break;
            }
            let next: Vec<f64> = yk.iter().zip(&g).map(|(y, gi)| y - gi / l).collect();
            let tn = 0.5 * (1.0 + (1.0 + 4.0 * t * t).sqrt());
            let mom = (t - 1.0) / tn;
            for i in 0..yk.len() {
                yk[i] = next[i] + mom * (next[i] - wk[i]);
            }
            wk = next;
            t = tn;
        }
        wk
    }

    /// The last exact lower-level solution (the start of the next warm solve), or zeros.
    pub(super) fn cached_w(&self) -> Vec<f64> {
        let c = self.cache.lock().expect("cache lock");
        c.as_ref()
            .map_or_else(|| vec![0.0; self.dim_v()], |(_, w)| w.clone())
    }
}
