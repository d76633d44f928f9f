//! `bilevel run` configuration files (TOML).
//!
//! Keys are snake_case; enumerated values are kebab-case (`"gauss-seidel"`, `"v-pbgd"`).
//! `[problem]` and `[solver]` are tables with a `kind` key. Each kind has its own struct with
//! `deny_unknown_fields`, deserialized from the table with `kind` removed, so an unknown or
//! mistyped key is reported under its own name (serde's internally tagged enums buffer the table
//! and lose the key in type errors).
//!
//! To add a problem or solver kind: add a variant to [`ProblemConfig`] / [`SolverConfig`] with its
//! config struct, a row in [`PROBLEM_KINDS`] / [`SOLVER_KINDS`], and one arm in each of `parse`
//! and `build`.

use anyhow::{Context as _, Result, anyhow, bail};
use bilevel::data::{FashionMnistConfig, UserDataPaths, load_fashion_mnist, load_user_data};
use bilevel::problems::cleaning::{
    Cleaning, CleaningData, CleaningLoss, CleaningSettings, ClusterConfig, ExactSolve,
};
use bilevel::problems::replearn::{Regime, RepLearning, RepSizes, Scaling};
use bilevel::problems::{Example1, Quadratic, Toy1d};
use bilevel::solvers::{
    Aid, Bome, F2sa, GammaSchedule, InnerLoop, Itd, LinearSolve, Pbgd, Solver, StepRule, Update,
    VBlock,
};
use bilevel::{Problem, RunOptions, Smoothness};
use serde::Deserialize;
use serde::de::DeserializeOwned;
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
        "data hyper-cleaning (keys: data = \"paper\" | \"clusters\" | \"fashion-mnist\" | \"files\" and its sizes; loss, lambda, bound, u_scale, exact_solve)",
    ),
];

/// Solver kinds accepted in `[solver] kind = ...`, with a one-line description.
pub const SOLVER_KINDS: &[(&str, &str)] = &[
    (
        "pbgd",
        "penalty-based bilevel gradient descent, update = \"jacobi\" | \"gauss-seidel\", fixed or ramped gamma",
    ),
    (
        "v-pbgd",
        "V-PBGD: Jacobi steps, gamma ramped linearly, alpha = alpha0 · min(1, 1/gamma)",
    ),
    (
        "f2sa",
        "F²SA (Kwon et al.): lambda ramped from lambda0 to lambda_max over ramp_iters",
    ),
    (
        "bome",
        "BOME (Liu et al.): step along ∇f + λ∇q with λ from eta (keys: eta, inner_steps, report_gamma)",
    ),
    (
        "aid",
        "implicit differentiation on F: solve = \"cg\" | \"neumann\" (keys: inner_steps, iters, tol, terms, beta)",
    ),
    (
        "itd",
        "iterative differentiation on F through inner_steps unrolled steps (keys: inner_steps, beta)",
    ),
];

fn kinds_list(kinds: &[(&str, &str)]) -> String {
    kinds
        .iter()
        .map(|(k, _)| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A parsed and validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The problem.
    pub problem: ProblemConfig,
    /// The solver.
    pub solver: SolverConfig,
    /// Limits and tolerances.
    pub run: RunSection,
    /// Start point.
    pub start: StartConfig,
    /// One run per seed (start point and run randomness).
    pub seeds: Vec<u64>,
    /// What to write.
    pub output: OutputSection,
    /// Directory relative paths in the file are resolved against.
    pub base_dir: PathBuf,
    /// The file's text, copied into the report.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    problem: toml::Table,
    solver: toml::Table,
    #[serde(default)]
    run: RunSection,
    #[serde(default)]
    start: StartSection,
    seeds: Vec<u64>,
    #[serde(default)]
    output: OutputSection,
}

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
}

impl CleaningConfig {
    fn build(&self, base_dir: &Path) -> Result<Cleaning> {
        let seed = self.seed.unwrap_or(0);
        let data = match self.data {
            CleaningSource::Paper => {
                let (n_trn, n_val) = (self.n_trn.unwrap_or(40), self.n_val.unwrap_or(20));
                CleaningData::paper_regime(
                    seed,
                    n_trn,
                    n_val,
                    self.m.unwrap_or(n_trn + n_val + 20),
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
            CleaningSource::Files => {
                let Some(f) = &self.files else {
                    bail!(
                        "[problem] data = \"files\" needs a [problem.files] table with train_x, train_y, val_x, val_y (and optionally test_x, test_y, corrupted, classes)"
                    );
                };
                let j = |p: &PathBuf| base_dir.join(p);
                load_user_data(&UserDataPaths {
                    train_x: j(&f.train_x),
                    train_y: j(&f.train_y),
                    val_x: j(&f.val_x),
                    val_y: j(&f.val_y),
                    test_x: f.test_x.as_ref().map(j),
                    test_y: f.test_y.as_ref().map(j),
                    corrupted: f.corrupted.as_ref().map(j),
                    classes: f.classes,
                })?
            }
        };
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
    fn parse(kind: &str, table: toml::Table) -> Result<Option<Self>> {
        let s = "problem";
        Ok(Some(match kind {
            "example1" => Self::Example1(section(table, s, kind)?),
            "toy1d" => Self::Toy1d(section(table, s, kind)?),
            "quadratic" => Self::Quadratic(section(table, s, kind)?),
            "replearn" => Self::Replearn(section(table, s, kind)?),
            "cleaning" => Self::Cleaning(section(table, s, kind)?),
            _ => return Ok(None),
        }))
    }

    /// The problem with default settings for `kind` (used by `bilevel check`).
    pub fn default_for(kind: &str, seed: u64) -> Option<Self> {
        Some(match kind {
            "example1" => Self::Example1(Example1Config {}),
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
            })),
            _ => return None,
        })
    }

