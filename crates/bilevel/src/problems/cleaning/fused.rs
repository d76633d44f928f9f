//! The fused least-squares evaluation of L_γ = f + γ(g(u, W) − g(u, w)) and its gradients: one
//! pass over X_trn for both models [W, w] (per-sample losses and XᵀΨR(W) while each block of
//! rows is in cache, about 6 N m n flops) and one over the compressed X_val.

use super::{Cleaning, sigmoid};
use faer::{Mat, MatRef};

/// Scratch space of one fused penalty evaluation (least squares), allocated on first use and
/// reused, so an iteration allocates nothing.
#[derive(Debug)]
pub(super) struct EvalWork {
    /// ψ(u), N.
    psi: Vec<f64>,
    /// Per-sample half squared residuals at W and at w, row-major N × 2.
    losses: Vec<f64>,
    /// [W, w], m × 2n.
    vw: Mat<f64>,
    /// X_trnᵀ Ψ R(W), m × n.
    gt: Mat<f64>,
    /// X_valᵀ R_val(W), m × n.
    gf: Mat<f64>,
    pub(super) parts: Vec<crate::kernels::Part>,
}

impl Cleaning {
    /// Runs `f` with a scratch workspace from the pool (allocated on first use).
    pub(super) fn with_work<R>(&self, f: impl FnOnce(&mut EvalWork) -> R) -> R {
        let make = || {
            let (m, n) = self.shape();
            let nt = self.data.train.len();
            EvalWork {
                psi: vec![0.0; nt],
                losses: vec![0.0; 2 * nt],
                vw: Mat::zeros(m, 2 * n),
                gt: Mat::zeros(m, n),
                gf: Mat::zeros(m, n),
                parts: crate::kernels::Part::pool(nt.max(self.data.val.len()), m, 2 * n),
            }
        };
        self.work.with(make, f)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn fused_penalty(
        &self,
        ws: &mut EvalWork,
        ls_val: &crate::kernels::LsData,
        u: &[f64],
        v: &[f64],
        w: &[f64],
        gamma: f64,
        du: Option<&mut [f64]>,
        dv: Option<&mut [f64]>,
    ) -> [f64; 3] {
        use crate::kernels::{RowOps, fused_pass};
        let (m, n) = self.shape();
        let sc = self.s.u_scale;
        for (p, &x) in ws.psi.iter_mut().zip(u) {
            *p = sigmoid(sc * x);
        }
        for (dst, src) in [(0, v), (n, w)] {
            let mut col = ws.vw.as_mut().subcols_mut(dst, n);
            col.copy_from(MatRef::from_column_major_slice(src, m, n));
        }
        let kg = if dv.is_some() { n } else { 0 };
        if kg > 0 || !self.losses_from_image(v, w, &mut ws.losses) {
            fused_pass(
                self.rows_trn.transpose(),
                self.y_trn.as_ref(),
                ws.vw.as_ref(),
                ws.gt.as_mut().subcols_mut(0, kg),
                &mut ws.parts,
                RowOps {
                    weight: Some(&ws.psi),
                    losses: Some(&mut ws.losses),
                    cols: Some(self.data.train.x.as_ref()),
                    ..RowOps::default()
                },
            );
        }
        let [f, _] = ls_val.pass(
            ws.vw.as_ref().subcols(0, n),
            ws.gf.as_mut().subcols_mut(0, kg),
            &mut ws.parts,
        );
        let (mut g, mut g_star) = (0.0, 0.0);
        for (p, l) in ws.psi.iter().zip(ws.losses.chunks_exact(2)) {
            g += p * l[0];
            g_star += p * l[1];
        }
        let half_lambda = 0.5 * self.s.lambda;
        g += half_lambda * v.iter().map(|a| a * a).sum::<f64>();
        g_star += half_lambda * w.iter().map(|a| a * a).sum::<f64>();
        if let Some(du) = du {
            // ∂/∂u_i [f + γ(g(u, W) − g(u, w))] = γ s ψ_i (1 − ψ_i) (ℓ_i(W) − ℓ_i(w)).
            for ((d, p), l) in du.iter_mut().zip(&ws.psi).zip(ws.losses.chunks_exact(2)) {
                *d = gamma * sc * p * (1.0 - p) * (l[0] - l[1]);
            }
        }
        if let Some(dv) = dv {
            // ∇_W f + γ (Xᵀ Ψ R(W) + λ W).
            let (gt, gf) = (ws.gt.as_ref(), ws.gf.as_ref());
            for j in 0..n {
                let (t, f) = (gt.col(j), gf.col(j));
                let out = &mut dv[j * m..(j + 1) * m];
                let vj = &v[j * m..(j + 1) * m];
                for (i, o) in out.iter_mut().enumerate() {
                    *o = f[i] + gamma * (t[i] + self.s.lambda * vj[i]);
                }
            }
        }
        [f, g, g_star]
    }
}
