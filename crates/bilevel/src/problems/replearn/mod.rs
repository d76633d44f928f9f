//! Representation learning with a two-layer linear network (method.md, section 6; the paper's
//! Figure 3).
//!
//! Upper level: the backbone W1 ∈ R^{m×h} (u, column-major). Lower level: the head
//! W2 ∈ R^{h×n} (v, column-major).
//!
//! ```text
//! f = ½ ‖X_val W1 W2 − Y_val‖²_F,   g = ½ ‖X_trn W1 W2 − Y_trn‖²_F
//! ```
//!
//! (optionally each divided by its number of samples, [`Scaling::Mean`]).
//!
//! Closed forms over full-rank backbones (rank W1 = m, which needs h ≥ m): every product
//! Z = W1 W2 is reachable, so with Z0 = X_trn⁺ Y_trn and P = I − X_trn⁺ X_trn
//!
//! ```text
//! Z* = Z0 + P (X_val P)⁺ (Y_val − X_val Z0),   f*_full = ½ ‖X_val Z* − Y_val‖²,
//! ```
//!
//! and the penalty function L_γ is minimized by the least-squares solution Z_γ of
//! [X_val; √γ X_trn] Z = [Y_val; √γ Y_trn]. f*_full is the global bilevel optimum only when
//! [X_trn; X_val] has full row rank (then it is 0): the "certified-global" regime. Otherwise it
//! is the optimum over full-rank backbones, and an instance is flagged when a feasible point
//! with a lower f is known (W1 = 0 gives f = ½‖Y_val‖²).
//!
//! Every pseudo-inverse uses the relative tolerance [`PINV_RTOL`] (singular values below
//! `PINV_RTOL · σ_max` count as zero); a default tolerance can fail on X_val P.
//!
//! The files: `instances` (regimes, sizes, generated and given data, the closed forms computed
//! once per instance), `files` (loading and saving the data), `optimum` (the closed-form
//! optima, the flag, the penalty optimum, the constants of the convergence theory and the
//! pseudo-inverse helpers), `fused` (the thread team's fused penalty evaluation and step);
//! here, the problem itself: its data, start point, single-loss evaluations and the
//! [`Problem`] implementation.

mod files;
mod fused;
mod instances;
mod optimum;

pub use files::read_csv_matrix;
pub use instances::{Regime, RepSizes, Scaling};
pub use optimum::{PINV_RTOL, PenaltySolution, pinv_solve};

use crate::error::Result;
use crate::kernels::{LsData, Pool, matmul_par, matmul_par_inner, par_for};
use crate::problem::{PenaltyOptimum, PenaltyStep, Problem, Smoothness};
use faer::linalg::matmul::matmul;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use fused::{Task, Var, Work, var};
use instances::gaussian;
use optimum::frob;
use std::sync::Mutex;

/// The two-layer linear representation-learning problem.
#[derive(Debug)]
pub struct RepLearning {
    m: usize,
    h: usize,
    n: usize,
    scaling: Scaling,
    // Data as given (exported) and scaled (used in every computation).
    raw: [Mat<f64>; 4],
    x_trn: Mat<f64>,
    y_trn: Mat<f64>,
    x_val: Mat<f64>,
    y_val: Mat<f64>,
    // The two losses as the fused passes read them: the R of a QR of X when N ≥ m (a
    // triangle of m² / 2 entries instead of N m), stored by rows so that a row block is
    // contiguous.
    ls_trn: LsData,
    ls_val: LsData,
    regime: Regime,
    certified: bool,
    trn_full_col_rank: bool,
    z0: Mat<f64>,
    z_star: Mat<f64>,
    f_full: f64,
    g_full: f64,
    f_zero: f64,
    row_proj: Mat<f64>,
    norms: DataNorms,
    init_scale: f64,
    warnings: Vec<String>,
    cache: Mutex<Vec<PenaltySolution>>,
    // Scratch buffers of the loss evaluations: one per concurrent caller, allocated on first
    // use and reused (no allocation inside an iteration).
    work: Pool<Work>,
}

#[derive(Debug, Clone, Copy)]
struct DataNorms {
    x_trn: f64,
    x_val: f64,
    y_trn: f64,
    y_val: f64,
    y_trn_f: f64,
    y_val_f: f64,
    z_ref: f64,
}

impl Clone for RepLearning {
    fn clone(&self) -> Self {
        let [a, b, c, d] = self.raw.clone();
        let mut p = RepLearning::from_data(a, b, c, d, self.h, self.scaling)
            .expect("a valid instance stays valid");
        p.init_scale = self.init_scale;
        p
    }
}