    fn validate(&self) -> Result<()> {
        match self {
            Self::Example1(_) => Ok(()),
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
        }
    }
}

/// The solver of a run.
#[derive(Debug, Clone)]
pub enum SolverConfig {
    /// PBGD (Jacobi or Gauss–Seidel).
    Pbgd(PbgdConfig),
    /// V-PBGD.
    VPbgd(VPbgdConfig),
    /// F²SA.
    F2sa(F2saConfig),
    /// BOME.
    Bome(BomeConfig),
    /// AID.
    Aid(AidConfig),
    /// ITD.
    Itd(ItdConfig),
}

/// `kind = "f2sa"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct F2saConfig {
    /// λ at iteration 0 (default 1).
    pub lambda0: Option<f64>,
    /// Final λ (default 100).
    pub lambda_max: Option<f64>,
    /// Ramp length (default 1000).
    pub ramp_iters: Option<usize>,
    /// α = c / (ℓ_f + λ ℓ_g).
    pub c: Option<f64>,
    /// Fixed α.
    pub alpha: Option<f64>,
    /// Ratio of the u step to the v step.
    pub u_step_ratio: Option<f64>,
    /// Inner loop for z.
    pub inner: Option<InnerKind>,
    /// Inner gradient steps.
    pub inner_steps: Option<usize>,
    /// Warm-start the inner loop.
    pub inner_warm: Option<bool>,
    /// Inner step β.
    pub inner_beta: Option<f64>,
    /// Mini-batch size for stochastic gradients of g.
    pub batch_size: Option<usize>,
    /// Smoothness overrides.
    pub smoothness: Option<SmoothnessConfig>,
}

/// `kind = "bome"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BomeConfig {
    /// η in φ = η‖∇q‖² (default 0.5).
    pub eta: Option<f64>,
    /// Lower-level steps T for w_T(u) (default 10).
    pub inner_steps: Option<usize>,
    /// γ used to report L_γ in the records (default 10).
    pub report_gamma: Option<f64>,
    /// α = c / (ℓ_f + ℓ_g).
    pub c: Option<f64>,
    /// Fixed α.
    pub alpha: Option<f64>,
    /// Ratio of the u step to the v step.
    pub u_step_ratio: Option<f64>,
    /// Mini-batch size for stochastic gradients of g.
    pub batch_size: Option<usize>,
    /// Smoothness overrides.
    pub smoothness: Option<SmoothnessConfig>,
}

/// Linear solve of AID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AidSolve {
    /// Conjugate gradient.
    Cg,
    /// Truncated Neumann series.
    Neumann,
}

/// `kind = "aid"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AidConfig {
    /// "cg" (default) or "neumann".
    pub solve: Option<AidSolve>,
    /// Lower-level steps per iteration (default 10).
    pub inner_steps: Option<usize>,
    /// CG iterations (default 10).
    pub iters: Option<usize>,
    /// CG relative residual tolerance (default 1e-10).
    pub tol: Option<f64>,
    /// Neumann terms (default 50).
    pub terms: Option<usize>,
    /// Lower-level step β.
    pub beta: Option<f64>,
    /// α = c / ℓ_f.
    pub c: Option<f64>,
    /// Fixed α.
    pub alpha: Option<f64>,
    /// Smoothness overrides.
    pub smoothness: Option<SmoothnessConfig>,
}

/// `kind = "itd"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItdConfig {
    /// Unrolled lower-level steps (default 10).
    pub inner_steps: Option<usize>,
    /// Lower-level step β.
    pub beta: Option<f64>,
    /// α = c / ℓ_f.
    pub c: Option<f64>,
    /// Fixed α.
    pub alpha: Option<f64>,
    /// Smoothness overrides.
    pub smoothness: Option<SmoothnessConfig>,
}

