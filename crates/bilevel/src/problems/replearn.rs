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

use crate::error::{Error, Result};
use crate::problem::{PenaltyOptimum, PenaltyStep, Problem, Smoothness};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::solvers::Solve;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Mutex, RwLock};

use crate::team;

use crate::kernels::{LsData, Part, Pool, cols_axpy, matmul_par, matmul_par_inner, par_for};

/// Relative tolerance of every pseudo-inverse (singular values ≤ tol · σ_max are dropped).
pub const PINV_RTOL: f64 = 1e-10;

/// Which of the three instance regimes of method.md section 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Regime {
    /// [X_trn; X_val] of full row rank (m ≥ N + N'): f*_full = 0 is the global optimum.
    CertifiedGlobal,
    /// max(N, N') ≤ m < N + N': f*_full > 0, the penalty bias is visible.
    Intermediate,
    /// N > m: the training loss cannot be fitted exactly (noisy targets from one teacher).
    General,
}

impl Regime {
    /// Short name for tables and file names.
    pub fn label(&self) -> &'static str {
        match self {
            Regime::CertifiedGlobal => "certified-global",
            Regime::Intermediate => "intermediate",
            Regime::General => "general",
        }
    }
}

/// Normalization of the two losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scaling {
    /// ½‖·‖²_F (the project's default).
    #[default]
    Sum,
    /// 1/(2N)‖·‖²_F for the training loss and 1/(2N')‖·‖²_F for the validation loss.
    /// Implemented by scaling the stored data by 1/√N (the closed forms then apply unchanged).
    Mean,
}

/// Sizes and noise of a generated instance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepSizes {
    /// Training samples N.
    pub n_trn: usize,
    /// Validation samples N'.
    pub n_val: usize,
    /// Input features m.
    pub m: usize,
    /// Hidden width h (must be ≥ m so full-rank backbones exist).
    pub h: usize,
    /// Outputs n.
    pub n: usize,
    /// Standard deviation of the label noise added to the teacher's targets.
    pub noise: f64,
    /// Condition number of the stacked features [X_trn; X_val] (≥ 1).
    pub cond: f64,
    /// Loss normalization.
    pub scaling: Scaling,
}

impl RepSizes {
    /// (N, N', m, h, n).
    pub fn shape(&self) -> (usize, usize, usize, usize, usize) {
        (self.n_trn, self.n_val, self.m, self.h, self.n)
    }
}

impl Default for RepSizes {
    fn default() -> Self {
        Self::default_for(Regime::CertifiedGlobal)
    }
}

impl RepSizes {
    /// The default sizes of the Figure 3 experiment for a regime.
    pub fn default_for(regime: Regime) -> Self {
        let (n_trn, n_val, m, h) = match regime {
            Regime::CertifiedGlobal => (20, 20, 50, 60),
            Regime::Intermediate => (20, 20, 30, 32),
            Regime::General => (60, 20, 30, 32),
        };
        RepSizes {
            n_trn,
            n_val,
            m,
            h,
            n: 5,
            noise: 0.3,
            cond: 2.0,
            scaling: Scaling::Sum,
        }
    }

    /// Small sizes for smoke tests.
    pub fn quick_for(regime: Regime) -> Self {
        let (n_trn, n_val, m, h) = match regime {
            Regime::CertifiedGlobal => (6, 6, 16, 18),
            Regime::Intermediate => (6, 6, 9, 10),
            Regime::General => (16, 6, 8, 10),
        };
        RepSizes {
            n_trn,
            n_val,
            m,
            h,
            n: 3,
            noise: 0.3,
            cond: 2.0,
            scaling: Scaling::Sum,
        }
    }

    /// Checks the sizes against the regime's definition.
    pub fn validate(&self, regime: Regime) -> Result<()> {
        let s = self;
        if s.n_trn == 0 || s.n_val == 0 || s.m == 0 || s.h == 0 || s.n == 0 {
            return Err(Error::setting(
                "representation-learning sizes",
                format!("{s:?}"),
                "every size must be at least 1",
            ));
        }
        if !(s.cond.is_finite() && s.cond >= 1.0) {
            return Err(Error::setting(
                "cond",
                s.cond,
                "the feature condition number must be finite and >= 1",
            ));
        }
        if !(s.noise.is_finite() && s.noise >= 0.0) {
            return Err(Error::setting("noise", s.noise, "must be finite and >= 0"));
        }
        if s.h < s.m {
            return Err(Error::setting(
                "h",
                s.h,
                format!(
                    "the hidden width must be >= m = {} so that full-rank backbones exist",
                    s.m
                ),
            ));
        }
        let ok = match regime {
            Regime::CertifiedGlobal => s.m >= s.n_trn + s.n_val && s.h >= s.n,
            Regime::Intermediate => s.n_trn.max(s.n_val) <= s.m && s.m < s.n_trn + s.n_val,
            Regime::General => s.n_trn > s.m,
        };
        if !ok {
            let need = match regime {
                Regime::CertifiedGlobal => "m >= N + N' and h >= max(m, n)",
                Regime::Intermediate => "max(N, N') <= m < N + N'",
                Regime::General => "N > m",
            };
            return Err(Error::setting(
                "representation-learning sizes",
                format!(
                    "N={}, N'={}, m={}, h={}, n={}",
                    s.n_trn, s.n_val, s.m, s.h, s.n
                ),
                format!("the {} regime needs {need}", regime.label()),
            ));
        }
        Ok(())
    }
}

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

fn gaussian(rng: &mut impl rand::Rng, r: usize, c: usize, scale: f64) -> Mat<f64> {
    let mut m = Mat::zeros(r, c);
    for j in 0..c {
        for i in 0..r {
            let x: f64 = StandardNormal.sample(rng);
            m[(i, j)] = scale * x;
        }
    }
    m
}

/// Singular values of `a` (non-increasing).
fn singular_values(what: &str, a: MatRef<'_, f64>) -> Result<Vec<f64>> {
    if a.nrows() == 0 || a.ncols() == 0 {
        return Ok(Vec::new());
    }
    a.singular_values()
        .map_err(|_| Error::data(what, "the singular value decomposition did not converge"))
}

