//! The defaults rule of hyper-cleaning: every setting from the training and validation data
//! (never the test labels or the corruption mask), designed on a NumPy prototype
//! (`bench/defaults/`) and described in docs/cleaning.md, "Defaults and how each is chosen".
//!
//! 1. Solver: Gauss–Seidel PBGD with the exact v block and the exact g*, u_scale 1, box 10,
//!    start u = 0.
//! 2. Features divided by their standard deviation over the training samples (no centring).
//! 3. λ = 0.1 · N on the scaled features.
//! 4. γ = 100 · N'/N.
//! 5. u step α = 0.1 / rms(∇_u φ(0)), φ(u) = min_W L_γ(u, W): one exact solve at u = 0.
//! 6. Stop when the records' `grad_u` falls to ½ of its first value (1000 iterations at most,
//!    a record every iteration).
//!
//! The start's W is the exact v block at u = 0 (the solve of step 5) rather than 0: the first
//! Gauss–Seidel step overwrites W with that same solve, so the iterates are those of a W = 0
//! start, but the first record's `grad_u` is then ‖∇_u φ(0)‖, the reference of the stop rule
//! (at W = 0 it would measure the distance of W = 0 from the v block instead).
//!
//! Softmax cross-entropy has the exact v block too (Newton-CG, softmax.rs) when λ > 0, which
//! step 3 gives: the rule is then the same, with Newton-CG solves for the v block and g*.
//! Without a ridge (λ = 0 given) there is none: the rule uses Gauss–Seidel PBGD with 10
//! gradient steps on W per iteration (step c / (ℓ_f + γ ℓ_g), c = 0.5, the problem's
//! smoothness estimates) and the warm gradient inner loop, takes α from the gradient at the
//! start (u = 0, W = 0) and has no relative stop (the first record does not measure ∇φ): it
//! runs to the iteration guard. Not measured; give a `[solver]` for that case.

use super::{Cleaning, CleaningData, CleaningLoss, CleaningSettings, ExactSolve};
use crate::error::{Error, Result};
use crate::linalg::norm;
use crate::penalty::Penalty;
use crate::problem::Problem;
use crate::run::RunOptions;
use crate::solvers::{Pbgd, StepRule};
use serde::Serialize;

/// λ per training sample on the scaled features.
pub const LAMBDA_PER_SAMPLE: f64 = 0.1;
/// γ times N / N'.
pub const GAMMA_RATIO: f64 = 100.0;
/// RMS of the first u step in logit units (α = this / rms(∇_u φ(0))).
pub const U_STEP_RMS: f64 = 0.1;
/// Stop when `grad_u` ≤ this times its first value.
pub const GRAD_U_REL_TOL: f64 = 0.5;
/// Iteration guard.
pub const MAX_ITER: usize = 1000;
/// Box on the logits.
pub const BOUND: f64 = 10.0;
/// Gradient steps on W per iteration without an exact v block (softmax with λ = 0).
pub const SOFTMAX_V_STEPS: usize = 10;

/// σ_j of each column over the rows of `x` (population standard deviation; 1 where it is 0 or
/// not finite, so constant features stay as they are).
pub fn column_scales(x: faer::MatRef<'_, f64>) -> Vec<f64> {
    let n = x.nrows().max(1) as f64;
    (0..x.ncols())
        .map(|j| {
            let mean = (0..x.nrows()).map(|i| x[(i, j)]).sum::<f64>() / n;
            let var = (0..x.nrows())
                .map(|i| (x[(i, j)] - mean).powi(2))
                .sum::<f64>()
                / n;
            let s = var.sqrt();
            if s > 0.0 && s.is_finite() { s } else { 1.0 }
        })
        .collect()
}

/// The data with every split's features divided by the training columns' σ_j, and the σ_j
/// (unchanged data and None when `on` is false).
pub(super) fn scale_features(mut data: CleaningData, on: bool) -> (CleaningData, Option<Vec<f64>>) {
    if !on {
        return (data, None);
    }
    let sig = column_scales(data.train.x.as_ref());
    for split in [&mut data.train, &mut data.val, &mut data.test] {
        for (j, &s) in sig.iter().enumerate() {
            for i in 0..split.x.nrows() {
                split.x[(i, j)] /= s;
            }
        }
    }
    (data, Some(sig))
}