/// `c` or `alpha` (at most one) as a step rule; None when neither is given.
fn c_or_alpha(c: Option<f64>, alpha: Option<f64>) -> Result<Option<StepRule>> {
    match (c, alpha) {
        (None, None) => Ok(None),
        (Some(c), None) => {
            positive(
                "c",
                Some(c),
                "the step constant must be finite and > 0 (default 0.5)",
            )?;
            Ok(Some(StepRule::Smoothness { c }))
        }
        (None, Some(a)) => {
            positive("alpha", Some(a), "the step size must be finite and > 0")?;
            Ok(Some(StepRule::Fixed(a)))
        }
        _ => bail!("[solver] give at most one of `c` and `alpha`"),
    }
}

fn nonzero(key: &str, n: Option<usize>) -> Result<()> {
    if n == Some(0) {
        bail!("[solver] `{key}` = 0: must be at least 1");
    }
    Ok(())
}

impl F2saConfig {
    fn build(&self) -> Result<F2sa> {
        let (l0, l1) = (
            self.lambda0.unwrap_or(1.0),
            self.lambda_max.unwrap_or(100.0),
        );
        let allowed = "the penalty multiplier must be finite and > 0";
        positive("lambda0", Some(l0), allowed)?;
        positive("lambda_max", Some(l1), allowed)?;
        positive("u_step_ratio", self.u_step_ratio, "must be finite and > 0")?;
        let mut s = F2sa::new(l0, l1, self.ramp_iters.unwrap_or(1000));
        if let Some(r) = c_or_alpha(self.c, self.alpha)? {
            s = s.with_step(r);
        }
        if let Some(r) = self.u_step_ratio {
            s = s.with_u_step_ratio(r);
        }
        if let Some(i) = inner_loop(
            self.inner,
            self.inner_steps,
            self.inner_warm,
            self.inner_beta,
        )? {
            s = s.with_inner(i);
        }
        nonzero("batch_size", self.batch_size)?;
        if let Some(b) = self.batch_size {
            s = s.with_batch(b);
        }
        if let Some(sm) = smoothness(self.smoothness)? {
            s = s.with_smoothness(sm);
        }
        Ok(s)
    }
}

impl BomeConfig {
    fn build(&self) -> Result<Bome> {
        positive("eta", self.eta, "must be finite and > 0")?;
        positive("report_gamma", self.report_gamma, "must be finite and > 0")?;
        positive("u_step_ratio", self.u_step_ratio, "must be finite and > 0")?;
        nonzero("inner_steps", self.inner_steps)?;
        let mut s = Bome::new(
            self.eta.unwrap_or(0.5),
            self.inner_steps.unwrap_or(10),
            self.report_gamma.unwrap_or(10.0),
        );
        if let Some(r) = c_or_alpha(self.c, self.alpha)? {
            s = s.with_step(r);
        }
        if let Some(r) = self.u_step_ratio {
            s = s.with_u_step_ratio(r);
        }
        nonzero("batch_size", self.batch_size)?;
        if let Some(b) = self.batch_size {
            s = s.with_batch(b);
        }
        if let Some(sm) = smoothness(self.smoothness)? {
            s = s.with_smoothness(sm);
        }
        Ok(s)
    }
}

impl AidConfig {
    fn build(&self) -> Result<Aid> {
        nonzero("inner_steps", self.inner_steps)?;
        nonzero("iters", self.iters)?;
        nonzero("terms", self.terms)?;
        positive(
            "beta",
            self.beta,
            "the lower-level step must be finite and > 0",
        )?;
        let solve = match self.solve.unwrap_or(AidSolve::Cg) {
            AidSolve::Cg => {
                if self.terms.is_some() {
                    bail!(
                        "[solver] `terms` is for solve = \"neumann\"; with CG give `iters` and `tol`"
                    );
                }
                let tol = self.tol.unwrap_or(1e-10);
                if !(tol.is_finite() && tol >= 0.0) {
                    bail!("[solver] `tol` = {tol}: must be finite and >= 0");
                }
                LinearSolve::Cg {
                    iters: self.iters.unwrap_or(10),
                    tol,
                }
            }
            AidSolve::Neumann => {
                if self.iters.is_some() || self.tol.is_some() {
                    bail!(
                        "[solver] `iters` and `tol` are for solve = \"cg\"; with a Neumann series give `terms`"
                    );
                }
                LinearSolve::Neumann {
                    terms: self.terms.unwrap_or(50),
                }
            }
        };
        let mut s = Aid::new(self.inner_steps.unwrap_or(10), solve);
        if let Some(r) = c_or_alpha(self.c, self.alpha)? {
            s = s.with_step(r);
        }
        if let Some(b) = self.beta {
            s = s.with_beta(b);
        }
        if let Some(sm) = smoothness(self.smoothness)? {
            s = s.with_smoothness(sm);
        }
        Ok(s)
    }
}

