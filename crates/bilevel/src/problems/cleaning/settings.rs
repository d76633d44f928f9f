//! Settings of the cleaning problem: the per-sample loss, the ridge λ, the box on u, the
//! scale of the logits and the linear solver of the exact least-squares solves.

use serde::{Deserialize, Serialize};

/// The per-sample loss of both levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CleaningLoss {
    /// ½‖Wᵀx − y‖² on one-hot y (the paper's model; exact lower-level solution).
    #[default]
    LeastSquares,
    /// Softmax cross-entropy log Σ_k exp(z_k) − z_y (no closed-form lower level).
    SoftmaxCrossEntropy,
}

/// Settings of the cleaning problem.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CleaningSettings {
    /// Per-sample loss.
    pub loss: CleaningLoss,
    /// Ridge λ ≥ 0 of the lower level.
    pub lambda: f64,
    /// Box |u_i| ≤ bound on the upper-level variable.
    pub bound: f64,
    /// Weights are sigmoid(u_scale · u_i). Scaling u is a diagonal preconditioner: it
    /// multiplies the effective step of the u block by u_scale² relative to the W block, which
    /// solvers with a single step size (PBGD) need when the two blocks have very different
    /// curvature. 1 is the plain parametrization.
    pub u_scale: f64,
    /// How the exact least-squares solves (g* and the v block) are computed.
    pub exact_solve: ExactSolve,
    /// Divide each feature by its standard deviation over the training samples (1 where it is
    /// 0; no centring) before solving; λ then acts on the scaled features. The model is mapped
    /// back to the data's own units (W_user = diag(1/σ) W) in the `model` solution view. On
    /// under the defaults rule ([`super::defaults`]), off otherwise.
    pub scale_features: bool,
    /// Sums over samples (the default) or means: with `mean`, g's sample sum is divided by N
    /// and f's by N' (benchopt's data-cleaning problem).
    pub loss_scale: LossScale,
    /// The ridge term: (λ/2)‖W‖² (`half`, the default) or λ‖W‖² (`full`, benchopt's).
    pub ridge_form: RidgeForm,
    /// The default start's logits: u_i = u_start for every sample (W = 0).
    pub u_start: f64,
}

/// How the per-sample losses of f and g are aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossScale {
    /// Σ_i ψ_i ℓ_i and Σ_j ℓ_j.
    #[default]
    Sum,
    /// (1/N) Σ_i ψ_i ℓ_i and (1/N') Σ_j ℓ_j.
    Mean,
}

/// The factor of the ridge term of g.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RidgeForm {
    /// (λ/2)‖W‖².
    #[default]
    Half,
    /// λ‖W‖².
    Full,
}

/// Linear solver of the exact least-squares solves (g* and the v block of L_γ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExactSolve {
    /// Warm-started CG when the ridge is positive and there are at least 200 features (where
    /// the N m² weighted Gram of a direct solve dominates an iteration); direct otherwise.
    #[default]
    Auto,
    /// Weighted Gram and Cholesky (or eigen pseudo-inverse when λ = 0) at every new u.
    Direct,
    /// Conjugate gradients warm-started on the path of earlier solutions and preconditioned by
    /// Cholesky factors from an earlier u, to a relative residual of 1e-12 (least squares with
    /// λ > 0). Results agree with the direct solve to about 1e-11; a problem instance shared by
    /// concurrent runs gives results that agree to that level but not bit for bit, and slower
    /// (the warm start then fits a path that mixes the runs).
    WarmCg,
}

impl Default for CleaningSettings {
    fn default() -> Self {
        CleaningSettings {
            loss: CleaningLoss::LeastSquares,
            lambda: 0.0,
            bound: 10.0,
            u_scale: 1.0,
            exact_solve: ExactSolve::Auto,
            scale_features: false,
            loss_scale: LossScale::Sum,
            ridge_form: RidgeForm::Half,
            u_start: 0.0,
        }
    }
}
