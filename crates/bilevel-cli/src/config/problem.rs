//! The `[problem]` section: one struct per problem kind, its checks, and the problem it builds.

use super::section;
use anyhow::{Context as _, Result, anyhow, bail};
use bilevel::Problem;
use bilevel::data::{FashionMnistConfig, UserDataPaths, load_fashion_mnist, load_user_data_with};
use bilevel::problems::cleaning::defaults::Overrides;
use bilevel::problems::cleaning::{
    BenchoptConfig, Cleaning, CleaningData, CleaningLoss, CleaningSettings, ClusterConfig,
    ExactSolve, LossScale, RidgeForm, benchopt_settings, load_benchopt_cleaning,
};
use bilevel::problems::replearn::{Regime, RepLearning, RepSizes, Scaling};
use bilevel::problems::{Counterexample, Example1, Quadratic, Toy1d};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Problem kinds accepted in `[problem] kind = ...`, with a one-line description.
pub const PROBLEM_KINDS: &[(&str, &str)] = &[
    (
        "example1",
        "Example 1 of the paper: f = ½(u − 2 sin v)², g = ½(u − v)² (no keys)",
    ),
    (
        "toy1d",
        "1-D toy of Shen & Chen with u in a box (keys: lo, hi; default [0, 3])",
    ),
    (
        "quadratic",
        "quadratic bilevel family with closed-form optima (keys: du, dv, seed; or hf, bf, hg, bg .npy files and du)",
    ),
    (
        "replearn",
        "representation learning, two-layer linear network (keys: regime, seed, n_trn, n_val, m, h, n, noise, cond, scaling; or data_dir and h)",
    ),
    (
        "cleaning",
        "data hyper-cleaning (keys: data = \"paper\" | \"clusters\" | \"fashion-mnist\" | \"benchopt\" | \"files\" and its sizes; loss, lambda, bound, u_scale, exact_solve, scale_features, loss_scale, ridge_form, u_start; without [solver]: the defaults rule)",
    ),
    (
        "counterexample",
        "PBGD-Free's counterexample: f = 10v + u², g = (v − u + 1)², u in [−8, 1.5] (no keys)",
    ),
];

/// The problem of a run.
#[derive(Debug, Clone)]
pub enum ProblemConfig {
    /// Example 1.
    Example1(Example1Config),
    /// The 1-D toy.
    Toy1d(Toy1dConfig),
    /// The quadratic family.
    Quadratic(QuadraticConfig),
    /// Representation learning.
    Replearn(ReplearnConfig),
    /// Data hyper-cleaning.
    Cleaning(Box<CleaningConfig>),
    /// The PBGD-Free counterexample.
    Counterexample(CounterexampleConfig),
}

/// `kind = "replearn"`: a generated instance of a regime, or data files.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplearnConfig {
    /// "certified-global" (default) | "intermediate" | "general".
    pub regime: Option<Regime>,
    /// Data seed (default 0).
    pub seed: Option<u64>,
    /// Training samples N.
    pub n_trn: Option<usize>,
    /// Validation samples N'.
    pub n_val: Option<usize>,
    /// Input features m.
    pub m: Option<usize>,
    /// Hidden width h (≥ m).
    pub h: Option<usize>,
    /// Outputs n.
    pub n: Option<usize>,
    /// Label noise.
    pub noise: Option<f64>,
    /// Condition number of the stacked features.
    pub cond: Option<f64>,
    /// "sum" (½‖·‖²) or "mean" (1/N scaling).
    pub scaling: Option<Scaling>,
    /// Directory with x_trn, y_trn, x_val, y_val as .npy or .csv (then `h` is required).
    pub data_dir: Option<PathBuf>,
}