impl ItdConfig {
    fn build(&self) -> Result<Itd> {
        nonzero("inner_steps", self.inner_steps)?;
        positive(
            "beta",
            self.beta,
            "the lower-level step must be finite and > 0",
        )?;
        let mut s = Itd::new(self.inner_steps.unwrap_or(10));
        if let Some(r) = c_or_alpha(self.c, self.alpha)? {
            s = s.with_step(r);
        }
        if let Some(b) = self.beta {
            s = s.with_beta(b);
        }
        if let Some(sm) = smoothness(self.smoothness)? {
            s = s.with_smoothness(sm);
        }
        Ok(s)
    }
}

/// Inner-loop kind for the value-function estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InnerKind {
    /// The problem's exact lower-level solution.
    Exact,
    /// Gradient descent on g(u, ·).
    Gd,
}

/// Smoothness overrides (all three).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmoothnessConfig {
    /// ℓ_f.
    pub lf: f64,
    /// ℓ_g.
    pub lg: f64,
    /// ℓ_{g,vv}.
    pub lg_vv: f64,
}

/// `kind = "pbgd"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PbgdConfig {
    /// `"jacobi"` (default) or `"gauss-seidel"`.
    pub update: Option<Update>,
    /// Fixed γ (or give gamma_start, gamma_end, gamma_iters).
    pub gamma: Option<f64>,
    /// γ at iteration 0 of a linear ramp.
    pub gamma_start: Option<f64>,
    /// γ at the end of the ramp.
    pub gamma_end: Option<f64>,
    /// Length of the ramp in iterations.
    pub gamma_iters: Option<usize>,
    /// α = c / (ℓ_f + γ ℓ_g) (default c = 0.5).
    pub c: Option<f64>,
    /// Fixed α.
    pub alpha: Option<f64>,
    /// α = alpha0 · min(1, 1/γ).
    pub alpha0: Option<f64>,
    /// Steps on v per iteration (Gauss–Seidel).
    pub v_steps: Option<usize>,
    /// `"gradient"` (default) or `"exact"`: v ← argmin_v L_γ(u, ·) (Gauss–Seidel, problems
    /// with a closed form).
    pub v_block: Option<VBlock>,
    /// Fixed step on the u block (required with `v_block = "exact"`).
    pub u_alpha: Option<f64>,
    /// Inner loop.
    pub inner: Option<InnerKind>,
    /// Inner gradient steps.
    pub inner_steps: Option<usize>,
    /// Warm-start the inner loop.
    pub inner_warm: Option<bool>,
    /// Inner step β.
    pub inner_beta: Option<f64>,
    /// Mini-batch size for stochastic gradients of g (problems that sum g over samples;
    /// gradient v block).
    pub batch_size: Option<usize>,
    /// Smoothness overrides.
    pub smoothness: Option<SmoothnessConfig>,
}

/// `kind = "v-pbgd"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VPbgdConfig {
    /// γ at iteration 0.
    pub gamma_start: Option<f64>,
    /// Final γ.
    pub gamma_end: Option<f64>,
    /// Ramp length.
    pub gamma_iters: Option<usize>,
    /// α₀ (default 0.5/(ℓ_f + ℓ_g)).
    pub alpha0: Option<f64>,
    /// Inner loop.
    pub inner: Option<InnerKind>,
    /// Inner gradient steps.
    pub inner_steps: Option<usize>,
    /// Warm-start the inner loop.
    pub inner_warm: Option<bool>,
    /// Inner step β.
    pub inner_beta: Option<f64>,
    /// Smoothness overrides.
    pub smoothness: Option<SmoothnessConfig>,
}

fn positive(key: &str, x: Option<f64>, allowed: &str) -> Result<()> {
    if let Some(x) = x
        && !(x.is_finite() && x > 0.0)
    {
        bail!("[solver] `{key}` = {x}: {allowed}");
    }
    Ok(())
}

fn inner_loop(
    inner: Option<InnerKind>,
    steps: Option<usize>,
    warm: Option<bool>,
    beta: Option<f64>,
) -> Result<Option<InnerLoop>> {
    positive("inner_beta", beta, "the inner step must be finite and > 0")?;
    if steps == Some(0) {
        bail!("[solver] `inner_steps` = 0: at least 1 inner gradient step is needed");
    }
    let gd_keys = steps.is_some() || warm.is_some() || beta.is_some();
    Ok(match inner {
        Some(InnerKind::Exact) => {
            if gd_keys {
                bail!(
                    "[solver] `inner` = \"exact\" takes no inner_steps, inner_warm or inner_beta; remove them or set inner = \"gd\""
                );
            }
            Some(InnerLoop::Exact)
        }
        Some(InnerKind::Gd) => Some(InnerLoop::Gd {
            steps: steps.unwrap_or(10),
            warm: warm.unwrap_or(true),
            beta,
        }),
        None if gd_keys => bail!(
            "[solver] inner_steps / inner_warm / inner_beta need `inner` = \"gd\" (allowed values of `inner`: \"exact\", \"gd\")"
        ),
        None => None,
    })
}

