//! Data hyper-cleaning (sample reweighting), method.md section 7.
//!
//! Upper-level variable: per-sample logits u ∈ R^N, weights ψ_i = sigmoid(s·u_i) (s =
//! `u_scale`, 1 by default). Lower-level variable: a linear model W ∈ R^{m×n} (column-major
//! flat). With per-sample losses ℓ (least squares on one-hot labels, or softmax
//! cross-entropy):
//!
//! ```text
//! g(u, W) = Σ_i ψ_i ℓ(Wᵀx_i, y_i) + (λ/2) ‖W‖²_F      (training set, weighted)
//! f(u, W) = Σ_j ℓ(Wᵀx_j, y_j)                          (clean validation set)
//! ```
//!
//! with ℓ(z, y) = ½‖z − y‖² (the paper's model) or log Σ_k e^{z_k} − z_y. The constraint set for
//! u is the box |u_i| ≤ B (the paper does not give one; see the spec).
//!
//! Data regimes: the paper's (stacked train + validation Gram diagonal, λ = 0, where f* = 0 is
//! certified), Gaussian class clusters with label flips, Fashion-MNIST and user files (loaders in
//! [`crate::data`]).

use crate::error::{Error, Result};
use crate::problem::{PenaltyOptimum, Problem};
use crate::seeds::{Stream, rng};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::sync::{Mutex, OnceLock};

/// A labelled split: features (one sample per row) and class labels.
#[derive(Debug, Clone)]
pub struct Split {
    /// Features, N × m.
    pub x: Mat<f64>,
    /// Class labels in 0..classes, one per row of `x`.
    pub labels: Vec<usize>,
}

impl Split {
    /// A split from features and labels (checked by [`CleaningData::new`]).
    pub fn new(x: Mat<f64>, labels: Vec<usize>) -> Self {
        Split { x, labels }
    }

