//! Softmax cross-entropy at benchmark size: fused passes over the training rows for both models
//! (scores, softmax, per-sample losses and Xᵀ times the weighted score gradients while each
//! block of rows is in cache, [`crate::kernels::map_pass`]) and the exact-enough solves behind
//! g*(u) and the v block of L_γ: warm-started, preconditioned Newton-CG.
//!
//! In the internal sum form (see [`Cleaning`]'s `sg`), with ρ = λ:
//!
//! ```text
//! g system:  G(W) = Σ_i ψ_i ℓ_i(W) + (λ/2)‖W‖²                       (w*(u))
//! v system:  V(W) = Σ_j ℓ_j^val(W) + γ (Σ_i ψ_i ℓ_i(W) + (λ/2)‖W‖²)  (argmin_W L_γ(u, ·))
//! ```
//!
//! Both are strongly convex (λ > 0). Their Hessian-vector products are one fused pass:
//! Xᵀ [a_i (diag(p_i) − p_i p_iᵀ) (X D)_i]_i + ρ D. Newton steps solve H d = −∇ by CG to an
//! Eisenstat–Walker tolerance that, once the gradient is small, asks for the final tolerance
//! directly (one Newton step from a good warm start). The preconditioner is a Kronecker
//! approximation of the Hessian, G D S + ρ D with G = X_trnᵀX_trn + X_valᵀX_val (formed and
//! eigen-decomposed once per problem) and S = Σ a_i ‖x_i‖² H_i / tr(G) (n × n, recomputed from the
//! probabilities and weights at every Newton step), inverted exactly through both
//! eigen-decompositions. All the weights sit in S: the weighted Gram Σ a_i x_i x_iᵀ is replaced by
//! a multiple of G, which holds when the weights do not depend on the features (label noise is
//! drawn independently of them), and G never has to be formed again as the weights move. Warm
//! starts: the secant fit to the path of earlier solutions (as the least-squares solves,
//! [`super::warm`]).

use super::Cleaning;
use crate::kernels::{Part, RowMap, map_pass, matmul_par, par_for};
use faer::linalg::matmul::matmul;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};

/// Relative gradient norm to which both systems are solved: ‖∇‖ ≤ SOLVE_RTOL · ‖∇(0)‖, the
/// gradient at W = 0 at the weights of the last refresh (see docs/cleaning.md for why this is
/// enough).
pub const SOLVE_RTOL: f64 = 1e-10;
const MAX_CG_ITERS: usize = 200;
const MAX_NEWTON: usize = 50;
/// Solutions of the path kept for the secant warm start.
const HISTORY: usize = 5;

/// A Newton step under its Armijo test: the point before it, the step, the objective there,
/// ⟨∇, step⟩ and the step's fraction t in force.
type Backtrack = (Mat<f64>, Mat<f64>, f64, f64, f64);

/// Which system: the value function's (g) or the v block's.
const G: usize = 0;
const V: usize = 1;

/// The Kronecker preconditioner's fixed part: A = U diag(α) Uᵀ.
#[derive(Debug)]
struct GramEig {
    u: Mat<f64>,
    alpha: Vec<f64>,
}

impl GramEig {
    fn new(a: &Mat<f64>) -> Option<Self> {
        let e = a.self_adjoint_eigen(Side::Lower).ok()?;
        let s = e.S().column_vector();
        Some(GramEig {
            u: e.U().to_owned(),
            alpha: (0..a.nrows()).map(|i| s[i].max(0.0)).collect(),
        })
    }

    /// out = M⁻¹ r for M(D) = A D S + ρ D, S = Q diag(σ) Qᵀ.
    fn apply(&self, sq: &(Mat<f64>, Vec<f64>), rho: f64, r: MatRef<'_, f64>, out: MatMut<'_, f64>) {
        let (q, sigma) = sq;
        let (m, n) = (r.nrows(), r.ncols());
        let par = par_for(m * m * n);
        let mut t = Mat::<f64>::zeros(m, n);
        matmul_par(t.as_mut(), self.u.transpose(), r, par);
        let t = &t * q;
        let mut t = t;
        for j in 0..n {
            for i in 0..m {
                t[(i, j)] /= self.alpha[i] * sigma[j] + rho;
            }
        }
        let tq = &t * q.transpose();
        matmul_par(out, self.u.as_ref(), tq.as_ref(), par);
    }
}

/// The preconditioner's fixed part and the stopping scales of both systems.
#[derive(Debug)]
struct Refresh {
    /// Eigen-decomposition of G = X_trnᵀX_trn + X_valᵀX_val, formed once per problem.
    g: std::sync::Arc<GramEig>,
    /// tr(G) = Σ ‖x‖² over all rows.
    trace: f64,
    /// Xᵀ diag(ψ) (1/n − Y) at the first solve's weights (the g system's gradient at 0).
    g0: Mat<f64>,
    /// γ and ‖∇V(0)‖ at γ.
    v: Option<(f64, f64)>,
}