/// Data source of a cleaning problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CleaningSource {
    /// The paper's regime: mutually orthogonal samples, λ = 0.
    Paper,
    /// Gaussian class clusters with label flips.
    Clusters,
    /// Fashion-MNIST from the Debian package (or `dir`).
    FashionMnist,
    /// benchopt's data-cleaning problem on Fashion-MNIST (20,000 / 5,000 / 10,000,
    /// standardized, softmax, mean losses, ridge 0.2‖W‖², start u = −2; seed 32 by default).
    Benchopt,
    /// User files.
    Files,
}

/// `kind = "cleaning"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleaningConfig {
    /// Where the data comes from.
    pub data: CleaningSource,
    /// Data seed (split and corruption).
    pub seed: Option<u64>,
    /// Training samples.
    pub n_trn: Option<usize>,
    /// Validation samples.
    pub n_val: Option<usize>,
    /// Test samples (clusters, fashion-mnist).
    pub n_test: Option<usize>,
    /// Features (paper, clusters).
    pub m: Option<usize>,
    /// Classes (paper, clusters).
    pub classes: Option<usize>,
    /// Fraction of corrupted training labels.
    pub p: Option<f64>,
    /// Distance between class means (clusters).
    pub separation: Option<f64>,
    /// Directory of the IDX files (fashion-mnist).
    pub dir: Option<PathBuf>,
    /// User data files (files).
    pub files: Option<UserDataPaths>,
    /// "least-squares" (default) | "softmax-cross-entropy".
    pub loss: Option<CleaningLoss>,
    /// Ridge λ ≥ 0.
    pub lambda: Option<f64>,
    /// Box |s·u_i| ≤ bound.
    pub bound: Option<f64>,
    /// Weights sigmoid(u_scale · u).
    pub u_scale: Option<f64>,
    /// "auto" (default) | "direct" | "warm-cg": linear solver of the exact least-squares solves.
    pub exact_solve: Option<ExactSolve>,
    /// Divide each feature by its training standard deviation (default: on under the defaults
    /// rule, off with a `[solver]`).
    pub scale_features: Option<bool>,
    /// "sum" (default) | "mean" (benchopt): how f and g aggregate the per-sample losses.
    pub loss_scale: Option<LossScale>,
    /// "half" (default, λ/2 ‖W‖²) | "full" (λ ‖W‖², benchopt).
    pub ridge_form: Option<RidgeForm>,
    /// Logits of the default start (default 0; benchopt −2).
    pub u_start: Option<f64>,
}

impl CleaningConfig {
    /// The sizes the data will have, from the keys and their defaults (None for files, whose
    /// sizes the readers check from the headers): (n_trn, n_val, n_test, m, classes).
    fn sizes(&self) -> Option<(usize, usize, usize, usize, usize)> {
        match self.data {
            CleaningSource::Paper => {
                let (n_trn, n_val) = (self.n_trn.unwrap_or(40), self.n_val.unwrap_or(20));
                let m = self
                    .m
                    .unwrap_or(n_trn.saturating_add(n_val).saturating_add(20));
                Some((n_trn, n_val, 0, m, self.classes.unwrap_or(5)))
            }
            CleaningSource::Clusters => {
                let d = ClusterConfig::default();
                Some((
                    self.n_trn.unwrap_or(d.n_trn),
                    self.n_val.unwrap_or(d.n_val),
                    self.n_test.unwrap_or(d.n_test),
                    self.m.unwrap_or(d.m),
                    self.classes.unwrap_or(d.classes),
                ))
            }
            CleaningSource::FashionMnist => {
                let d = FashionMnistConfig::default();
                Some((
                    self.n_trn.unwrap_or(d.n_trn),
                    self.n_val.unwrap_or(d.n_val),
                    self.n_test.unwrap_or(d.n_test),
                    28 * 28,
                    10,
                ))
            }
            CleaningSource::Benchopt => {
                let d = BenchoptConfig::default();
                Some((
                    self.n_trn.unwrap_or(d.n_trn),
                    self.n_val.unwrap_or(d.n_val),
                    10_000,
                    28 * 28,
                    10,
                ))
            }
            CleaningSource::Files => None,
        }
    }

