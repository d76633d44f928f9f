//! The `[solver]` section: one struct per solver kind (its own keys plus the shared groups of
//! `groups`), its checks, and the solver it builds.

use super::groups::{
    InnerLoopKeys, Keys, RampKeys, SmoothnessConfig, SolverKeys, StepKeys, batch_size, nonzero,
    positive, read_solver, u_step_ratio,
};
use anyhow::{Result, bail};
use bilevel::solvers::{
    Aid, AltPbgd, Bome, F2sa, GammaSchedule, InnerRule, Itd, LinearSolve, Pbgd, PbgdFree,
    ReducedStep, Solver, StepRule, Update, VBlock,
};
use serde::Deserialize;

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
    (
        "alt-pbgd",
        "ALT-PBGD: descent on F_gamma(u) = min_v L_gamma, step from F_gamma's estimated smoothness (keys: gamma, v_block, w_block, inner_steps or inner_rho/inner_max_steps, c or alpha, reduced_smoothness)",
    ),
    (
        "pbgd-free",
        "PBGD-Free: K warm v steps then u along grad_u f only, no value function (keys: gamma, v_steps, beta, c or alpha)",
    ),
];

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
    /// ALT-PBGD.
    AltPbgd(AltPbgdConfig),
    /// PBGD-Free.
    PbgdFree(PbgdFreeConfig),
}

impl SolverConfig {
    pub(super) fn parse(kind: &str, table: toml::Table) -> Result<Option<Self>> {
        Ok(Some(match kind {
            "pbgd" => Self::Pbgd(read_solver(table, kind)?),
            "v-pbgd" => Self::VPbgd(read_solver(table, kind)?),
            "f2sa" => Self::F2sa(read_solver(table, kind)?),
            "bome" => Self::Bome(read_solver(table, kind)?),
            "aid" => Self::Aid(read_solver(table, kind)?),
            "itd" => Self::Itd(read_solver(table, kind)?),
            "alt-pbgd" => Self::AltPbgd(read_solver(table, kind)?),
            "pbgd-free" => Self::PbgdFree(read_solver(table, kind)?),
            _ => return Ok(None),
        }))
    }

    /// Checks the settings by building the solver once.
    pub(super) fn validate(&self) -> Result<()> {
        self.build().map(|_| ())
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
            Self::AltPbgd(c) => Box::new(c.build()?),
            Self::PbgdFree(c) => Box::new(c.build()?),
        })
    }
}

/// `kind = "pbgd"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PbgdConfig {
    /// `"jacobi"` (default) or `"gauss-seidel"`.
    pub update: Option<Update>,
    /// Fixed γ (or give the ramp gamma_start, gamma_end, gamma_iters).
    pub gamma: Option<f64>,
    /// A linear ramp of γ.
    #[serde(skip)]
    pub ramp: RampKeys,
    /// `c` (α = c / (ℓ_f + γ ℓ_g), default c = 0.5) or `alpha` (fixed α).
    #[serde(skip)]
    pub step: StepKeys,
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
    #[serde(skip)]
    pub inner: InnerLoopKeys,
    /// Mini-batch size for stochastic gradients of g (problems that sum g over samples;
    /// gradient v block).
    pub batch_size: Option<usize>,
    /// Smoothness overrides.
    pub smoothness: Option<SmoothnessConfig>,
}

impl SolverKeys for PbgdConfig {
    const KEYS: &'static [&'static str] = &[
        "update",
        "gamma",
        "gamma_start",
        "gamma_end",
        "gamma_iters",
        "c",
        "alpha",
        "alpha0",
        "v_steps",
        "v_block",
        "u_alpha",
        "inner",
        "inner_steps",
        "inner_warm",
        "inner_beta",
        "batch_size",
        "smoothness",
    ];

    fn read(mut keys: Keys) -> Result<Self, toml::de::Error> {
        let (ramp, step, inner) = (keys.group()?, keys.group()?, keys.group()?);
        Ok(PbgdConfig {
            ramp,
            step,
            inner,
            ..keys.rest()?
        })
    }
}