impl RepLearning {
    /// Sets the scale s of the default initialization (W1 = s · orthonormal rows) and of the
    /// smoothness bound. Must be finite and > 0. The default is s = max(1, 2 √‖Z_ref‖₂)
    /// (Z_ref the larger of Z* and the stacked least-squares solution in spectral norm): then
    /// ‖W2‖ stays small beside ‖W1‖ along the run, the smoothness bound is within about 1.5×
    /// of the measured curvature, and σ_min(W1) stays near s.
    pub fn with_init_scale(mut self, s: f64) -> Result<Self> {
        crate::error::check_positive("init_scale", s)?;
        self.init_scale = s;
        Ok(self)
    }

    /// Scale of the default initialization.
    pub fn init_scale(&self) -> f64 {
        self.init_scale
    }

    /// The start point of the paper: W1 = s · Qᵀ with Q (h×m) the orthonormal factor of a
    /// Gaussian matrix from the seed's Init stream (so W1 has orthonormal rows scaled by s), and
    /// W2 = 0.
    pub fn init(&self, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = crate::seeds::rng(seed, crate::seeds::Stream::Init);
        let g = gaussian(&mut rng, self.h, self.m, 1.0);
        let q = g.qr().compute_thin_Q();
        let s = self.init_scale;
        let mut w1 = vec![0.0; self.m * self.h];
        for j in 0..self.h {
            for i in 0..self.m {
                w1[i + j * self.m] = s * q[(j, i)];
            }
        }
        (w1, vec![0.0; self.h * self.n])
    }

    /// (m, h, n): features, hidden width, outputs.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.m, self.h, self.n)
    }

    /// (N, N'): training and validation samples.
    pub fn samples(&self) -> (usize, usize) {
        (self.x_trn.nrows(), self.x_val.nrows())
    }

    /// The regime detected from the data.
    pub fn regime(&self) -> Regime {
        self.regime
    }

    /// True when [X_trn; X_val] has full row rank: f*_full = 0 is the global bilevel optimum.
    pub fn is_certified(&self) -> bool {
        self.certified
    }

    /// Warnings raised while loading (rank deficiency).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Training and validation data (scaled as the losses use them): X_trn, Y_trn, X_val, Y_val.
    pub fn data(&self) -> [&Mat<f64>; 4] {
        [&self.x_trn, &self.y_trn, &self.x_val, &self.y_val]
    }

    /// The product Z = W1 W2.
    pub fn product(&self, u: &[f64], v: &[f64]) -> Mat<f64> {
        let w1 = MatRef::from_column_major_slice(u, self.m, self.h);
        let w2 = MatRef::from_column_major_slice(v, self.h, self.n);
        let mut z = Mat::zeros(self.m, self.n);
        matmul(z.as_mut(), Accum::Replace, w1, w2, 1.0, Par::Seq);
        z
    }

    fn loss(
        &self,
        ls: &LsData,
        u: &[f64],
        v: &[f64],
        gu: Option<&mut [f64]>,
        gv: Option<&mut [f64]>,
    ) -> f64 {
        let (m, h, n) = (self.m, self.h, self.n);
        let w1 = MatRef::from_column_major_slice(u, m, h);
        let w2 = MatRef::from_column_major_slice(v, h, n);
        let par = par_for(m * h * n);
        // Cheapest order for small n: Z = W1 W2 (m×n), R = X Z − Y and G = Xᵀ R (m×n) in one
        // fused pass over X, then ∇W1 = G W2ᵀ and ∇W2 = W1ᵀ G.
        self.with_work(|ws| {
            let mut z = ws.z.as_mut().subcols_mut(0, n);
            matmul_par_inner(z.rb_mut(), w1, w2, &mut ws.partials, par);
            let kg = if gu.is_some() || gv.is_some() { n } else { 0 };
            let [val, _] = ls.pass(z.rb(), ws.gt.as_mut().subcols_mut(0, kg), &mut ws.parts);
            let gz = ws.gt.as_ref().subcols(0, n);
            if let Some(gu) = gu {
                let g1 = MatMut::from_column_major_slice_mut(gu, m, h);
                matmul_par(g1, gz, w2.transpose(), par);
            }
            if let Some(gv) = gv {
                let g2 = MatMut::from_column_major_slice_mut(gv, h, n);
                matmul_par(g2, w1.transpose(), gz, par);
            }
            val
        })
    }
}