/// Settings given explicitly, each replacing the rule's value for that setting only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// The loss (rule: least squares).
    pub loss: Option<CleaningLoss>,
    /// λ, on the features the problem solves on (rule: 0.1 · N on the scaled features).
    pub lambda: Option<f64>,
    /// Feature scaling (rule: on).
    pub scale_features: Option<bool>,
    /// Box on u (rule: 10).
    pub bound: Option<f64>,
    /// u_scale (rule: 1).
    pub u_scale: Option<f64>,
    /// Linear solver of the exact solves (rule: auto).
    pub exact_solve: Option<ExactSolve>,
    /// γ (rule: 100 · N'/N).
    pub gamma: Option<f64>,
    /// Fixed u step (rule: 0.1 / rms(∇_u φ(0))).
    pub u_step: Option<f64>,
    /// Relative stop on `grad_u` (rule: 0.5; 0 turns it off).
    pub grad_u_rel_tol: Option<f64>,
    /// Iteration guard (rule: 1000).
    pub max_iter: Option<usize>,
}

/// One setting: its value and how it was obtained.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Derived {
    /// Setting name, as the config keys spell it.
    pub setting: String,
    /// Its value.
    pub value: String,
    /// How it was derived (or "given" when set explicitly).
    pub how: String,
    /// False when the value was given explicitly.
    pub from_rule: bool,
}

impl Derived {
    fn new(setting: &str, value: String, how: String, from_rule: bool) -> Self {
        Derived {
            setting: setting.into(),
            value,
            how,
            from_rule,
        }
    }

    /// One line for reports: `setting = value: how`.
    pub fn line(&self) -> String {
        format!("{} = {}: {}", self.setting, self.value, self.how)
    }
}

/// What the rule chose for one data set: the problem's settings, the solver's γ and u step,
/// the start and the stop.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Settings of the problem.
    pub settings: CleaningSettings,
    /// γ.
    pub gamma: f64,
    /// Fixed u step α.
    pub u_step: f64,
    /// rms(∇_u L_γ) at the start (∇_u φ(0) for least squares), from which α is derived.
    pub first_grad_u_rms: f64,
    /// Start point (u = 0; W the exact v block at u = 0 where there is one, else 0).
    pub start: (Vec<f64>, Vec<f64>),
    /// Whether the problem has the exact v block (least squares; softmax cross-entropy with a
    /// ridge, by Newton-CG): the rule's solver uses it.
    pub exact_v: bool,
    /// Relative stop on `grad_u` (None: off).
    pub grad_u_rel_tol: Option<f64>,
    /// Iteration guard.
    pub max_iter: usize,
    /// Every setting with how it was derived, in the order of the rule.
    pub derived: Vec<Derived>,
}

fn pick<T: Copy>(given: Option<T>, rule: T) -> (T, bool) {
    match given {
        Some(x) => (x, false),
        None => (rule, true),
    }
}