    /// An empty split with `m` features.
    pub fn empty(m: usize) -> Self {
        Split {
            x: Mat::zeros(0, m),
            labels: Vec::new(),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the split has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Training (possibly corrupted), validation (clean) and test data of a cleaning instance.
#[derive(Debug, Clone)]
pub struct CleaningData {
    /// Training split; its labels are the observed (possibly corrupted) ones.
    pub train: Split,
    /// Clean validation split (the upper level).
    pub val: Split,
    /// Test split for reporting (may be empty).
    pub test: Split,
    /// Number of classes n.
    pub classes: usize,
    /// Known corruption mask of the training labels (all false when unknown).
    pub corrupted: Vec<bool>,
    /// Where the data came from, for reports.
    pub description: String,
}

fn check_split(what: &str, s: &Split, m: usize, classes: usize) -> Result<()> {
    if s.x.nrows() != s.labels.len() {
        return Err(Error::dim(
            format!("{what}: rows of the feature matrix vs number of labels"),
            s.labels.len(),
            s.x.nrows(),
        ));
    }
    if s.x.ncols() != m {
        return Err(Error::dim(
            format!("{what}: number of features (must match the training set)"),
            m,
            s.x.ncols(),
        ));
    }
    if let Some((i, &l)) = s.labels.iter().enumerate().find(|(_, l)| **l >= classes) {
        return Err(Error::data(
            format!("{what} labels"),
            format!(
                "label {l} of sample {i} is out of range: labels must lie in 0..{classes} (0-based class indices)"
            ),
        ));
    }
    for j in 0..s.x.ncols() {
        for i in 0..s.x.nrows() {
            if !s.x[(i, j)].is_finite() {
                return Err(Error::data(
                    format!("{what} features"),
                    format!(
                        "non-finite value (NaN or Inf) at sample {i}, feature {j}; clean or impute the data first"
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl CleaningData {
    /// Checks and assembles a data set: matching row counts, the same number of features in
    /// every split, labels in 0..classes, finite features, a non-empty training and validation
    /// split, and a corruption mask (when given) with one entry per training sample.
    pub fn new(
        train: Split,
        val: Split,
        test: Split,
        classes: usize,
        corrupted: Option<Vec<bool>>,
        description: impl Into<String>,
    ) -> Result<Self> {
        if classes < 2 {
            return Err(Error::setting(
                "classes",
                classes,
                "at least 2 classes are needed",
            ));
        }
        let m = train.x.ncols();
        if m == 0 {
            return Err(Error::data(
                "training features",
                "the feature matrix has no columns",
            ));
        }
        check_split("training set", &train, m, classes)?;
        check_split("validation set", &val, m, classes)?;
        check_split("test set", &test, m, classes)?;
        if train.is_empty() || val.is_empty() {
            return Err(Error::data(
                "cleaning data",
                "the training and validation sets must both be non-empty",
            ));
        }
        let corrupted = corrupted.unwrap_or_else(|| vec![false; train.len()]);
        if corrupted.len() != train.len() {
            return Err(Error::dim(
                "corruption mask (one entry per training sample)",
                train.len(),
                corrupted.len(),
            ));
        }
        Ok(CleaningData {
            train,
            val,
            test,
            classes,
            corrupted,
            description: description.into(),
        })
    }

    /// Number of features m.
    pub fn features(&self) -> usize {
        self.train.x.ncols()
    }

    /// The paper's regime (Theorem 3): `n_trn + n_val` mutually orthogonal samples in R^m
    /// (random orthonormal directions, norms uniform in [0.5, 1.5]), one-hot labels drawn
    /// uniformly, a fraction `p` of training labels replaced by a wrong class. Needs
    /// m ≥ n_trn + n_val. No test set (f* = 0 is attained by any positive weights, so there is
    /// nothing to generalize).
    pub fn paper_regime(
        seed: u64,
        n_trn: usize,
        n_val: usize,
        m: usize,
        classes: usize,
        p: f64,
    ) -> Result<Self> {
        let total = n_trn + n_val;
        if m < total {
            return Err(Error::setting(
                "features m",
                m,
                format!(
                    "the paper's regime needs m >= n_trn + n_val = {total} (mutually orthogonal samples)"
                ),
            ));
        }
        if n_trn == 0 || n_val == 0 || classes < 2 {
            return Err(Error::setting(
                "paper regime sizes",
                format!("n_trn={n_trn}, n_val={n_val}, classes={classes}"),
                "need n_trn, n_val >= 1 and classes >= 2",
            ));
        }
        check_rate(p)?;
        let mut r = rng(seed, Stream::Data);
        let mut q = Mat::<f64>::zeros(m, total);
        for j in 0..total {
            for i in 0..m {
                q[(i, j)] = StandardNormal.sample(&mut r);
            }
        }
        // Modified Gram–Schmidt, twice (orthogonal to rounding).
        for _ in 0..2 {
            for j in 0..total {
                for k in 0..j {
                    let d: f64 = (0..m).map(|i| q[(i, j)] * q[(i, k)]).sum();
                    for i in 0..m {
                        q[(i, j)] -= d * q[(i, k)];
                    }
                }
                let nrm = (0..m).map(|i| q[(i, j)] * q[(i, j)]).sum::<f64>().sqrt();
                for i in 0..m {
                    q[(i, j)] /= nrm;
                }
            }
        }
        let norms: Vec<f64> = (0..total).map(|_| r.random_range(0.5..=1.5)).collect();
        let x = Mat::from_fn(total, m, |i, j| norms[i] * q[(j, i)]);
        let labels: Vec<usize> = (0..total).map(|_| r.random_range(0..classes)).collect();
        let mut ltrn = labels[..n_trn].to_vec();
        let corrupted = corrupt_labels(&mut ltrn, classes, p, &mut r);
        let train = Split::new(x.as_ref().subrows(0, n_trn).to_owned(), ltrn);
        let val = Split::new(
            x.as_ref().subrows(n_trn, n_val).to_owned(),
            labels[n_trn..].to_vec(),
        );
        Self::new(
            train,
            val,
            Split::empty(m),
            classes,
            Some(corrupted),
            format!(
                "paper regime: {n_trn} train + {n_val} validation mutually orthogonal samples in R^{m}, {classes} classes, label noise p = {p}, seed {seed}"
            ),
        )
    }

    /// Gaussian class clusters (the realistic synthetic regime): class means drawn as
    /// `separation`·N(0, I_m/m) (so ‖μ_c‖ ≈ separation), samples μ_c + N(0, I_m), labels
    /// uniform; a fraction `p` of the training labels replaced by a uniformly drawn wrong class.
    pub fn gaussian_clusters(c: &ClusterConfig) -> Result<Self> {
        check_rate(c.p)?;
        if c.n_trn == 0 || c.n_val == 0 || c.m == 0 || c.classes < 2 {
            return Err(Error::setting(
                "cluster sizes",
                format!(
                    "n_trn={}, n_val={}, m={}, classes={}",
                    c.n_trn, c.n_val, c.m, c.classes
                ),
                "need n_trn, n_val, m >= 1 and classes >= 2",
            ));
        }
        crate::error::check_positive("separation", c.separation)?;
        let mut r = rng(c.seed, Stream::Data);
        let sc = c.separation / (c.m as f64).sqrt();
        let means = Mat::from_fn(c.classes, c.m, |_, _| {
            sc * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut r)
        });
        let draw = |n: usize, r: &mut rand_chacha::ChaCha8Rng| {
            let labels: Vec<usize> = (0..n).map(|_| r.random_range(0..c.classes)).collect();
            let mut x = Mat::<f64>::zeros(n, c.m);
            for (i, &l) in labels.iter().enumerate() {
                for j in 0..c.m {
                    let e: f64 = StandardNormal.sample(r);
                    x[(i, j)] = means[(l, j)] + e;
                }
            }
            Split::new(x, labels)
        };
        let mut train = draw(c.n_trn, &mut r);
        let val = draw(c.n_val, &mut r);
        let test = draw(c.n_test, &mut r);
        let corrupted = corrupt_labels(&mut train.labels, c.classes, c.p, &mut r);
        Self::new(
            train,
            val,
            test,
            c.classes,
            Some(corrupted),
            format!(
                "Gaussian clusters: {} train / {} validation / {} test, m = {}, {} classes, separation {}, label noise p = {}, seed {}",
                c.n_trn, c.n_val, c.n_test, c.m, c.classes, c.separation, c.p, c.seed
            ),
        )
    }

    /// Largest |G_ij| / sqrt(G_ii G_jj) over i ≠ j of the stacked train + validation Gram
    /// matrix (0 for mutually orthogonal samples). Costs (N+N')² m.
    pub fn stacked_gram_offdiag(&self) -> f64 {
        let n1 = self.train.len();
        let n = n1 + self.val.len();
        let m = self.features();
        let z = Mat::from_fn(n, m, |i, j| {
            if i < n1 {
                self.train.x[(i, j)]
            } else {
                self.val.x[(i - n1, j)]
            }
        });
        let mut gm = Mat::<f64>::zeros(n, n);
        matmul(
            gm.as_mut(),
            Accum::Replace,
            z.as_ref(),
            z.transpose(),
            1.0,
            Par::Seq,
        );
        let mut worst: f64 = 0.0;
        for j in 0..n {
            for i in 0..j {
                let d = (gm[(i, i)] * gm[(j, j)]).sqrt().max(1e-300);
                worst = worst.max(gm[(i, j)].abs() / d);
            }
        }
        worst
    }
}

fn check_rate(p: f64) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::setting("corruption rate p", p, "must lie in [0, 1]"))
    }
}

/// Replaces exactly round(p·N) labels, chosen uniformly without replacement, by a uniformly
/// drawn wrong class. Returns the corruption mask.
pub fn corrupt_labels(
    labels: &mut [usize],
    classes: usize,
    p: f64,
    r: &mut rand_chacha::ChaCha8Rng,
) -> Vec<bool> {
    let n = labels.len();
    let k = ((p * n as f64).round() as usize).min(n);
    let mut idx: Vec<usize> = (0..n).collect();
    // Partial Fisher–Yates: the first k entries are a uniform sample.
    for i in 0..k {
        let j = r.random_range(i..n);
        idx.swap(i, j);
    }
    let mut mask = vec![false; n];
    for &i in &idx[..k] {
        let shift = 1 + r.random_range(0..classes - 1);
        labels[i] = (labels[i] + shift) % classes;
        mask[i] = true;
    }
    mask
}

/// Settings of the Gaussian-cluster generator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Training samples.
    pub n_trn: usize,
    /// Validation samples.
    pub n_val: usize,
    /// Test samples.
    pub n_test: usize,
    /// Features.
    pub m: usize,
    /// Classes.
    pub classes: usize,
    /// Fraction of corrupted training labels.
    pub p: f64,
    /// Typical norm of a class mean (noise has unit variance per feature).
    pub separation: f64,
    /// Data seed.
    pub seed: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            n_trn: 500,
            n_val: 200,
            n_test: 2000,
            m: 20,
            classes: 5,
            p: 0.5,
            separation: 4.0,
            seed: 0,
        }
    }
}

/// The per-sample loss of both levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CleaningLoss {
    /// ½‖Wᵀx − y‖² on one-hot y (the paper's model; exact lower-level solution).
    #[default]
    LeastSquares,
    /// Softmax cross-entropy log Σ_k exp(z_k) − z_y (no closed-form lower level).
    SoftmaxCrossEntropy,
}

/// Settings of the cleaning problem.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CleaningSettings {
    /// Per-sample loss.
    pub loss: CleaningLoss,
    /// Ridge λ ≥ 0 of the lower level.
    pub lambda: f64,
    /// Box |u_i| ≤ bound on the upper-level variable.
    pub bound: f64,
    /// Weights are sigmoid(u_scale · u_i). Scaling u is a diagonal preconditioner: it
    /// multiplies the effective step of the u block by u_scale² relative to the W block, which
    /// solvers with a single step size (PBGD) need when the two blocks have very different
    /// curvature. 1 is the plain parametrization.
    pub u_scale: f64,
    /// How the exact least-squares solves (g* and the v block) are computed.
    pub exact_solve: ExactSolve,
}

/// Linear solver of the exact least-squares solves (g* and the v block of L_γ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExactSolve {
    /// Warm-started CG when the ridge is positive and there are at least 200 features (where
    /// the N m² weighted Gram of a direct solve dominates an iteration); direct otherwise.
    #[default]
    Auto,
    /// Weighted Gram and Cholesky (or eigen pseudo-inverse when λ = 0) at every new u.
    Direct,
    /// Conjugate gradients warm-started on the path of earlier solutions and preconditioned by
    /// Cholesky factors from an earlier u, to a relative residual of 1e-12 (least squares with
    /// λ > 0). Results agree with the direct solve to about 1e-11; a problem instance shared by
    /// concurrent runs gives results that agree to that level but not bit for bit, and slower
    /// (the warm start then fits a path that mixes the runs).
    WarmCg,
}