impl Problem for RepLearning {
    fn name(&self) -> String {
        let (nt, nv) = self.samples();
        format!(
            "replearn({}, N={nt}, N'={nv}, m={}, h={}, n={})",
            self.regime.label(),
            self.m,
            self.h,
            self.n
        )
    }
    fn dim_u(&self) -> usize {
        self.m * self.h
    }
    fn dim_v(&self) -> usize {
        self.h * self.n
    }
    fn f(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        self.loss(&self.ls_val, u, v, gu, gv)
    }
    fn g(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        self.loss(&self.ls_trn, u, v, gu, gv)
    }
    /// f(u, v), g(u, v), g(u, w) and the penalty gradient blocks with one fused pass over
    /// X_trn (right-hand sides [W1 W2, W1 w] stacked) and one over X_val.
    fn penalty_eval(
        &self,
        u: &[f64],
        v: &[f64],
        w: &[f64],
        gamma: f64,
        du: Option<&mut [f64]>,
        dv: Option<&mut [f64]>,
    ) -> Option<[f64; 3]> {
        let task = Task {
            du: du.is_some(),
            dv: dv.is_some(),
            ..Task::default()
        };
        let (u, v, w) = (Var::Ref(u), Var::Ref(v), Var::Ref(w));
        Some(self.fused(u, v, w, gamma, task, du, dv, None))
    }
    /// As [`RepLearning::penalty_eval`], with ∇_v g(u, w) = W1ᵀ X_trnᵀ R_w from the same pass.
    fn penalty_eval_inner(
        &self,
        u: &[f64],
        v: &[f64],
        w: &[f64],
        gamma: f64,
        du: Option<&mut [f64]>,
        dv: Option<&mut [f64]>,
        gw: &mut [f64],
    ) -> Option<[f64; 3]> {
        let task = Task {
            du: du.is_some(),
            dv: dv.is_some(),
            gw: true,
            ..Task::default()
        };
        let (u, v, w) = (Var::Ref(u), Var::Ref(v), Var::Ref(w));
        Some(self.fused(u, v, w, gamma, task, du, dv, Some(gw)))
    }
    /// The step of [`Problem::penalty_step`] from [`RepLearning::fused`]: the u step is added
    /// into W1 by the rank-2n product itself (W1 += −α_u gc·[W2, w]ᵀ, no gradient written),
    /// after ∇_v L_γ was taken at the incoming W1; a single inner step shares the W1ᵀ product
    /// with ∇_v L_γ.
    fn penalty_step(
        &self,
        u: &mut [f64],
        v: &mut [f64],
        w: &mut [f64],
        gamma: f64,
        step: PenaltyStep,
    ) -> Option<[f64; 3]> {
        let task = Task {
            du: step.alpha_u.is_some(),
            alpha_u: step.alpha_u,
            dv: step.alpha_v.is_some(),
            alpha_v: step.alpha_v,
            gw: false,
            beta: step.inner_beta,
            parts: None,
        };
        let (u, v) = (var(u, task.du), var(v, task.dv));
        let w = var(w, task.beta.is_some());
        Some(self.fused(u, v, w, gamma, task, None, None, None))
    }
    /// W2* = (X_trn W1)⁺ Y_trn, the minimum-norm least-squares head (see
    /// [`RepLearning::ll_head`]).
    fn ll_solution(&self, u: &[f64], w: &mut [f64]) -> bool {
        self.ll_head(u, w)
    }
    fn has_ll_solution(&self) -> bool {
        true
    }
    fn initial_point(&self, seed: u64) -> Option<(Vec<f64>, Vec<f64>)> {
        Some(self.init(seed))
    }
    fn smoothness(&self) -> Option<Smoothness> {
        Some(self.smoothness_bound(self.init_scale))
    }
    /// f*_full, only when it is certified global ([X_trn; X_val] of full row rank).
    fn bilevel_optimum(&self) -> Option<f64> {
        self.certified.then_some(self.f_full)
    }
    /// min L_γ over full-rank backbones (the global minimum in the certified regime). The
    /// minimizer is not unique in (W1, W2), so no point is given.
    fn penalty_optimum(&self, gamma: f64) -> Option<PenaltyOptimum> {
        self.penalty_solution(gamma).ok().map(|p| PenaltyOptimum {
            value: p.value,
            point: None,
        })
    }
    /// ‖Π W1 W2 − Z_γ‖_F / ‖Z_γ‖_F, with Π the projector onto the row space of the stacked
    /// features: the relative distance from the product to the set of penalty-optimal
    /// products (Z_γ is its minimum-norm element).
    fn penalty_optimum_distance(&self, u: &[f64], v: &[f64], gamma: f64) -> Option<f64> {
        let p = self.penalty_solution(gamma).ok()?;
        let z = self.product(u, v);
        let mut pz = Mat::zeros(self.m, self.n);
        matmul(
            pz.as_mut(),
            Accum::Replace,
            self.row_proj.as_ref(),
            z.as_ref(),
            1.0,
            Par::Seq,
        );
        let d = frob((&pz - &p.z).as_ref());
        Some(d / frob(p.z.as_ref()).max(1e-300))
    }
    fn solution_views(&self, u: &[f64], v: &[f64]) -> Vec<crate::solution::View> {
        use crate::solution::View;
        vec![
            View::matrix(
                "w1",
                "the backbone W1 (features × hidden), the upper-level variable",
                self.m,
                self.h,
                u,
            ),
            View::matrix(
                "w2",
                "the head W2 (hidden × outputs), the lower-level variable",
                self.h,
                self.n,
                v,
            ),
        ]
    }