impl Defaults {
    /// The problem's settings from the training data (and the overrides): scaling, λ, box,
    /// u_scale, loss. Reads the training features and the sample counts only.
    pub fn settings(data: &CleaningData, ov: &Overrides) -> (CleaningSettings, Vec<Derived>) {
        let n = data.train.len();
        let m = data.features().max(1);
        let (loss, loss_rule) = pick(ov.loss, CleaningLoss::LeastSquares);
        let (scale, scale_rule) = pick(ov.scale_features, true);
        let lambda_rule = if scale {
            LAMBDA_PER_SAMPLE * n as f64
        } else {
            // Without scaling: the same ridge relative to the mean squared feature,
            // 0.1 · trace(XᵀX) / m (equal to 0.1 · N on features of unit second moment).
            let x = &data.train.x;
            let tr: f64 = (0..x.ncols())
                .map(|j| (0..x.nrows()).map(|i| x[(i, j)].powi(2)).sum::<f64>())
                .sum();
            LAMBDA_PER_SAMPLE * tr / m as f64
        };
        let (lambda, lambda_rule_used) = pick(ov.lambda, lambda_rule);
        let (bound, bound_rule) = pick(ov.bound, BOUND);
        let (u_scale, u_scale_rule) = pick(ov.u_scale, 1.0);
        let (exact_solve, _) = pick(ov.exact_solve, ExactSolve::Auto);
        let given = |rule: bool, how: String| if rule { how } else { "given".into() };
        let derived = vec![
            Derived::new(
                "loss",
                match loss {
                    CleaningLoss::LeastSquares => "least-squares",
                    CleaningLoss::SoftmaxCrossEntropy => "softmax-cross-entropy",
                }
                .into(),
                given(
                    loss_rule,
                    "least squares: closed-form v block and g*".into(),
                ),
                loss_rule,
            ),
            Derived::new(
                "scale_features",
                scale.to_string(),
                given(
                    scale_rule,
                    "each feature divided by its standard deviation over the training samples (1 where it is 0), no centring; the model is mapped back to the data's units".into(),
                ),
                scale_rule,
            ),
            Derived::new(
                "lambda",
                format!("{lambda}"),
                given(
                    lambda_rule_used,
                    if scale {
                        format!("{LAMBDA_PER_SAMPLE} · N on the scaled features, N = {n} training samples")
                    } else {
                        format!("{LAMBDA_PER_SAMPLE} · trace(XᵀX) / m on the unscaled features (N = {n}, m = {m})")
                    },
                ),
                lambda_rule_used,
            ),
            Derived::new(
                "bound",
                format!("{bound}"),
                given(bound_rule, "box |u_i| ≤ 10 on the logits".into()),
                bound_rule,
            ),
            Derived::new(
                "u_scale",
                format!("{u_scale}"),
                given(u_scale_rule, "weights sigmoid(u), no rescaling".into()),
                u_scale_rule,
            ),
        ];
        let settings = CleaningSettings {
            loss,
            lambda,
            bound,
            u_scale,
            exact_solve,
            scale_features: scale,
            ..CleaningSettings::default()
        };
        (settings, derived)
    }