/// Counts of the work done by the Newton-CG solves, for reports and cost models.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NewtonCounts {
    /// Formations of the preconditioner's Gram (once per problem, and per reference fit).
    pub refreshes: usize,
    /// Eigen-decompositions of m × m matrices.
    pub eigs: usize,
    /// Newton steps (summed over systems solved together).
    pub newton: usize,
    /// Passes over X_trn and the columns they carried in all (a pass of both systems carries
    /// 2n columns).
    pub trn_passes: usize,
    pub trn_cols: usize,
    /// Passes over X_val and their columns in all.
    pub val_passes: usize,
    pub val_cols: usize,
    /// CG iterations (one pass each).
    pub cg: usize,
}

/// The last point both systems (or one) were solved at, with what the u step needs from it.
#[derive(Debug)]
struct Solved {
    u: Vec<f64>,
    /// Per system: the solution (flat m × n) and its per-sample training losses.
    sol: [Option<(Vec<f64>, Vec<f64>)>; 2],
    /// Σ_j ℓ_j^val at the v system's solution.
    f: f64,
}

/// State carried between the Newton-CG solves.
#[derive(Debug, Default)]
pub(super) struct CeState {
    /// Paths of solutions per system, oldest first; the v path is at `path_gamma`.
    path: [Vec<(Vec<f64>, Mat<f64>)>; 2],
    path_gamma: f64,
    pre: Option<Refresh>,
    last: Option<Solved>,
    parts: Vec<Part>,
    /// Per-row outputs of the last gradient pass over X_trn (probabilities of each active
    /// system, then its losses) and over X_val.
    out_trn: Vec<f64>,
    out_val: Vec<f64>,
    /// ‖x_i‖² of the training and validation rows (weights of S).
    norms: Option<(Vec<f64>, Vec<f64>)>,
    /// X_val by rows (its transpose), made on first use for the passes.
    val_rows: Option<Mat<f64>>,
    /// X_valᵀ(1/n − Y_val), formed on first use.
    val_gram: Option<Mat<f64>>,
    pub(super) counts: NewtonCounts,
}

/// Gradient pass: softmax, losses and weighted score gradients of each group of n columns.
struct GradOp<'a> {
    n: usize,
    /// Weight multiplier of each group (the row weight is wt · ψ_i, or wt without ψ).
    wt: &'a [f64],
    psi: Option<&'a [f64]>,
    labels: &'a [usize],
}

impl RowMap for GradOp<'_> {
    fn rows(&self, i0: usize, mut b: MatMut<'_, f64>, out: &mut [f64]) {
        let (n, groups) = (self.n, self.wt.len());
        let k = n * groups;
        let stride = k + groups;
        let rows = b.nrows();
        let labels = &self.labels[i0..i0 + rows];
        // Column by column over the block's rows (contiguous, vectorized exp); per-row scratch.
        let mut scratch = vec![0.0f64; 4 * rows];
        let (mx, rest) = scratch.split_at_mut(rows);
        let (se, rest) = rest.split_at_mut(rows);
        let (zy, a) = rest.split_at_mut(rows);
        for (q, &wt) in self.wt.iter().enumerate() {
            let c0 = q * n;
            for (r, ar) in a.iter_mut().enumerate() {
                *ar = wt * self.psi.map_or(1.0, |p| p[i0 + r]);
                zy[r] = b[(r, c0 + labels[r])];
            }
            mx.fill(f64::NEG_INFINITY);
            for j in 0..n {
                let col = b
                    .rb()
                    .col(c0 + j)
                    .try_as_col_major()
                    .expect("contiguous block");
                for (m, z) in mx.iter_mut().zip(col.as_slice()) {
                    *m = m.max(*z);
                }
            }
            se.fill(0.0);
            for j in 0..n {
                let mut col = b.rb_mut().col_mut(c0 + j);
                let col = col
                    .rb_mut()
                    .try_as_col_major_mut()
                    .expect("contiguous block");
                exp_shifted(col.as_slice_mut(), mx, se);
            }
            for r in 0..rows {
                let lse = mx[r] + se[r].ln();
                out[r * stride + k + q] = lse - zy[r];
                se[r] = 1.0 / se[r];
            }
            for j in 0..n {
                let mut col = b.rb_mut().col_mut(c0 + j);
                let col = col
                    .rb_mut()
                    .try_as_col_major_mut()
                    .expect("contiguous block");
                for (r, e) in col.as_slice_mut().iter_mut().enumerate() {
                    let p = *e * se[r];
                    out[r * stride + c0 + j] = p;
                    *e = a[r] * (p - f64::from(labels[r] == j));
                }
            }
        }
    }
}

/// z ← exp(z − m) and s += z, elementwise, vectorized for the machine's SIMD width.
fn exp_shifted(z: &mut [f64], m: &[f64], s: &mut [f64]) {
    pulp::Arch::new().dispatch(
        #[inline(always)]
        || {
            for ((z, m), s) in z.iter_mut().zip(m).zip(s.iter_mut()) {
                let e = exp_le0(*z - *m);
                *z = e;
                *s += e;
            }
        },
    )
}