    fn metric_names(&self) -> Vec<String> {
        vec![
            "ul_gap_full".into(),
            "sigma_min_w1".into(),
            "sigma_min_w2".into(),
        ]
    }
    /// f − f*_full (signed), σ_min(W1), σ_min(W2).
    fn metrics(&self, u: &[f64], v: &[f64]) -> Vec<f64> {
        let f = self.f(u, v, None, None);
        let (a, b) = self.sigma_min_layers(u, v);
        vec![f - self.f_full, a, b]
    }
    /// Exact Hessian-vector product (see [`RepLearning::loss_hvp`]).
    fn hvp(
        &self,
        level: crate::problem::Level,
        u: &[f64],
        v: &[f64],
        du: &[f64],
        dv: &[f64],
        hu: &mut [f64],
        hv: &mut [f64],
    ) {
        let (x, y) = match level {
            crate::problem::Level::Upper => (&self.x_val, &self.y_val),
            crate::problem::Level::Lower => (&self.x_trn, &self.y_trn),
        };
        self.loss_hvp(x, y, u, v, du, dv, hu, hv);
    }
}

impl RepLearning {
    /// Exact Hessian-vector product of ½‖X W1 W2 − Y‖² at (W1, W2) in the direction (A, B):
    /// with Z = W1 W2, R = X Z − Y, G = Xᵀ R and dZ = A W2 + W1 B, dG = Xᵀ X dZ,
    ///
    /// ```text
    /// H_{W1} = dG W2ᵀ + G Bᵀ,    H_{W2} = Aᵀ G + W1ᵀ dG.
    /// ```
    ///
    /// Cost: a few products of the size of one gradient evaluation (no N×N or mh×mh matrix).
    #[allow(clippy::too_many_arguments)]
    fn loss_hvp(
        &self,
        x: &Mat<f64>,
        y: &Mat<f64>,
        u: &[f64],
        v: &[f64],
        du: &[f64],
        dv: &[f64],
        hu: &mut [f64],
        hv: &mut [f64],
    ) {
        let (m, h, n) = (self.m, self.h, self.n);
        let w1 = MatRef::from_column_major_slice(u, m, h);
        let w2 = MatRef::from_column_major_slice(v, h, n);
        let a = MatRef::from_column_major_slice(du, m, h);
        let b = MatRef::from_column_major_slice(dv, h, n);
        let mm = |dst: MatMut<'_, f64>, acc: Accum, l: MatRef<'_, f64>, r: MatRef<'_, f64>| {
            matmul(dst, acc, l, r, 1.0, Par::Seq)
        };
        // Z and dZ side by side (m × 2n), then X [Z dZ] in one product.
        let mut zz = Mat::<f64>::zeros(m, 2 * n);
        mm(zz.as_mut().get_mut(.., ..n), Accum::Replace, w1, w2);
        mm(zz.as_mut().get_mut(.., n..), Accum::Replace, a, w2);
        mm(zz.as_mut().get_mut(.., n..), Accum::Add, w1, b);
        let mut xz = Mat::<f64>::zeros(x.nrows(), 2 * n);
        mm(xz.as_mut(), Accum::Replace, x.as_ref(), zz.as_ref());
        for j in 0..n {
            for i in 0..x.nrows() {
                xz[(i, j)] -= y[(i, j)];
            }
        }
        // [G dG] = Xᵀ [R  X dZ].
        let mut gg = Mat::<f64>::zeros(m, 2 * n);
        mm(gg.as_mut(), Accum::Replace, x.transpose(), xz.as_ref());
        let (g, dg) = (gg.as_ref().get(.., ..n), gg.as_ref().get(.., n..));
        let mut h1 = MatMut::from_column_major_slice_mut(hu, m, h);
        mm(h1.as_mut(), Accum::Replace, dg, w2.transpose());
        mm(h1.as_mut(), Accum::Add, g, b.transpose());
        let mut h2 = MatMut::from_column_major_slice_mut(hv, h, n);
        mm(h2.as_mut(), Accum::Replace, a.transpose(), g);
        mm(h2.as_mut(), Accum::Add, w1.transpose(), dg);
    }
}