impl Default for CleaningSettings {
    fn default() -> Self {
        CleaningSettings {
            loss: CleaningLoss::LeastSquares,
            lambda: 0.0,
            bound: 10.0,
            u_scale: 1.0,
            exact_solve: ExactSolve::Auto,
        }
    }
}

/// Validation and test loss (mean per sample) and accuracy of a model W.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModelEval {
    /// Mean per-sample validation loss.
    pub val_loss: f64,
    /// Validation accuracy (argmax of Wᵀx).
    pub val_acc: f64,
    /// Mean per-sample test loss (NaN without a test set).
    pub test_loss: f64,
    /// Test accuracy (NaN without a test set).
    pub test_acc: f64,
}

/// A reference model (unweighted or oracle) with its evaluation.
#[derive(Debug, Clone)]
pub struct Reference {
    /// Sample weights it was trained with.
    pub weights: Vec<f64>,
    /// The model W (column-major m × n).
    pub w: Vec<f64>,
    /// Its validation and test metrics.
    pub eval: ModelEval,
    /// Upper-level objective f at W.
    pub f: f64,
}

/// The data hyper-cleaning problem.
#[derive(Debug)]
pub struct Cleaning {
    data: CleaningData,
    s: CleaningSettings,
    y_trn: Mat<f64>,
    y_val: Mat<f64>,
    y_test: Mat<f64>,
    certified: bool,
    offdiag: f64,
    cache: Mutex<Option<(Vec<f64>, Vec<f64>)>>,
    system_cache: Mutex<Option<WeightedSystem>>,
    val_system: OnceLock<(Mat<f64>, Mat<f64>)>,
    work: crate::kernels::Pool<EvalWork>,
    /// X_trnᵀ: the training features stored by rows for the fused passes, whose row blocks
    /// are then contiguous (faster than strided pieces of every column).
    rows_trn: Mat<f64>,
    /// f as the fused passes read it (least squares only): the R of a QR of X_val when
    /// N' ≥ m, a triangle of m² / 2 entries instead of N' m.
    ls_val: Option<crate::kernels::LsData>,
    /// State of the warm-started exact solves.
    warm: Mutex<WarmSolves>,
    /// Refreshes, preconditioned solves and their iterations, for reports.
    solve_counts: [std::sync::atomic::AtomicUsize; 3],
    val_full: OnceLock<(Mat<f64>, Mat<f64>)>,
}

/// What the warm-started exact solves carry from one call to the next.
#[derive(Debug, Default)]
struct WarmSolves {
    /// Preconditioners (None before the first solve).
    factors: Option<Factors>,
    /// The last solutions of both systems with their u, oldest first (at most
    /// [`WARM_HISTORY`] + 1; the warm start extrapolates along them, see [`secant_start`]).
    path: Vec<(Vec<f64>, Mat<f64>)>,
    /// The last solution of both systems, [w, W], with its residual rows
    /// X_trn [w, W] − [Y, Y] carried along by the solve (see [`Cleaning::fused_penalty`]).
    image: Option<(Mat<f64>, Mat<f64>)>,
    /// Scratch for the rows X_trn P of each product (N × 2n), kept between solves.
    xp: Option<Mat<f64>>,
}

/// Inverses of the two weighted ridge systems at the weights of their last refresh: the
/// preconditioners of the warm-started exact solves ([`Cleaning::solve_exact`]). Explicit
/// inverses (from the Cholesky factors) because one product with 10 right-hand sides runs at
/// GEMM speed where two triangular solves do not.
#[derive(Debug)]
struct Factors {
    /// (XᵀΨX + λI)⁻¹.
    g: Mat<f64>,
    /// γ and (X_valᵀX_val + γ (XᵀΨX + λI))⁻¹.
    v: Option<(f64, Mat<f64>)>,
    /// Column norms of both right-hand sides at the refresh (the scale of the stopping test;
    /// the right-hand sides move slowly with u).
    scale: Vec<f64>,
    /// Iterations of the last preconditioned solve (a growing count means stale factors).
    last_iters: usize,
}

/// Relative residual to which the warm-started solves run: at the level of a direct
/// Cholesky solve of these systems (condition numbers up to about 1e5 on Fashion-MNIST).
const SOLVE_RTOL: f64 = 1e-12;
/// Factors are refreshed when the last preconditioned solve took more iterations than this.
const REFRESH_ITERS: usize = 3;
/// Preconditioned solves give up after this many iterations and refresh the factors.
const MAX_PCG_ITERS: usize = 30;
/// Steps of the solution path the warm start fits (see [`secant_start`]).
const WARM_HISTORY: usize = 5;
/// Below this many features the direct solve costs little and is always used.
const PCG_MIN_FEATURES: usize = 200;

/// Scratch space of one fused penalty evaluation (least squares), allocated on first use and
/// reused, so an iteration allocates nothing.
#[derive(Debug)]
struct EvalWork {
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
    parts: Vec<crate::kernels::Part>,
}

/// Samples of one split (or gathered rows of it): features, one-hot targets, labels.
#[derive(Clone, Copy)]
struct Rows<'a> {
    x: MatRef<'a, f64>,
    y: MatRef<'a, f64>,
    labels: &'a [usize],
}

/// A u and the weighted Gram and right-hand side at ψ(u).
type WeightedSystem = (Vec<f64>, std::sync::Arc<(Mat<f64>, Mat<f64>)>);

/// Warm start of the exact solves at `u` from the path of earlier solutions (u_i, x_i): the
/// secant model x(u) ≈ x_last + Σ c_i (x_{i+1} − x_i), with c the least-squares fit of
/// u − u_last by the steps u_{i+1} − u_i. The iterates move smoothly in u, so this is several
/// orders of magnitude closer than the last solution (on the Fashion-MNIST run: initial
/// residuals about 1e-11 against 2e-3 from the last solution and 2e-5 from a line through the
/// last two). None without two solutions.
fn secant_start(path: &[(Vec<f64>, Mat<f64>)], u: &[f64]) -> Option<Mat<f64>> {
    let (ul, xl) = path.last()?;
    let k = path.len() - 1;
    if k == 0 {
        return None;
    }
    let steps: Vec<Vec<f64>> = path
        .windows(2)
        .map(|w| w[1].0.iter().zip(&w[0].0).map(|(a, b)| a - b).collect())
        .collect();
    let target: Vec<f64> = u.iter().zip(ul).map(|(a, b)| a - b).collect();
    let c = lstsq_small(&steps, &target);
    let mut x = xl.clone();
    for (i, ci) in c.iter().enumerate() {
        let (a, b) = (&path[i + 1].1, &path[i].1);
        x += (a - b) * faer::Scale(*ci);
    }
    Some(x)
}