impl PbgdConfig {
    fn build(&self) -> Result<Pbgd> {
        let update = self.update.unwrap_or(Update::Jacobi);
        let gamma = match (self.gamma, self.ramp.given()) {
            (Some(g), false) => {
                positive(
                    "gamma",
                    Some(g),
                    "the penalty constant must be finite and > 0 (typical values: 1 to 1e4)",
                )?;
                GammaSchedule::Constant(g)
            }
            (None, true) => self.ramp.schedule()?,
            (Some(g), true) => bail!(
                "[solver] `gamma` = {g} together with gamma_start/gamma_end/gamma_iters: give either a fixed gamma or a ramp"
            ),
            (None, false) => bail!(
                "[solver] missing key `gamma` (the penalty constant, e.g. gamma = 10), or a ramp gamma_start, gamma_end, gamma_iters"
            ),
        };
        let rules = [
            self.step.c.is_some(),
            self.step.alpha.is_some(),
            self.alpha0.is_some(),
        ];
        if rules.iter().filter(|given| **given).count() > 1 {
            bail!(
                "[solver] give at most one step rule among `c` (alpha = c/(lf + gamma lg)), `alpha` (fixed) and `alpha0` (alpha0 · min(1, 1/gamma))"
            );
        }
        let step = match self.alpha0 {
            Some(a) => {
                positive("alpha0", Some(a), "the step size must be finite and > 0")?;
                StepRule::InverseGamma { alpha0: a }
            }
            None => self.step.rule()?.unwrap_or_default(),
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
        if let Some(b) = batch_size(self.batch_size)? {
            p = p.with_batch(b);
        }
        if let Some(i) = self.inner.inner_loop()? {
            p = p.with_inner(i);
        }
        if let Some(s) = SmoothnessConfig::smoothness(self.smoothness)? {
            p = p.with_smoothness(s);
        }
        Ok(p)
    }
}

/// `kind = "v-pbgd"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VPbgdConfig {
    /// The linear ramp of γ (all three keys).
    #[serde(skip)]
    pub ramp: RampKeys,
    /// α₀ (default 0.5/(ℓ_f + ℓ_g)).
    pub alpha0: Option<f64>,
    /// Inner loop.
    #[serde(skip)]
    pub inner: InnerLoopKeys,
    /// Smoothness overrides.
    pub smoothness: Option<SmoothnessConfig>,
}

impl SolverKeys for VPbgdConfig {
    const KEYS: &'static [&'static str] = &[
        "gamma_start",
        "gamma_end",
        "gamma_iters",
        "alpha0",
        "inner",
        "inner_steps",
        "inner_warm",
        "inner_beta",
        "smoothness",
    ];

    fn read(mut keys: Keys) -> Result<Self, toml::de::Error> {
        let (ramp, inner) = (keys.group()?, keys.group()?);
        Ok(VPbgdConfig {
            ramp,
            inner,
            ..keys.rest()?
        })
    }
}

impl VPbgdConfig {
    fn build(&self) -> Result<Pbgd> {
        let GammaSchedule::Linear { start, end, iters } = self.ramp.schedule()? else {
            unreachable!("RampKeys::schedule returns a linear schedule")
        };
        positive(
            "alpha0",
            self.alpha0,
            "the step size must be finite and > 0",
        )?;
        let mut p = Pbgd::v_pbgd(start, end, iters, self.alpha0);
        if let Some(i) = self.inner.inner_loop()? {
            p = p.with_inner(i);
        }
        if let Some(s) = SmoothnessConfig::smoothness(self.smoothness)? {
            p = p.with_smoothness(s);
        }
        Ok(p)
    }
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
    /// `c` (α = c / (ℓ_f + λ ℓ_g)) or `alpha` (fixed α).
    #[serde(skip)]
    pub step: StepKeys,
    /// Ratio of the u step to the v step.
    pub u_step_ratio: Option<f64>,
    /// Inner loop for z.
    #[serde(skip)]
    pub inner: InnerLoopKeys,
    /// Mini-batch size for stochastic gradients of g.
    pub batch_size: Option<usize>,
    /// Smoothness overrides.
    pub smoothness: Option<SmoothnessConfig>,
}