    /// The data set the keys describe; the memory its sizes ask for is checked before anything
    /// is generated or loaded.
    pub(super) fn load(&self, base_dir: &Path) -> Result<CleaningData> {
        let seed = self.seed.unwrap_or(0);
        if let Some((n_trn, n_val, n_test, m, classes)) = self.sizes() {
            let loss = self.loss.unwrap_or(CleaningSettings::default().loss);
            Cleaning::footprint(n_trn, n_val, n_test, m, classes, loss).check_global()?;
        }
        Ok(match self.data {
            CleaningSource::Paper => {
                let (n_trn, n_val) = (self.n_trn.unwrap_or(40), self.n_val.unwrap_or(20));
                CleaningData::paper_regime(
                    seed,
                    n_trn,
                    n_val,
                    self.m
                        .unwrap_or(n_trn.saturating_add(n_val).saturating_add(20)),
                    self.classes.unwrap_or(5),
                    self.p.unwrap_or(0.5),
                )?
            }
            CleaningSource::Clusters => {
                let d = ClusterConfig::default();
                CleaningData::gaussian_clusters(&ClusterConfig {
                    n_trn: self.n_trn.unwrap_or(d.n_trn),
                    n_val: self.n_val.unwrap_or(d.n_val),
                    n_test: self.n_test.unwrap_or(d.n_test),
                    m: self.m.unwrap_or(d.m),
                    classes: self.classes.unwrap_or(d.classes),
                    p: self.p.unwrap_or(d.p),
                    separation: self.separation.unwrap_or(d.separation),
                    seed,
                })?
            }
            CleaningSource::FashionMnist => {
                let d = FashionMnistConfig::default();
                load_fashion_mnist(&FashionMnistConfig {
                    dir: self.dir.as_ref().map_or(d.dir, |p| base_dir.join(p)),
                    n_trn: self.n_trn.unwrap_or(d.n_trn),
                    n_val: self.n_val.unwrap_or(d.n_val),
                    n_test: self.n_test.unwrap_or(d.n_test),
                    p: self.p.unwrap_or(d.p),
                    seed,
                })?
            }
            CleaningSource::Benchopt => {
                let d = BenchoptConfig::default();
                load_benchopt_cleaning(&BenchoptConfig {
                    dir: self.dir.as_ref().map_or(d.dir, |p| base_dir.join(p)),
                    n_trn: self.n_trn.unwrap_or(d.n_trn),
                    n_val: self.n_val.unwrap_or(d.n_val),
                    p: self.p.unwrap_or(d.p),
                    seed: self.seed.unwrap_or(d.seed),
                })?
            }
            CleaningSource::Files => {
                let Some(f) = &self.files else {
                    bail!(
                        "[problem] data = \"files\" needs a [problem.files] table with train_x, train_y, val_x, val_y (and optionally test_x, test_y, corrupted, classes)"
                    );
                };
                let j = |p: &PathBuf| base_dir.join(p);
                let user = load_user_data_with(
                    &UserDataPaths {
                        train_x: j(&f.train_x),
                        train_y: j(&f.train_y),
                        val_x: j(&f.val_x),
                        val_y: j(&f.val_y),
                        test_x: f.test_x.as_ref().map(j),
                        test_y: f.test_y.as_ref().map(j),
                        corrupted: f.corrupted.as_ref().map(j),
                        classes: f.classes,
                    },
                    &bilevel::limits::MemoryLimit::global(),
                )?;
                let mut data = user.data;
                data.class_names = user.classes;
                // Checked here, where the files are known, so that a value too large names its
                // file (the problem checks again by split).
                for (path, x) in [
                    (Some(&f.train_x), &data.train.x),
                    (Some(&f.val_x), &data.val.x),
                    (f.test_x.as_ref(), &data.test.x),
                ] {
                    if let Some(p) = path {
                        bilevel::problem::check_data_scale(
                            &j(p).display().to_string(),
                            x.as_ref(),
                        )?;
                    }
                }
                data
            }
        })
    }