/// Least-squares coefficients c minimizing ‖Σ c_i a_i − b‖ for a few long columns a_i, by
/// Gram–Schmidt with reorthogonalization (QR, not the normal equations: the steps of a smooth
/// path are nearly parallel and their differences carry the curvature). A column that is
/// dependent on the earlier ones to 1e-10 of its norm gets coefficient 0.
fn lstsq_small(cols: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    use crate::linalg::{axpy, dot, norm};
    let k = cols.len();
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(k);
    let mut r = vec![vec![0.0; k]; k];
    let mut kept = vec![false; k];
    for (j, a) in cols.iter().enumerate() {
        let mut v = a.clone();
        for _ in 0..2 {
            for (i, qi) in q.iter().enumerate() {
                if qi.is_empty() {
                    continue;
                }
                let h = dot(qi, &v);
                r[i][j] += h;
                axpy(-h, qi, &mut v);
            }
        }
        let nv = norm(&v);
        if nv > 1e-10 * norm(a) && nv > 0.0 {
            v.iter_mut().for_each(|x| *x /= nv);
            r[j][j] = nv;
            kept[j] = true;
            q.push(v);
        } else {
            q.push(Vec::new());
        }
    }
    let qb: Vec<f64> = q
        .iter()
        .map(|qi| if qi.is_empty() { 0.0 } else { dot(qi, b) })
        .collect();
    let mut c = vec![0.0; k];
    for j in (0..k).rev() {
        if kept[j] {
            let s: f64 = (j + 1..k).map(|l| r[j][l] * c[l]).sum();
            c[j] = (qb[j] - s) / r[j][j];
        }
    }
    c
}

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
fn solve_ridge(what: &str, mut a: Mat<f64>, b: MatRef<'_, f64>, ridge: f64) -> Result<Mat<f64>> {
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
fn flatten(x: MatRef<'_, f64>) -> Vec<f64> {
    (0..x.ncols())
        .flat_map(|j| (0..x.nrows()).map(move |i| x[(i, j)]))
        .collect()
}

fn one_hot(labels: &[usize], n: usize) -> Mat<f64> {
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

/// Tolerance of the off-diagonal Gram test that certifies the paper's regime.
pub const ORTHOGONALITY_TOL: f64 = 1e-10;

impl Cleaning {
    /// The problem on `data` with `settings`. Checks λ ≥ 0, bound > 0, u_scale > 0. Certifies
    /// f* = 0 (the paper's regime) when the loss is least squares, λ = 0 and the stacked
    /// train + validation samples are mutually orthogonal (relative off-diagonal Gram ≤ 1e-10,
    /// checked here only in that setting and when N + N' ≤ 4000).
    pub fn new(data: CleaningData, settings: CleaningSettings) -> Result<Self> {
        let s = settings;
        if !(s.lambda.is_finite() && s.lambda >= 0.0) {
            return Err(Error::setting(
                "lambda",
                s.lambda,
                "the ridge must be finite and >= 0",
            ));
        }
        crate::error::check_positive("bound", s.bound)?;
        crate::error::check_positive("u_scale", s.u_scale)?;
        if s.exact_solve == ExactSolve::WarmCg
            && (s.loss != CleaningLoss::LeastSquares || s.lambda <= 0.0)
        {
            return Err(Error::setting(
                "exact_solve",
                "warm-cg",
                "warm-started CG needs the least-squares loss and lambda > 0 (positive definite systems); use \"auto\" or \"direct\"",
            ));
        }
        let n = data.classes;
        // The Gram check only matters where it can certify (least squares, λ = 0).
        let small = data.train.len() + data.val.len() <= 4000
            && s.loss == CleaningLoss::LeastSquares
            && s.lambda == 0.0;
        let offdiag = if small {
            data.stacked_gram_offdiag()
        } else {
            f64::NAN
        };
        let certified =
            s.loss == CleaningLoss::LeastSquares && s.lambda == 0.0 && offdiag <= ORTHOGONALITY_TOL;
        let y_val = one_hot(&data.val.labels, n);
        Ok(Cleaning {
            rows_trn: data.train.x.transpose().to_owned(),
            ls_val: (s.loss == CleaningLoss::LeastSquares)
                .then(|| crate::kernels::LsData::new(data.val.x.as_ref(), y_val.as_ref())),
            y_trn: one_hot(&data.train.labels, n),
            y_val,
            y_test: one_hot(&data.test.labels, n),
            data,
            s,
            certified,
            offdiag,
            cache: Mutex::new(None),
            system_cache: Mutex::new(None),
            val_system: OnceLock::new(),
            work: Default::default(),
            warm: Mutex::default(),
            solve_counts: Default::default(),
            val_full: OnceLock::new(),
        })
    }

    /// The data.
    pub fn data(&self) -> &CleaningData {
        &self.data
    }

    /// The settings.
    pub fn settings(&self) -> &CleaningSettings {
        &self.s
    }

    /// True in the paper's regime, where f* = 0 and min L_γ = 0 are certified.
    pub fn certified(&self) -> bool {
        self.certified
    }

    /// Largest relative off-diagonal entry of the stacked train + validation Gram (NaN when
    /// it was not checked: more than 4000 samples, or a setting that cannot certify).
    pub fn gram_offdiag(&self) -> f64 {
        self.offdiag
    }

    /// Sample weights ψ_i = sigmoid(u_scale · u_i).
    pub fn weights(&self, u: &[f64]) -> Vec<f64> {
        u.iter().map(|&x| sigmoid(self.s.u_scale * x)).collect()
    }

    fn shape(&self) -> (usize, usize) {
        (self.data.features(), self.data.classes)
    }

    /// Per-sample losses of scores Z against targets Y; when `grad` is true Z is overwritten
    /// with ∂ℓ_i/∂z_i row by row.
    fn losses(
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

    fn scores(&self, x: MatRef<'_, f64>, w: MatRef<'_, f64>) -> Mat<f64> {
        let mut z = Mat::<f64>::zeros(x.nrows(), w.ncols());
        matmul(z.as_mut(), Accum::Replace, x, w, 1.0, Par::Seq);
        z
    }

    /// Weighted training objective Σ ψ_i ℓ_i + λ/2‖W‖² with sample weights `wts` (any
    /// non-negative numbers), and its gradient in W.
    fn weighted_objective(
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
    fn objective_on(
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
            CleaningLoss::SoftmaxCrossEntropy => Ok(self.fit_ce(wts, None)),
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
    fn system_at(&self, u: &[f64]) -> std::sync::Arc<(Mat<f64>, Mat<f64>)> {
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
    fn val_system(&self) -> &(Mat<f64>, Mat<f64>) {
        self.val_system
            .get_or_init(|| gram_and_rhs(self.data.val.x.as_ref(), self.y_val.as_ref()))
    }

    /// True when the exact solves run as warm-started preconditioned CG
    /// ([`Cleaning::solve_exact`], see [`ExactSolve`]).
    fn uses_pcg(&self) -> bool {
        let possible = self.s.loss == CleaningLoss::LeastSquares && self.s.lambda > 0.0;
        match self.s.exact_solve {
            ExactSolve::Direct => false,
            ExactSolve::WarmCg => possible,
            ExactSolve::Auto => possible && self.data.features() >= PCG_MIN_FEATURES,
        }
    }

    /// X_valᵀX_val with both triangles (for products) and a zero N × n target (the fused pass
    /// then computes Xᵀ Ψ X P).
    fn pcg_constants(&self) -> &(Mat<f64>, Mat<f64>) {
        self.val_full.get_or_init(|| {
            let g = &self.val_system().0;
            let m = g.nrows();
            let full = Mat::from_fn(m, m, |i, j| if i >= j { g[(i, j)] } else { g[(j, i)] });
            (full, Mat::zeros(self.data.train.len(), self.data.classes))
        })
    }

    /// The exact lower-level solution w = (XᵀΨX + λI)⁻¹ XᵀΨY at ψ(u), and with `gamma` also the
    /// exact v block W = argmin L_γ(u, ·), both solved together (one block of 2n right-hand
    /// sides) by conjugate gradients from the secant fit to the path of earlier solutions
    /// ([`secant_start`]; the values passed in before there is a path), preconditioned by the
    /// inverses of both systems at an earlier u, to a relative residual of [`SOLVE_RTOL`].
    /// The factors are refreshed at the current u (and the systems then solved directly) when
    /// there are none yet, γ changed, the last solve needed more than [`REFRESH_ITERS`]
    /// iterations, or this one does not converge in [`MAX_PCG_ITERS`]. Between refreshes an
    /// iteration costs a few fused passes over X_trn instead of an N m² Gram.
    fn solve_exact(
        &self,
        u: &[f64],
        gamma: Option<f64>,
        w: &mut [f64],
        v: Option<&mut [f64]>,
    ) -> Result<()> {
        use crate::kernels::{RowOps, fused_pass};
        use faer::linalg::solvers::{DenseSolveCore, Solve};
        let (m, n) = self.shape();
        let lam = self.s.lambda;
        let psi = self.weights(u);
        let k = if gamma.is_some() { 2 * n } else { n };
        let (gval, zeros) = self.pcg_constants();
        let bval = &self.val_system().1;
        let mut x = Mat::<f64>::zeros(m, k);
        x.as_mut()
            .subcols_mut(0, n)
            .copy_from(MatRef::from_column_major_slice(w, m, n));
        if let Some(v) = v.as_deref() {
            x.as_mut()
                .subcols_mut(n, n)
                .copy_from(MatRef::from_column_major_slice(v, m, n));
        }
        let mut warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        let WarmSolves {
            factors: fac,
            path,
            image,
            xp: xp_buf,
        } = &mut *warm;
        // A solve of both systems rebuilds the image (or drops it when it refreshes instead)
        // and reuses its rows buffer; a g*-only solve leaves it alone.
        let old_rows = if k == 2 * n {
            image.take().map(|(_, rows)| rows)
        } else {
            None
        };
        // The v block's solutions depend on γ: after a change the path no longer fits.
        if let (Some(gm), Some(f)) = (gamma, fac.as_ref())
            && f.v.as_ref().map(|(g, _)| *g) != Some(gm)
        {
            path.clear();
        }
        if let Some(x0) = secant_start(path, u) {
            x = x0.subcols(0, k).to_owned();
        }
        let fresh = match fac.as_ref() {
            None => false,
            Some(f) => {
                f.last_iters <= REFRESH_ITERS
                    && (gamma.is_none() || f.v.as_ref().map(|(g, _)| *g) == gamma)
            }
        };
        let mut iters = None;
        let mut tracked = None;
        if let (true, Some(f)) = (fresh, fac.as_ref()) {
            // out = A P − [B_w, γ B_w] for targets Y (B_w = XᵀΨY), or A P for zero targets:
            // Xᵀ Ψ (X P − Y) from one fused pass, then λ P, and for the v block X_valᵀX_val P
            // and the factor γ.
            // `rows` receives X P − Y (before the weights).
            let op = |p: MatRef<'_, f64>,
                      y: MatRef<'_, f64>,
                      mut out: faer::MatMut<'_, f64>,
                      rows: Option<faer::MatMut<'_, f64>>| {
                self.with_work(|ws| {
                    fused_pass(
                        self.rows_trn.transpose(),
                        y,
                        p,
                        out.as_mut(),
                        &mut ws.parts,
                        RowOps {
                            weight: Some(&psi),
                            losses: None,
                            rows,
                            cols: Some(self.data.train.x.as_ref()),
                            ..RowOps::default()
                        },
                    )
                });
                for j in 0..n {
                    for i in 0..m {
                        out[(i, j)] += lam * p[(i, j)];
                    }
                }
                if let Some(gm) = gamma {
                    let mut t = Mat::<f64>::zeros(m, n);
                    matmul(
                        t.as_mut(),
                        Accum::Replace,
                        gval,
                        p.subcols(n, n),
                        1.0,
                        Par::Seq,
                    );
                    for j in 0..n {
                        for i in 0..m {
                            let o = &mut out[(i, n + j)];
                            *o = t[(i, j)] + gm * (*o + lam * p[(i, n + j)]);
                        }
                    }
                }
            };
            // With both systems, the residual rows X x − [Y, Y] of the iterate are carried along
            // (from the rows of the first pass and of each product), so the evaluation that
            // follows at this solution needs no pass over X_trn of its own.
            let track = k == 2 * n;
            let shape = if track {
                (self.data.train.len(), k)
            } else {
                (0, 0)
            };
            let sized = |b: Mat<f64>| (b.shape() == shape).then_some(b);
            let mut rr = old_rows
                .and_then(sized)
                .unwrap_or_else(|| Mat::zeros(shape.0, shape.1));
            let xp = xp_buf
                .take()
                .and_then(sized)
                .unwrap_or_else(|| Mat::zeros(shape.0, shape.1));
            let xp = std::cell::RefCell::new(xp);
            let apply = |p: MatRef<'_, f64>, out: faer::MatMut<'_, f64>| {
                let mut xp = xp.borrow_mut();
                op(p, zeros.as_ref(), out, track.then(|| xp.as_mut()))
            };
            let par = crate::kernels::par_for(m * m * n);
            let mut t = Mat::<f64>::zeros(m, k);
            let precond = |mut z: faer::MatMut<'_, f64>| {
                let blocks = [Some(&f.g), f.v.as_ref().map(|(_, a)| a)];
                for (b, inv) in blocks.into_iter().take(k / n).enumerate() {
                    let inv = inv.expect("the v block has its inverse");
                    let dst = t.as_mut().subcols_mut(b * n, n);
                    crate::kernels::matmul_par(
                        dst,
                        inv.as_ref(),
                        z.as_ref().subcols(b * n, n),
                        par,
                    );
                }
                z.copy_from(&t);
            };
            // R0 = B − A X0 from the pass with the targets, so XᵀΨY itself is never formed:
            // op gives A X0 − [B_w, γ B_w], and B_v = X_valᵀY_val + γ B_w.
            let mut r0 = Mat::<f64>::zeros(m, k);
            op(
                x.as_ref(),
                self.y_trn.as_ref(),
                r0.as_mut(),
                track.then(|| rr.as_mut()),
            );
            for j in 0..k {
                for i in 0..m {
                    let b = if j < n { 0.0 } else { bval[(i, j - n)] };
                    r0[(i, j)] = b - r0[(i, j)];
                }
            }
            let stepped = |a: &[f64]| {
                if track {
                    let xp = xp.borrow();
                    for (j, &aj) in a.iter().enumerate() {
                        let (dst, src) = (rr.col_mut(j), xp.col(j));
                        dst.iter_mut()
                            .zip(src.iter())
                            .for_each(|(d, s)| *d += aj * s);
                    }
                }
            };
            iters = crate::linalg::block_pcg(
                r0,
                &f.scale[..k],
                x.as_mut(),
                apply,
                precond,
                stepped,
                SOLVE_RTOL,
                MAX_PCG_ITERS,
            );
            if track && iters.is_some() {
                tracked = Some(rr);
            }
            *xp_buf = Some(xp.into_inner());
        }
        let count = |i: usize, by: usize| {
            self.solve_counts[i].fetch_add(by, std::sync::atomic::Ordering::Relaxed);
        };
        match (iters, fac.as_mut()) {
            (Some(it), Some(f)) => {
                f.last_iters = it;
                count(1, 1);
                count(2, it);
            }
            _ => {
                count(0, 1);
                // Refresh at the current weights: factor both systems and solve directly.
                let sys = self.system_at(u);
                let mut a = sys.0.clone();
                for i in 0..m {
                    a[(i, i)] += lam;
                }
                let not_spd = |what: &str| {
                    Error::data(
                        what.to_string(),
                        "matrix is not symmetric positive definite (Cholesky failed)",
                    )
                };
                let lg = a
                    .llt(Side::Lower)
                    .map_err(|_| not_spd("weighted ridge system X^T diag(psi) X + lambda I"))?;
                let old = fac.take();
                let col_norms = |b: MatRef<'_, f64>| -> Vec<f64> {
                    (0..b.ncols()).map(|j| b.col(j).norm_l2()).collect()
                };
                let bw = sys.1.as_ref();
                let mut scale = col_norms(bw);
                let mut xw = x.as_mut().subcols_mut(0, n);
                xw.copy_from(bw);
                lg.solve_in_place(xw);
                let lv = match gamma {
                    Some(gm) => {
                        let av = &self.val_system().0 + &a * faer::Scale(gm);
                        let l = av.llt(Side::Lower).map_err(|_| {
                            not_spd("penalty v-block system X_val^T X_val + gamma (X^T diag(psi) X + lambda I)")
                        })?;
                        let bv = bval + bw * faer::Scale(gm);
                        scale.extend(col_norms(bv.as_ref()));
                        let mut xv = x.as_mut().subcols_mut(n, n);
                        xv.copy_from(&bv);
                        l.solve_in_place(xv);
                        Some((gm, l.inverse()))
                    }
                    None => {
                        // Keep the v system's inverse (stale but still a preconditioner).
                        let old = old.filter(|f| f.v.is_some());
                        scale.extend(old.as_ref().map_or(vec![1.0; n], |f| f.scale[n..].to_vec()));
                        old.and_then(|f| f.v)
                    }
                };
                *fac = Some(Factors {
                    g: lg.inverse(),
                    v: lv,
                    scale,
                    last_iters: 0,
                });
            }
        }
        w.copy_from_slice(&flatten(x.as_ref().subcols(0, n)));
        if k == 2 * n {
            if path.len() > WARM_HISTORY {
                path.remove(0);
            }
            path.push((u.to_vec(), x.clone()));
            *image = tracked.map(|rr| (x.clone(), rr));
        }
        if let Some(v) = v {
            v.copy_from_slice(&flatten(x.as_ref().subcols(n, n)));
        }
        Ok(())
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

    /// Runs `f` with a scratch workspace from the pool (allocated on first use).
    fn with_work<R>(&self, f: impl FnOnce(&mut EvalWork) -> R) -> R {
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
    fn fused_penalty(
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

    /// Per-sample half squared residuals [ℓ_i(W), ℓ_i(w)] (row-major N × 2) from the residual
    /// rows the last warm-started solve carried along, when (W, w) is exactly its solution
    /// (the Gauss–Seidel u step right after the exact v block); false otherwise.
    fn losses_from_image(&self, v: &[f64], w: &[f64], losses: &mut [f64]) -> bool {
        let (m, n) = self.shape();
        let warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        let Some((x, rr)) = warm.image.as_ref() else {
            return false;
        };
        let same = |col0: usize, z: &[f64]| {
            (0..n).all(|j| x.col(col0 + j).iter().eq(z[j * m..(j + 1) * m].iter()))
        };
        if !(same(0, w) && same(n, v)) {
            return false;
        }
        for (i, l) in losses.chunks_exact_mut(2).enumerate() {
            let half_sq =
                |c0: usize| 0.5 * (c0..c0 + n).map(|j| rr[(i, j)] * rr[(i, j)]).sum::<f64>();
            l[0] = half_sq(n);
            l[1] = half_sq(0);
        }
        true
    }

    /// Exact solves so far: factor refreshes (direct solves), preconditioned CG solves, and
    /// their total CG iterations (all 0 with direct solves).
    pub fn solve_counts(&self) -> (usize, usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let [r, s, it] = [0, 1, 2].map(|i| self.solve_counts[i].load(Relaxed));
        (r, s, it)
    }

    /// [`Cleaning::solve_counts`] in words, for reports.
    pub fn solve_stats(&self) -> String {
        let (r, s, it) = self.solve_counts();
        if r + s == 0 {
            return "direct solves".into();
        }
        format!(
            "{r} factor refreshes (direct solves), {s} preconditioned CG solves, {:.1} CG iterations each",
            it as f64 / s.max(1) as f64
        )
    }

    /// The last exact lower-level solution (the start of the next warm solve), or zeros.
    fn cached_w(&self) -> Vec<f64> {
        let c = self.cache.lock().expect("cache lock");
        c.as_ref()
            .map_or_else(|| vec![0.0; self.dim_v()], |(_, w)| w.clone())
    }

    /// Mean loss and accuracy of W on a split (NaN for an empty split).
    fn eval_split(&self, x: &Mat<f64>, y: &Mat<f64>, labels: &[usize], v: &[f64]) -> (f64, f64) {
        if labels.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        let (m, n) = self.shape();
        let mut z = self.scores(x.as_ref(), MatRef::from_column_major_slice(v, m, n));
        let correct = (0..z.nrows())
            .filter(|&i| {
                let best = (0..n)
                    .max_by(|&a, &b| z[(i, a)].total_cmp(&z[(i, b)]))
                    .unwrap_or(0);
                best == labels[i]
            })
            .count();
        let losses = self.losses(&mut z, y.as_ref(), labels, false);
        let k = labels.len() as f64;
        (losses.iter().sum::<f64>() / k, correct as f64 / k)
    }

    /// Validation and test loss and accuracy of the model `v`.
    pub fn evaluate(&self, v: &[f64]) -> ModelEval {
        let (val_loss, val_acc) =
            self.eval_split(&self.data.val.x, &self.y_val, &self.data.val.labels, v);
        let (test_loss, test_acc) =
            self.eval_split(&self.data.test.x, &self.y_test, &self.data.test.labels, v);
        ModelEval {
            val_loss,
            val_acc,
            test_loss,
            test_acc,
        }
    }

    /// Cleaning precision, recall and F1 of the weights at u against the corruption mask.
    /// Positives are the samples flagged as corrupted (ψ_i < ½, i.e. not kept): precision =
    /// flagged ∩ corrupted / flagged, recall = flagged ∩ corrupted / corrupted,
    /// F1 = 2·tp / (flagged + corrupted). NaN where a denominator is 0.
    pub fn cleaning_scores(&self, u: &[f64]) -> (f64, f64, f64) {
        let psi = self.weights(u);
        let (mut tp, mut flagged, mut bad) = (0usize, 0usize, 0usize);
        for (p, &c) in psi.iter().zip(&self.data.corrupted) {
            let f = *p < 0.5;
            flagged += usize::from(f);
            bad += usize::from(c);
            tp += usize::from(f && c);
        }
        let div = |a: usize, b: usize| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        (div(tp, flagged), div(tp, bad), div(2 * tp, flagged + bad))
    }

    /// A reference trained with fixed weights (see [`Cleaning::fit`]).
    pub fn reference(&self, weights: Vec<f64>) -> Result<Reference> {
        let w = self.fit(&weights)?;
        let eval = self.evaluate(&w);
        let u = vec![0.0; self.dim_u()];
        let f = self.f(&u, &w, None, None);
        Ok(Reference {
            weights,
            w,
            eval,
            f,
        })
    }

    /// Training on all samples with weight 1 (same λ).
    pub fn reference_unweighted(&self) -> Result<Reference> {
        self.reference(vec![1.0; self.data.train.len()])
    }

    /// The oracle: weight 1 on exactly the clean samples, 0 on the corrupted ones (same λ).
    pub fn reference_oracle(&self) -> Result<Reference> {
        self.reference(self.data.corrupted.iter().map(|&c| f64::from(!c)).collect())
    }

    /// The start point used by the experiments: u = 0 (every weight ½), W = 0.
    pub fn default_start(&self) -> (Vec<f64>, Vec<f64>) {
        (vec![0.0; self.dim_u()], vec![0.0; self.dim_v()])
    }
}

impl Problem for Cleaning {
    fn initial_point(&self, _seed: u64) -> Option<(Vec<f64>, Vec<f64>)> {
        Some(self.default_start())
    }
    fn name(&self) -> String {
        let loss = match self.s.loss {
            CleaningLoss::LeastSquares => "ls",
            CleaningLoss::SoftmaxCrossEntropy => "ce",
        };
        format!(
            "cleaning({loss}, N={}, m={}, n={}, lambda={})",
            self.data.train.len(),
            self.data.features(),
            self.data.classes,
            self.s.lambda
        )
    }

    fn dim_u(&self) -> usize {
        self.data.train.len()
    }

    fn dim_v(&self) -> usize {
        self.data.features() * self.data.classes
    }

    fn f(&self, _u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        let (m, n) = self.shape();
        let w = MatRef::from_column_major_slice(v, m, n);
        let mut z = self.scores(self.data.val.x.as_ref(), w);
        let losses = self.losses(
            &mut z,
            self.y_val.as_ref(),
            &self.data.val.labels,
            gv.is_some(),
        );
        if let Some(gu) = gu {
            gu.fill(0.0);
        }
        if let Some(gv) = gv {
            let gm = faer::MatMut::from_column_major_slice_mut(gv, m, n);
            matmul(
                gm,
                Accum::Replace,
                self.data.val.x.transpose(),
                z.as_ref(),
                1.0,
                Par::Seq,
            );
        }
        losses.iter().sum()
    }

    fn g(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        let psi = self.weights(u);
        let (val, losses) = self.weighted_objective(&psi, v, gv);
        if let Some(gu) = gu {
            // ∂g/∂u_i = s ψ_i (1 − ψ_i) ℓ_i.
            for i in 0..gu.len() {
                gu[i] = self.s.u_scale * psi[i] * (1.0 - psi[i]) * losses[i];
            }
        }
        val
    }

    /// Least squares: one fused pass over X_trn for both models ([W, w] stacked; per-sample
    /// losses and Xᵀ Ψ R(W) while each block of rows is in cache) and one over X_val.
    fn penalty_eval(
        &self,
        u: &[f64],
        v: &[f64],
        w: &[f64],
        gamma: f64,
        du: Option<&mut [f64]>,
        dv: Option<&mut [f64]>,
    ) -> Option<[f64; 3]> {
        // Only least squares has the pass form of f.
        let ls_val = self.ls_val.as_ref()?;
        Some(self.with_work(|ws| self.fused_penalty(ws, ls_val, u, v, w, gamma, du, dv)))
    }

    fn batch_samples(&self) -> usize {
        self.data.train.len()
    }

    fn g_batch(
        &self,
        u: &[f64],
        v: &[f64],
        batch: &[usize],
        gu: Option<&mut [f64]>,
        gv: Option<&mut [f64]>,
    ) -> f64 {
        // Gather the batch's rows into a workspace, then the same GEMMs as the full g.
        let (m, n) = self.shape();
        let x = &self.data.train.x;
        let xb = Mat::from_fn(batch.len(), m, |k, j| x[(batch[k], j)]);
        let yb = Mat::from_fn(batch.len(), n, |k, j| self.y_trn[(batch[k], j)]);
        let labels: Vec<usize> = batch.iter().map(|&i| self.data.train.labels[i]).collect();
        let psi: Vec<f64> = batch
            .iter()
            .map(|&i| sigmoid(self.s.u_scale * u[i]))
            .collect();
        let scale = if batch.is_empty() {
            0.0
        } else {
            self.data.train.len() as f64 / batch.len() as f64
        };
        let rows = Rows {
            x: xb.as_ref(),
            y: yb.as_ref(),
            labels: &labels,
        };
        let (val, losses) = self.objective_on(rows, &psi, scale, v, gv);
        if let Some(gu) = gu {
            // (N/|B|) s ψ_i (1 − ψ_i) ℓ_i on the batch, 0 elsewhere (accumulated, so a
            // repeated index counts as often as it is drawn).
            gu.fill(0.0);
            for (k, &i) in batch.iter().enumerate() {
                gu[i] += scale * self.s.u_scale * psi[k] * (1.0 - psi[k]) * losses[k];
            }
        }
        val
    }

    fn ll_solution(&self, u: &[f64], w: &mut [f64]) -> bool {
        if self.s.loss != CleaningLoss::LeastSquares {
            return false;
        }
        {
            let c = self.cache.lock().expect("cache lock");
            if let Some((cu, cw)) = c.as_ref()
                && cu.as_slice() == u
            {
                w.copy_from_slice(cw);
                return true;
            }
        }
        let sol = if self.uses_pcg() {
            let mut sol = self.cached_w();
            self.solve_exact(u, None, &mut sol, None).map(|()| sol)
        } else {
            let sys = self.system_at(u);
            solve_ridge(
                "weighted ridge system X^T diag(psi) X + lambda I",
                sys.0.clone(),
                sys.1.as_ref(),
                self.s.lambda,
            )
            .map(|x| flatten(x.as_ref()))
        };
        match sol {
            Ok(sol) => {
                w.copy_from_slice(&sol);
                *self.cache.lock().expect("cache lock") = Some((u.to_vec(), sol));
                true
            }
            Err(_) => false,
        }
    }

    fn has_ll_solution(&self) -> bool {
        self.s.loss == CleaningLoss::LeastSquares
    }

    fn penalty_v_solution(&self, u: &[f64], gamma: f64, v: &mut [f64]) -> bool {
        if self.s.loss != CleaningLoss::LeastSquares {
            return false;
        }
        if self.uses_pcg() {
            // Both systems in one block solve; g* at this u is then a cache hit.
            let mut w = self.cached_w();
            if self.solve_exact(u, Some(gamma), &mut w, Some(v)).is_err() {
                return false;
            }
            *self.cache.lock().expect("cache lock") = Some((u.to_vec(), w));
            return true;
        }
        // (X_valᵀX_val + γ XᵀΨX + γλ I) W = X_valᵀY_val + γ XᵀΨY: the same weighted Gram as g*.
        let sys = self.system_at(u);
        let (gv, bv) = self.val_system();
        let a = gv + &sys.0 * faer::Scale(gamma);
        let b = bv + &sys.1 * faer::Scale(gamma);
        match solve_ridge(
            "penalty v-block system X_val^T X_val + gamma (X^T diag(psi) X + lambda I)",
            a,
            b.as_ref(),
            gamma * self.s.lambda,
        ) {
            Ok(sol) => {
                v.copy_from_slice(&flatten(sol.as_ref()));
                true
            }
            Err(_) => false,
        }
    }

    fn has_penalty_v_solution(&self) -> bool {
        self.s.loss == CleaningLoss::LeastSquares
    }

    fn project_u(&self, u: &mut [f64]) {
        let b = self.s.bound;
        for x in u.iter_mut() {
            *x = x.clamp(-b, b);
        }
    }

    fn is_constrained(&self) -> bool {
        true
    }

    fn bilevel_optimum(&self) -> Option<f64> {
        self.certified.then_some(0.0)
    }

    fn penalty_optimum(&self, _gamma: f64) -> Option<PenaltyOptimum> {
        // Paper's regime: some W interpolates train and validation, so L_γ = f + γ(g − g*)
        // reaches 0 for every u; the minimizer is not unique.
        self.certified.then_some(PenaltyOptimum {
            value: 0.0,
            point: None,
        })
    }

    fn metric_names(&self) -> Vec<String> {
        [
            "val_loss",
            "val_acc",
            "test_loss",
            "test_acc",
            "precision",
            "recall",
            "f1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn metrics(&self, u: &[f64], v: &[f64]) -> Vec<f64> {
        let e = self.evaluate(v);
        let (p, r, f1) = self.cleaning_scores(u);
        vec![e.val_loss, e.val_acc, e.test_loss, e.test_acc, p, r, f1]
    }

    /// Exact Hessian-vector product, for both losses (see [`Cleaning::exact_hvp`]).
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
        self.exact_hvp(level, u, v, du, dv, hu, hv);
    }
}

impl Cleaning {
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
    fn exact_hvp(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::dist;

    #[test]
    fn lstsq_small_recovers_combinations_and_skips_dependent_columns() {
        let a: Vec<f64> = (0..50).map(|i| (i as f64 * 0.3).sin()).collect();
        let b: Vec<f64> = (0..50).map(|i| (i as f64 * 0.7).cos()).collect();
        // Nearly parallel to a: the fit must still separate them (curvature of a path).
        let c: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + 1e-4 * y).collect();
        let target: Vec<f64> = (0..50).map(|i| 2.0 * a[i] - 3.0 * c[i]).collect();
        let coef = lstsq_small(&[a.clone(), c.clone()], &target);
        assert!(
            (coef[0] - 2.0).abs() <= 1e-8 && (coef[1] + 3.0).abs() <= 1e-8,
            "{coef:?}"
        );
        // An exactly dependent column gets 0; the rest still fits.
        let coef = lstsq_small(&[a.clone(), a.clone(), b.clone()], &b);
        assert_eq!(coef[1], 0.0);
        assert!(
            coef[0].abs() <= 1e-12 && (coef[2] - 1.0).abs() <= 1e-12,
            "{coef:?}"
        );
    }

    #[test]
    fn secant_start_is_exact_for_solutions_linear_in_u() {
        // x(u) = x0 + J u: any u in the span of the steps is reproduced to rounding.
        let (nu, m, k) = (30, 6, 4);
        let j = Mat::<f64>::from_fn(m * k, nu, |i, l| ((i * 7 + l * 3) % 11) as f64 - 5.0);
        let x_of = |u: &[f64]| {
            Mat::<f64>::from_fn(m, k, |r, c| {
                1.0 + (0..nu).map(|l| j[(c * m + r, l)] * u[l]).sum::<f64>()
            })
        };
        let us: Vec<Vec<f64>> = (0..5)
            .map(|s| (0..nu).map(|l| ((s * l) as f64 * 0.1).sin()).collect())
            .collect();
        let path: Vec<_> = us.iter().map(|u| (u.clone(), x_of(u))).collect();
        assert!(secant_start(&path[..1], &us[0]).is_none());
        // A new u in the affine span of the path's points.
        let u: Vec<f64> = (0..nu)
            .map(|l| us[4][l] + 0.5 * (us[4][l] - us[3][l]) - 0.25 * (us[2][l] - us[1][l]))
            .collect();
        let x0 = secant_start(&path, &u).unwrap();
        let want = x_of(&u);
        assert!((&x0 - &want).norm_max() <= 1e-10 * want.norm_max());
    }

    /// After a warm-started solve of both systems, the u gradient from the residual rows the
    /// solve carried along equals the one from a fresh pass over X_trn.
    #[test]
    fn carried_residual_rows_give_the_fresh_evaluation() {
        let data = CleaningData::gaussian_clusters(&ClusterConfig {
            n_trn: 300,
            n_val: 100,
            n_test: 10,
            m: 30,
            classes: 3,
            p: 0.4,
            separation: 3.0,
            seed: 3,
        })
        .unwrap();
        let s = CleaningSettings {
            lambda: 1.0,
            exact_solve: ExactSolve::WarmCg,
            ..Default::default()
        };
        let p = Cleaning::new(data, s).unwrap();
        let gamma = 10.0;
        let mut v = vec![0.0; p.dim_v()];
        let mut w = vec![0.0; p.dim_v()];
        // A short path so that the later solves run CG (the first refreshes).
        let mut carried = 0;
        for t in 0..6 {
            let u: Vec<f64> = (0..p.dim_u())
                .map(|i| ((i % 5) as f64 - 2.0) * 0.1 * t as f64)
                .collect();
            assert!(p.penalty_v_solution(&u, gamma, &mut v));
            assert!(p.ll_solution(&u, &mut w));
            let had_image = p.warm.lock().unwrap().image.is_some();
            let (mut du_a, mut du_b, mut dv) = (
                vec![0.0; p.dim_u()],
                vec![0.0; p.dim_u()],
                vec![0.0; p.dim_v()],
            );
            let a = p
                .penalty_eval(&u, &v, &w, gamma, Some(&mut du_a), None)
                .unwrap();
            // With ∇_W requested the evaluation makes its own pass over X_trn.
            let b = p
                .penalty_eval(&u, &v, &w, gamma, Some(&mut du_b), Some(&mut dv))
                .unwrap();
            for q in 0..3 {
                assert!(
                    (a[q] - b[q]).abs() <= 1e-10 * b[q].abs().max(1.0),
                    "t {t}: {a:?} {b:?}"
                );
            }
            let scale = du_b.iter().fold(1.0f64, |s, x| s.max(x.abs()));
            assert!(dist(&du_a, &du_b) <= 1e-9 * scale, "t {t}");
            carried += had_image as usize;
        }
        assert!(carried >= 3, "the carried rows were used ({carried} of 6)");
    }
}