impl SolverKeys for F2saConfig {
    const KEYS: &'static [&'static str] = &[
        "lambda0",
        "lambda_max",
        "ramp_iters",
        "c",
        "alpha",
        "u_step_ratio",
        "inner",
        "inner_steps",
        "inner_warm",
        "inner_beta",
        "batch_size",
        "smoothness",
    ];

    fn read(mut keys: Keys) -> Result<Self, toml::de::Error> {
        let (step, inner) = (keys.group()?, keys.group()?);
        Ok(F2saConfig {
            step,
            inner,
            ..keys.rest()?
        })
    }
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
        let ratio = u_step_ratio(self.u_step_ratio)?;
        let mut s = F2sa::new(l0, l1, self.ramp_iters.unwrap_or(1000));
        if let Some(r) = self.step.rule()? {
            s = s.with_step(r);
        }
        if let Some(r) = ratio {
            s = s.with_u_step_ratio(r);
        }
        if let Some(i) = self.inner.inner_loop()? {
            s = s.with_inner(i);
        }
        if let Some(b) = batch_size(self.batch_size)? {
            s = s.with_batch(b);
        }
        if let Some(sm) = SmoothnessConfig::smoothness(self.smoothness)? {
            s = s.with_smoothness(sm);
        }
        Ok(s)
    }
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
    /// `c` (α = c / (ℓ_f + ℓ_g)) or `alpha` (fixed α).
    #[serde(skip)]
    pub step: StepKeys,
    /// Ratio of the u step to the v step.
    pub u_step_ratio: Option<f64>,
    /// Mini-batch size for stochastic gradients of g.
    pub batch_size: Option<usize>,
    /// Smoothness overrides.
    pub smoothness: Option<SmoothnessConfig>,
}

impl SolverKeys for BomeConfig {
    const KEYS: &'static [&'static str] = &[
        "eta",
        "inner_steps",
        "report_gamma",
        "c",
        "alpha",
        "u_step_ratio",
        "batch_size",
        "smoothness",
    ];

    fn read(mut keys: Keys) -> Result<Self, toml::de::Error> {
        let step = keys.group()?;
        Ok(BomeConfig {
            step,
            ..keys.rest()?
        })
    }
}

impl BomeConfig {
    fn build(&self) -> Result<Bome> {
        positive("eta", self.eta, "must be finite and > 0")?;
        positive("report_gamma", self.report_gamma, "must be finite and > 0")?;
        let ratio = u_step_ratio(self.u_step_ratio)?;
        nonzero("inner_steps", self.inner_steps)?;
        let mut s = Bome::new(
            self.eta.unwrap_or(0.5),
            self.inner_steps.unwrap_or(10),
            self.report_gamma.unwrap_or(10.0),
        );
        if let Some(r) = self.step.rule()? {
            s = s.with_step(r);
        }
        if let Some(r) = ratio {
            s = s.with_u_step_ratio(r);
        }
        if let Some(b) = batch_size(self.batch_size)? {
            s = s.with_batch(b);
        }
        if let Some(sm) = SmoothnessConfig::smoothness(self.smoothness)? {
            s = s.with_smoothness(sm);
        }
        Ok(s)
    }
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
    /// `c` (α = c / ℓ_f) or `alpha` (fixed α).
    #[serde(skip)]
    pub step: StepKeys,
    /// Smoothness overrides.
    pub smoothness: Option<SmoothnessConfig>,
}