/// Numerical rank with the relative tolerance [`PINV_RTOL`].
fn rank_of(s: &[f64]) -> usize {
    let top = s.first().copied().unwrap_or(0.0);
    s.iter()
        .filter(|&&x| x > PINV_RTOL * top && x > 0.0)
        .count()
}

/// Writes Bᵀ (B Bᵀ)⁻¹ R into `out` (column-major, B.ncols() × R.ncols()) and returns true
/// when the Cholesky factor of B Bᵀ is well conditioned (κ(B)² below about 1e10); false
/// otherwise, leaving the caller to fall back to the SVD.
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
fn pinv_solve_scaled(
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

fn frob(a: MatRef<'_, f64>) -> f64 {
    a.norm_l2()
}

fn half_sq_residual(x: MatRef<'_, f64>, z: MatRef<'_, f64>, y: MatRef<'_, f64>) -> f64 {
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

/// A block of a variable one team member reads, or reads and then steps.
enum Block<'a> {
    Ref(MatRef<'a, f64>),
    Mut(MatMut<'a, f64>),
}

impl<'a> Block<'a> {
    fn get(&self) -> MatRef<'_, f64> {
        match self {
            Block::Ref(b) => *b,
            Block::Mut(b) => b.rb(),
        }
    }

    /// An output block (outputs are always split from `Var::Mut`).
    fn into_mut(b: Option<Self>) -> Option<MatMut<'a, f64>> {
        match b {
            Some(Block::Mut(x)) => Some(x),
            _ => None,
        }
    }
}

/// dst = lhs · rhs on the calling thread.
fn mul(dst: MatMut<'_, f64>, lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>) {
    matmul(dst, Accum::Replace, lhs, rhs, 1.0, Par::Seq);
}

/// Team member t's blocks of the variables and outputs of one fused evaluation: W1's columns
/// [c_t, c_t+1) (m × h_t), and the same rows of W2, w and of the v-gradients (h_t × n).
struct Slot<'a> {
    w1: Block<'a>,
    w2: Block<'a>,
    w: Block<'a>,
    du: Option<MatMut<'a, f64>>,
    dv: Option<MatMut<'a, f64>>,
    gw: Option<MatMut<'a, f64>>,
}

/// What one fused evaluation does with its results ([`RepLearning::fused`]).
#[derive(Debug, Clone, Copy, Default)]
struct Task {
    /// Form ∇_u L_γ: written to `du`, or (with `alpha_u`) added into W1 as W1 −= α_u ∇_u L_γ.
    du: bool,
    alpha_u: Option<f64>,
    /// Form ∇_v L_γ: written to `dv`, or (with `alpha_v`) W2 −= α_v ∇_v L_γ.
    dv: bool,
    alpha_v: Option<f64>,
    /// ∇_v g(u, w) at the incoming w, written to `gw`.
    gw: bool,
    /// First w ← w − β ∇_v g(u, w) (written back to w); g* and ∇g* at the new w.
    beta: Option<f64>,
    /// Team members to ask for (None: by the size of the job, `team::parts_for`).
    parts: Option<usize>,
}

/// One team member's scratch space of a fused evaluation. The member writes each published
/// buffer in one phase and the others read it, after a barrier, in the next.
#[derive(Debug)]
struct Member {
    own: Mutex<Own>,
    common: Mutex<Common>,
    /// Published after phase 1: W1_t [W2, w]_t, this member's partial of W1 [W2, w] (m × 2n).
    zp: RwLock<Mat<f64>>,
    /// Published after phase 2: the partial passes over X_trn and X_val.
    pass_t: RwLock<Part>,
    pass_v: RwLock<Part>,
    /// Published after phase 3: W1_t ∇_v g(u, w)_t (m × n).
    e: RwLock<Mat<f64>>,
    /// Published after phase 4: the partial pass over X_trn at w'.
    pass_w: RwLock<Part>,
}

/// A member's private buffers of its own block.
#[derive(Debug)]
struct Own {
    /// Its rows of [W2, w] (then [W2, w']), h_t × 2n (allocated h × 2n).
    vw: Mat<f64>,
    /// Its rows of [∇_v L_γ, ∇_v g(u, w)], h_t × 2n (allocated h × 2n).
    d: Mat<f64>,
}

/// What every part needs whole, the same bits on every member that forms it.
#[derive(Debug)]
struct Common {
    /// W1 [W2, w] (then [W1 W2, W1 w']), summed from the partials, m × 2n.
    z: Mat<f64>,
    /// X_trnᵀ R_trn for both right-hand sides, m × 2n.
    gt: Mat<f64>,
    /// [∇_Z f + γ ∇_Z g(u, v), −γ ∇_Z g(u, w')] (so ∇W1 = gc [W2, w']ᵀ), m × 2n.
    gc: Mat<f64>,
    /// [∇_Z f + γ ∇_Z g(u, v), ∇_Z g(u, w)] for the v-gradients' W1ᵀ product, m × 2n.
    gd: Mat<f64>,
    /// [f(u, v), g(u, v), g(u, w')].
    values: [f64; 3],
}

impl Member {
    fn new(rows: usize, m: usize, h: usize, n: usize) -> Self {
        let mat = |r, c| Mat::zeros(r, c);
        Member {
            own: Mutex::new(Own {
                vw: mat(h, 2 * n),
                d: mat(h, 2 * n),
            }),
            common: Mutex::new(Common {
                z: mat(m, 2 * n),
                gt: mat(m, 2 * n),
                gc: mat(m, 2 * n),
                gd: mat(m, 2 * n),
                values: [0.0; 3],
            }),
            zp: RwLock::new(mat(m, 2 * n)),
            pass_t: RwLock::new(Part::new(rows, m, 2 * n)),
            pass_v: RwLock::new(Part::new(rows, m, n)),
            e: RwLock::new(mat(m, n)),
            pass_w: RwLock::new(Part::new(rows, m, n)),
        }
    }
}