/// e^x for x ≤ 0 without branches (so that it vectorizes): x = k ln 2 + r with |r| ≤ ln2 / 2
/// (Cody–Waite), e^r by its Taylor polynomial of degree 13 (truncation below 2e-16), times 2^k
/// from the exponent bits. Relative error a few ulp; below −708 the result is 0 (the
/// subnormal range is dropped: such a probability is 0 to double precision anyway).
#[inline(always)]
pub(super) fn exp_le0(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // 1.5 · 2^52: adding it rounds to an integer held in the low mantissa bits.
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    let under = x < -708.0;
    let x = x.max(-708.0);
    let t = x * LOG2E + SHIFTER;
    let k = t - SHIFTER;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [
        479_001_600.0,
        39_916_800.0,
        3_628_800.0,
        362_880.0,
        40_320.0,
        5_040.0,
        720.0,
        120.0,
        24.0,
        6.0,
        2.0,
        1.0,
        1.0,
    ] {
        p = p * r + 1.0 / c;
    }
    let ki = t.to_bits().wrapping_sub(SHIFTER.to_bits());
    let scale = f64::from_bits(ki.wrapping_add(1023) << 52);
    if under { 0.0 } else { p * scale }
}

/// Hessian pass: each group's block a_i (diag(p_i) − p_i p_iᵀ) applied to the rows of X D.
struct HessOp<'a> {
    n: usize,
    /// Per group: its column offset in the stored probabilities and its weight multiplier.
    cols: &'a [(usize, f64)],
    psi: Option<&'a [f64]>,
    p: &'a [f64],
    stride: usize,
}

impl RowMap for HessOp<'_> {
    fn rows(&self, i0: usize, mut b: MatMut<'_, f64>, _out: &mut [f64]) {
        let (n, rows, stride) = (self.n, b.nrows(), self.stride);
        let p = &self.p[i0 * stride..(i0 + rows) * stride];
        let mut scratch = vec![0.0f64; 2 * rows];
        let (pt, a) = scratch.split_at_mut(rows);
        for (q, &(pc, wt)) in self.cols.iter().enumerate() {
            let c0 = q * n;
            for (r, ar) in a.iter_mut().enumerate() {
                *ar = wt * self.psi.map_or(1.0, |ps| ps[i0 + r]);
            }
            pt.fill(0.0);
            for j in 0..n {
                let col = b
                    .rb()
                    .col(c0 + j)
                    .try_as_col_major()
                    .expect("contiguous block");
                for (r, (s, t)) in pt.iter_mut().zip(col.as_slice()).enumerate() {
                    *s += p[r * stride + pc + j] * t;
                }
            }
            for j in 0..n {
                let mut col = b.rb_mut().col_mut(c0 + j);
                let col = col
                    .rb_mut()
                    .try_as_col_major_mut()
                    .expect("contiguous block");
                for (r, t) in col.as_slice_mut().iter_mut().enumerate() {
                    *t = a[r] * p[r * stride + pc + j] * (*t - pt[r]);
                }
            }
        }
    }
}