impl SolverKeys for AidConfig {
    const KEYS: &'static [&'static str] = &[
        "solve",
        "inner_steps",
        "iters",
        "tol",
        "terms",
        "beta",
        "c",
        "alpha",
        "smoothness",
    ];

    fn read(mut keys: Keys) -> Result<Self, toml::de::Error> {
        let step = keys.group()?;
        Ok(AidConfig {
            step,
            ..keys.rest()?
        })
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
        if let Some(r) = self.step.rule()? {
            s = s.with_step(r);
        }
        if let Some(b) = self.beta {
            s = s.with_beta(b);
        }
        if let Some(sm) = SmoothnessConfig::smoothness(self.smoothness)? {
            s = s.with_smoothness(sm);
        }
        Ok(s)
    }
}

/// `kind = "itd"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItdConfig {
    /// Unrolled lower-level steps (default 10).
    pub inner_steps: Option<usize>,
    /// Lower-level step β.
    pub beta: Option<f64>,
    /// `c` (α = c / ℓ_f) or `alpha` (fixed α).
    #[serde(skip)]
    pub step: StepKeys,
    /// Smoothness overrides.
    pub smoothness: Option<SmoothnessConfig>,
}

impl SolverKeys for ItdConfig {
    const KEYS: &'static [&'static str] = &["inner_steps", "beta", "c", "alpha", "smoothness"];

    fn read(mut keys: Keys) -> Result<Self, toml::de::Error> {
        let step = keys.group()?;
        Ok(ItdConfig {
            step,
            ..keys.rest()?
        })
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
        if let Some(r) = self.step.rule()? {
            s = s.with_step(r);
        }
        if let Some(b) = self.beta {
            s = s.with_beta(b);
        }
        if let Some(sm) = SmoothnessConfig::smoothness(self.smoothness)? {
            s = s.with_smoothness(sm);
        }
        Ok(s)
    }
}

/// The u step of the reduced methods from `c` / `alpha`: η = c/ℓ (ℓ the smoothness of F_γ for
/// ALT-PBGD, of f for PBGD-Free) or a fixed η.
fn reduced_step(step: &StepKeys) -> Result<Option<ReducedStep>> {
    Ok(step.rule()?.map(|r| match r {
        StepRule::Smoothness { c } => ReducedStep::Smoothness { c },
        StepRule::Fixed(a) => ReducedStep::Fixed(a),
        // `rule` makes only the two above.
        other => unreachable!("StepKeys gave {other:?}"),
    }))
}

/// A required fixed γ.
fn fixed_gamma(gamma: Option<f64>) -> Result<f64> {
    let Some(g) = gamma else {
        bail!("[solver] missing key `gamma` (the penalty constant, e.g. gamma = 10)");
    };
    positive(
        "gamma",
        Some(g),
        "the penalty constant must be finite and > 0 (typical values: 1 to 1e4)",
    )?;
    Ok(g)
}

/// `kind = "alt-pbgd"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AltPbgdConfig {
    /// Fixed γ (required).
    pub gamma: Option<f64>,
    /// `"exact"` (v ← v_γ*(u) in closed form) or `"gradient"`; default: exact where the
    /// problem has it.
    pub v_block: Option<VBlock>,
    /// `"exact"` (w ← w*(u)) or `"gradient"`; default: exact where the problem has it.
    pub w_block: Option<VBlock>,
    /// Fixed count of gradient steps per block and iteration (instead of the accuracy rule).
    pub inner_steps: Option<usize>,
    /// Accuracy rule: a block's gradient ≤ inner_rho · ‖previous u direction‖ (default 0.1).
    pub inner_rho: Option<f64>,
    /// Accuracy rule: at most this many steps per block and iteration (default 200).
    pub inner_max_steps: Option<usize>,
    /// `c` (η = c/ℓ_F, default 0.5) or `alpha` (fixed η).
    #[serde(skip)]
    pub step: StepKeys,
    /// ℓ_F, the smoothness of F_γ (default: estimated at the start point).
    pub reduced_smoothness: Option<f64>,
    /// Smoothness overrides of f and g (the gradient blocks' steps).
    pub smoothness: Option<SmoothnessConfig>,
}