    /// The problem-side keys given explicitly, as overrides of the defaults rule.
    pub(super) fn overrides(&self) -> Overrides {
        Overrides {
            loss: self.loss,
            lambda: self.lambda,
            scale_features: self.scale_features,
            bound: self.bound,
            u_scale: self.u_scale,
            exact_solve: self.exact_solve,
            ..Overrides::default()
        }
    }

    fn build(&self, base_dir: &Path) -> Result<Cleaning> {
        let data = self.load(base_dir)?;
        cleaning_problem(self, data)
    }
}

impl ReplearnConfig {
    fn build(&self, base_dir: &Path) -> Result<RepLearning> {
        let scaling = self.scaling.unwrap_or_default();
        if let Some(dir) = &self.data_dir {
            return replearn_from_data(self, |h, scaling| {
                Ok(RepLearning::from_dir(&base_dir.join(dir), h, scaling)?)
            });
        }
        let regime = self.regime.unwrap_or(Regime::CertifiedGlobal);
        let d = RepSizes::default_for(regime);
        let sizes = RepSizes {
            n_trn: self.n_trn.unwrap_or(d.n_trn),
            n_val: self.n_val.unwrap_or(d.n_val),
            m: self.m.unwrap_or(d.m),
            h: self.h.unwrap_or(d.h),
            n: self.n.unwrap_or(d.n),
            noise: self.noise.unwrap_or(d.noise),
            cond: self.cond.unwrap_or(d.cond),
            scaling,
        };
        Ok(RepLearning::generate(
            regime,
            &sizes,
            self.seed.unwrap_or(0),
        )?)
    }
}

/// `kind = "example1"`: no further keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example1Config {}

/// `kind = "counterexample"`: no further keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterexampleConfig {}

/// `kind = "toy1d"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toy1dConfig {
    /// Lower end of the box for u.
    #[serde(default)]
    pub lo: f64,
    /// Upper end of the box for u.
    #[serde(default = "three")]
    pub hi: f64,
}

fn three() -> f64 {
    3.0
}

impl Default for Toy1dConfig {
    fn default() -> Self {
        Toy1dConfig { lo: 0.0, hi: 3.0 }
    }
}

/// `kind = "quadratic"`: generated (du, dv, seed) or loaded (hf, bf, hg, bg, du).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuadraticConfig {
    /// Size of u.
    pub du: Option<usize>,
    /// Size of v (generated instances).
    pub dv: Option<usize>,
    /// Data seed (generated instances; default 0).
    pub seed: Option<u64>,
    /// H_f (.npy).
    pub hf: Option<PathBuf>,
    /// b_f (.npy).
    pub bf: Option<PathBuf>,
    /// H_g (.npy).
    pub hg: Option<PathBuf>,
    /// b_g (.npy).
    pub bg: Option<PathBuf>,
}

impl ProblemConfig {
    pub(super) fn parse(kind: &str, table: toml::Table) -> Result<Option<Self>> {
        let s = "problem";
        Ok(Some(match kind {
            "example1" => Self::Example1(section(table, s, kind)?),
            "toy1d" => Self::Toy1d(section(table, s, kind)?),
            "quadratic" => Self::Quadratic(section(table, s, kind)?),
            "replearn" => Self::Replearn(section(table, s, kind)?),
            "cleaning" => Self::Cleaning(section(table, s, kind)?),
            "counterexample" => Self::Counterexample(section(table, s, kind)?),
            _ => return Ok(None),
        }))
    }

