//! Per-sample losses and what is built on them: least squares ½‖z − y‖² on one-hot targets
//! and softmax cross-entropy log Σ_k e^{z_k} − z_y, with their score gradients; the weighted
//! training objective and its gradient (full set or gathered mini-batch; two products of the
//! N × m features with the m × n model, 2 N m n flops each); the exact Hessian-vector product
//! (about two gradient evaluations); sigmoid and one-hot encoding.

use super::{Cleaning, CleaningLoss};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};

/// Samples of one split (or gathered rows of it): features, one-hot targets, labels.
#[derive(Clone, Copy)]
pub(super) struct Rows<'a> {
    pub(super) x: MatRef<'a, f64>,
    pub(super) y: MatRef<'a, f64>,
    pub(super) labels: &'a [usize],
}

pub(super) fn one_hot(labels: &[usize], n: usize) -> Mat<f64> {
    Mat::from_fn(labels.len(), n, |i, j| f64::from(labels[i] == j))
}

/// sigmoid(t), stable for large |t|.
pub fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

impl Cleaning {
    /// Per-sample losses of scores Z against targets Y; when `grad` is true Z is overwritten
    /// with ∂ℓ_i/∂z_i row by row.
    pub(super) fn losses(
        &self,
        z: &mut Mat<f64>,
        y: MatRef<'_, f64>,
        labels: &[usize],
        grad: bool,
    ) -> Vec<f64> {
        let (rows, n) = (z.nrows(), z.ncols());
        let mut out = vec![0.0; rows];
        match self.s.loss {
            CleaningLoss::LeastSquares => {
                for j in 0..n {
                    for i in 0..rows {
                        let r = z[(i, j)] - y[(i, j)];
                        out[i] += 0.5 * r * r;
                        if grad {
                            z[(i, j)] = r;
                        }
                    }
                }
            }
            CleaningLoss::SoftmaxCrossEntropy => {
                for i in 0..rows {
                    let mx = (0..n).map(|j| z[(i, j)]).fold(f64::NEG_INFINITY, f64::max);
                    let se: f64 = (0..n).map(|j| (z[(i, j)] - mx).exp()).sum();
                    let lse = mx + se.ln();
                    out[i] = lse - z[(i, labels[i])];
                    if grad {
                        for j in 0..n {
                            z[(i, j)] = (z[(i, j)] - lse).exp() - y[(i, j)];
                        }
                    }
                }
            }
        }
        out
    }

    pub(super) fn scores(&self, x: MatRef<'_, f64>, w: MatRef<'_, f64>) -> Mat<f64> {
        let mut z = Mat::<f64>::zeros(x.nrows(), w.ncols());
        matmul(z.as_mut(), Accum::Replace, x, w, 1.0, Par::Seq);
        z
    }

    /// Weighted training objective Σ ψ_i ℓ_i + λ/2‖W‖² with sample weights `wts` (any
    /// non-negative numbers), and its gradient in W.
    pub(super) fn weighted_objective(
        &self,
        wts: &[f64],
        v: &[f64],
        gv: Option<&mut [f64]>,
    ) -> (f64, Vec<f64>) {
        let rows = Rows {
            x: self.data.train.x.as_ref(),
            y: self.y_trn.as_ref(),
            labels: &self.data.train.labels,
        };
        self.objective_on(rows, wts, 1.0, v, gv)
    }

    /// scale · Σ_i wts_i ℓ_i + λ/2‖W‖² over the given rows (the whole training set, or a
    /// gathered mini-batch with scale N/|B|), its gradient in W, and the per-sample losses.
    pub(super) fn objective_on(
        &self,
        rows: Rows<'_>,
        wts: &[f64],
        scale: f64,
        v: &[f64],
        gv: Option<&mut [f64]>,
    ) -> (f64, Vec<f64>) {
        let (m, n) = self.shape();
        let w = MatRef::from_column_major_slice(v, m, n);
        let mut z = self.scores(rows.x, w);
        let want = gv.is_some();
        let losses = self.losses(&mut z, rows.y, rows.labels, want);
        let reg: f64 = 0.5 * self.s.lambda * v.iter().map(|a| a * a).sum::<f64>();
        let val = scale * losses.iter().zip(wts).map(|(l, p)| l * p).sum::<f64>() + reg;
        if let Some(gv) = gv {
            for j in 0..n {
                for i in 0..z.nrows() {
                    z[(i, j)] *= wts[i];
                }
            }
            let mut gm = faer::MatMut::from_column_major_slice_mut(gv, m, n);
            matmul(
                gm.as_mut(),
                Accum::Replace,
                rows.x.transpose(),
                z.as_ref(),
                scale,
                Par::Seq,
            );
            if self.s.lambda > 0.0 {
                for j in 0..n {
                    for i in 0..m {
                        gm[(i, j)] += self.s.lambda * w[(i, j)];
                    }
                }
            }
        }
        (val, losses)
    }