impl SolverKeys for AltPbgdConfig {
    const KEYS: &'static [&'static str] = &[
        "gamma",
        "v_block",
        "w_block",
        "inner_steps",
        "inner_rho",
        "inner_max_steps",
        "c",
        "alpha",
        "reduced_smoothness",
        "smoothness",
    ];

    fn read(mut keys: Keys) -> Result<Self, toml::de::Error> {
        let step = keys.group()?;
        Ok(AltPbgdConfig {
            step,
            ..keys.rest()?
        })
    }
}

impl AltPbgdConfig {
    fn build(&self) -> Result<AltPbgd> {
        let mut s = AltPbgd::new(fixed_gamma(self.gamma)?);
        s.v_block = self.v_block;
        s.w_block = self.w_block;
        nonzero("inner_steps", self.inner_steps)?;
        nonzero("inner_max_steps", self.inner_max_steps)?;
        positive("inner_rho", self.inner_rho, "must be finite and > 0")?;
        match (self.inner_steps, self.inner_rho, self.inner_max_steps) {
            (Some(steps), None, None) => s = s.with_inner(InnerRule::Fixed { steps }),
            (Some(_), _, _) => bail!(
                "[solver] `inner_steps` (a fixed count) goes without `inner_rho` / `inner_max_steps` (the accuracy rule): give one rule"
            ),
            (None, rho, max) => {
                let InnerRule::Accuracy {
                    rho: rho0,
                    max_steps: max0,
                } = InnerRule::default()
                else {
                    unreachable!("the default inner rule is the accuracy rule")
                };
                s = s.with_inner(InnerRule::Accuracy {
                    rho: rho.unwrap_or(rho0),
                    max_steps: max.unwrap_or(max0),
                });
            }
        }
        if let Some(r) = reduced_step(&self.step)? {
            s = s.with_u_step(r);
        }
        positive(
            "reduced_smoothness",
            self.reduced_smoothness,
            "the smoothness of F_gamma must be finite and > 0",
        )?;
        if self.reduced_smoothness.is_some() && self.step.alpha.is_some() {
            bail!(
                "[solver] `reduced_smoothness` sets the step c/reduced_smoothness; with a fixed `alpha` it is unused: remove one"
            );
        }
        s.reduced_smoothness = self.reduced_smoothness;
        if let Some(sm) = SmoothnessConfig::smoothness(self.smoothness)? {
            s = s.with_smoothness(sm);
        }
        Ok(s)
    }
}

/// `kind = "pbgd-free"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PbgdFreeConfig {
    /// Fixed γ (required).
    pub gamma: Option<f64>,
    /// K, warm steps on v per iteration (default 1).
    pub v_steps: Option<usize>,
    /// Step β on γ⁻¹f + g (default 1/(ℓ_f/γ + ℓ_{g,vv})).
    pub beta: Option<f64>,
    /// `c` (η = c/ℓ_f, default 0.5) or `alpha` (fixed η).
    #[serde(skip)]
    pub step: StepKeys,
    /// Smoothness overrides.
    pub smoothness: Option<SmoothnessConfig>,
}

impl SolverKeys for PbgdFreeConfig {
    const KEYS: &'static [&'static str] = &["gamma", "v_steps", "beta", "c", "alpha", "smoothness"];

    fn read(mut keys: Keys) -> Result<Self, toml::de::Error> {
        let step = keys.group()?;
        Ok(PbgdFreeConfig {
            step,
            ..keys.rest()?
        })
    }
}

