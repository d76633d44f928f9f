//! The hyper-cleaning defaults rule in a config: a `[problem] kind = "cleaning"` without a
//! `[solver]` (or with a `[solver]` table without `kind`) takes its settings, solver, start and
//! stop from the data (`bilevel::problems::cleaning::defaults`). Each rule-driven key given
//! explicitly replaces that one value: `[problem]` loss, lambda, scale_features, bound, u_scale,
//! exact_solve; `[solver]` (no `kind`) gamma, u_alpha; `[run]` grad_u_rel_tol, max_iter;
//! `[start]`.
//!
//! [`Plan`] is what `bilevel run` runs: the built problem, and per seed the solver, options and
//! start, from the rule or from the config's sections.

use super::groups::positive;
use super::{Config, ProblemConfig};
use anyhow::{Context as _, Result};
use bilevel::problems::cleaning::defaults::{Defaults, MAX_ITER};
use bilevel::{Problem, RunOptions, Solver};
use serde::Deserialize;

/// Keys of a `[solver]` table without `kind` under the defaults rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSolverKeys {
    /// γ (rule: 100 · N'/N).
    pub gamma: Option<f64>,
    /// Fixed u step (rule: 0.1 / rms of the first u gradient).
    pub u_alpha: Option<f64>,
}

impl RuleSolverKeys {
    pub(super) fn validate(&self) -> Result<()> {
        positive(
            "gamma",
            self.gamma,
            "the penalty constant must be finite and > 0",
        )?;
        positive(
            "u_alpha",
            self.u_alpha,
            "the u step size must be finite and > 0",
        )
    }
}

/// The problem of a run, with the defaults rule's choices when it is in force.
pub struct Plan {
    /// The problem.
    pub problem: Box<dyn Problem>,
    /// What the defaults rule chose (None: the config's `[solver]` is used).
    pub rule: Option<Defaults>,
}

impl Config {
    /// True when the run takes the defaults rule (a cleaning problem without `[solver] kind`).
    pub fn uses_rule(&self) -> bool {
        self.rule_solver.is_some()
    }

    /// Builds the problem, and under the defaults rule derives its settings from the data.
    pub fn plan(&self) -> Result<Plan> {
        let Some(keys) = &self.rule_solver else {
            return Ok(Plan {
                problem: self.problem.build(&self.base_dir)?,
                rule: None,
            });
        };
        let ProblemConfig::Cleaning(c) = &self.problem else {
            unreachable!("the parser allows the defaults rule for cleaning only")
        };
        let run = || -> Result<_> {
            let data = c.load(&self.base_dir)?;
            let mut ov = c.overrides();
            ov.gamma = keys.gamma;
            ov.u_step = keys.u_alpha;
            ov.grad_u_rel_tol = self.run.grad_u_rel_tol;
            ov.max_iter = (self.run.max_iter != MAX_ITER).then_some(self.run.max_iter);
            Ok(Defaults::build(data, &ov)?)
        };
        let (problem, rule) = run().context("[problem] kind = \"cleaning\" (defaults rule)")?;
        Ok(Plan {
            problem: Box::new(problem),
            rule: Some(rule),
        })
    }
}

impl Plan {
    /// A fresh solver for one run.
    pub fn solver(&self, cfg: &Config) -> Result<Box<dyn Solver>> {
        match (&self.rule, &cfg.solver) {
            (Some(r), _) => Ok(Box::new(r.solver())),
            (None, Some(s)) => s.build(),
            (None, None) => unreachable!("a config without [solver] takes the defaults rule"),
        }
    }

    /// The run options for `seed`: `[run]`, with the rule's stop and guard under the rule.
    pub fn options(&self, cfg: &Config, seed: u64) -> RunOptions {
        let mut o = cfg.run.options(seed);
        if let Some(r) = &self.rule {
            o.grad_u_rel_tol = r.grad_u_rel_tol;
            o.max_iter = r.max_iter;
        }
        o
    }

    /// The start for `seed`: `[start]` when given, else the rule's start under the rule, else
    /// the problem's recommended start.
    pub fn start(&self, cfg: &Config, seed: u64) -> Result<(Vec<f64>, Vec<f64>)> {
        match (&self.rule, &cfg.start) {
            (Some(r), super::StartConfig::Default) => Ok(r.start.clone()),
            (_, s) => s.point(self.problem.as_ref(), seed),
        }
    }

    /// One line per default the rule set (value and how it was derived); empty without it.
    pub fn rule_lines(&self) -> Vec<String> {
        self.rule.as_ref().map_or_else(Vec::new, Defaults::lines)
    }
}
