//! The keys several solvers share, one struct (or one field type) per group, each with the one
//! function that checks it: the inner loop for g*, the step rule `c` / `alpha`, the gamma ramp,
//! and the single keys `u_step_ratio`, `batch_size`, `[solver.smoothness]`. Also the reading of a
//! solver's table into its own struct and its groups.
//!
//! serde's `flatten` does not combine with `deny_unknown_fields`, so a multi-key group is read
//! out of the table before the solver's own struct: [`read_solver`] checks each key against the
//! solver's list first, then reads the groups and the rest.

use super::section_error;
use anyhow::{Result, bail};
use bilevel::Smoothness;
use bilevel::solvers::{GammaSchedule, InnerLoop, StepRule};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A group of keys that several solver sections share: read out of the section's table into
/// its own struct, checked by one function.
pub(super) trait KeyGroup: DeserializeOwned {
    /// The group's keys.
    const KEYS: &'static [&'static str];
}

/// A solver section's table while its groups are read out of it.
pub(super) struct Keys(pub(super) toml::Table);

impl Keys {
    /// Takes group `G`'s keys out of the table and reads them.
    pub(super) fn group<G: KeyGroup>(&mut self) -> Result<G, toml::de::Error> {
        let mut t = toml::Table::new();
        for k in G::KEYS {
            if let Some(v) = self.0.remove(*k) {
                t.insert(k.to_string(), v);
            }
        }
        t.try_into()
    }

    /// Reads the keys left after the groups: the solver's own.
    pub(super) fn rest<T: DeserializeOwned>(self) -> Result<T, toml::de::Error> {
        self.0.try_into()
    }
}

/// A solver section: its own keys (the struct's serde fields, groups skipped) and its groups.
pub(super) trait SolverKeys: Sized {
    /// Every key of the section, in the order the unknown-key error lists them.
    const KEYS: &'static [&'static str];

    /// Reads the groups out of `keys`, then the solver's own keys from the rest.
    fn read(keys: Keys) -> Result<Self, toml::de::Error>;
}

/// Reads a `[solver]` table (without `kind`) into kind `T`'s struct, with an error naming the
/// section, kind and key.
pub(super) fn read_solver<T: SolverKeys>(table: toml::Table, kind: &str) -> Result<T> {
    let err = |e: toml::de::Error| section_error("solver", kind, &e);
    // serde stops at the first bad key in table order; reading key by key first reports that
    // same key even when it belongs to a group read after another bad key.
    for (k, v) in &table {
        if !T::KEYS.contains(&k.as_str()) {
            return Err(err(serde::de::Error::unknown_field(k, T::KEYS)));
        }
        let mut one = toml::Table::new();
        one.insert(k.clone(), v.clone());
        T::read(Keys(one)).map_err(err)?;
    }
    T::read(Keys(table)).map_err(err)
}

/// `[solver] key = x` must be finite and > 0 when given.
pub(super) fn positive(key: &str, x: Option<f64>, allowed: &str) -> Result<()> {
    if let Some(x) = x
        && !(x.is_finite() && x > 0.0)
    {
        bail!("[solver] `{key}` = {x}: {allowed}");
    }
    Ok(())
}

/// `[solver] key = n` must be at least 1 when given.
pub(super) fn nonzero(key: &str, n: Option<usize>) -> Result<()> {
    if n == Some(0) {
        bail!("[solver] `{key}` = 0: must be at least 1");
    }
    Ok(())
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

/// The inner loop that estimates g*(u): `inner`, `inner_steps`, `inner_warm`, `inner_beta`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InnerLoopKeys {
    /// `inner`: exact or gradient descent.
    #[serde(rename = "inner")]
    pub kind: Option<InnerKind>,
    /// `inner_steps`: inner gradient steps.
    #[serde(rename = "inner_steps")]
    pub steps: Option<usize>,
    /// `inner_warm`: warm-start the inner loop.
    #[serde(rename = "inner_warm")]
    pub warm: Option<bool>,
    /// `inner_beta`: inner step β.
    #[serde(rename = "inner_beta")]
    pub beta: Option<f64>,
}

impl KeyGroup for InnerLoopKeys {
    const KEYS: &'static [&'static str] = &["inner", "inner_steps", "inner_warm", "inner_beta"];
}