impl PbgdFreeConfig {
    fn build(&self) -> Result<PbgdFree> {
        let mut s = PbgdFree::new(fixed_gamma(self.gamma)?);
        nonzero("v_steps", self.v_steps)?;
        if let Some(k) = self.v_steps {
            s = s.with_v_steps(k);
        }
        positive("beta", self.beta, "the v step must be finite and > 0")?;
        if let Some(b) = self.beta {
            s = s.with_beta(b);
        }
        if let Some(r) = reduced_step(&self.step)? {
            s = s.with_u_step(r);
        }
        if let Some(sm) = SmoothnessConfig::smoothness(self.smoothness)? {
            s = s.with_smoothness(sm);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::groups::KeyGroup;
    use crate::config::groups::tests::serde_fields;

    /// Checks `T::KEYS` against what `T::read` routes: every listed key reaches a group or the
    /// solver's own struct, every own field and every key of a group it reads is listed.
    fn keys_match<T: SolverKeys + serde::de::DeserializeOwned>(kind: &str) {
        for k in T::KEYS {
            let mut t = toml::Table::new();
            t.insert(k.to_string(), toml::Value::Array(vec!["x".into()]));
            let e = format!("{:#}", read_solver::<T>(t, kind).err().unwrap());
            assert!(
                !e.contains("unknown field") && e.contains(&format!("in `{k}`")),
                "{kind}: `{k}` is listed but not read: {e}"
            );
        }
        for f in serde_fields::<T>() {
            assert!(T::KEYS.contains(&f.as_str()), "{kind}: `{f}` not listed");
        }
        // A group's first key names it (`inner_steps` alone is also BOME's, AID's and ITD's
        // own key): a solver that takes it takes the whole group.
        for group in [InnerLoopKeys::KEYS, StepKeys::KEYS, RampKeys::KEYS] {
            if T::KEYS.contains(&group[0]) {
                for k in group {
                    assert!(T::KEYS.contains(k), "{kind}: `{k}` of {group:?} not listed");
                }
            }
        }
    }

    #[test]
    fn every_solver_lists_the_keys_it_reads() {
        keys_match::<PbgdConfig>("pbgd");
        keys_match::<VPbgdConfig>("v-pbgd");
        keys_match::<F2saConfig>("f2sa");
        keys_match::<BomeConfig>("bome");
        keys_match::<AidConfig>("aid");
        keys_match::<ItdConfig>("itd");
        keys_match::<AltPbgdConfig>("alt-pbgd");
        keys_match::<PbgdFreeConfig>("pbgd-free");
    }

    #[test]
    fn reduced_solvers_build_their_rules() {
        let read = |s: &str| -> AltPbgdConfig {
            read_solver(toml::from_str(s).unwrap(), "alt-pbgd").unwrap()
        };
        let a = read("gamma = 100.0\ninner_steps = 3\nc = 0.25\nv_block = \"gradient\"")
            .build()
            .unwrap();
        assert_eq!(a.inner, InnerRule::Fixed { steps: 3 });
        assert_eq!(a.u_step, ReducedStep::Smoothness { c: 0.25 });
        assert_eq!(a.v_block, Some(VBlock::Gradient));
        let a = read("gamma = 10.0\ninner_rho = 0.5").build().unwrap();
        assert_eq!(
            a.inner,
            InnerRule::Accuracy {
                rho: 0.5,
                max_steps: 200
            }
        );
        let e = read("gamma = 10.0\ninner_steps = 3\ninner_rho = 0.5")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("one rule"), "{e}");
        let e = read("inner_steps = 3").build().unwrap_err();
        assert!(e.to_string().contains("gamma"), "{e}");
        let f: PbgdFreeConfig = read_solver(
            toml::from_str("gamma = 10.0\nv_steps = 4\nalpha = 0.1").unwrap(),
            "pbgd-free",
        )
        .unwrap();
        let f = f.build().unwrap();
        assert_eq!((f.v_steps, f.u_step), (4, ReducedStep::Fixed(0.1)));
    }

    #[test]
    fn groups_reach_the_solver() {
        let t: toml::Table = toml::from_str(
            "gamma = 10.0\nc = 0.25\ninner = \"gd\"\ninner_steps = 4\nbatch_size = 2\nv_steps = 1",
        )
        .unwrap();
        let p: PbgdConfig = read_solver(t, "pbgd").unwrap();
        assert_eq!(p.step.c, Some(0.25));
        assert_eq!(p.inner.steps, Some(4));
        assert_eq!(
            (p.gamma, p.batch_size, p.v_steps),
            (Some(10.0), Some(2), Some(1))
        );
        assert!(!p.ramp.given());
    }
}