fn smoothness(s: Option<SmoothnessConfig>) -> Result<Option<Smoothness>> {
    let Some(s) = s else { return Ok(None) };
    for (k, v) in [("lf", s.lf), ("lg", s.lg), ("lg_vv", s.lg_vv)] {
        let ok = v.is_finite() && if k == "lf" { v >= 0.0 } else { v > 0.0 };
        if !ok {
            bail!("[solver.smoothness] `{k}` = {v}: must be finite and > 0 (lf may be 0)");
        }
    }
    Ok(Some(Smoothness {
        lf: s.lf,
        lg: s.lg,
        lg_vv: s.lg_vv,
    }))
}

fn ramp(start: Option<f64>, end: Option<f64>, iters: Option<usize>) -> Result<GammaSchedule> {
    let (Some(start), Some(end), Some(iters)) = (start, end, iters) else {
        bail!(
            "[solver] a gamma ramp needs all of `gamma_start`, `gamma_end`, `gamma_iters` (got gamma_start = {start:?}, gamma_end = {end:?}, gamma_iters = {iters:?})"
        );
    };
    let allowed = "the penalty constant must be finite and > 0 (typical values: 1 to 1e4)";
    positive("gamma_start", Some(start), allowed)?;
    positive("gamma_end", Some(end), allowed)?;
    Ok(GammaSchedule::Linear { start, end, iters })
}

impl PbgdConfig {
    fn validate(&self) -> Result<()> {
        self.build().map(|_| ())
    }

    fn build(&self) -> Result<Pbgd> {
        let update = self.update.unwrap_or(Update::Jacobi);
        let gamma = match (
            self.gamma,
            self.gamma_start.is_some() || self.gamma_end.is_some() || self.gamma_iters.is_some(),
        ) {
            (Some(g), false) => {
                positive(
                    "gamma",
                    Some(g),
                    "the penalty constant must be finite and > 0 (typical values: 1 to 1e4)",
                )?;
                GammaSchedule::Constant(g)
            }
            (None, true) => ramp(self.gamma_start, self.gamma_end, self.gamma_iters)?,
            (Some(g), true) => bail!(
                "[solver] `gamma` = {g} together with gamma_start/gamma_end/gamma_iters: give either a fixed gamma or a ramp"
            ),
            (None, false) => bail!(
                "[solver] missing key `gamma` (the penalty constant, e.g. gamma = 10), or a ramp gamma_start, gamma_end, gamma_iters"
            ),
        };
        let step = match (self.c, self.alpha, self.alpha0) {
            (None, None, None) => StepRule::default(),
            (Some(c), None, None) => {
                positive(
                    "c",
                    Some(c),
                    "the step constant must be finite and > 0 (default 0.5)",
                )?;
                StepRule::Smoothness { c }
            }
            (None, Some(a), None) => {
                positive("alpha", Some(a), "the step size must be finite and > 0")?;
                StepRule::Fixed(a)
            }
            (None, None, Some(a)) => {
                positive("alpha0", Some(a), "the step size must be finite and > 0")?;
                StepRule::InverseGamma { alpha0: a }
            }
            _ => bail!(
                "[solver] give at most one step rule among `c` (alpha = c/(lf + gamma lg)), `alpha` (fixed) and `alpha0` (alpha0 · min(1, 1/gamma))"
            ),
        };
        let mut p = Pbgd::new(update, gamma.max())
            .with_gamma(gamma)
            .with_step(step);
        if let Some(n) = self.v_steps {
            if n == 0 {
                bail!("[solver] `v_steps` = 0: at least 1 step on v per iteration");
            }
            if update != Update::GaussSeidel && n != 1 {
                bail!(
                    "[solver] `v_steps` = {n}: only update = \"gauss-seidel\" takes several v steps per iteration"
                );
            }
            p = p.with_v_steps(n);
        }
        if let Some(a) = self.u_alpha {
            positive("u_alpha", Some(a), "the u step size must be finite and > 0")?;
            p = p.with_u_step(StepRule::Fixed(a));
        }
        if self.v_block == Some(VBlock::Exact) {
            if update != Update::GaussSeidel {
                bail!(
                    "[solver] `v_block` = \"exact\" needs update = \"gauss-seidel\" (the v block is solved at the current u before the u step)"
                );
            }
            if self.v_steps.is_some() {
                bail!("[solver] `v_steps` has no meaning with `v_block` = \"exact\": remove it");
            }
            let Some(a) = self.u_alpha else {
                bail!(
                    "[solver] `v_block` = \"exact\" needs `u_alpha`, a fixed u step (the default c/(lf + gamma lg) is set by the v block's curvature, which the exact block no longer needs), e.g. u_alpha = 0.1"
                );
            };
            p = p.with_exact_v(StepRule::Fixed(a));
            if let Some(b) = self.batch_size {
                bail!(
                    "[solver] `batch_size` = {b} needs `v_block` = \"gradient\" (the exact v block solves on all samples): remove one of them"
                );
            }
        }
        nonzero("batch_size", self.batch_size)?;
        if let Some(b) = self.batch_size {
            p = p.with_batch(b);
        }
        if let Some(i) = inner_loop(
            self.inner,
            self.inner_steps,
            self.inner_warm,
            self.inner_beta,
        )? {
            p = p.with_inner(i);
        }
        if let Some(s) = smoothness(self.smoothness)? {
            p = p.with_smoothness(s);
        }
        Ok(p)
    }
}

