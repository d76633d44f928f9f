//! The `[observe]` section: diagnostics attached to every run of `bilevel run`, whose values
//! become columns of the traces (after the problem's metrics) and panels of the figure.

use anyhow::{Result, bail};
use serde::Deserialize;

/// `[observe]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObserveSection {
    /// Attach the flatness observer (`bilevel::diagnostics::FlatnessObserver`): ‖∇F_γ(u)‖ with
    /// exact responses, the term PBGD-Free drops, and the flatness fit c, α, δ and its floor at
    /// every record. Needs a problem with a closed-form lower-level solution w*(u).
    #[serde(default)]
    pub flatness: bool,
    /// Points per segment of the flatness fit (default 16; below 2: only the gradient and
    /// distance columns, the fit's are empty).
    pub flatness_samples: Option<usize>,
}

impl ObserveSection {
    pub(super) fn validate(&self) -> Result<()> {
        if let Some(n) = self.flatness_samples
            && !self.flatness
        {
            bail!("[observe] `flatness_samples` = {n} needs `flatness` = true");
        }
        Ok(())
    }
}
