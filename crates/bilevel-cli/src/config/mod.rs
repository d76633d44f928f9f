//! `bilevel run` configuration files (TOML): the whole file as a [`Config`], its parsing and
//! loading, and the helpers every section shares.
//!
//! Keys are snake_case; enumerated values are kebab-case (`"gauss-seidel"`, `"v-pbgd"`).
//! `[problem]` and `[solver]` are tables with a `kind` key. Each kind has its own struct with
//! `deny_unknown_fields`, deserialized from the table with `kind` removed, so an unknown or
//! mistyped key is reported under its own name (serde's internally tagged enums buffer the table
//! and lose the key in type errors). Keys that several solvers share (the inner loop, the step
//! rule, the gamma ramp) are one struct each in `groups`, read out of the solver's table first.
//!
//! Where things are: `problem` (the `[problem]` kinds), `solver` (the `[solver]` kinds and the
//! solver each builds), `groups` (the key groups solvers share, each with its one check), `run`
//! (`[run]`, `[start]`, `[output]`), `rule` (the hyper-cleaning defaults rule, taken by a
//! cleaning config without `[solver] kind`, and the [`Plan`] a run follows).
//!
//! To add a problem or solver kind: add a variant to [`ProblemConfig`] / [`SolverConfig`] with its
//! config struct, a row in [`PROBLEM_KINDS`] / [`SOLVER_KINDS`], and one arm in each of `parse`
//! and `build`. A solver's struct also lists its keys in `SolverKeys::KEYS` and reads its shared
//! groups in `SolverKeys::read`.

mod groups;
mod observe;
mod problem;
mod rule;
mod run;
mod solver;

pub use groups::{InnerKind, InnerLoopKeys, RampKeys, SmoothnessConfig, StepKeys};
pub use observe::ObserveSection;
pub use problem::{
    CleaningArrays, build_cleaning, build_replearn, cleaning_data_from_arrays,
    cleaning_from_arrays, cleaning_problem, cleaning_rule_from_arrays, replearn_from_data,
};
pub use problem::{
    CleaningConfig, CleaningSource, CounterexampleConfig, Example1Config, PROBLEM_KINDS,
    ProblemConfig, QuadraticConfig, ReplearnConfig, Toy1dConfig,
};
pub use rule::{Plan, RuleSolverKeys};
pub use run::{
    DEFAULT_MAX_RECORDS, MaxMemory, OutputSection, RunSection, StartConfig, TraceFormat,
};
pub use solver::{
    AidConfig, AidSolve, AltPbgdConfig, BomeConfig, F2saConfig, ItdConfig, PbgdConfig,
    PbgdFreeConfig, SOLVER_KINDS, SolverConfig, VPbgdConfig,
};

use anyhow::{Context as _, Result, anyhow, bail};
use run::StartSection;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

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
    /// The solver (None under the defaults rule).
    pub solver: Option<SolverConfig>,
    /// Under the hyper-cleaning defaults rule (a cleaning config without `[solver] kind`): the
    /// keys of its kind-less `[solver]` table, if any.
    pub rule_solver: Option<RuleSolverKeys>,
    /// Limits and tolerances.
    pub run: RunSection,
    /// Start point.
    pub start: StartConfig,
    /// One run per seed (start point and run randomness).
    pub seeds: Vec<u64>,
    /// What to write.
    pub output: OutputSection,
    /// Diagnostics attached to the runs.
    pub observe: ObserveSection,
    /// Directory relative paths in the file are resolved against.
    pub base_dir: PathBuf,
    /// The file's text, copied into the report.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    problem: toml::Table,
    solver: Option<toml::Table>,
    #[serde(default)]
    run: RunSection,
    #[serde(default)]
    start: StartSection,
    seeds: Option<Vec<u64>>,
    #[serde(default)]
    output: OutputSection,
    #[serde(default)]
    observe: ObserveSection,
}

/// Deserializes a `[problem]` / `[solver]` table (without `kind`) into a kind's struct, with
/// an error naming the section, kind and key.
fn section<T: DeserializeOwned>(table: toml::Table, section: &str, kind: &str) -> Result<T> {
    table
        .try_into()
        .map_err(|e: toml::de::Error| section_error(section, kind, &e))
}

/// A key error of a `[problem]` / `[solver]` table, on one line, naming the section and kind.
fn section_error(section: &str, kind: &str, e: &toml::de::Error) -> anyhow::Error {
    anyhow!(
        "[{section}] (kind = \"{kind}\"): {}",
        one_line(&e.to_string())
    )
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
                    "{}\n(allowed top-level keys and tables: seeds, [problem], [solver], [run], [start], [output], [observe])",
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
        let mut st = raw.solver.unwrap_or_default();
        // A cleaning problem without a solver kind takes the defaults rule.
        let rule = matches!(problem, ProblemConfig::Cleaning(_)) && !st.contains_key("kind");
        let (solver, rule_solver) = if rule {
            let keys: RuleSolverKeys = st.try_into().map_err(|e: toml::de::Error| {
                anyhow!(
                    "[solver] without `kind` (the cleaning defaults rule, which takes only `gamma` and `u_alpha` here; give `kind` for another solver): {}",
                    one_line(&e.to_string())
                )
            })?;
            keys.validate()?;
            (None, Some(keys))
        } else {
            let kind = take_kind(&mut st, "solver", SOLVER_KINDS)?;
            let solver = SolverConfig::parse(&kind, st)?.ok_or_else(|| {
                anyhow!(
                    "[solver] `kind` = \"{kind}\": unknown solver; allowed values: {}",
                    kinds_list(SOLVER_KINDS)
                )
            })?;
            solver.validate()?;
            (Some(solver), None)
        };
        raw.run.validate()?;
        let seeds = match raw.seeds {
            Some(s) => s,
            // The defaults rule needs nothing but the data: one run, seed 0.
            None if rule => vec![0],
            None => bail!("missing key `seeds` (one run per seed, e.g. seeds = [0, 1, 2])"),
        };
        if seeds.is_empty() {
            bail!("`seeds` = []: give at least one seed, e.g. seeds = [0, 1, 2]");
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(d) = seeds.iter().find(|s| !seen.insert(**s)) {
            bail!("`seeds` lists seed {d} twice: each seed gives one run; remove the duplicate");
        }
        let start = raw.start.resolve()?;
        raw.output.validate()?;
        raw.observe.validate()?;
        Ok(Config {
            problem,
            solver,
            rule_solver,
            run: raw.run,
            start,
            seeds,
            output: raw.output,
            observe: raw.observe,
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
