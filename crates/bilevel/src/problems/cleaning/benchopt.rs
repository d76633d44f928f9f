//! The data-cleaning problem of benchopt's bilevel benchmark, on Fashion-MNIST: 20,000 training
//! and 5,000 validation images drawn from the 60,000 training images, the 10,000 test images,
//! features standardized by the mean and standard deviation of the training part, each training
//! label replaced with probability p by a uniform draw over the 10 classes (which may be the
//! true class). The benchmark splits with scikit-learn's `train_test_split` (seed 32); that
//! draw cannot be reproduced here, so the split is a seeded ChaCha draw of the same sizes.
//!
//! The problem's settings ([`benchopt_settings`]): softmax cross-entropy, g the mean weighted
//! loss plus 0.2‖W‖² (the full ridge form), f the mean validation loss, start u = −2, W = 0.

use super::{CleaningData, CleaningLoss, CleaningSettings, LossScale, RidgeForm, Split};
use crate::data::{IdxArray, read_idx};
use crate::error::{Error, Result};
use crate::seeds::{Stream, rng};
use faer::Mat;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which draw of the benchmark problem to load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BenchoptConfig {
    /// Directory holding the four Fashion-MNIST IDX files (gzip or raw).
    pub dir: PathBuf,
    /// Training samples (corrupted), drawn from the 60,000 training images.
    pub n_trn: usize,
    /// Clean validation samples, drawn from the rest.
    pub n_val: usize,
    /// Probability that a training label is replaced by a uniform draw over the classes.
    pub p: f64,
    /// Seed of the split and the corruption.
    pub seed: u64,
}

impl Default for BenchoptConfig {
    fn default() -> Self {
        BenchoptConfig {
            dir: PathBuf::from(crate::data::FASHION_MNIST_DIR),
            n_trn: 20_000,
            n_val: 5_000,
            p: 0.5,
            seed: 32,
        }
    }
}

/// The benchmark's problem settings: softmax cross-entropy, mean losses, ridge 0.2‖W‖², start
/// u = −2 (box |u| ≤ 10, u_scale 1).
pub fn benchopt_settings() -> CleaningSettings {
    CleaningSettings {
        loss: CleaningLoss::SoftmaxCrossEntropy,
        lambda: 0.2,
        loss_scale: LossScale::Mean,
        ridge_form: RidgeForm::Full,
        u_start: -2.0,
        ..CleaningSettings::default()
    }
}

fn images(dir: &Path, prefix: &str) -> Result<(IdxArray, IdxArray)> {
    let find = |stem: String| -> Result<PathBuf> {
        [format!("{stem}.gz"), stem.clone()]
            .into_iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::File {
                path: dir.join(format!("{stem}.gz")).display().to_string(),
                reason: format!(
                    "Fashion-MNIST not found in {}: install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or point `dir` at a folder holding the four IDX files",
                    dir.display()
                ),
            })
    };
    let ip = find(format!("{prefix}-images-idx3-ubyte"))?;
    let lp = find(format!("{prefix}-labels-idx1-ubyte"))?;
    let (im, lb) = (read_idx(&ip)?, read_idx(&lp)?);
    if im.dims.len() != 3 || lb.dims.len() != 1 || lb.dims[0] != im.dims[0] {
        return Err(Error::File {
            path: ip.display().to_string(),
            reason: format!(
                "expected images of 3 dimensions and one label per image, found sizes {:?} and {:?}",
                im.dims, lb.dims
            ),
        });
    }
    Ok((im, lb))
}

fn split(im: &IdxArray, lb: &IdxArray, idx: &[usize]) -> Result<Split> {
    let (_, d) = im.items();
    let x = Mat::from_fn(idx.len(), d, |r, j| im.get(idx[r] * d + j));
    let labels = idx
        .iter()
        .map(|&k| {
            let y = lb.get(k);
            if (0.0..10.0).contains(&y) {
                Ok(y as usize)
            } else {
                Err(Error::data(
                    "Fashion-MNIST labels",
                    format!("label {y} of item {k} is out of range 0..10 (corrupt file)"),
                ))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Split::new(x, labels))
}

/// Loads the benchmark problem's data (see the module documentation). The corruption mask marks
/// the training labels that differ from the true ones (a redraw that hits the true class is
/// clean).
pub fn load_benchopt_cleaning(cfg: &BenchoptConfig) -> Result<CleaningData> {
    if !(0.0..=1.0).contains(&cfg.p) {
        return Err(Error::setting("p", cfg.p, "a probability in [0, 1]"));
    }
    let (ti, tl) = images(&cfg.dir, "train")?;
    let (si, sl) = images(&cfg.dir, "t10k")?;
    let total = ti.dims[0];
    if cfg.n_trn == 0 || cfg.n_val == 0 || cfg.n_trn + cfg.n_val > total {
        return Err(Error::setting(
            "n_trn + n_val",
            cfg.n_trn + cfg.n_val,
            format!("need 1 <= n_trn, n_val and n_trn + n_val <= {total}"),
        ));
    }
    let mut r = rng(cfg.seed, Stream::Data);
    let mut idx: Vec<usize> = (0..total).collect();
    for i in 0..cfg.n_trn + cfg.n_val {
        let j = r.random_range(i..total);
        idx.swap(i, j);
    }
    let mut train = split(&ti, &tl, &idx[..cfg.n_trn])?;
    let mut val = split(&ti, &tl, &idx[cfg.n_trn..cfg.n_trn + cfg.n_val])?;
    let test_idx: Vec<usize> = (0..si.dims[0]).collect();
    let mut test = split(&si, &sl, &test_idx)?;
    // StandardScaler fitted on the training part: population standard deviation, 1 where a
    // feature is constant.
    let (nt, m) = (train.x.nrows(), train.x.ncols());
    for j in 0..m {
        let mean = train.x.col(j).iter().sum::<f64>() / nt as f64;
        let var = train
            .x
            .col(j)
            .iter()
            .map(|a| (a - mean) * (a - mean))
            .sum::<f64>()
            / nt as f64;
        let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
        for s in [&mut train, &mut val, &mut test] {
            s.x.col_mut(j)
                .iter_mut()
                .for_each(|a| *a = (*a - mean) / sd);
        }
    }
    let mut corrupted = vec![false; nt];
    for (i, l) in train.labels.iter_mut().enumerate() {
        if r.random::<f64>() < cfg.p {
            let new = r.random_range(0..10);
            corrupted[i] = new != *l;
            *l = new;
        }
    }
    CleaningData::new(
        train,
        val,
        test,
        10,
        Some(corrupted),
        format!(
            "benchopt data cleaning on Fashion-MNIST ({}): {} train / {} validation (seeded ChaCha split of the 60,000 training images, seed {}) / {} test, standardized on the training part, labels redrawn uniformly with probability {}",
            cfg.dir.display(),
            cfg.n_trn,
            cfg.n_val,
            cfg.seed,
            si.dims[0],
            cfg.p
        ),
    )
}