impl InnerLoopKeys {
    /// The inner loop; None when no key is given (the solver's default).
    pub(super) fn inner_loop(&self) -> Result<Option<InnerLoop>> {
        let (steps, warm, beta) = (self.steps, self.warm, self.beta);
        positive("inner_beta", beta, "the inner step must be finite and > 0")?;
        if steps == Some(0) {
            bail!("[solver] `inner_steps` = 0: at least 1 inner gradient step is needed");
        }
        let gd_keys = steps.is_some() || warm.is_some() || beta.is_some();
        Ok(match self.kind {
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
}

/// The step rule: `c` (α = c / (ℓ_f + γ ℓ_g), or the solver's analogue) or `alpha` (fixed α).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepKeys {
    /// α = c / (ℓ_f + γ ℓ_g) (PBGD), c / (ℓ_f + λ ℓ_g) (F²SA), c / (ℓ_f + ℓ_g) (BOME),
    /// c / ℓ_f (AID, ITD).
    pub c: Option<f64>,
    /// Fixed α.
    pub alpha: Option<f64>,
}

impl KeyGroup for StepKeys {
    const KEYS: &'static [&'static str] = &["c", "alpha"];
}

impl StepKeys {
    /// `c` or `alpha` (at most one) as a step rule; None when neither is given.
    pub(super) fn rule(&self) -> Result<Option<StepRule>> {
        match (self.c, self.alpha) {
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
}

/// A linear ramp of the penalty constant: `gamma_start`, `gamma_end`, `gamma_iters`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampKeys {
    /// γ at iteration 0.
    pub gamma_start: Option<f64>,
    /// γ at the end of the ramp.
    pub gamma_end: Option<f64>,
    /// Length of the ramp in iterations.
    pub gamma_iters: Option<usize>,
}

impl KeyGroup for RampKeys {
    const KEYS: &'static [&'static str] = &["gamma_start", "gamma_end", "gamma_iters"];
}

impl RampKeys {
    /// True when any ramp key is given.
    pub(super) fn given(&self) -> bool {
        self.gamma_start.is_some() || self.gamma_end.is_some() || self.gamma_iters.is_some()
    }

    /// The ramp; all three keys are needed.
    pub(super) fn schedule(&self) -> Result<GammaSchedule> {
        let (start, end, iters) = (self.gamma_start, self.gamma_end, self.gamma_iters);
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
}

/// `u_step_ratio`: the ratio of the u step to the v step (F²SA, BOME).
pub(super) fn u_step_ratio(r: Option<f64>) -> Result<Option<f64>> {
    positive("u_step_ratio", r, "must be finite and > 0")?;
    Ok(r)
}

/// `batch_size`: mini-batch size for stochastic gradients of g (problems that sum g over
/// samples).
pub(super) fn batch_size(b: Option<usize>) -> Result<Option<usize>> {
    nonzero("batch_size", b)?;
    Ok(b)
}

/// `[solver.smoothness]`: overrides of the smoothness constants (all three).
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

impl SmoothnessConfig {
    /// The constants, when given.
    pub(super) fn smoothness(s: Option<Self>) -> Result<Option<Smoothness>> {
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
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The fields serde's unknown-field error lists for `T` (read from a table with a key no
    /// struct has).
    pub(in crate::config) fn serde_fields<T: DeserializeOwned>() -> Vec<String> {
        let mut t = toml::Table::new();
        t.insert("no_such_key".into(), toml::Value::Integer(1));
        let e = t.try_into::<T>().err().expect("an unknown key is an error");
        let msg = e.to_string();
        let list = msg.split("expected").nth(1).unwrap_or("");
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn group_keys_are_the_struct_fields() {
        assert_eq!(serde_fields::<InnerLoopKeys>(), InnerLoopKeys::KEYS);
        assert_eq!(serde_fields::<StepKeys>(), StepKeys::KEYS);
        assert_eq!(serde_fields::<RampKeys>(), RampKeys::KEYS);
    }

    #[test]
    fn group_checks() {
        let inner = InnerLoopKeys {
            kind: Some(InnerKind::Gd),
            steps: Some(3),
            warm: None,
            beta: None,
        };
        assert!(matches!(
            inner.inner_loop().unwrap(),
            Some(InnerLoop::Gd {
                steps: 3,
                warm: true,
                beta: None
            })
        ));
        let e = InnerLoopKeys {
            steps: Some(3),
            ..Default::default()
        }
        .inner_loop()
        .unwrap_err();
        assert!(e.to_string().contains("need `inner` = \"gd\""), "{e}");
        let both = StepKeys {
            c: Some(0.5),
            alpha: Some(0.1),
        };
        assert!(both.rule().unwrap_err().to_string().contains("at most one"));
        let e = RampKeys {
            gamma_start: Some(1.0),
            ..Default::default()
        }
        .schedule()
        .unwrap_err();
        assert!(e.to_string().contains("gamma_iters = None"), "{e}");
    }
}
