//! The `[run]`, `[start]` and `[output]` sections: limits and tolerances, where runs start, and
//! what a run writes.

use anyhow::{Result, anyhow, bail};
use bilevel::limits::MemoryLimit;
use bilevel::{Problem, RunOptions};
use serde::Deserialize;

/// `[run]`: limits and tolerances (see [`RunOptions`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Iteration budget.
    pub max_iter: usize,
    /// Record every this many iterations (default: ceil(max_iter / max_records)).
    pub record_every: Option<usize>,
    /// At most about this many records per run when `record_every` is not given (default
    /// [`DEFAULT_MAX_RECORDS`]; the first and last iterations are always recorded).
    pub max_records: Option<usize>,
    /// Memory limit for the problem's data and closed forms ("8G", "512M", or bytes); the
    /// `--max-memory` flag wins over it. Default: the machine's available memory.
    pub max_memory: Option<MaxMemory>,
    /// Stop when ‖∇L_γ‖ ≤ grad_tol.
    pub grad_tol: Option<f64>,
    /// Stop on a small relative change of L_γ.
    pub rel_tol: Option<f64>,
    /// Stop when L_γ ≤ target.
    pub target: Option<f64>,
    /// Stop near the penalty optimum.
    pub dist_tol: Option<f64>,
    /// Stop when grad_u falls to this times its first value (cleaning's defaults rule: 0.5).
    pub grad_u_rel_tol: Option<f64>,
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
            record_every: None,
            max_records: None,
            max_memory: None,
            grad_tol: None,
            rel_tol: None,
            target: None,
            dist_tol: None,
            grad_u_rel_tol: None,
            max_time_s: None,
            monitor_inner_steps: d.monitor_inner_steps,
            divergence_factor: d.divergence_factor,
        }
    }
}

impl RunSection {
    /// Records every this many iterations: `record_every` when given, else about
    /// `max_records` records over `max_iter` iterations.
    pub fn record_every(&self) -> usize {
        self.record_every.unwrap_or_else(|| {
            let most = self.max_records.unwrap_or(DEFAULT_MAX_RECORDS).max(1);
            self.max_iter.div_ceil(most).max(1)
        })
    }

    /// The memory limit of `max_memory`, when given.
    pub fn max_memory(&self) -> Result<Option<MemoryLimit>> {
        self.max_memory
            .as_ref()
            .map(|m| {
                m.0.parse::<MemoryLimit>().map_err(|_| {
                    anyhow!(
                        "[run] `max_memory` = {:?}: give a size such as \"8G\", \"512M\", \"2GiB\" or a number of bytes",
                        m.0
                    )
                })
            })
            .transpose()
    }

    /// The run options for one seed.
    pub fn options(&self, seed: u64) -> RunOptions {
        RunOptions {
            max_iter: self.max_iter,
            record_every: self.record_every(),
            grad_tol: self.grad_tol,
            rel_tol: self.rel_tol,
            target: self.target,
            dist_tol: self.dist_tol,
            grad_u_rel_tol: self.grad_u_rel_tol,
            divergence_factor: self.divergence_factor,
            max_time_s: self.max_time_s,
            seed,
            monitor_inner_steps: self.monitor_inner_steps,
            keep_records: true,
            interrupt: None,
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        if self.max_iter == 0 {
            bail!("[run] `max_iter` = 0: must be at least 1");
        }
        if self.max_records == Some(0) {
            bail!("[run] `max_records` = 0: must be at least 1");
        }
        self.max_memory()?;
        self.options(0).validate().map_err(|e| anyhow!("[run] {e}"))
    }
}

/// Records per run when neither `record_every` nor `max_records` is given: enough for any
/// figure (which draws at most about 2,000 points per line), small enough that a run of 10⁹
/// iterations keeps a few MB of trace.
pub const DEFAULT_MAX_RECORDS: usize = 10_000;

/// `max_memory` as written: a size with a unit ("8G") or a number of bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct MaxMemory(pub String);

impl<'de> Deserialize<'de> for MaxMemory {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = MaxMemory;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size such as \"8G\", \"512M\" or a number of bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MaxMemory, E> {
                Ok(MaxMemory(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MaxMemory, E> {
                Ok(MaxMemory(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MaxMemory, E> {
                Ok(MaxMemory(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<MaxMemory, E> {
                Ok(MaxMemory(format!("{v:e}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[start]` as written: `u0` and `v0`, or `box`, or nothing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StartSection {
    u0: Option<Vec<f64>>,
    v0: Option<Vec<f64>>,
    #[serde(rename = "box")]
    bounds: Option<[f64; 2]>,
}

impl StartSection {
    /// The start of the runs, after checking that the keys go together.
    pub(super) fn resolve(self) -> Result<StartConfig> {
        Ok(match (self.u0, self.v0, self.bounds) {
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
        })
    }
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
    /// The keys that set the start, for messages.
    pub fn keys(&self) -> String {
        match self {
            StartConfig::Point { .. } => "[start] `u0` and `v0`".to_string(),
            StartConfig::Default => {
                "the problem's default start (no [start] keys; give `box` or `u0` and `v0`)"
                    .to_string()
            }
            StartConfig::Box { lo, hi } => format!("[start] `box` = [{lo:e}, {hi:e}]"),
        }
    }

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

impl OutputSection {
    pub(super) fn validate(&self) -> Result<()> {
        if self.formats.is_empty() && !self.figure {
            bail!("[output] `formats` = [] and `figure` = false: nothing would be written");
        }
        Ok(())
    }
}