/// Locks that a panicking member left poisoned still guard consistent buffers (every phase
/// overwrites what it publishes), and the team reports the panic itself.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// A buffer one member publishes for the others to sum.
trait Partial {
    fn partial(&self, k: usize) -> MatRef<'_, f64>;
    fn sums(&self) -> [f64; 2] {
        [0.0; 2]
    }
}

impl Partial for Mat<f64> {
    fn partial(&self, k: usize) -> MatRef<'_, f64> {
        self.as_ref().subcols(0, k)
    }
}

impl Partial for Part {
    fn partial(&self, k: usize) -> MatRef<'_, f64> {
        self.g(k)
    }
    fn sums(&self) -> [f64; 2] {
        Part::sums(self)
    }
}

/// dst = Σ_s (first k columns of member s's buffer), over the members in order: the same sum,
/// bit for bit, on every member. Returns the members' raw sums of squares, summed alike.
fn sum_parts<T: Partial>(
    members: &[Member],
    which: impl Fn(&Member) -> &RwLock<T>,
    k: usize,
    mut dst: MatMut<'_, f64>,
) -> [f64; 2] {
    let mut sums = [0.0; 2];
    for (s, member) in members.iter().enumerate() {
        let buf = read(which(member));
        if k > 0 {
            cols_axpy(1.0, buf.partial(k), dst.rb_mut(), s == 0);
        }
        let [a, b] = buf.sums();
        sums = [sums[0] + a, sums[1] + b];
    }
    sums
}

/// A variable as the caller hands it: read only, or to be stepped in place.
enum Var<'a> {
    Ref(&'a [f64]),
    Mut(&'a mut [f64]),
}

/// A variable that a step moves (`Var::Mut`) or only reads.
fn var(x: &mut [f64], moved: bool) -> Var<'_> {
    if moved { Var::Mut(x) } else { Var::Ref(x) }
}

/// Splits an r × c column-major variable into the members' blocks: column blocks
/// [cut(t), cut(t + 1)) when `by_cols`, else row blocks; `put(t, block)` receives them.
fn split_blocks<'a>(
    var: Var<'a>,
    (r, c): (usize, usize),
    by_cols: bool,
    parts: usize,
    cut: impl Fn(usize) -> usize,
    mut put: impl FnMut(usize, Block<'a>),
) {
    match var {
        Var::Ref(x) => {
            let x = MatRef::from_column_major_slice(x, r, c);
            for t in 0..parts {
                let (lo, len) = (cut(t), cut(t + 1) - cut(t));
                let b = if by_cols {
                    x.subcols(lo, len)
                } else {
                    x.subrows(lo, len)
                };
                put(t, Block::Ref(b));
            }
        }
        Var::Mut(x) => {
            let mut rest = MatMut::from_column_major_slice_mut(x, r, c);
            for t in 0..parts {
                let len = cut(t + 1) - cut(t);
                let (head, tail) = if by_cols {
                    rest.split_at_col_mut(len)
                } else {
                    rest.split_at_row_mut(len)
                };
                put(t, Block::Mut(head));
                rest = tail;
            }
        }
    }
}

/// Scratch space of one caller (sizes fixed by the problem's shape).
#[derive(Debug)]
struct Work {
    /// W1 W2 of a single loss, m × n.
    z: Mat<f64>,
    /// Its Xᵀ R, m × n.
    gt: Mat<f64>,
    parts: Vec<Part>,
    /// The other threads' partials of W1·(·) (see `kernels::matmul_par_inner`).
    partials: Vec<Mat<f64>>,
    /// The team members' buffers of the fused evaluations (made on first use).
    members: Vec<Member>,
    /// Team or alone, where either may be faster.
    chooser: team::Chooser,
}

impl Work {
    fn new(nt: usize, nv: usize, m: usize, n: usize) -> Self {
        Work {
            z: Mat::zeros(m, n),
            gt: Mat::zeros(m, n),
            parts: Part::pool(nt.max(nv), m, n),
            partials: Vec::new(),
            members: Vec::new(),
            chooser: team::Chooser::default(),
        }
    }
}

fn check_matrix(what: &str, a: &Mat<f64>) -> Result<()> {
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            if !a[(i, j)].is_finite() {
                return Err(Error::NonFinite {
                    what: format!("{what} (row {i}, column {j})"),
                    index: i + j * a.nrows(),
                });
            }
        }
    }
    Ok(())
}

impl RepLearning {
    /// A seeded instance of `regime` (data from the seed's Data stream).
    ///
    /// Features: the stacked matrix [X_trn; X_val] = U diag(σ) Vᵀ with U, V the orthonormal
    /// factors of Gaussian matrices (uniformly random singular vectors) and σ spaced evenly in
    /// [1, cond] (`sizes.cond`); its rows are then split into training and validation samples.
    /// Targets come from one teacher: Y = X Z_true + noise · E, Z_true and E standard Gaussian.
    /// The conditioning controls the iteration count (PBGD's rate is set by σ⁺_min(X_γ)).
    pub fn generate(regime: Regime, sizes: &RepSizes, seed: u64) -> Result<Self> {
        sizes.validate(regime)?;
        let s = sizes;
        let mut rng = crate::seeds::rng(seed, crate::seeds::Stream::Data);
        let rows = s.n_trn + s.n_val;
        let k = rows.min(s.m);
        let u = gaussian(&mut rng, rows, k, 1.0).qr().compute_thin_Q();
        let v = gaussian(&mut rng, s.m, k, 1.0).qr().compute_thin_Q();
        let sig = |i: usize| {
            if k == 1 {
                1.0
            } else {
                1.0 + (s.cond - 1.0) * i as f64 / (k - 1) as f64
            }
        };
        let us = Mat::from_fn(rows, k, |i, j| u[(i, j)] * sig(j));
        let x = &us * v.transpose();
        let x_trn = x.as_ref().get(..s.n_trn, ..).to_owned();
        let x_val = x.as_ref().get(s.n_trn.., ..).to_owned();
        let z_true = gaussian(&mut rng, s.m, s.n, 1.0);
        let e_trn = gaussian(&mut rng, s.n_trn, s.n, s.noise);
        let e_val = gaussian(&mut rng, s.n_val, s.n, s.noise);
        let y_trn = &x_trn * &z_true + e_trn;
        let y_val = &x_val * &z_true + e_val;
        let p = Self::from_data(x_trn, y_trn, x_val, y_val, s.h, s.scaling)?;
        if p.regime != regime {
            return Err(Error::data(
                format!("generated {} instance (seed {seed})", regime.label()),
                format!(
                    "the draw landed in the {} regime (rank deficiency); try another seed",
                    p.regime.label()
                ),
            ));
        }
        Ok(p)
    }

