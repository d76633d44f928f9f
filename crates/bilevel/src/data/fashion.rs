//! Fashion-MNIST for hyper-cleaning (as in Shen & Chen): 5,000 training and 5,000 validation
//! samples drawn without replacement from the 60,000 training images, 10,000 test images, a
//! fraction p = 0.5 of training labels replaced by a uniformly drawn wrong class, 784 features
//! scaled to [0, 1].

use crate::error::{Error, Result};
use crate::limits::MemoryLimit;
use crate::problems::cleaning::{CleaningData, Split, corrupt_labels};
use crate::seeds::{Stream, rng};
use faer::Mat;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::idx::{IdxArray, read_idx};

/// Where Debian's `dataset-fashion-mnist` installs the IDX files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Which subset of Fashion-MNIST to load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FashionMnistConfig {
    /// Directory holding the four IDX files (gzip or raw).
    pub dir: PathBuf,
    /// Training samples (corrupted).
    pub n_trn: usize,
    /// Clean validation samples.
    pub n_val: usize,
    /// Test samples (the first n_test of the 10,000 test images).
    pub n_test: usize,
    /// Fraction of corrupted training labels.
    pub p: f64,
    /// Seed of the split and the corruption.
    pub seed: u64,
}

impl Default for FashionMnistConfig {
    fn default() -> Self {
        FashionMnistConfig {
            dir: PathBuf::from(FASHION_MNIST_DIR),
            n_trn: 5000,
            n_val: 5000,
            n_test: 10_000,
            p: 0.5,
            seed: 0,
        }
    }
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::File {
        path: dir.join(format!("{stem}.gz")).display().to_string(),
        reason: format!(
            "Fashion-MNIST not found in {}: install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or point the loader's dir option at a folder holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (gzip or raw)",
            dir.display()
        ),
    })
}

fn load_pair(dir: &Path, prefix: &str) -> Result<(IdxArray, IdxArray, PathBuf)> {
    let ip = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let lp = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_idx(&ip)?;
    let labels = read_idx(&lp)?;
    if images.dims.len() != 3 || images.type_code != 0x08 {
        return Err(Error::File {
            path: ip.display().to_string(),
            reason: format!(
                "expected unsigned-byte images of 3 dimensions, found type {:#04x} with sizes {:?}",
                images.type_code, images.dims
            ),
        });
    }
    if labels.dims.len() != 1 || labels.dims[0] != images.dims[0] {
        return Err(Error::dim(
            format!("labels {} vs images {}", lp.display(), ip.display()),
            images.dims[0],
            format!("{:?}", labels.dims),
        ));
    }
    Ok((images, labels, ip))
}

fn rows(images: &IdxArray, labels: &IdxArray, idx: &[usize]) -> Result<Split> {
    let (_, d) = images.items();
    let mut x = Mat::<f64>::zeros(idx.len(), d);
    let mut l = Vec::with_capacity(idx.len());
    for (r, &k) in idx.iter().enumerate() {
        for j in 0..d {
            x[(r, j)] = images.get(k * d + j) / 255.0;
        }
        let y = labels.get(k);
        if !(0.0..10.0).contains(&y) {
            return Err(Error::data(
                "Fashion-MNIST labels",
                format!("label {y} of item {k} is out of range 0..10 (corrupt file)"),
            ));
        }
        l.push(y as usize);
    }
    Ok(Split::new(x, l))
}

/// Loads the hyper-cleaning split of Fashion-MNIST described by `cfg`.
pub fn load_fashion_mnist(cfg: &FashionMnistConfig) -> Result<CleaningData> {
    let (ti, tl, tpath) = load_pair(&cfg.dir, "train")?;
    let (si, sl, _) = load_pair(&cfg.dir, "t10k")?;
    let total = ti.dims[0];
    // Saturating: sizes from a config may be anything, and a wrapped sum would pass the check.
    let wanted = cfg.n_trn.saturating_add(cfg.n_val);
    if wanted > total || cfg.n_trn == 0 || cfg.n_val == 0 {
        return Err(Error::setting(
            "n_trn + n_val",
            wanted,
            format!(
                "need 1 <= n_trn, n_val and n_trn + n_val <= {total} (the training images in {})",
                tpath.display()
            ),
        ));
    }
    if cfg.n_test > si.dims[0] {
        return Err(Error::setting(
            "n_test",
            cfg.n_test,
            format!("at most {} test images", si.dims[0]),
        ));
    }
    // The features become f64: 8 bytes per pixel of every chosen image.
    let (_, d) = ti.items();
    MemoryLimit::global().check_values(
        "the Fashion-MNIST features",
        (wanted as u64).saturating_add(cfg.n_test as u64),
        8 * d as u64,
        "the keys n_trn, n_val and n_test",
    )?;
    let mut r = rng(cfg.seed, Stream::Data);
    let mut idx: Vec<usize> = (0..total).collect();
    for i in 0..cfg.n_trn + cfg.n_val {
        let j = r.random_range(i..total);
        idx.swap(i, j);
    }
    let mut train = rows(&ti, &tl, &idx[..cfg.n_trn])?;
    let val = rows(&ti, &tl, &idx[cfg.n_trn..cfg.n_trn + cfg.n_val])?;
    let test_idx: Vec<usize> = (0..cfg.n_test).collect();
    let test = rows(&si, &sl, &test_idx)?;
    let corrupted = corrupt_labels(&mut train.labels, 10, cfg.p, &mut r);
    CleaningData::new(
        train,
        val,
        test,
        10,
        Some(corrupted),
        format!(
            "Fashion-MNIST ({}): {} train / {} validation / {} test, features in [0, 1], label noise p = {} (uniform wrong class), seed {}",
            cfg.dir.display(),
            cfg.n_trn,
            cfg.n_val,
            cfg.n_test,
            cfg.p,
            cfg.seed
        ),
    )
}