impl VPbgdConfig {
    fn validate(&self) -> Result<()> {
        self.build().map(|_| ())
    }

    fn build(&self) -> Result<Pbgd> {
        let GammaSchedule::Linear { start, end, iters } =
            ramp(self.gamma_start, self.gamma_end, self.gamma_iters)?
        else {
            unreachable!("ramp returns a linear schedule")
        };
        positive(
            "alpha0",
            self.alpha0,
            "the step size must be finite and > 0",
        )?;
        let mut p = Pbgd::v_pbgd(start, end, iters, self.alpha0);
        if let Some(i) = inner_loop(
            self.inner,
            self.inner_steps,
            self.inner_warm,
            self.inner_beta,
        )? {
            p = p.with_inner(i);
        }
        if let Some(s) = smoothness(self.smoothness)? {
            p = p.with_smoothness(s);
        }
        Ok(p)
    }
}

impl SolverConfig {
    fn parse(kind: &str, table: toml::Table) -> Result<Option<Self>> {
        let s = "solver";
        Ok(Some(match kind {
            "pbgd" => Self::Pbgd(section(table, s, kind)?),
            "v-pbgd" => Self::VPbgd(section(table, s, kind)?),
            "f2sa" => Self::F2sa(section(table, s, kind)?),
            "bome" => Self::Bome(section(table, s, kind)?),
            "aid" => Self::Aid(section(table, s, kind)?),
            "itd" => Self::Itd(section(table, s, kind)?),
            _ => return Ok(None),
        }))
    }

    fn validate(&self) -> Result<()> {
        match self {
            Self::Pbgd(c) => c.validate(),
            Self::VPbgd(c) => c.validate(),
            Self::F2sa(c) => c.build().map(|_| ()),
            Self::Bome(c) => c.build().map(|_| ()),
            Self::Aid(c) => c.build().map(|_| ()),
            Self::Itd(c) => c.build().map(|_| ()),
        }
    }

    /// A fresh solver (one per run).
    pub fn build(&self) -> Result<Box<dyn Solver>> {
        Ok(match self {
            Self::Pbgd(c) => Box::new(c.build()?),
            Self::VPbgd(c) => Box::new(c.build()?),
            Self::F2sa(c) => Box::new(c.build()?),
            Self::Bome(c) => Box::new(c.build()?),
            Self::Aid(c) => Box::new(c.build()?),
            Self::Itd(c) => Box::new(c.build()?),
        })
    }
}

/// `[run]`: limits and tolerances (see [`RunOptions`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Iteration budget.
    pub max_iter: usize,
    /// Record every this many iterations.
    pub record_every: usize,
    /// Stop when ‖∇L_γ‖ ≤ grad_tol.
    pub grad_tol: Option<f64>,
    /// Stop on a small relative change of L_γ.
    pub rel_tol: Option<f64>,
    /// Stop when L_γ ≤ target.
    pub target: Option<f64>,
    /// Stop near the penalty optimum.
    pub dist_tol: Option<f64>,
    /// Wall-time budget per run.
    pub max_time_s: Option<f64>,
    /// Monitor's inner steps per record (problems without an exact g*).
    pub monitor_inner_steps: usize,
    /// Divergence when L_γ exceeds this factor times its start value.
    pub divergence_factor: f64,
}

impl Default for RunSection {
    fn default() -> Self {
        let d = RunOptions::default();
        RunSection {
            max_iter: d.max_iter,
            record_every: d.record_every,
            grad_tol: None,
            rel_tol: None,
            target: None,
            dist_tol: None,
            max_time_s: None,
            monitor_inner_steps: d.monitor_inner_steps,
            divergence_factor: d.divergence_factor,
        }
    }
}