    /// An instance from data X_trn (N×m), Y_trn (N×n), X_val (N'×m), Y_val (N'×n) and the
    /// hidden width h (≥ m). Checks shapes and finiteness; the regime is detected from the
    /// ranks. Rank-deficient feature matrices are accepted with a warning (see
    /// [`RepLearning::warnings`]); a zero feature matrix is an error.
    pub fn from_data(
        x_trn: Mat<f64>,
        y_trn: Mat<f64>,
        x_val: Mat<f64>,
        y_val: Mat<f64>,
        h: usize,
        scaling: Scaling,
    ) -> Result<Self> {
        let (nt, m) = (x_trn.nrows(), x_trn.ncols());
        let nv = x_val.nrows();
        let n = y_trn.ncols();
        if nt == 0 || m == 0 || nv == 0 || n == 0 {
            return Err(Error::data(
                "representation-learning data",
                format!(
                    "empty matrix: X_trn is {nt}x{m}, X_val is {nv}x{}, Y_trn has {n} columns",
                    x_val.ncols()
                ),
            ));
        }
        if y_trn.nrows() != nt {
            return Err(Error::dim(
                "Y_trn (one row per training sample of X_trn)",
                format!("{nt} rows"),
                format!("{} rows", y_trn.nrows()),
            ));
        }
        if x_val.ncols() != m {
            return Err(Error::dim(
                "X_val (same features as X_trn)",
                format!("{m} columns"),
                format!("{} columns", x_val.ncols()),
            ));
        }
        if y_val.nrows() != nv || y_val.ncols() != n {
            return Err(Error::dim(
                "Y_val (one row per validation sample, same outputs as Y_trn)",
                format!("{nv}x{n}"),
                format!("{}x{}", y_val.nrows(), y_val.ncols()),
            ));
        }
        for (name, a) in [
            ("X_trn", &x_trn),
            ("Y_trn", &y_trn),
            ("X_val", &x_val),
            ("Y_val", &y_val),
        ] {
            check_matrix(name, a)?;
        }
        if h < m {
            return Err(Error::setting(
                "h",
                h,
                format!(
                    "the hidden width must be >= m = {m} (number of features) so that full-rank backbones exist and the closed-form optima apply"
                ),
            ));
        }
        let raw = [x_trn.clone(), y_trn.clone(), x_val.clone(), y_val.clone()];
        let (ct, cv) = match scaling {
            Scaling::Sum => (1.0, 1.0),
            Scaling::Mean => ((1.0 / nt as f64).sqrt(), (1.0 / nv as f64).sqrt()),
        };
        let x_trn = x_trn * faer::Scale(ct);
        let y_trn = y_trn * faer::Scale(ct);
        let x_val = x_val * faer::Scale(cv);
        let y_val = y_val * faer::Scale(cv);

        let mut warnings = Vec::new();
        let st = singular_values("X_trn", x_trn.as_ref())?;
        let sv = singular_values("X_val", x_val.as_ref())?;
        let (rt, rv) = (rank_of(&st), rank_of(&sv));
        if rt == 0 || rv == 0 {
            return Err(Error::data(
                "representation-learning data",
                "X_trn or X_val is zero (rank 0): the features carry no information",
            ));
        }
        if rt < nt.min(m) {
            warnings.push(format!("X_trn has rank {rt} < min(N, m) = {}: duplicated or collinear samples or features; the closed forms use pseudo-inverses with relative tolerance {PINV_RTOL:e}", nt.min(m)));
        }
        if rv < nv.min(m) {
            warnings.push(format!("X_val has rank {rv} < min(N', m) = {}: duplicated or collinear samples or features; the closed forms use pseudo-inverses with relative tolerance {PINV_RTOL:e}", nv.min(m)));
        }
        let stacked = Mat::from_fn(nt + nv, m, |i, j| {
            if i < nt {
                x_trn[(i, j)]
            } else {
                x_val[(i - nt, j)]
            }
        });
        let ss = singular_values("[X_trn; X_val]", stacked.as_ref())?;
        let rs = rank_of(&ss);
        let certified = rs == nt + nv;
        let regime = if certified {
            Regime::CertifiedGlobal
        } else if nt <= m {
            Regime::Intermediate
        } else {
            Regime::General
        };

        // Z0 = X_trn⁺ Y_trn, P = I − X_trn⁺ X_trn, Z* = Z0 + P (X_val P)⁺ (Y_val − X_val Z0).
        let z0 = pinv_solve(x_trn.as_ref(), y_trn.as_ref())?;
        let pxt = pinv_solve(x_trn.as_ref(), x_trn.as_ref())?;
        let proj = Mat::<f64>::identity(m, m) - pxt;
        let xvp = &x_val * &proj;
        let rhs = &y_val - &x_val * &z0;
        let mut c = Mat::zeros(m, n);
        pinv_solve_scaled(xvp.as_ref(), rhs.as_ref(), c.as_mut(), Some(sv[0]))?;
        let z_star = &z0 + &proj * &c;
        let f_full = half_sq_residual(x_val.as_ref(), z_star.as_ref(), y_val.as_ref());
        let g_full = half_sq_residual(x_trn.as_ref(), z0.as_ref(), y_trn.as_ref());
        let f_zero = 0.5 * frob(y_val.as_ref()).powi(2);
        // Π = S⁺ S projects onto the row space of [X_trn; X_val] (= that of X_γ for every γ > 0).
        let row_proj = pinv_solve(stacked.as_ref(), stacked.as_ref())?;
        let ys = Mat::from_fn(nt + nv, n, |i, j| {
            if i < nt {
                y_trn[(i, j)]
            } else {
                y_val[(i - nt, j)]
            }
        });
        let z_ls = pinv_solve(stacked.as_ref(), ys.as_ref())?;
        let spec = |a: MatRef<'_, f64>| {
            singular_values("norm", a).map(|s| s.first().copied().unwrap_or(0.0))
        };
        let norms = DataNorms {
            x_trn: st[0],
            x_val: sv[0],
            y_trn: spec(y_trn.as_ref())?,
            y_val: spec(y_val.as_ref())?,
            y_trn_f: frob(y_trn.as_ref()),
            y_val_f: frob(y_val.as_ref()),
            z_ref: spec(z_star.as_ref())?.max(spec(z_ls.as_ref())?),
        };
        Ok(RepLearning {
            m,
            h,
            n,
            scaling,
            raw,
            ls_trn: LsData::new(x_trn.as_ref(), y_trn.as_ref()),
            ls_val: LsData::new(x_val.as_ref(), y_val.as_ref()),
            x_trn,
            y_trn,
            x_val,
            y_val,
            regime,
            certified,
            trn_full_col_rank: rt == m,
            z0,
            z_star,
            f_full,
            g_full,
            f_zero,
            row_proj,
            norms,
            init_scale: (4.0 * norms.z_ref).sqrt().max(1.0),
            warnings,
            cache: Mutex::new(Vec::new()),
            work: Pool::default(),
        })
    }

    /// Loads X_trn, Y_trn, X_val, Y_val from `.npy` files (float64 or float32, 1-D arrays
    /// become one column).
    pub fn from_npy(
        x_trn: &Path,
        y_trn: &Path,
        x_val: &Path,
        y_val: &Path,
        h: usize,
        scaling: Scaling,
    ) -> Result<Self> {
        Self::from_data(
            crate::npy::read_matrix(x_trn)?,
            crate::npy::read_matrix(y_trn)?,
            crate::npy::read_matrix(x_val)?,
            crate::npy::read_matrix(y_val)?,
            h,
            scaling,
        )
    }

    /// Loads X_trn, Y_trn, X_val, Y_val from CSV files (comma-separated numbers, one sample
    /// per line; a first line that is not numeric is taken as a header).
    pub fn from_csv(
        x_trn: &Path,
        y_trn: &Path,
        x_val: &Path,
        y_val: &Path,
        h: usize,
        scaling: Scaling,
    ) -> Result<Self> {
        Self::from_data(
            read_csv_matrix(x_trn)?,
            read_csv_matrix(y_trn)?,
            read_csv_matrix(x_val)?,
            read_csv_matrix(y_val)?,
            h,
            scaling,
        )
    }

    /// Loads `x_trn`, `y_trn`, `x_val`, `y_val` from `dir`, each as `.npy` or else `.csv`.
    pub fn from_dir(dir: &Path, h: usize, scaling: Scaling) -> Result<Self> {
        let load = |name: &str| -> Result<Mat<f64>> {
            let npy = dir.join(format!("{name}.npy"));
            let csv = dir.join(format!("{name}.csv"));
            if npy.exists() {
                crate::npy::read_matrix(&npy)
            } else if csv.exists() {
                read_csv_matrix(&csv)
            } else {
                Err(Error::File {
                    path: npy.display().to_string(),
                    reason: format!(
                        "neither {name}.npy nor {name}.csv exists in {}",
                        dir.display()
                    ),
                })
            }
        };
        Self::from_data(
            load("x_trn")?,
            load("y_trn")?,
            load("x_val")?,
            load("y_val")?,
            h,
            scaling,
        )
    }

    /// Writes the data as given (x_trn.npy, y_trn.npy, x_val.npy, y_val.npy), the closed-form
    /// Z* (z_star.npy) and a summary (optimum.json: regime, f*_full, g*_full, flag, scaling,
    /// pseudo-inverse tolerance) into `dir`.
    pub fn save_npy(&self, dir: &Path) -> Result<()> {
        let werr = |e: std::io::Error| Error::Write {
            path: dir.display().to_string(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(werr)?;
        for (name, a) in ["x_trn", "y_trn", "x_val", "y_val"].iter().zip(&self.raw) {
            crate::npy::write_matrix(&dir.join(format!("{name}.npy")), a)?;
        }
        crate::npy::write_matrix(&dir.join("z_star.npy"), &self.z_star)?;
        let meta = serde_json::json!({
            "problem": "f = 1/2 ||X_val W1 W2 - Y_val||^2, g = 1/2 ||X_trn W1 W2 - Y_trn||^2",
            "scaling": self.scaling, "h": self.h, "regime": self.regime,
            "certified_global": self.certified, "f_star_full": self.f_full,
            "g_star_full": self.g_full, "f_at_w1_zero": self.f_zero, "flagged": self.flagged(),
            "pinv_rtol": PINV_RTOL,
        });
        let path = dir.join("optimum.json");
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&meta).unwrap_or_default(),
        )
        .map_err(werr)
    }

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

    /// Training and validation data (scaled as the losses use them): X_trn, Y_trn, X_val, Y_val.
    pub fn data(&self) -> [&Mat<f64>; 4] {
        [&self.x_trn, &self.y_trn, &self.x_val, &self.y_val]
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

    /// The product Z = W1 W2.
    pub fn product(&self, u: &[f64], v: &[f64]) -> Mat<f64> {
        let w1 = MatRef::from_column_major_slice(u, self.m, self.h);
        let w2 = MatRef::from_column_major_slice(v, self.h, self.n);
        let mut z = Mat::zeros(self.m, self.n);
        matmul(z.as_mut(), Accum::Replace, w1, w2, 1.0, Par::Seq);
        z
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

    /// Runs `f` with a scratch workspace from the pool (allocated on first use).
    fn with_work<R>(&self, f: impl FnOnce(&mut Work) -> R) -> R {
        let make = || {
            let (nt, nv) = (self.ls_trn.nrows(), self.ls_val.nrows());
            Work::new(nt, nv, self.m, self.n)
        };
        self.work.with(make, f)
    }

    /// Team member t's columns [c_t, c_t+1) of W1 (rows of W2 and w) among `parts`.
    fn member_cut(&self, t: usize, parts: usize) -> usize {
        self.h * t / parts
    }

    /// The fused evaluation at (W1, W2, w) behind [`Problem::penalty_eval`],
    /// [`Problem::penalty_eval_inner`] and [`Problem::penalty_step`]: one product W1·[W2, w],
    /// one pass over X_trn for both right-hand sides and one over X_val, one W1ᵀ product for
    /// both v-gradients, and the rank-2n product of ∇W1 = gc [W2, w]ᵀ, written to `du` or added
    /// into W1 by the product itself. With `task.beta`, w' = w − β ∇_v g(u, w) first: its
    /// gradient shares the W1ᵀ product with ∇_v L_γ, and g(u, w') takes one more product W1·(·)
    /// and pass over X_trn on n columns (Z for w' is Z for w minus β W1 ∇_v g).
    ///
    /// Written once for a team of threads (`crate::team`): member t owns W1's columns
    /// [c_t, c_t+1) and the same rows of W2 and w, so that it alone reads and writes its block
    /// of W1 in every product; the passes split X's rows; the members meet at two barriers
    /// (four with the inner step), where each sums the others' partials in member order (the
    /// result depends on the thread count, not on timing). Returns [f(u, v), g(u, v), g(u, w')].
    #[allow(clippy::too_many_arguments)]
    fn fused(
        &self,
        u: Var<'_>,
        v: Var<'_>,
        w: Var<'_>,
        gamma: f64,
        task: Task,
        du: Option<&mut [f64]>,
        dv: Option<&mut [f64]>,
        gw: Option<&mut [f64]>,
    ) -> [f64; 3] {
        let (m, h, n) = (self.m, self.h, self.n);
        let fmas = 2 * m * h * n;
        let wanted = task.parts.unwrap_or_else(|| team::parts_for(fmas));
        let parts = wanted.clamp(1, h.clamp(1, team::MAX_PARTS));
        self.with_work(|ws| {
            // Whether the team pays depends on the host's placement of the vCPUs and on other
            // load: measure (`team::Chooser`).
            let choose = parts > 1 && task.parts.is_none();
            let mut crew = team::team().crew(parts);
            if crew.parts() != parts || (choose && !ws.chooser.use_team()) {
                crew = crew.alone();
            }
            let timer = choose.then(std::time::Instant::now);
            let rows = self.ls_trn.nrows().max(self.ls_val.nrows());
            while ws.members.len() < parts {
                ws.members.push(Member::new(rows, m, h, n));
            }
            let members = &ws.members[..parts];
            let slots_in: [Mutex<Option<Slot<'_>>>; team::MAX_PARTS] =
                std::array::from_fn(|_| Mutex::new(None));
            let cut = |t| self.member_cut(t, parts);
            let mut blocks: [[Option<Block<'_>>; 6]; team::MAX_PARTS] = Default::default();
            let outs = [du.map(Var::Mut), dv.map(Var::Mut), gw.map(Var::Mut)];
            let vars = [Some(u), Some(v), Some(w)].into_iter().chain(outs);
            for (k, var) in vars.enumerate() {
                if let Some(var) = var {
                    let shape = if k % 3 == 0 { (m, h) } else { (h, n) };
                    split_blocks(var, shape, k % 3 == 0, parts, cut, |t, b| {
                        blocks[t][k] = Some(b)
                    });
                }
            }
            for (slot, b) in slots_in.iter().zip(blocks.iter_mut()).take(parts) {
                let out = Block::into_mut;
                let mut take = |k: usize| b[k].take();
                *lock(slot) = Some(Slot {
                    w1: take(0).expect("W1"),
                    w2: take(1).expect("W2"),
                    w: take(2).expect("w"),
                    du: out(take(3)),
                    dv: out(take(4)),
                    gw: out(take(5)),
                });
            }
            // The parts are fixed by the size and the configured thread count; when the team
            // is not free, this thread runs them all, phase by phase, with the same arithmetic
            // (the same bits whoever runs them).
            let threads = crew.parts();
            crew.run(&|i, barrier| {
                let mine = if threads == 1 { 0..parts } else { i..i + 1 };
                let mut slots: [Option<Slot<'_>>; team::MAX_PARTS] = Default::default();
                for t in mine.clone() {
                    slots[t] = lock(&slots_in[t]).take();
                }
                let lead = mine.start;
                for phase in 1.. {
                    let mut more = false;
                    let mut common = lock(&members[lead].common);
                    for t in mine.clone() {
                        let slot = slots[t].as_mut().expect("one slot per part");
                        let first = t == lead;
                        let (c, k) = (&mut *common, phase);
                        more = self.member_phase(k, t, members, slot, c, first, gamma, task);
                    }
                    drop(common);
                    if !more {
                        break;
                    }
                    barrier.wait();
                }
            });
            if let Some(t0) = timer {
                let nanos = t0.elapsed().as_nanos().min(u64::MAX as u128) as u64;
                ws.chooser.record(threads > 1, nanos);
            }
            let values: [f64; 3] = lock(&members[0].common).values;
            values
        })
    }

    /// Phase `phase` (1-based) of part t of [`RepLearning::fused`]; parts meet at a barrier
    /// between phases. `common` holds what every part needs whole (Z and the Z-gradients,
    /// summed from the parts' partials): a team member keeps its own copy and forms it
    /// (`lead`); a thread that runs several parts forms it once, with the first. Returns
    /// whether another phase follows.
    #[allow(clippy::too_many_arguments)]
    fn member_phase(
        &self,
        phase: usize,
        t: usize,
        members: &[Member],
        slot: &mut Slot<'_>,
        common: &mut Common,
        lead: bool,
        gamma: f64,
        task: Task,
    ) -> bool {
        let (n, parts) = (self.n, members.len());
        let ht = self.member_cut(t + 1, parts) - self.member_cut(t, parts);
        let me = &members[t];
        let mut guard = lock(&me.own);
        let own = &mut *guard;
        let inner = task.gw || task.beta.is_some();
        let kt = if task.du || inner {
            2 * n
        } else if task.dv {
            n
        } else {
            0
        };
        let kv = if task.du || task.dv { n } else { 0 };
        let kw = if task.du { n } else { 0 };
        let mut vw = own.vw.as_mut().subrows_mut(0, ht);
        let mut d = own.d.as_mut().subrows_mut(0, ht);
        let w1 = slot.w1.get();
        match phase {
            1 => {
                // This part's partial of Z = W1 [W2, w].
                vw.rb_mut().subcols_mut(0, n).copy_from(slot.w2.get());
                vw.rb_mut().subcols_mut(n, n).copy_from(slot.w.get());
                mul(write(&me.zp).as_mut(), w1, vw.rb());
                return true;
            }
            2 => {
                // Z, and this part's rows of the passes over X_trn and X_val.
                if lead && parts == 1 {
                    // One part: its partial is Z (swapped in, not copied).
                    std::mem::swap(&mut common.z, &mut *write(&me.zp));
                } else if lead {
                    sum_parts(members, |x| &x.zp, 2 * n, common.z.as_mut());
                }
                let z = common.z.as_ref();
                self.ls_trn
                    .pass_part(z, kt, (t, parts), &mut write(&me.pass_t));
                self.ls_val
                    .pass_part(z.subcols(0, n), kv, (t, parts), &mut write(&me.pass_v));
                return true;
            }
            3 => {
                // The Z-gradients, and this part's rows of the v-gradients.
                if lead {
                    let sums = if parts == 1 {
                        write(&me.pass_t).swap_g(&mut common.gt)
                    } else {
                        let gt = common.gt.as_mut().subcols_mut(0, kt);
                        sum_parts(members, |x| &x.pass_t, kt, gt)
                    };
                    let [g, g_star] = self.ls_trn.values(sums, 2);
                    let gc = common.gc.as_mut().subcols_mut(0, kv);
                    let sums = sum_parts(members, |x| &x.pass_v, kv, gc);
                    let [f, _] = self.ls_val.values(sums, 1);
                    common.values = [f, g, g_star];
                    let (gt, mut gc) = (common.gt.as_ref(), common.gc.as_mut());
                    cols_axpy(
                        gamma,
                        gt.subcols(0, kv),
                        gc.rb_mut().subcols_mut(0, kv),
                        false,
                    );
                    if task.dv && inner {
                        // [∇_Z L_γ, ∇_Z g(u, w)] for one W1ᵀ product (gc's second half becomes
                        // −γ ∇_Z g(u, w') in the last phase, after every part used this).
                        let mut gd = common.gd.as_mut();
                        gd.rb_mut()
                            .subcols_mut(0, n)
                            .copy_from(gc.rb().subcols(0, n));
                        gd.subcols_mut(n, n).copy_from(gt.subcols(n, n));
                    }
                }
                let (gt, gc) = (common.gt.as_ref(), common.gc.as_ref());
                let w1t = w1.transpose();
                match (task.dv, inner) {
                    (true, true) => mul(d.rb_mut(), w1t, common.gd.as_ref()),
                    (true, false) => mul(d.rb_mut().subcols_mut(0, n), w1t, gc.subcols(0, n)),
                    (false, true) => mul(d.rb_mut().subcols_mut(n, n), w1t, gt.subcols(n, n)),
                    (false, false) => {}
                }
                if let Some(beta) = task.beta {
                    // w' = w − β ∇_v g(u, w) on this part's rows, and its partial of W1 ∇_v g.
                    let gw_t = d.rb().subcols(n, n);
                    cols_axpy(-beta, gw_t, vw.rb_mut().subcols_mut(n, n), false);
                    mul(write(&me.e).as_mut(), w1, gw_t);
                    return true;
                }
            }
            4 => {
                // Z at w' (Z_w − β W1 ∇_v g), and this part's rows of the pass there.
                let beta = task.beta.expect("phase 4 follows an inner step");
                if lead {
                    let mut gt = common.gt.as_mut().subcols_mut(n, n);
                    sum_parts(members, |x| &x.e, n, gt.rb_mut());
                    cols_axpy(-beta, gt.rb(), common.z.as_mut().subcols_mut(n, n), false);
                }
                let zw = common.z.as_ref().subcols(n, n);
                self.ls_trn
                    .pass_part(zw, kw, (t, parts), &mut write(&me.pass_w));
                return true;
            }
            _ => {
                if lead {
                    let gt = common.gt.as_mut().subcols_mut(n, kw);
                    let sums = sum_parts(members, |x| &x.pass_w, kw, gt);
                    [common.values[2], _] = self.ls_trn.values(sums, 1);
                }
            }
        }
        // Last phase: this part's blocks of the outputs and steps (no other part reads them).
        if task.du && lead {
            let (gt, gc) = (common.gt.as_ref(), common.gc.as_mut());
            cols_axpy(-gamma, gt.subcols(n, n), gc.subcols_mut(n, n), true);
        }
        let gc = common.gc.as_ref();
        if let (Some(_), Block::Mut(w)) = (task.beta, &mut slot.w) {
            w.copy_from(vw.rb().subcols(n, n));
        }
        if task.du {
            let vwt = vw.rb().transpose();
            match (task.alpha_u, &mut slot.w1, slot.du.as_mut()) {
                (Some(alpha), Block::Mut(w1), _) => {
                    matmul(w1.rb_mut(), Accum::Add, gc, vwt, -alpha, Par::Seq)
                }
                (_, _, Some(du)) => mul(du.rb_mut(), gc, vwt),
                _ => {}
            }
        }
        if let (Some(alpha), Block::Mut(w2)) = (task.alpha_v, &mut slot.w2) {
            cols_axpy(-alpha, d.rb().subcols(0, n), w2.rb_mut(), false);
        }
        if let Some(dv) = slot.dv.as_mut() {
            dv.copy_from(d.rb().subcols(0, n));
        }
        if let Some(gw) = slot.gw.as_mut() {
            gw.copy_from(d.rb().subcols(n, n));
        }
        false
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

/// Reads a CSV file of numbers (one row per line, comma-separated; a non-numeric first line is
/// a header). Ragged rows, empty files and NaN/Inf are errors naming the file, row and column.
pub fn read_csv_matrix(path: &Path) -> Result<Mat<f64>> {
    let ferr = |reason: String| Error::File {
        path: path.display().to_string(),
        reason,
    };
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| ferr(e.to_string()))?;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for (k, rec) in rd.records().enumerate() {
        let rec = rec.map_err(|e| ferr(e.to_string()))?;
        let parsed: std::result::Result<Vec<f64>, _> = rec.iter().map(str::parse::<f64>).collect();
        match parsed {
            Ok(row) => {
                if let Some(j) = row.iter().position(|x| !x.is_finite()) {
                    return Err(Error::NonFinite {
                        what: format!("{} (line {}, column {})", path.display(), k + 1, j + 1),
                        index: rows.len() * row.len() + j,
                    });
                }
                if let Some(first) = rows.first()
                    && first.len() != row.len()
                {
                    return Err(ferr(format!(
                        "line {} has {} values, earlier lines have {}: every row must have the same number of columns",
                        k + 1,
                        row.len(),
                        first.len()
                    )));
                }
                rows.push(row);
            }
            Err(e) if k == 0 => {
                let _ = e; // a header line
            }
            Err(e) => {
                return Err(ferr(format!("line {} is not numeric ({e})", k + 1)));
            }
        }
    }
    if rows.is_empty() {
        return Err(ferr("no numeric rows".into()));
    }
    let (r, c) = (rows.len(), rows[0].len());
    Ok(Mat::from_fn(r, c, |i, j| rows[i][j]))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg;

    /// The team evaluation gives the one-part results for any number of parts (to rounding:
    /// the partials are summed in another order), and for a given number of parts the same
    /// bits every time and whoever runs them: the team, or the caller alone (as a rayon worker
    /// does). Parts beyond the cores (3 on two) only cost time.
    #[test]
    fn team_members_agree_with_one_thread() {
        // A tiny instance, and one whose passes read the R of a QR (N ≥ m: the parts split
        // the triangle's rows by nonzeros).
        let tall = RepSizes {
            n_trn: 300,
            n_val: 250,
            m: 200,
            h: 220,
            n: 12,
            ..RepSizes::default_for(Regime::General)
        };
        for sizes in [RepSizes::quick_for(Regime::General), tall] {
            agree_with_one_thread(&RepLearning::generate(Regime::General, &sizes, 3).unwrap());
        }
    }

    fn agree_with_one_thread(p: &RepLearning) {
        let (u0, v0) = p.init(1);
        let w0: Vec<f64> = v0.iter().map(|x| 0.5 * x + 0.01).collect();
        let (du, dv) = (u0.len(), v0.len());
        let run = |parts: usize| {
            let step = Task {
                du: true,
                alpha_u: Some(1e-3),
                dv: true,
                alpha_v: Some(2e-3),
                beta: Some(3e-3),
                parts: Some(parts),
                ..Task::default()
            };
            // Gauss–Seidel's two calls: ∇_v L_γ with ∇_v g(u, w), then the u step alone.
            let gs_eval = Task {
                dv: true,
                gw: true,
                parts: Some(parts),
                ..Task::default()
            };
            let gs_step = Task {
                du: true,
                alpha_u: Some(1e-3),
                parts: Some(parts),
                ..Task::default()
            };
            let (mut u, mut v, mut w) = (u0.clone(), v0.clone(), w0.clone());
            let mut vals = Vec::new();
            for _ in 0..3 {
                let (uu, vv) = (Var::Mut(&mut u), Var::Mut(&mut v));
                let ww = Var::Mut(&mut w);
                vals.extend(p.fused(uu, vv, ww, 7.0, step, None, None, None));
                let (mut gv, mut gw) = (vec![0.0; dv], vec![0.0; dv]);
                let (uu, vv, ww) = (Var::Ref(&u), Var::Ref(&v), Var::Ref(&w));
                let outs = (Some(&mut gv[..]), Some(&mut gw[..]));
                vals.extend(p.fused(uu, vv, ww, 7.0, gs_eval, None, outs.0, outs.1));
                vals.extend(gv.iter().chain(&gw));
                linalg::axpy(-2e-3, &gv, &mut v);
                let (uu, vv, ww) = (Var::Mut(&mut u), Var::Ref(&v), Var::Ref(&w));
                vals.extend(p.fused(uu, vv, ww, 7.0, gs_step, None, None, None));
            }
            let eval = Task {
                du: true,
                dv: true,
                gw: true,
                parts: Some(parts),
                ..Task::default()
            };
            let (mut gu, mut gv, mut gw) = (vec![0.0; du], vec![0.0; dv], vec![0.0; dv]);
            let (uu, vv, ww) = (Var::Ref(&u), Var::Ref(&v), Var::Ref(&w));
            let outs = (Some(&mut gu[..]), Some(&mut gv[..]), Some(&mut gw[..]));
            vals.extend(p.fused(uu, vv, ww, 7.0, eval, outs.0, outs.1, outs.2));
            [vals, u, v, w, gu, gv, gw]
        };
        let one = run(1);
        for parts in [2, 3] {
            let many = run(parts);
            assert_eq!(many, run(parts), "{parts} members: not reproducible");
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build();
            let alone = pool.expect("a pool").install(|| run(parts));
            assert_eq!(many, alone, "{parts} parts on one thread: other bits");
            for (a, b) in one.iter().zip(&many) {
                let scale = a.iter().fold(0.0f64, |s, x| s.max(x.abs()));
                let err = a
                    .iter()
                    .zip(b)
                    .fold(0.0f64, |s, (x, y)| s.max((x - y).abs()));
                assert!(
                    err <= 1e-13 * scale,
                    "{parts} members: {err:e} (scale {scale:e})"
                );
            }
        }
    }
}