    /// The problem with default settings for `kind` (used by `bilevel check`).
    pub fn default_for(kind: &str, seed: u64) -> Option<Self> {
        Some(match kind {
            "example1" => Self::Example1(Example1Config {}),
            "counterexample" => Self::Counterexample(CounterexampleConfig {}),
            "toy1d" => Self::Toy1d(Toy1dConfig::default()),
            "quadratic" => Self::Quadratic(QuadraticConfig {
                du: Some(4),
                dv: Some(6),
                seed: Some(seed),
                ..Default::default()
            }),
            "replearn" => Self::Replearn(ReplearnConfig {
                seed: Some(seed),
                ..Default::default()
            }),
            "cleaning" => Self::Cleaning(Box::new(CleaningConfig {
                data: CleaningSource::Clusters,
                seed: Some(seed),
                n_trn: Some(60),
                n_val: Some(30),
                n_test: Some(30),
                m: Some(8),
                classes: Some(3),
                p: None,
                separation: None,
                dir: None,
                files: None,
                loss: None,
                lambda: None,
                bound: None,
                u_scale: None,
                exact_solve: None,
                scale_features: None,
                loss_scale: None,
                ridge_form: None,
                u_start: None,
            })),
            _ => return None,
        })
    }

    pub(super) fn validate(&self) -> Result<()> {
        match self {
            Self::Example1(_) | Self::Counterexample(_) => Ok(()),
            Self::Replearn(c) => {
                for (k, v) in [("noise", c.noise), ("cond", c.cond)] {
                    if let Some(x) = v
                        && !(x.is_finite() && x >= 0.0)
                    {
                        bail!("[problem] `{k}` = {x}: must be finite and >= 0");
                    }
                }
                Ok(())
            }
            Self::Cleaning(c) => {
                if let Some(p) = c.p
                    && !(0.0..1.0).contains(&p)
                {
                    bail!("[problem] `p` = {p}: the corruption rate must be in [0, 1)");
                }
                for (k, v) in [("lambda", c.lambda), ("separation", c.separation)] {
                    if let Some(x) = v
                        && !(x.is_finite() && x >= 0.0)
                    {
                        bail!("[problem] `{k}` = {x}: must be finite and >= 0");
                    }
                }
                for (k, v) in [("bound", c.bound), ("u_scale", c.u_scale)] {
                    if let Some(x) = v
                        && !(x.is_finite() && x > 0.0)
                    {
                        bail!("[problem] `{k}` = {x}: must be finite and > 0");
                    }
                }
                if c.files.is_some() != (c.data == CleaningSource::Files) {
                    bail!(
                        "[problem] a [problem.files] table goes with data = \"files\" and only with it"
                    );
                }
                Ok(())
            }
            Self::Toy1d(c) => {
                if !(c.lo.is_finite() && c.hi.is_finite() && c.lo >= 0.0 && c.lo < c.hi) {
                    bail!(
                        "[problem] `lo` = {}, `hi` = {}: need finite 0 <= lo < hi (the paper's box is lo = 0, hi = 3)",
                        c.lo,
                        c.hi
                    );
                }
                Ok(())
            }
            Self::Quadratic(c) => {
                let files = [("hf", &c.hf), ("bf", &c.bf), ("hg", &c.hg), ("bg", &c.bg)];
                let given: Vec<&str> = files
                    .iter()
                    .filter(|f| f.1.is_some())
                    .map(|f| f.0)
                    .collect();
                let du = c.du.ok_or_else(|| {
                    anyhow!("[problem] missing key `du` (size of u, at least 1) for kind = \"quadratic\"")
                })?;
                if du == 0 {
                    bail!("[problem] `du` = 0: must be at least 1");
                }
                if given.is_empty() {
                    match c.dv {
                        None => bail!(
                            "[problem] missing key `dv` (size of v): a generated quadratic needs du, dv (and optionally seed); or give the files hf, bf, hg, bg"
                        ),
                        Some(0) => bail!("[problem] `dv` = 0: must be at least 1"),
                        Some(_) => Ok(()),
                    }
                } else {
                    if given.len() < 4 {
                        let missing: Vec<&str> = files
                            .iter()
                            .filter(|f| f.1.is_none())
                            .map(|f| f.0)
                            .collect();
                        bail!(
                            "[problem] quadratic from files needs all of hf, bf, hg, bg; missing key(s) {}",
                            missing
                                .iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                    if let Some(dv) = c.dv {
                        bail!(
                            "[problem] `dv` = {dv}: not allowed with matrix files (dv follows from the files); remove it"
                        );
                    }
                    if let Some(seed) = c.seed {
                        bail!(
                            "[problem] `seed` = {seed}: only for generated instances, not with matrix files; remove it"
                        );
                    }
                    Ok(())
                }
            }
        }
    }

    /// Builds the problem; relative file paths are taken from `base_dir`.
    pub fn build(&self, base_dir: &Path) -> Result<Box<dyn Problem>> {
        Ok(match self {
            Self::Example1(_) => Box::new(Example1),
            Self::Counterexample(_) => Box::new(Counterexample),
            Self::Toy1d(c) => Box::new(Toy1d::new(c.lo, c.hi)?),
            Self::Quadratic(c) => {
                let du = c.du.unwrap_or(0);
                match (&c.hf, &c.bf, &c.hg, &c.bg) {
                    (Some(hf), Some(bf), Some(hg), Some(bg)) => {
                        let p = |f: &PathBuf| base_dir.join(f);
                        Box::new(
                            Quadratic::from_npy(&p(hf), &p(bf), &p(hg), &p(bg), du)
                                .context("[problem] loading the quadratic from hf, bf, hg, bg")?,
                        )
                    }
                    _ => Box::new(Quadratic::generate(
                        c.seed.unwrap_or(0),
                        du,
                        c.dv.unwrap_or(0),
                    )?),
                }
            }
            Self::Replearn(c) => {
                Box::new(c.build(base_dir).context("[problem] kind = \"replearn\"")?)
            }
            Self::Cleaning(c) => {
                Box::new(c.build(base_dir).context("[problem] kind = \"cleaning\"")?)
            }
        })
    }

    /// The kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Example1(_) => "example1",
            Self::Toy1d(_) => "toy1d",
            Self::Quadratic(_) => "quadratic",
            Self::Replearn(_) => "replearn",
            Self::Cleaning(_) => "cleaning",
            Self::Counterexample(_) => "counterexample",
        }
    }
}