impl RunSection {
    /// The run options for one seed.
    pub fn options(&self, seed: u64) -> RunOptions {
        RunOptions {
            max_iter: self.max_iter,
            record_every: self.record_every,
            grad_tol: self.grad_tol,
            rel_tol: self.rel_tol,
            target: self.target,
            dist_tol: self.dist_tol,
            divergence_factor: self.divergence_factor,
            max_time_s: self.max_time_s,
            seed,
            monitor_inner_steps: self.monitor_inner_steps,
            keep_records: true,
            interrupt: None,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.max_iter == 0 {
            bail!("[run] `max_iter` = 0: must be at least 1");
        }
        self.options(0).validate().map_err(|e| anyhow!("[run] {e}"))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartSection {
    u0: Option<Vec<f64>>,
    v0: Option<Vec<f64>>,
    #[serde(rename = "box")]
    bounds: Option<[f64; 2]>,
}

/// Where runs start.
#[derive(Debug, Clone, PartialEq)]
pub enum StartConfig {
    /// The same explicit point for every seed.
    Point {
        /// u0.
        u0: Vec<f64>,
        /// v0.
        v0: Vec<f64>,
    },
    /// The problem's recommended start for the seed (replearn: a scaled full-rank backbone,
    /// cleaning: u = 0, W = 0), else every coordinate uniform in [−1, 1].
    Default,
    /// Every coordinate uniform in [lo, hi], drawn from the run's seed.
    Box {
        /// Lower end.
        lo: f64,
        /// Upper end.
        hi: f64,
    },
}

impl StartConfig {
    /// The start point for `seed` on `problem`.
    pub fn point(&self, problem: &dyn Problem, seed: u64) -> Result<(Vec<f64>, Vec<f64>)> {
        match self {
            StartConfig::Point { u0, v0 } => {
                for (key, x, n, name) in [
                    ("u0", u0, problem.dim_u(), "du"),
                    ("v0", v0, problem.dim_v(), "dv"),
                ] {
                    if x.len() != n {
                        bail!(
                            "[start] `{key}` has {} entries but problem {} has {name} = {n}",
                            x.len(),
                            problem.name()
                        );
                    }
                }
                Ok((u0.clone(), v0.clone()))
            }
            StartConfig::Default => match problem.initial_point(seed) {
                Some(p) => Ok(p),
                None => StartConfig::Box { lo: -1.0, hi: 1.0 }.point(problem, seed),
            },
            &StartConfig::Box { lo, hi } => {
                let mut s = bilevel::study::uniform_starts(
                    seed,
                    1,
                    problem.dim_u(),
                    problem.dim_v(),
                    lo,
                    hi,
                );
                Ok(s.remove(0))
            }
        }
    }
}

/// Trace file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TraceFormat {
    /// One CSV file per seed.
    Csv,
    /// One JSON file per seed.
    Json,
}

/// `[output]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// Trace formats (default `["csv"]`).
    pub formats: Vec<TraceFormat>,
    /// Draw the convergence figure (default true).
    pub figure: bool,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection {
            formats: vec![TraceFormat::Csv],
            figure: true,
        }
    }
}

