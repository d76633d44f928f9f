//! Typed errors. Every message names the problem and, where there is one, the fix.

/// Errors of the library. Bad input never panics: it ends up here.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two objects that must agree in size do not.
    #[error("dimension mismatch in {what}: expected {expected}, got {got}")]
    Dimension {
        what: String,
        expected: String,
        got: String,
    },
    /// A setting is out of its allowed range.
    #[error("invalid setting `{name}` = {value}: {allowed}")]
    InvalidSetting {
        name: String,
        value: String,
        allowed: String,
    },
    /// Data (a start point, a matrix, a file) holds NaN or Inf.
    #[error(
        "{what} contains a non-finite value (NaN or Inf) at index {index}; clean the input or choose another start point"
    )]
    NonFinite { what: String, index: usize },
    /// Data is well-formed but unusable for the stated reason.
    #[error("invalid data in {what}: {reason}")]
    InvalidData { what: String, reason: String },
    /// A file could not be read or parsed.
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    /// A run diverged. The run loop returns the partial trace beside it (`run::RunError`).
    #[error("{0}")]
    Diverged(Box<Divergence>),
    /// The operation needs something the problem does not provide.
    #[error("{0}")]
    Unsupported(String),
    /// Writing an output failed.
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    /// An input would need more memory than the limit allows (see [`crate::limits`]).
    #[error(
        "{what} would need about {} but the memory limit is {} (driven by {driver}); use a smaller input, or raise the limit with `--max-memory` or the `max_memory` config key",
        crate::limits::human_bytes(*bytes),
        crate::limits::human_bytes(*limit)
    )]
    TooLarge {
        what: String,
        bytes: u64,
        limit: u64,
        driver: String,
    },
    /// A size computed from an input does not fit in 64 bits (a corrupt or hostile header).
    #[error(
        "the size of {what} overflows: {sizes} (driven by {driver}); the input is corrupt or far too large"
    )]
    SizeOverflow {
        what: String,
        sizes: String,
        driver: String,
    },
}

/// What is known about a diverged run.
#[derive(Debug, Clone)]
pub struct Divergence {
    /// Iteration at which divergence was detected.
    pub iter: usize,
    /// Why the run was judged divergent.
    pub reason: String,
    /// Outer step size in force.
    pub alpha: f64,
    /// Inner (lower-level) step size in force, if any.
    pub beta: Option<f64>,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run diverged at iteration {}: {}; outer step size alpha = {:.3e}",
            self.iter, self.reason, self.alpha
        )?;
        if let Some(b) = self.beta {
            write!(f, ", inner step size beta = {b:.3e}")?;
        }
        write!(
            f,
            "; the step is too large for this problem: try a smaller one (for example alpha = {:.3e}, or a smaller step constant c)",
            self.alpha / 10.0
        )
    }
}

impl Error {
    pub(crate) fn dim(
        what: impl Into<String>,
        expected: impl ToString,
        got: impl ToString,
    ) -> Self {
        Error::Dimension {
            what: what.into(),
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }

    pub(crate) fn setting(
        name: impl Into<String>,
        value: impl ToString,
        allowed: impl Into<String>,
    ) -> Self {
        Error::InvalidSetting {
            name: name.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }

    pub(crate) fn data(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidData {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias of the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that every entry of `x` is finite.
pub fn check_finite(what: &str, x: &[f64]) -> Result<()> {
    match x.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            what: what.to_string(),
            index,
        }),
        None => Ok(()),
    }
}

/// Checks a penalty constant: finite and > 0.
pub fn check_gamma(name: &str, gamma: f64) -> Result<()> {
    if gamma.is_finite() && gamma > 0.0 {
        Ok(())
    } else {
        Err(Error::setting(
            name,
            gamma,
            "the penalty constant gamma must be finite and > 0 (typical values: 1 to 1e4)",
        ))
    }
}

/// Checks a positive finite setting.
pub fn check_positive(name: &str, x: f64) -> Result<()> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(Error::setting(name, x, "must be finite and > 0"))
    }
}