fn fro_dot(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> f64 {
    let mut s = 0.0;
    for j in 0..a.ncols() {
        for (x, y) in a.col(j).iter().zip(b.col(j).iter()) {
            s += x * y;
        }
    }
    s
}

/// Eigen-decomposition of a small symmetric matrix (S, n × n).
fn small_eig(s: &Mat<f64>) -> (Mat<f64>, Vec<f64>) {
    match s.self_adjoint_eigen(Side::Lower) {
        Ok(e) => {
            let d = e.S().column_vector();
            (
                e.U().to_owned(),
                (0..s.nrows()).map(|i| d[i].max(0.0)).collect(),
            )
        }
        Err(_) => (Mat::identity(s.nrows(), s.nrows()), vec![0.0; s.nrows()]),
    }
}

impl Cleaning {
    /// True when the softmax solves apply: cross-entropy with a positive ridge (strongly convex
    /// systems; without a ridge separable data has no minimizer).
    pub(super) fn ce_solvable(&self) -> bool {
        self.s.loss == super::CleaningLoss::SoftmaxCrossEntropy && self.s.lambda > 0.0
    }

    /// Work done by the Newton-CG solves so far (softmax cross-entropy).
    pub fn newton_counts(&self) -> NewtonCounts {
        self.ce.lock().unwrap_or_else(|e| e.into_inner()).counts
    }

    fn ce_parts(&self, st: &mut CeState) {
        let (m, n) = self.shape();
        if st.parts.is_empty() {
            let rows = self.data.train.len().max(self.data.val.len());
            st.parts = Part::pool(rows, m, 2 * n);
        }
    }

    /// One gradient pass of the systems in `groups` (weight multipliers `wt`) at the columns
    /// `x` (m × n·groups): training rows (and validation rows for the v system when
    /// `val_first` is true: it must be the first group), per-row outputs left in the state.
    /// Writes the loss parts of the gradients (ridge excluded) into `grad` (m × kg) and returns
    /// per group Σ a_i ℓ_i (+ Σ ℓ_j^val for the v system).
    #[allow(clippy::too_many_arguments)]
    fn ce_grad_pass(
        &self,
        st: &mut CeState,
        psi: &[f64],
        wt: &[f64],
        val_first: bool,
        x: MatRef<'_, f64>,
        mut grad: MatMut<'_, f64>,
    ) -> Vec<f64> {
        self.ce_parts(st);
        let n = self.data.classes;
        let groups = wt.len();
        let nt = self.data.train.len();
        let stride = n * groups + groups;
        st.out_trn.resize(nt * stride, 0.0);
        let op = GradOp {
            n,
            wt,
            psi: Some(psi),
            labels: &self.data.train.labels,
        };
        map_pass(
            self.rows_trn.transpose(),
            x,
            grad.as_mut(),
            &mut st.parts,
            Some(&mut st.out_trn),
            stride,
            &op,
        );
        st.counts.trn_passes += 1;
        st.counts.trn_cols += x.ncols();
        let mut vals: Vec<f64> = (0..groups)
            .map(|q| {
                (0..nt)
                    .map(|i| wt[q] * psi[i] * st.out_trn[i * stride + n * groups + q])
                    .sum()
            })
            .collect();
        if val_first {
            let kg = grad.ncols().min(n);
            let mut gv = Mat::<f64>::zeros(x.nrows(), kg);
            vals[0] += self.ce_val_pass(st, x.subcols(0, n), gv.as_mut());
            let mut g0 = grad.subcols_mut(0, kg);
            g0 += &gv;
        }
        vals
    }

    /// The gradient pass over X_val at W (m × n): Σ_j ℓ_j^val, X_valᵀ(P − Y) into `grad`
    /// (m × n, or m × 0), the per-row outputs left in the state.
    fn ce_val_pass(&self, st: &mut CeState, w: MatRef<'_, f64>, grad: MatMut<'_, f64>) -> f64 {
        self.ce_parts(st);
        let n = self.data.classes;
        let nv = self.data.val.len();
        st.out_val.resize(nv * (n + 1), 0.0);
        let op = GradOp {
            n,
            wt: &[1.0],
            psi: None,
            labels: &self.data.val.labels,
        };
        if st.val_rows.is_none() {
            st.val_rows = Some(self.data.val.x.transpose().to_owned());
        }
        let xv = st.val_rows.take().expect("made above");
        map_pass(
            xv.transpose(),
            w,
            grad,
            &mut st.parts,
            Some(&mut st.out_val),
            n + 1,
            &op,
        );
        st.val_rows = Some(xv);
        st.counts.val_passes += 1;
        st.counts.val_cols += n;
        (0..nv).map(|j| st.out_val[j * (n + 1) + n]).sum()
    }

    /// Hessian passes at the probabilities of the last gradient pass: out = H_q D_q for the
    /// groups `cols` (offset of each in that pass, weight multiplier), ridge excluded; the v
    /// system, when present, must be the first group and `val_first` true.
    #[allow(clippy::too_many_arguments)]
    fn ce_hess_pass(
        &self,
        st: &mut CeState,
        psi: &[f64],
        cols: &[(usize, f64)],
        stride: usize,
        val_first: bool,
        d: MatRef<'_, f64>,
        mut out: MatMut<'_, f64>,
    ) {
        let n = self.data.classes;
        let op = HessOp {
            n,
            cols,
            psi: Some(psi),
            p: &st.out_trn,
            stride,
        };
        let mut parts = std::mem::take(&mut st.parts);
        map_pass(
            self.rows_trn.transpose(),
            d,
            out.as_mut(),
            &mut parts,
            None,
            0,
            &op,
        );
        st.counts.trn_passes += 1;
        st.counts.trn_cols += d.ncols();
        if val_first {
            let mut gv = Mat::<f64>::zeros(d.nrows(), n);
            let op = HessOp {
                n,
                cols: &[(0, 1.0)],
                psi: None,
                p: &st.out_val,
                stride: n + 1,
            };
            let xv = st.val_rows.take().expect("made by the gradient pass");
            map_pass(
                xv.transpose(),
                d.subcols(0, n),
                gv.as_mut(),
                &mut parts,
                None,
                0,
                &op,
            );
            st.val_rows = Some(xv);
            st.counts.val_passes += 1;
            st.counts.val_cols += n;
            let mut o = out.subcols_mut(0, n);
            o += &gv;
        }
        st.parts = parts;
    }

    /// Sets up the preconditioner on first use: the Gram G of all rows and its
    /// eigen-decomposition (shared with the reference fits through `shared`), the stopping scale
    /// of the g system at weights ψ, and the v system's at γ when given.
    fn ce_refresh(
        &self,
        st: &mut CeState,
        psi: &[f64],
        gamma: Option<f64>,
        shared: Option<std::sync::Arc<GramEig>>,
    ) -> Option<()> {
        let (m, n) = self.shape();
        if st.pre.is_none() {
            let g = match shared {
                Some(g) => g,
                None => {
                    st.counts.refreshes += 1;
                    let mut gram = sym_gram(self.data.train.x.as_ref());
                    gram += sym_gram(self.data.val.x.as_ref());
                    st.counts.eigs += 1;
                    std::sync::Arc::new(GramEig::new(&gram)?)
                }
            };
            let trace = g.alpha.iter().sum::<f64>();
            let x = &self.data.train.x;
            let nt = x.nrows();
            // Xᵀ diag(ψ) (1/n − Y).
            let t = Mat::from_fn(nt, n, |i, j| psi[i] * (1.0 / n as f64 - self.y_trn[(i, j)]));
            let mut g0 = Mat::<f64>::zeros(m, n);
            matmul(
                g0.as_mut(),
                Accum::Replace,
                x.transpose(),
                t.as_ref(),
                1.0,
                par_for(nt * m * n),
            );
            st.pre = Some(Refresh {
                g,
                trace,
                g0,
                v: None,
            });
        }
        if let Some(gm) = gamma {
            if st.val_gram.is_none() {
                let xv = &self.data.val.x;
                let t = Mat::from_fn(xv.nrows(), n, |i, j| 1.0 / n as f64 - self.y_val[(i, j)]);
                let mut b = Mat::<f64>::zeros(m, n);
                matmul(
                    b.as_mut(),
                    Accum::Replace,
                    xv.transpose(),
                    t.as_ref(),
                    1.0,
                    Par::Seq,
                );
                st.val_gram = Some(b);
            }
            let bv = st.val_gram.as_ref().expect("formed above");
            let pre = st.pre.as_mut().expect("set above");
            if pre.v.is_none_or(|(g, _)| g != gm) {
                pre.v = Some((gm, (bv + &pre.g0 * faer::Scale(gm)).norm_l2()));
            }
        }
        Some(())
    }

    /// S of each group from the probabilities of the last gradient pass (weights a_i ‖x_i‖²),
    /// with its eigen-decomposition.
    fn ce_kron_s(
        &self,
        st: &mut CeState,
        psi: &[f64],
        cols: &[(usize, f64)],
        stride: usize,
        val_first: bool,
    ) -> Vec<(Mat<f64>, Vec<f64>)> {
        let n = self.data.classes;
        if st.norms.is_none() {
            let norms = |x: &Mat<f64>| -> Vec<f64> {
                let mut s = vec![0.0; x.nrows()];
                for j in 0..x.ncols() {
                    for (a, v) in s.iter_mut().zip(x.col(j).iter()) {
                        *a += v * v;
                    }
                }
                s
            };
            st.norms = Some((norms(&self.data.train.x), norms(&self.data.val.x)));
        }
        let (nt_norms, nv_norms) = st.norms.as_ref().expect("set above");
        let trace = st.pre.as_ref().map_or(1.0, |p| p.trace).max(1e-300);
        let add = |s: &mut Mat<f64>, p: &[f64], c: f64| {
            for a in 0..n {
                s[(a, a)] += c * p[a];
                for b in 0..n {
                    s[(a, b)] -= c * p[a] * p[b];
                }
            }
        };
        cols.iter()
            .enumerate()
            .map(|(q, &(pc, wt))| {
                let mut s = Mat::<f64>::zeros(n, n);
                for (i, &c) in nt_norms.iter().enumerate() {
                    let c = c * wt * psi[i];
                    add(&mut s, &st.out_trn[i * stride + pc..i * stride + pc + n], c);
                }
                if q == 0 && val_first {
                    for (j, &c) in nv_norms.iter().enumerate() {
                        add(&mut s, &st.out_val[j * (n + 1)..j * (n + 1) + n], c);
                    }
                }
                // Normalized by tr(G): G ⊗ S has the Hessian's trace.
                s *= faer::Scale(1.0 / trace);
                small_eig(&s)
            })
            .collect()
    }

    /// Solves the systems in `want` ([g, v]) at sample weights ψ from the columns of `x`
    /// ([w, W], m × 2n) by Newton-CG; leaves the solutions in `x` and returns their per-sample
    /// training losses and, for the v system, Σ_j ℓ_j^val. γ is the internal penalty constant
    /// (the v system needs it). None when a solve fails (a non-finite value, or no convergence
    /// in MAX_NEWTON steps).
    fn ce_newton(
        &self,
        st: &mut CeState,
        psi: &[f64],
        gamma: Option<f64>,
        want: [bool; 2],
        x: &mut Mat<f64>,
        shared: Option<std::sync::Arc<GramEig>>,
    ) -> Option<([Vec<f64>; 2], f64)> {
        let (m, n) = self.shape();
        let lam = self.s.lambda;
        if st.pre.is_none() || (want[V] && st.pre.as_ref().and_then(|p| p.v).map(|v| v.0) != gamma)
        {
            self.ce_refresh(st, psi, gamma.filter(|_| want[V]), shared)?;
        }
        let gm = gamma.unwrap_or(0.0);
        // Per system: weight multiplier, ridge, stopping scale.
        let wt = [1.0, gm];
        let rho = [lam, gm * lam];
        let pre = st.pre.as_ref().expect("refreshed");
        let scale = [pre.g0.norm_l2(), pre.v.map_or(f64::NAN, |v| v.1)];
        let mut active: Vec<usize> = [V, G].into_iter().filter(|&s| want[s]).collect();
        let mut losses: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut fval = f64::NAN;
        // Backtracking state per system: (x before the step, the step, objective, ⟨∇, d⟩, t).
        let mut prev: [Option<Backtrack>; 2] = [None, None];
        let col = |s: usize| if s == G { 0 } else { n };
        for _ in 0..MAX_NEWTON * 4 {
            if active.is_empty() {
                break;
            }
            let k = active.len() * n;
            let xa = Mat::from_fn(m, k, |i, j| x[(i, col(active[j / n]) + j % n)]);
            let wts: Vec<f64> = active.iter().map(|&s| wt[s]).collect();
            let val_first = active[0] == V;
            let mut grad = Mat::<f64>::zeros(m, k);
            let vals = self.ce_grad_pass(st, psi, &wts, val_first, xa.as_ref(), grad.as_mut());
            let stride = k + active.len();
            let nt = self.data.train.len();
            let mut next = Vec::new();
            let mut stepping = Vec::new();
            for (q, &s) in active.iter().enumerate() {
                let xs = xa.as_ref().subcols(q * n, n);
                let mut gq = grad.as_mut().subcols_mut(q * n, n);
                for j in 0..n {
                    for i in 0..m {
                        gq[(i, j)] += rho[s] * xs[(i, j)];
                    }
                }
                let obj = vals[q] + 0.5 * rho[s] * xs.squared_norm_l2();
                if !obj.is_finite() {
                    return None;
                }
                // Armijo test of the last step; halve it when it failed.
                if let Some((x0, d, f0, gd, t)) = prev[s].take() {
                    let slack = 1e-13 * f0.abs();
                    if obj > f0 + 1e-4 * t * gd + slack && t > 1e-8 {
                        let t = 0.5 * t;
                        let mut xc = x.as_mut().subcols_mut(col(s), n);
                        xc.copy_from(&x0);
                        xc += &d * faer::Scale(t);
                        prev[s] = Some((x0, d, f0, gd, t));
                        next.push(s);
                        continue;
                    }
                }
                losses[s] = (0..nt).map(|i| st.out_trn[i * stride + k + q]).collect();
                if s == V {
                    fval = (0..self.data.val.len())
                        .map(|j| st.out_val[j * (n + 1) + n])
                        .sum();
                }
                let gn = grad.as_ref().subcols(q * n, n).norm_l2();
                if gn > SOLVE_RTOL * scale[s] {
                    stepping.push((q, s, obj, gn));
                    next.push(s);
                }
            }
            // The systems whose step must be taken (not backtracking), in pass order.
            if !stepping.is_empty() {
                st.counts.newton += 1;
                let cols: Vec<(usize, f64)> = stepping
                    .iter()
                    .map(|&(q, s, _, _)| (q * n, wt[s]))
                    .collect();
                let vfirst = stepping[0].1 == V;
                let sq = self.ce_kron_s(st, psi, &cols, stride, vfirst);
                let kk = stepping.len() * n;
                // PCG on each system (Frobenius inner products), all in one pass per iteration.
                let mut r = Mat::from_fn(m, kk, |i, j| -grad[(i, stepping[j / n].0 * n + j % n)]);
                let mut d = Mat::<f64>::zeros(m, kk);
                // Taken out of the state for the passes below, put back after the solve.
                let pre_owned = st.pre.take().expect("refreshed");
                let pre = &pre_owned;
                let precond = |r: MatRef<'_, f64>, z: &mut Mat<f64>| {
                    for (b, &(_, s, _, _)) in stepping.iter().enumerate() {
                        pre.g.apply(
                            &sq[b],
                            rho[s],
                            r.subcols(b * n, n),
                            z.as_mut().subcols_mut(b * n, n),
                        );
                    }
                };
                let mut z = Mat::<f64>::zeros(m, kk);
                precond(r.as_ref(), &mut z);
                let mut p = z.clone();
                let nb = stepping.len();
                let blk = |a: &Mat<f64>, b: &Mat<f64>, i: usize| {
                    fro_dot(a.as_ref().subcols(i * n, n), b.as_ref().subcols(i * n, n))
                };
                let mut rz: Vec<f64> = (0..nb).map(|b| blk(&r, &z, b)).collect();
                let target: Vec<f64> = stepping
                    .iter()
                    .map(|&(_, s, _, gn)| {
                        let eta = (0.5 * SOLVE_RTOL * scale[s] / gn).max((gn / scale[s]).min(0.5));
                        eta * gn
                    })
                    .collect();
                let mut done = vec![false; nb];
                let mut hp = Mat::<f64>::zeros(m, kk);
                let mut iters = 0;
                while iters < MAX_CG_ITERS && done.iter().any(|d| !d) {
                    iters += 1;
                    self.ce_hess_pass(st, psi, &cols, stride, vfirst, p.as_ref(), hp.as_mut());
                    st.counts.cg += 1;
                    for (b, &(_, s, _, _)) in stepping.iter().enumerate() {
                        if done[b] {
                            continue;
                        }
                        let (pb, mut hb) = (
                            p.as_ref().subcols(b * n, n),
                            hp.as_mut().subcols_mut(b * n, n),
                        );
                        hb += pb * faer::Scale(rho[s]);
                        let pq = fro_dot(pb, hb.as_ref());
                        let a = if pq > 0.0 { rz[b] / pq } else { 0.0 };
                        let mut db = d.as_mut().subcols_mut(b * n, n);
                        db += pb * faer::Scale(a);
                        let mut rb = r.as_mut().subcols_mut(b * n, n);
                        rb -= hp.as_ref().subcols(b * n, n) * faer::Scale(a);
                        if r.as_ref().subcols(b * n, n).norm_l2() <= target[b] || pq <= 0.0 {
                            done[b] = true;
                        }
                    }
                    if done.iter().all(|d| *d) {
                        break;
                    }
                    precond(r.as_ref(), &mut z);
                    for b in 0..nb {
                        if done[b] {
                            continue;
                        }
                        let rz_new = blk(&r, &z, b);
                        let beta = if rz[b] > 0.0 { rz_new / rz[b] } else { 0.0 };
                        rz[b] = rz_new;
                        let mut pb = p.as_mut().subcols_mut(b * n, n);
                        pb *= faer::Scale(beta);
                        pb += z.as_ref().subcols(b * n, n);
                    }
                }
                st.pre = Some(pre_owned);
                for (b, &(q, s, obj, _)) in stepping.iter().enumerate() {
                    let db = d.as_ref().subcols(b * n, n);
                    let gd = fro_dot(grad.as_ref().subcols(q * n, n), db);
                    let x0 = x.as_ref().subcols(col(s), n).to_owned();
                    let mut xc = x.as_mut().subcols_mut(col(s), n);
                    xc += db;
                    prev[s] = Some((x0, db.to_owned(), obj, gd, 1.0));
                }
            }
            next.sort_by_key(|&s| if s == V { 0 } else { 1 });
            active = next;
        }
        active.is_empty().then_some((losses, fval))
    }

    /// argmin_W Σ wts_i ℓ_i + (λ/2)‖W‖² by the same Newton-CG from W = 0 (own state: the
    /// warm path of the run is left alone). None when it fails.
    pub(super) fn ce_fit(&self, wts: &[f64]) -> Option<Vec<f64>> {
        let (m, n) = self.shape();
        // The Gram's eigen-decomposition is the run's (made here when the run has none yet).
        let shared = {
            let mut main = self.ce.lock().unwrap_or_else(|e| e.into_inner());
            if main.pre.is_none() {
                let psi = self.weights(&self.default_start().0);
                self.ce_refresh(&mut main, &psi, None, None)?;
            }
            main.pre.as_ref().map(|p| p.g.clone())
        };
        let mut st = CeState::default();
        let mut x = Mat::<f64>::zeros(m, 2 * n);
        self.ce_newton(&mut st, wts, None, [true, false], &mut x, shared)?;
        Some(super::exact::flatten(x.as_ref().subcols(0, n)))
    }

    /// The exact-enough solutions at u: w*(u) into `w` (always), and with `gamma` the v block's
    /// argmin_W f + γ g into `v` (internal γ). Caches w*(u) for [`Problem::ll_solution`].
    pub(super) fn ce_solution(
        &self,
        u: &[f64],
        gamma: Option<f64>,
        w: &mut [f64],
        v: Option<&mut [f64]>,
    ) -> bool {
        let (m, n) = self.shape();
        let cached = {
            let c = self.cache.lock().expect("cache lock");
            c.as_ref()
                .filter(|(cu, _)| cu.as_slice() == u)
                .map(|(_, cw)| cw.clone())
        };
        let mut st = self.ce.lock().unwrap_or_else(|e| e.into_inner());
        let want = [cached.is_none(), gamma.is_some()];
        if gamma.is_some() && st.path_gamma != gamma.unwrap_or(0.0) {
            st.path[V].clear();
            st.path_gamma = gamma.unwrap_or(0.0);
        }
        let mut x = Mat::<f64>::zeros(m, 2 * n);
        for s in [G, V] {
            let start = super::warm::secant_start(&st.path[s], u)
                .or_else(|| st.path[s].last().map(|p| p.1.clone()))
                .or_else(|| st.path[G].last().map(|p| p.1.clone()));
            if let Some(x0) = start {
                x.as_mut().subcols_mut(s * n, n).copy_from(&x0);
            }
        }
        if let Some(cw) = &cached {
            x.as_mut()
                .subcols_mut(0, n)
                .copy_from(MatRef::from_column_major_slice(cw, m, n));
        }
        if !(want[G] || want[V]) {
            if let Some(cw) = cached {
                w.copy_from_slice(&cw);
            }
            return true;
        }
        let psi = self.weights(u);
        let Some((mut losses, fval)) = self.ce_newton(&mut st, &psi, gamma, want, &mut x, None)
        else {
            return false;
        };
        let mut sol: [Option<(Vec<f64>, Vec<f64>)>; 2] = [None, None];
        for s in [G, V] {
            if want[s] {
                let flat = super::exact::flatten(x.as_ref().subcols(s * n, n));
                sol[s] = Some((flat, std::mem::take(&mut losses[s])));
            }
        }
        // Keep the other system's solution when it was solved at the same u before.
        let mut fval = fval;
        if let Some(old) = st.last.take()
            && old.u == u
        {
            for s in [G, V] {
                if sol[s].is_none() {
                    sol[s] = old.sol[s].clone();
                    if s == V {
                        fval = old.f;
                    }
                }
            }
        }
        st.last = Some(Solved {
            u: u.to_vec(),
            sol,
            f: fval,
        });
        for s in [G, V] {
            if want[s] {
                let path = &mut st.path[s];
                if path.len() > HISTORY {
                    path.remove(0);
                }
                path.push((u.to_vec(), x.as_ref().subcols(s * n, n).to_owned()));
            }
        }
        let wsol = super::exact::flatten(x.as_ref().subcols(0, n));
        w.copy_from_slice(&wsol);
        if let Some(v) = v {
            v.copy_from_slice(&super::exact::flatten(x.as_ref().subcols(n, n)));
        }
        drop(st);
        *self.cache.lock().expect("cache lock") = Some((u.to_vec(), wsol));
        true
    }

    /// [f_s(v), g_s(u, v), g_s(u, w)] and the gradients of L_γ (internal sum form, internal γ):
    /// from the last Newton solve when (u, v, w) is its solution and ∇_v is not wanted (the
    /// Gauss–Seidel u step right after the exact v block: no pass at all), else one fused pass
    /// over X_trn for both models and one over X_val.
    pub(super) fn ce_penalty(
        &self,
        u: &[f64],
        v: &[f64],
        w: &[f64],
        gamma: f64,
        du: Option<&mut [f64]>,
        dv: Option<&mut [f64]>,
    ) -> [f64; 3] {
        let (m, n) = self.shape();
        let sc = self.s.u_scale;
        let psi = self.weights(u);
        let half = 0.5 * self.s.lambda;
        let mut st = self.ce.lock().unwrap_or_else(|e| e.into_inner());
        let reuse = dv.is_none()
            && st.last.as_ref().is_some_and(|l| {
                l.u == u
                    && l.sol[V].as_ref().is_some_and(|s| s.0 == v)
                    && l.sol[G].as_ref().is_some_and(|s| s.0 == w)
            });
        let (lv, lw, f) = if reuse {
            let l = st.last.as_ref().expect("checked");
            let lv = l.sol[V].as_ref().expect("checked").1.clone();
            let lw = l.sol[G].as_ref().expect("checked").1.clone();
            (lv, lw, l.f)
        } else {
            let mut x = Mat::<f64>::zeros(m, 2 * n);
            x.as_mut()
                .subcols_mut(0, n)
                .copy_from(MatRef::from_column_major_slice(v, m, n));
            x.as_mut()
                .subcols_mut(n, n)
                .copy_from(MatRef::from_column_major_slice(w, m, n));
            let kg = if dv.is_some() { n } else { 0 };
            // Training rows for both models (∇ for v only), validation rows for v.
            let mut grad = Mat::<f64>::zeros(m, kg);
            self.ce_grad_pass(&mut st, &psi, &[1.0, 1.0], false, x.as_ref(), grad.as_mut());
            let nt = self.data.train.len();
            let stride = 2 * n + 2;
            let lv: Vec<f64> = (0..nt).map(|i| st.out_trn[i * stride + 2 * n]).collect();
            let lw: Vec<f64> = (0..nt)
                .map(|i| st.out_trn[i * stride + 2 * n + 1])
                .collect();
            let mut gval = Mat::<f64>::zeros(m, kg);
            let f = self.ce_val_pass(&mut st, x.as_ref().subcols(0, n), gval.as_mut());
            if let Some(dv) = dv {
                for j in 0..n {
                    for i in 0..m {
                        dv[j * m + i] =
                            gval[(i, j)] + gamma * (grad[(i, j)] + self.s.lambda * v[j * m + i]);
                    }
                }
            }
            (lv, lw, f)
        };
        let (mut g, mut gs) = (0.0, 0.0);
        for i in 0..psi.len() {
            g += psi[i] * lv[i];
            gs += psi[i] * lw[i];
        }
        g += half * v.iter().map(|a| a * a).sum::<f64>();
        gs += half * w.iter().map(|a| a * a).sum::<f64>();
        if let Some(du) = du {
            for i in 0..du.len() {
                let p = psi[i];
                du[i] = gamma * sc * p * (1.0 - p) * (lv[i] - lw[i]);
            }
        }
        [f, g, gs]
    }
}

/// AᵀA (full, symmetric) of a tall A, threaded when large.
fn sym_gram(a: MatRef<'_, f64>) -> Mat<f64> {
    use faer::linalg::matmul::triangular::{BlockStructure, matmul as tri_matmul};
    let m = a.ncols();
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
        par_for(a.nrows() * m * m),
    );
    for j in 0..m {
        for i in 0..j {
            g[(i, j)] = g[(j, i)];
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::exp_le0;

    /// The branch-free exp against the standard library's on (−745, 0]: a few ulp, and 0 below
    /// the normal range.
    #[test]
    fn exp_le0_matches_std() {
        let mut worst: f64 = 0.0;
        for i in 0..200_000 {
            let x = -(i as f64) * 708.0 / 200_000.0 - (i % 7) as f64 * 1e-3;
            let x = x.max(-708.0);
            let (a, b) = (exp_le0(x), x.exp());
            worst = worst.max((a - b).abs() / b);
        }
        assert!(worst <= 1e-15, "{worst:e}");
        assert_eq!(exp_le0(0.0), 1.0);
        assert_eq!(exp_le0(-800.0), 0.0);
        assert_eq!(exp_le0(f64::NEG_INFINITY), 0.0);
    }
}
