//! The `[run]`, `[start]` and `[output]` sections: limits and tolerances, where runs start, and
//! what a run writes.

use anyhow::{Result, anyhow, bail};
use bilevel::{Problem, RunOptions};
use serde::Deserialize;

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
            record_every: d.record_every,
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
    /// The run options for one seed.
    pub fn options(&self, seed: u64) -> RunOptions {
        RunOptions {
            max_iter: self.max_iter,
            record_every: self.record_every,
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
        self.options(0).validate().map_err(|e| anyhow!("[run] {e}"))
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