/// Deserializes a `[problem]` / `[solver]` table (without `kind`) into a kind's struct, with
/// an error naming the section, kind and key.
fn section<T: DeserializeOwned>(table: toml::Table, section: &str, kind: &str) -> Result<T> {
    table.try_into().map_err(|e: toml::de::Error| {
        anyhow!(
            "[{section}] (kind = \"{kind}\"): {}",
            one_line(&e.to_string())
        )
    })
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn take_kind(table: &mut toml::Table, section: &str, kinds: &[(&str, &str)]) -> Result<String> {
    match table.remove("kind") {
        None => bail!(
            "[{section}] missing key `kind`; allowed values: {}",
            kinds_list(kinds)
        ),
        Some(toml::Value::String(s)) => Ok(s),
        Some(v) => bail!(
            "[{section}] `kind` = {v}: must be a string, one of {}",
            kinds_list(kinds)
        ),
    }
}

impl Config {
    /// Parses and validates a configuration; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.to_string();
            if e.message().starts_with("unknown field") {
                anyhow!(
                    "{}\n(allowed top-level keys and tables: seeds, [problem], [solver], [run], [start], [output])",
                    msg.trim_end()
                )
            } else {
                anyhow!("{}", msg.trim_end())
            }
        })?;
        let mut pt = raw.problem;
        let kind = take_kind(&mut pt, "problem", PROBLEM_KINDS)?;
        let problem = ProblemConfig::parse(&kind, pt)?.ok_or_else(|| {
            anyhow!(
                "[problem] `kind` = \"{kind}\": unknown problem; allowed values: {}",
                kinds_list(PROBLEM_KINDS)
            )
        })?;
        problem.validate()?;
        let mut st = raw.solver;
        let kind = take_kind(&mut st, "solver", SOLVER_KINDS)?;
        let solver = SolverConfig::parse(&kind, st)?.ok_or_else(|| {
            anyhow!(
                "[solver] `kind` = \"{kind}\": unknown solver; allowed values: {}",
                kinds_list(SOLVER_KINDS)
            )
        })?;
        solver.validate()?;
        raw.run.validate()?;
        if raw.seeds.is_empty() {
            bail!("`seeds` = []: give at least one seed, e.g. seeds = [0, 1, 2]");
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(d) = raw.seeds.iter().find(|s| !seen.insert(**s)) {
            bail!("`seeds` lists seed {d} twice: each seed gives one run; remove the duplicate");
        }
        let start = match (raw.start.u0, raw.start.v0, raw.start.bounds) {
            (None, None, None) => StartConfig::Default,
            (None, None, Some([lo, hi])) => {
                if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                    bail!("[start] `box` = [{lo}, {hi}]: need finite lo <= hi");
                }
                StartConfig::Box { lo, hi }
            }
            (Some(u0), Some(v0), None) => {
                for (k, x) in [("u0", &u0), ("v0", &v0)] {
                    if let Some(i) = x.iter().position(|a| !a.is_finite()) {
                        bail!("[start] `{k}` has a non-finite entry at index {i}");
                    }
                }
                StartConfig::Point { u0, v0 }
            }
            (Some(_), Some(_), Some(_)) => {
                bail!("[start] give either `u0` and `v0`, or `box`, not both")
            }
            (u0, _, _) => bail!(
                "[start] `{}` given without `{}`: an explicit start needs both u0 and v0",
                if u0.is_some() { "u0" } else { "v0" },
                if u0.is_some() { "v0" } else { "u0" }
            ),
        };
        if raw.output.formats.is_empty() && !raw.output.figure {
            bail!("[output] `formats` = [] and `figure` = false: nothing would be written");
        }
        Ok(Config {
            problem,
            solver,
            run: raw.run,
            start,
            seeds: raw.seeds,
            output: raw.output,
            base_dir: base_dir.to_path_buf(),
            source: text.to_string(),
        })
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Config::parse(&text, &base).with_context(|| format!("in config file {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
seeds = [1, 2]
[problem]
kind = "quadratic"
du = 2
dv = 3
[solver]
kind = "pbgd"
gamma = 10.0
"#;

    fn err(text: &str) -> String {
        format!("{:#}", Config::parse(text, Path::new(".")).unwrap_err())
    }

    #[test]
    fn base_parses() {
        let c = Config::parse(BASE, Path::new(".")).unwrap();
        assert_eq!(c.seeds, vec![1, 2]);
        assert_eq!(c.start, StartConfig::Default);
    }

    #[test]
    fn errors_name_keys() {
        let e = err(&BASE.replace("du = 2", "du = \"two\""));
        assert!(e.contains("`du`"), "{e}");
        let e = err(&BASE.replace("dv = 3", "dv = 3\nbogus = 1"));
        assert!(e.contains("bogus"), "{e}");
        let e = err(&BASE.replace("gamma = 10.0", "gamma = -1.0"));
        assert!(e.contains("gamma") && e.contains("-1"), "{e}");
        let e = err(&format!("{BASE}[run]\nmax_iter = -3\n"));
        assert!(e.contains("max_iter"), "{e}");
        let e = err(&BASE.replace("seeds = [1, 2]", "seeds = []"));
        assert!(e.contains("seeds"), "{e}");
        let e = err(&BASE.replace("kind = \"pbgd\"", "kind = \"sgd\""));
        assert!(e.contains("sgd") && e.contains("v-pbgd"), "{e}");
        let e = err(&format!(
            "{BASE}[solver.smoothness]\nlf = 1\nlg = 0\nlg_vv = 1\n"
        ));
        assert!(e.contains("lg"), "{e}");
    }
}

// In-memory data (used by the Python package): the same settings, defaults and checks as the
// file-based `build`, with the data given as arrays instead of read from files.

/// Builds the cleaning problem of `cfg` on `data`: the settings part of [`ProblemConfig::build`]
/// (λ defaults to 0 in the paper's regime, else 1; the rest from [`CleaningSettings::default`]).
pub fn cleaning_problem(cfg: &CleaningConfig, data: CleaningData) -> Result<Cleaning> {
    let d = CleaningSettings::default();
    let lambda = cfg.lambda.unwrap_or(if cfg.data == CleaningSource::Paper {
        0.0
    } else {
        1.0
    });
    Ok(Cleaning::new(
        data,
        CleaningSettings {
            loss: cfg.loss.unwrap_or(d.loss),
            lambda,
            bound: cfg.bound.unwrap_or(d.bound),
            u_scale: cfg.u_scale.unwrap_or(d.u_scale),
            exact_solve: cfg.exact_solve.unwrap_or(d.exact_solve),
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
    let data = CleaningData::new(a.train, a.val, test, classes, a.corrupted, "arrays")?;
    cleaning_problem(cfg, data).context("[problem] kind = \"cleaning\"")
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