// In-memory data (used by the Python package): the same settings, defaults and checks as the
// file-based `build`, with the data given as arrays instead of read from files.

/// Builds the cleaning problem of `cfg` on `data`: the settings part of [`ProblemConfig::build`]
/// (λ defaults to 0 in the paper's regime, else 1; the rest from [`CleaningSettings::default`]).
pub fn cleaning_problem(cfg: &CleaningConfig, data: CleaningData) -> Result<Cleaning> {
    // benchopt's problem brings its own settings; explicit keys override them.
    let d = if cfg.data == CleaningSource::Benchopt {
        benchopt_settings()
    } else {
        CleaningSettings::default()
    };
    let lambda = cfg.lambda.unwrap_or(match cfg.data {
        CleaningSource::Paper => 0.0,
        CleaningSource::Benchopt => d.lambda,
        _ => 1.0,
    });
    Ok(Cleaning::new(
        data,
        CleaningSettings {
            loss: cfg.loss.unwrap_or(d.loss),
            lambda,
            bound: cfg.bound.unwrap_or(d.bound),
            u_scale: cfg.u_scale.unwrap_or(d.u_scale),
            exact_solve: cfg.exact_solve.unwrap_or(d.exact_solve),
            scale_features: cfg.scale_features.unwrap_or(false),
            loss_scale: cfg.loss_scale.unwrap_or(d.loss_scale),
            ridge_form: cfg.ridge_form.unwrap_or(d.ridge_form),
            u_start: cfg.u_start.unwrap_or(d.u_start),
        },
    )?)
}