    /// Builds the problem with the rule's settings and derives γ, the u step, the start and
    /// the stop on it. Uses the training and validation data only.
    pub fn build(data: CleaningData, ov: &Overrides) -> Result<(Cleaning, Defaults)> {
        let (settings, mut derived) = Self::settings(&data, ov);
        let (n, n_val) = (data.train.len(), data.val.len());
        let problem = Cleaning::new(data, settings)?;
        let (gamma, gamma_rule) = pick(ov.gamma, GAMMA_RATIO * n_val as f64 / n as f64);
        crate::error::check_positive("gamma", gamma)?;
        let exact_v = problem.has_penalty_v_solution();
        let (du, dv) = (problem.dim_u(), problem.dim_v());
        let u0 = vec![0.0; du];
        let mut v0 = vec![0.0; dv];
        let mut w = vec![0.0; dv];
        if exact_v && !problem.penalty_v_solution(&u0, gamma, &mut v0) {
            return Err(Error::Unsupported(
                "the defaults rule: the exact v block failed at u = 0 (singular system); give lambda > 0".into(),
            ));
        }
        if problem.has_ll_solution() {
            if !problem.ll_solution(&u0, &mut w) {
                return Err(Error::Unsupported(
                    "the defaults rule: the lower-level solve failed at u = 0 (singular system); give lambda > 0".into(),
                ));
            }
        } else {
            w = problem.fit(&problem.weights(&u0))?;
        }
        let mut pen = Penalty::new(du, dv);
        pen.eval(&problem, &u0, &v0, &w, gamma, true, false);
        let rms = norm(&pen.du) / (du.max(1) as f64).sqrt();
        // A zero gradient: the start is stationary and the stop rule ends the run at its
        // first record; any finite step will do.
        let alpha_rule = if rms > 0.0 && rms.is_finite() {
            U_STEP_RMS / rms
        } else {
            1.0
        };
        let (u_step, step_rule) = pick(ov.u_step, alpha_rule);
        crate::error::check_positive("u_step", u_step)?;
        let tol_rule = exact_v.then_some(GRAD_U_REL_TOL);
        let (tol, tol_rule_used) = match ov.grad_u_rel_tol {
            Some(t) => (Some(t), false),
            None => (tol_rule, true),
        };
        let given = |rule: bool, how: String| if rule { how } else { "given".into() };
        derived.push(Derived::new(
            "solver",
            if exact_v {
                "Gauss–Seidel PBGD, exact v block, exact g*".into()
            } else {
                format!("Gauss–Seidel PBGD, {SOFTMAX_V_STEPS} gradient steps on W per iteration, warm gradient inner loop")
            },
            if exact_v {
                "W = argmin_W L_γ(u, W) at every iteration (closed form for least squares, Newton-CG for softmax cross-entropy), then a projected step on u".into()
            } else {
                "no exact v block (softmax without a ridge): the best available without one (not measured)".into()
            },
            true,
        ));
        derived.push(Derived::new(
            "gamma",
            format!("{gamma}"),
            given(
                gamma_rule,
                format!("{GAMMA_RATIO} · N'/N = {GAMMA_RATIO} · {n_val}/{n}"),
            ),
            gamma_rule,
        ));
        derived.push(Derived::new(
            "u_alpha",
            format!("{u_step:.6e}"),
            given(
                step_rule,
                if rms > 0.0 && rms.is_finite() {
                    format!(
                        "{U_STEP_RMS} / rms(∇_u L_γ at the start) = {U_STEP_RMS} / {rms:.6e}{}",
                        if exact_v {
                            " (one exact solve at u = 0: ∇φ(0))"
                        } else {
                            " (at W = 0)"
                        }
                    )
                } else {
                    "the gradient at the start is 0: the start is stationary, the run stops at its first record".into()
                },
            ),
            step_rule,
        ));
        derived.push(Derived::new(
            "grad_u_rel_tol",
            tol.map_or("off".into(), |t| format!("{t}")),
            given(
                tol_rule_used,
                if exact_v {
                    format!("stop when the records' grad_u ≤ {GRAD_U_REL_TOL} × its value at the first record (∇φ(0)); a record every iteration")
                } else {
                    "off: without an exact v block the first record does not measure ∇φ".into()
                },
            ),
            tol_rule_used,
        ));
        let (max_iter, iter_rule) = pick(ov.max_iter, MAX_ITER);
        derived.push(Derived::new(
            "max_iter",
            max_iter.to_string(),
            given(
                iter_rule,
                "a guard; the relative stop ends the run first".into(),
            ),
            iter_rule,
        ));
        derived.push(Derived::new(
            "start",
            if exact_v {
                "u = 0, W = argmin_W L_γ(0, W)".into()
            } else {
                "u = 0, W = 0".into()
            },
            "every weight ½; W is overwritten by the first v block, so only the first record sees it".into(),
            true,
        ));
        let start = (u0, if exact_v { v0 } else { vec![0.0; dv] });
        Ok((
            problem,
            Defaults {
                settings,
                gamma,
                u_step,
                first_grad_u_rms: rms,
                start,
                exact_v,
                grad_u_rel_tol: tol,
                max_iter,
                derived,
            },
        ))
    }

    /// The rule's solver: Gauss–Seidel PBGD at γ with the fixed u step; the exact v block
    /// where the problem has one, else gradient steps on W.
    pub fn solver(&self) -> Pbgd {
        let p = Pbgd::gauss_seidel(self.gamma);
        if self.exact_v {
            p.with_exact_v(StepRule::Fixed(self.u_step))
        } else {
            p.with_v_steps(SOFTMAX_V_STEPS)
                .with_u_step(StepRule::Fixed(self.u_step))
        }
    }

    /// The rule's run options for `seed`: the iteration guard, a record every iteration and
    /// the relative stop on `grad_u`.
    pub fn run_options(&self, seed: u64) -> RunOptions {
        RunOptions {
            max_iter: self.max_iter,
            record_every: 1,
            grad_u_rel_tol: self.grad_u_rel_tol,
            seed,
            ..RunOptions::default()
        }
    }

    /// One line per setting: value and how it was derived.
    pub fn lines(&self) -> Vec<String> {
        self.derived.iter().map(Derived::line).collect()
    }
}