    /// Exact Hessian-vector product of f or g at (u, W) in the direction (du, B).
    ///
    /// With scores Z = X W, per-sample losses ℓ_i, their score gradients q_i (least squares:
    /// r_i = z_i − y_i; cross-entropy: p_i − y_i, p_i = softmax(z_i)) and score Hessians H_i
    /// (identity; diag(p_i) − p_i p_iᵀ), dZ = X B, ψ' = s ψ(1 − ψ), ψ'' = s² ψ(1 − ψ)(1 − 2ψ):
    ///
    /// ```text
    /// g:  H_W = Xᵀ [ψ_i H_i dz_i + ψ'_i du_i q_i]_i + λ B,   H_{u_i} = ψ''_i ℓ_i du_i + ψ'_i ⟨q_i, dz_i⟩
    /// f:  H_W = X_valᵀ [H_j dz_j]_j,                          H_u = 0
    /// ```
    ///
    /// Cost: two score products and one transposed product (about two gradient evaluations).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn exact_hvp(
        &self,
        level: crate::problem::Level,
        u: &[f64],
        v: &[f64],
        du: &[f64],
        dv: &[f64],
        hu: &mut [f64],
        hv: &mut [f64],
    ) {
        let (m, n) = self.shape();
        let train = level == crate::problem::Level::Lower;
        let (split, y) = if train {
            (&self.data.train, &self.y_trn)
        } else {
            (&self.data.val, &self.y_val)
        };
        let x = &split.x;
        let rows = x.nrows();
        let mut q = self.scores(x.as_ref(), MatRef::from_column_major_slice(v, m, n));
        let losses = self.losses(&mut q, y.as_ref(), &split.labels, true);
        let dz = self.scores(x.as_ref(), MatRef::from_column_major_slice(dv, m, n));
        // t_i = H_i dz_i.
        let mut t = match self.s.loss {
            CleaningLoss::LeastSquares => dz.clone(),
            CleaningLoss::SoftmaxCrossEntropy => {
                let mut t = Mat::<f64>::zeros(rows, n);
                for i in 0..rows {
                    let pd: f64 = (0..n).map(|j| (q[(i, j)] + y[(i, j)]) * dz[(i, j)]).sum();
                    for j in 0..n {
                        t[(i, j)] = (q[(i, j)] + y[(i, j)]) * (dz[(i, j)] - pd);
                    }
                }
                t
            }
        };
        if train {
            let sc = self.s.u_scale;
            for (i, &ui) in u.iter().enumerate() {
                let psi = sigmoid(sc * ui);
                let d1 = sc * psi * (1.0 - psi);
                let d2 = sc * sc * psi * (1.0 - psi) * (1.0 - 2.0 * psi);
                let qdz: f64 = (0..n).map(|j| q[(i, j)] * dz[(i, j)]).sum();
                hu[i] = d2 * losses[i] * du[i] + d1 * qdz;
                for j in 0..n {
                    t[(i, j)] = psi * t[(i, j)] + d1 * du[i] * q[(i, j)];
                }
            }
        } else {
            hu.fill(0.0);
        }
        let mut hm = faer::MatMut::from_column_major_slice_mut(hv, m, n);
        matmul(
            hm.as_mut(),
            Accum::Replace,
            x.transpose(),
            t.as_ref(),
            1.0,
            Par::Seq,
        );
        if train && self.s.lambda > 0.0 {
            for (h, b) in hv.iter_mut().zip(dv) {
                *h += self.s.lambda * b;
            }
        }
    }
}