/// Training, validation and optional test splits of a cleaning problem given in memory (the
/// arrays `[problem.files]` would name).
#[derive(Debug, Clone)]
pub struct CleaningArrays {
    /// Training features and observed labels.
    pub train: bilevel::problems::cleaning::Split,
    /// Validation features and clean labels.
    pub val: bilevel::problems::cleaning::Split,
    /// Test split, if any.
    pub test: Option<bilevel::problems::cleaning::Split>,
    /// Known corruption mask of the training labels.
    pub corrupted: Option<Vec<bool>>,
    /// Number of classes (default: largest label + 1, as for files).
    pub classes: Option<usize>,
}

/// Builds `kind = "cleaning"` with `data = "files"` on in-memory arrays instead of the files.
pub fn cleaning_from_arrays(cfg: &CleaningConfig, a: CleaningArrays) -> Result<Cleaning> {
    cleaning_problem(cfg, cleaning_data_from_arrays(a)?).context("[problem] kind = \"cleaning\"")
}

/// The checked data of in-memory arrays (the classes default to the largest label + 1).
pub fn cleaning_data_from_arrays(a: CleaningArrays) -> Result<CleaningData> {
    let m = a.train.x.ncols();
    let test = a
        .test
        .unwrap_or_else(|| bilevel::problems::cleaning::Split::empty(m));
    let classes = a.classes.unwrap_or_else(|| {
        a.train
            .labels
            .iter()
            .chain(&a.val.labels)
            .chain(&test.labels)
            .max()
            .map_or(0, |l| l + 1)
    });
    Ok(CleaningData::new(
        a.train,
        a.val,
        test,
        classes,
        a.corrupted,
        "arrays",
    )?)
}

/// The cleaning problem of in-memory arrays under the data-driven defaults rule (what
/// `bilevel run` does for a cleaning config without `[solver]`): the explicit keys of `cfg`
/// override the rule one by one, and `max_iter` replaces its iteration guard.
pub fn cleaning_rule_from_arrays(
    cfg: &CleaningConfig,
    a: CleaningArrays,
    max_iter: Option<usize>,
) -> Result<(Cleaning, bilevel::problems::cleaning::defaults::Defaults)> {
    let data = cleaning_data_from_arrays(a)?;
    let mut ov = cfg.overrides();
    ov.max_iter = max_iter;
    bilevel::problems::cleaning::defaults::Defaults::build(data, &ov)
        .context("[problem] kind = \"cleaning\" (defaults rule)")
}

/// Builds representation learning from given data (`data_dir` in a file, arrays in memory):
/// needs `h`, rejects the keys of generated instances, then calls `load(h, scaling)`.
pub fn replearn_from_data(
    cfg: &ReplearnConfig,
    load: impl FnOnce(usize, Scaling) -> Result<RepLearning>,
) -> Result<RepLearning> {
    let scaling = cfg.scaling.unwrap_or_default();
    let Some(h) = cfg.h else {
        bail!(
            "[problem] `data_dir` needs `h` (the hidden width, at least the number of features m)"
        );
    };
    for (k, given) in [
        ("regime", cfg.regime.is_some()),
        ("seed", cfg.seed.is_some()),
        ("n_trn", cfg.n_trn.is_some()),
        ("n_val", cfg.n_val.is_some()),
        ("m", cfg.m.is_some()),
        ("n", cfg.n.is_some()),
        ("noise", cfg.noise.is_some()),
        ("cond", cfg.cond.is_some()),
    ] {
        if given {
            bail!("[problem] `{k}` is for generated instances, not with `data_dir`; remove it");
        }
    }
    load(h, scaling)
}

/// The cleaning problem of a `[problem]` table as its concrete type (what
/// [`ProblemConfig::build`] boxes), for callers that read its data and weights.
pub fn build_cleaning(cfg: &CleaningConfig, base_dir: &Path) -> Result<Cleaning> {
    cfg.build(base_dir).context("[problem] kind = \"cleaning\"")
}

/// The representation-learning problem of a `[problem]` table as its concrete type.
pub fn build_replearn(cfg: &ReplearnConfig, base_dir: &Path) -> Result<RepLearning> {
    cfg.build(base_dir).context("[problem] kind = \"replearn\"")
}
