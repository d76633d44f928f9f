//! Data of a cleaning instance: labelled splits, the checked data set, the generators (the
//! paper's orthogonal regime, Gaussian class clusters) and label corruption. The Fashion-MNIST
//! and user-file loaders are in [`crate::data`].

use crate::error::{Error, Result};
use crate::seeds::{Stream, rng};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

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
    /// Class names in class-index order, when the user's label files held names rather than
    /// integers (written beside the solution so codes can be read back as names).
    pub class_names: Option<Vec<String>>,
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
            class_names: None,
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
        let total = n_trn.saturating_add(n_val);
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
        data_footprint(n_trn, n_val, 0, m, classes).check_global()?;
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
        data_footprint(c.n_trn, c.n_val, c.n_test, c.m, c.classes).check_global()?;
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

/// The memory a generated data set needs: the features (drawn, then split), the class means
/// and the labels with their corruption mask.
fn data_footprint(
    n_trn: usize,
    n_val: usize,
    n_test: usize,
    m: usize,
    classes: usize,
) -> crate::limits::Footprint {
    let samples = n_trn.saturating_add(n_val).saturating_add(n_test);
    crate::limits::Footprint::new("the generated cleaning data")
        .f64s(
            format!(
                "`n_trn` = {n_trn} + `n_val` = {n_val} + `n_test` = {n_test} samples × `m` = {m} features"
            ),
            3,
            &[samples, m],
        )
        .f64s(
            format!("`classes` = {classes} × `m` = {m} (the class means)"),
            1,
            &[classes, m],
        )
        .f64s(
            format!("`n_trn` = {n_trn} + `n_val` = {n_val} + `n_test` = {n_test} labels"),
            2,
            &[samples],
        )
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
