//! Data hyper-cleaning (sample reweighting), method.md section 7.
//!
//! Upper-level variable: per-sample logits u ∈ R^N, weights ψ_i = sigmoid(s·u_i) (s =
//! `u_scale`, 1 by default). Lower-level variable: a linear model W ∈ R^{m×n} (column-major
//! flat). With per-sample losses ℓ (least squares on one-hot labels, or softmax
//! cross-entropy):
//!
//! ```text
//! g(u, W) = Σ_i ψ_i ℓ(Wᵀx_i, y_i) + (λ/2) ‖W‖²_F      (training set, weighted)
//! f(u, W) = Σ_j ℓ(Wᵀx_j, y_j)                          (clean validation set)
//! ```
//!
//! with ℓ(z, y) = ½‖z − y‖² (the paper's model) or log Σ_k e^{z_k} − z_y. The constraint set for
//! u is the box |u_i| ≤ B (the paper does not give one; see the spec).
//!
//! Data regimes: the paper's (stacked train + validation Gram diagonal, λ = 0, where f* = 0 is
//! certified), Gaussian class clusters with label flips, Fashion-MNIST and user files (loaders in
//! [`crate::data`]).
//!
//! The files, by what they hold:
//! - `data`: splits, the checked data set, the paper-regime and Gaussian-cluster generators,
//!   label corruption;
//! - `settings`: the loss, the ridge λ, the box, u_scale, feature scaling and how the exact
//!   solves are computed;
//! - `defaults`: the defaults rule (settings, solver and stop from the training and validation
//!   data);
//! - `loss`: per-sample losses (least squares, softmax cross-entropy), the weighted training
//!   objective and the exact Hessian-vector product;
//! - `exact`: the lower-level fit W(ψ): direct ridge solves on the weighted Gram (least
//!   squares), accelerated gradient descent (cross-entropy);
//! - `warm`: the warm-started preconditioned CG behind the exact solves at Fashion-MNIST size;
//! - `fused`: the fused least-squares evaluation of L_γ (one pass over X_trn);
//! - `metrics`: validation and test metrics, cleaning scores, unweighted and oracle references;
//! - this file: the [`Cleaning`] problem, its constructor and its [`Problem`] implementation.

use crate::error::{Error, Result};
use crate::limits::Footprint;
use crate::problem::{PenaltyOptimum, Problem};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use std::sync::{Mutex, OnceLock};

mod benchopt;
mod data;
pub mod defaults;
mod exact;
mod fused;
mod loss;
mod metrics;
mod settings;
mod softmax;
mod warm;

pub use benchopt::{BenchoptConfig, benchopt_settings, load_benchopt_cleaning};
pub use data::{CleaningData, ClusterConfig, Split, corrupt_labels};
pub use loss::sigmoid;
pub use metrics::{ModelEval, Reference};
pub use settings::{CleaningLoss, CleaningSettings, ExactSolve, LossScale, RidgeForm};
pub use softmax::{NewtonCounts, SOLVE_RTOL as NEWTON_RTOL};

use exact::{WeightedSystem, flatten, solve_ridge};
use fused::EvalWork;
use loss::{Rows, one_hot};
use warm::WarmSolves;

/// The data hyper-cleaning problem.
#[derive(Debug)]
pub struct Cleaning {
    data: CleaningData,
    /// The settings in the internal sum form: g = Σ ψ_i ℓ_i + (λ/2)‖W‖² with this λ (see
    /// `sg`); equal to `user` with the default loss scale and ridge form.
    s: CleaningSettings,
    /// The settings as given.
    user: CleaningSettings,
    /// g and f as given are `sg` and `sf` times their sum forms (1, or 1/N and 1/N').
    sg: f64,
    sf: f64,
    /// State of the Newton-CG solves (softmax cross-entropy).
    ce: Mutex<softmax::CeState>,
    y_trn: Mat<f64>,
    y_val: Mat<f64>,
    y_test: Mat<f64>,
    certified: bool,
    offdiag: f64,
    cache: Mutex<Option<(Vec<f64>, Vec<f64>)>>,
    system_cache: Mutex<Option<WeightedSystem>>,
    val_system: OnceLock<(Mat<f64>, Mat<f64>)>,
    work: crate::kernels::Pool<EvalWork>,
    /// X_trnᵀ: the training features stored by rows for the fused passes, whose row blocks
    /// are then contiguous (faster than strided pieces of every column).
    rows_trn: Mat<f64>,
    /// f as the fused passes read it (least squares only): the R of a QR of X_val when
    /// N' ≥ m, a triangle of m² / 2 entries instead of N' m.
    ls_val: Option<crate::kernels::LsData>,
    /// State of the warm-started exact solves.
    warm: Mutex<WarmSolves>,
    /// Refreshes, preconditioned solves and their iterations, for reports.
    solve_counts: [std::sync::atomic::AtomicUsize; 3],
    val_full: OnceLock<(Mat<f64>, Mat<f64>)>,
    /// σ_j the features were divided by (`scale_features`), to map the model back.
    col_scale: Option<Vec<f64>>,
}

/// Tolerance of the off-diagonal Gram test that certifies the paper's regime.
pub const ORTHOGONALITY_TOL: f64 = 1e-10;

impl Cleaning {
    /// The problem on `data` with `settings`. Checks λ ≥ 0, bound > 0, u_scale > 0. Certifies
    /// f* = 0 (the paper's regime) when the loss is least squares, λ = 0 and the stacked
    /// train + validation samples are mutually orthogonal (relative off-diagonal Gram ≤ 1e-10,
    /// checked here only in that setting and when N + N' ≤ 4000).
    pub fn new(data: CleaningData, settings: CleaningSettings) -> Result<Self> {
        let user = settings;
        let mut s = settings;
        Self::footprint(
            data.train.len(),
            data.val.len(),
            data.test.len(),
            data.features(),
            data.classes,
            s.loss,
        )
        .check_global()?;
        for (what, split) in [
            ("the training features", &data.train),
            ("the validation features", &data.val),
            ("the test features", &data.test),
        ] {
            crate::problem::check_data_scale(what, split.x.as_ref())?;
        }
        let (data, col_scale) = defaults::scale_features(data, s.scale_features);
        if !(s.lambda.is_finite() && s.lambda >= 0.0) {
            return Err(Error::setting(
                "lambda",
                s.lambda,
                "the ridge must be finite and >= 0",
            ));
        }
        crate::error::check_positive("bound", s.bound)?;
        crate::error::check_positive("u_scale", s.u_scale)?;
        crate::error::check_finite("u_start", &[s.u_start])?;
        // The internal sum form: g = sg (Σ ψ_i ℓ_i + (λ'/2)‖W‖²) with λ' = λ_eff / sg.
        let (sg, sf) = match s.loss_scale {
            LossScale::Sum => (1.0, 1.0),
            LossScale::Mean => (
                1.0 / data.train.len().max(1) as f64,
                1.0 / data.val.len().max(1) as f64,
            ),
        };
        if s.ridge_form == RidgeForm::Full {
            s.lambda *= 2.0;
        }
        if sg != 1.0 {
            s.lambda /= sg;
        }
        if s.exact_solve == ExactSolve::WarmCg
            && (s.loss != CleaningLoss::LeastSquares || s.lambda <= 0.0)
        {
            return Err(Error::setting(
                "exact_solve",
                "warm-cg",
                "warm-started CG needs the least-squares loss and lambda > 0 (positive definite systems); use \"auto\" or \"direct\"",
            ));
        }
        let n = data.classes;
        // The Gram check only matters where it can certify (least squares, λ = 0).
        let small = data.train.len() + data.val.len() <= 4000
            && s.loss == CleaningLoss::LeastSquares
            && s.lambda == 0.0;
        let offdiag = if small {
            data.stacked_gram_offdiag()
        } else {
            f64::NAN
        };
        let certified =
            s.loss == CleaningLoss::LeastSquares && s.lambda == 0.0 && offdiag <= ORTHOGONALITY_TOL;
        let y_val = one_hot(&data.val.labels, n);
        Ok(Cleaning {
            rows_trn: data.train.x.transpose().to_owned(),
            ls_val: (s.loss == CleaningLoss::LeastSquares)
                .then(|| crate::kernels::LsData::new(data.val.x.as_ref(), y_val.as_ref())),
            y_trn: one_hot(&data.train.labels, n),
            y_val,
            y_test: one_hot(&data.test.labels, n),
            data,
            s,
            user,
            sg,
            sf,
            ce: Mutex::default(),
            certified,
            offdiag,
            cache: Mutex::new(None),
            system_cache: Mutex::new(None),
            val_system: OnceLock::new(),
            work: Default::default(),
            warm: Mutex::default(),
            solve_counts: Default::default(),
            val_full: OnceLock::new(),
            col_scale,
        })
    }

    /// The memory a problem with these sizes needs: the features with their generated and
    /// transposed copies, one-hot labels and scores, the model W with the iterates and gradients
    /// of a run, and (least squares) the m × m weighted Gram and factors of the exact solves.
    /// Checked by [`Cleaning::new`]; callers that generate or load data can check it first.
    pub fn footprint(
        n_trn: usize,
        n_val: usize,
        n_test: usize,
        m: usize,
        classes: usize,
        loss: CleaningLoss,
    ) -> Footprint {
        let samples = n_trn.saturating_add(n_val).saturating_add(n_test);
        let s = format!("`n_trn` = {n_trn} + `n_val` = {n_val} + `n_test` = {n_test} samples");
        let f = Footprint::new("the cleaning problem")
            .f64s(format!("{s} × `m` = {m} features"), 4, &[samples, m])
            .f64s(
                format!("{s} × `classes` = {classes} (one-hot labels and scores)"),
                4,
                &[samples, classes],
            )
            .f64s(
                format!(
                    "`m` = {m} × `classes` = {classes} (the model W, its iterates and gradients)"
                ),
                16,
                &[m, classes],
            )
            .f64s(
                format!("`n_trn` = {n_trn} (the weights u, their iterates and gradients)"),
                16,
                &[n_trn],
            );
        match loss {
            CleaningLoss::LeastSquares => f.f64s(
                format!("`m` = {m} (the m × m weighted Gram and factors of the exact solves)"),
                6,
                &[m, m],
            ),
            CleaningLoss::SoftmaxCrossEntropy => f,
        }
    }

    /// The σ_j each feature was divided by (`scale_features`), else None.
    pub fn feature_scales(&self) -> Option<&[f64]> {
        self.col_scale.as_deref()
    }

    /// The model W (column-major m × n, on the features the problem solves on) in the data's
    /// own units: diag(1/σ) W when the features were scaled, W itself otherwise. Class scores
    /// of a raw sample x are then x·W_user.
    pub fn model_in_data_units(&self, v: &[f64]) -> Vec<f64> {
        match &self.col_scale {
            None => v.to_vec(),
            Some(sig) => {
                let m = sig.len();
                v.iter().enumerate().map(|(k, &w)| w / sig[k % m]).collect()
            }
        }
    }

    /// The data.
    pub fn data(&self) -> &CleaningData {
        &self.data
    }

    /// The settings.
    pub fn settings(&self) -> &CleaningSettings {
        &self.user
    }

    /// True in the paper's regime, where f* = 0 and min L_γ = 0 are certified.
    pub fn certified(&self) -> bool {
        self.certified
    }

    /// Largest relative off-diagonal entry of the stacked train + validation Gram (NaN when
    /// it was not checked: more than 4000 samples, or a setting that cannot certify).
    pub fn gram_offdiag(&self) -> f64 {
        self.offdiag
    }

    /// Sample weights ψ_i = sigmoid(u_scale · u_i).
    pub fn weights(&self, u: &[f64]) -> Vec<f64> {
        u.iter().map(|&x| sigmoid(self.s.u_scale * x)).collect()
    }

    fn shape(&self) -> (usize, usize) {
        (self.data.features(), self.data.classes)
    }

    /// The start point used by the experiments: u = `u_start` (0 by default: every weight ½),
    /// W = 0.
    pub fn default_start(&self) -> (Vec<f64>, Vec<f64>) {
        (vec![self.s.u_start; self.dim_u()], vec![0.0; self.dim_v()])
    }
}

impl Problem for Cleaning {
    fn initial_point(&self, _seed: u64) -> Option<(Vec<f64>, Vec<f64>)> {
        Some(self.default_start())
    }
    fn name(&self) -> String {
        let loss = match self.s.loss {
            CleaningLoss::LeastSquares => "ls",
            CleaningLoss::SoftmaxCrossEntropy => "ce",
        };
        format!(
            "cleaning({loss}, N={}, m={}, n={}, lambda={}{})",
            self.data.train.len(),
            self.data.features(),
            self.data.classes,
            self.user.lambda,
            if self.col_scale.is_some() {
                ", features scaled"
            } else {
                ""
            }
        )
    }

    fn dim_u(&self) -> usize {
        self.data.train.len()
    }

    fn dim_v(&self) -> usize {
        self.data.features() * self.data.classes
    }

    fn f(&self, _u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        let sf = self.sf;
        let (m, n) = self.shape();
        let w = MatRef::from_column_major_slice(v, m, n);
        let mut z = self.scores(self.data.val.x.as_ref(), w);
        let losses = self.losses(
            &mut z,
            self.y_val.as_ref(),
            &self.data.val.labels,
            gv.is_some(),
        );
        if let Some(gu) = gu {
            gu.fill(0.0);
        }
        if let Some(gv) = gv {
            let gm = faer::MatMut::from_column_major_slice_mut(gv, m, n);
            matmul(
                gm,
                Accum::Replace,
                self.data.val.x.transpose(),
                z.as_ref(),
                sf,
                Par::Seq,
            );
        }
        sf * losses.iter().sum::<f64>()
    }

    fn g(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        let psi = self.weights(u);
        let sg = self.sg;
        let (val, losses) = match gv {
            Some(gv) => {
                let r = self.weighted_objective(&psi, v, Some(&mut *gv));
                scale(sg, gv);
                r
            }
            None => self.weighted_objective(&psi, v, None),
        };
        if let Some(gu) = gu {
            // ∂g/∂u_i = sg s ψ_i (1 − ψ_i) ℓ_i.
            for i in 0..gu.len() {
                gu[i] = sg * (self.s.u_scale * psi[i] * (1.0 - psi[i]) * losses[i]);
            }
        }
        sg * val
    }

    /// Least squares: one fused pass over X_trn for both models ([W, w] stacked; per-sample
    /// losses and Xᵀ Ψ R(W) while each block of rows is in cache) and one over X_val.
    fn penalty_eval(
        &self,
        u: &[f64],
        v: &[f64],
        w: &[f64],
        gamma: f64,
        du: Option<&mut [f64]>,
        dv: Option<&mut [f64]>,
    ) -> Option<[f64; 3]> {
        // In the internal sum form: L = sf (f_s + γ' (g_s(v) − g_s(w))), γ' = γ sg / sf.
        let (sg, sf) = (self.sg, self.sf);
        let gi = if sg == sf { gamma } else { gamma * sg / sf };
        let (mut du, mut dv) = (du, dv);
        let [f, g, gs] = match &self.ls_val {
            Some(ls_val) => self.with_work(|ws| {
                self.fused_penalty(
                    ws,
                    ls_val,
                    u,
                    v,
                    w,
                    gi,
                    du.as_deref_mut(),
                    dv.as_deref_mut(),
                )
            }),
            None => self.ce_penalty(u, v, w, gi, du.as_deref_mut(), dv.as_deref_mut()),
        };
        if sf != 1.0 {
            for d in [du, dv].into_iter().flatten() {
                scale(sf, d);
            }
        }
        Some([sf * f, sg * g, sg * gs])
    }

    fn batch_samples(&self) -> usize {
        self.data.train.len()
    }

    fn g_batch(
        &self,
        u: &[f64],
        v: &[f64],
        batch: &[usize],
        gu: Option<&mut [f64]>,
        gv: Option<&mut [f64]>,
    ) -> f64 {
        // Gather the batch's rows into a workspace, then the same GEMMs as the full g.
        let (m, n) = self.shape();
        let x = &self.data.train.x;
        let xb = Mat::from_fn(batch.len(), m, |k, j| x[(batch[k], j)]);
        let yb = Mat::from_fn(batch.len(), n, |k, j| self.y_trn[(batch[k], j)]);
        let labels: Vec<usize> = batch.iter().map(|&i| self.data.train.labels[i]).collect();
        let psi: Vec<f64> = batch
            .iter()
            .map(|&i| sigmoid(self.s.u_scale * u[i]))
            .collect();
        let scale = if batch.is_empty() {
            0.0
        } else {
            self.data.train.len() as f64 / batch.len() as f64
        };
        let rows = Rows {
            x: xb.as_ref(),
            y: yb.as_ref(),
            labels: &labels,
        };
        let sg = self.sg;
        let (val, losses) = match gv {
            Some(gv) => {
                let r = self.objective_on(rows, &psi, scale, v, Some(&mut *gv));
                self::scale(sg, gv);
                r
            }
            None => self.objective_on(rows, &psi, scale, v, None),
        };
        let val = sg * val;
        if let Some(gu) = gu {
            // (N/|B|) s ψ_i (1 − ψ_i) ℓ_i on the batch, 0 elsewhere (accumulated, so a
            // repeated index counts as often as it is drawn).
            gu.fill(0.0);
            for (k, &i) in batch.iter().enumerate() {
                gu[i] += sg * (scale * self.s.u_scale * psi[k] * (1.0 - psi[k]) * losses[k]);
            }
        }
        val
    }

    fn ll_solution(&self, u: &[f64], w: &mut [f64]) -> bool {
        if self.s.loss != CleaningLoss::LeastSquares {
            return self.ce_solvable() && self.ce_solution(u, None, w, None);
        }
        {
            let c = self.cache.lock().expect("cache lock");
            if let Some((cu, cw)) = c.as_ref()
                && cu.as_slice() == u
            {
                w.copy_from_slice(cw);
                return true;
            }
        }
        let sol = if self.uses_pcg() {
            let mut sol = self.cached_w();
            self.solve_exact(u, None, &mut sol, None).map(|()| sol)
        } else {
            let sys = self.system_at(u);
            solve_ridge(
                "weighted ridge system X^T diag(psi) X + lambda I",
                sys.0.clone(),
                sys.1.as_ref(),
                self.s.lambda,
            )
            .map(|x| flatten(x.as_ref()))
        };
        match sol {
            Ok(sol) => {
                w.copy_from_slice(&sol);
                *self.cache.lock().expect("cache lock") = Some((u.to_vec(), sol));
                true
            }
            Err(_) => false,
        }
    }

    fn has_ll_solution(&self) -> bool {
        self.s.loss == CleaningLoss::LeastSquares || self.ce_solvable()
    }

    fn penalty_v_solution(&self, u: &[f64], gamma: f64, v: &mut [f64]) -> bool {
        // argmin f + γ g = argmin f_s + γ' g_s in the internal sum form.
        let gamma = if self.sg == self.sf {
            gamma
        } else {
            gamma * self.sg / self.sf
        };
        if self.s.loss != CleaningLoss::LeastSquares {
            if !self.ce_solvable() {
                return false;
            }
            let mut w = vec![0.0; self.dim_v()];
            return self.ce_solution(u, Some(gamma), &mut w, Some(v));
        }
        if self.uses_pcg() {
            // Both systems in one block solve; g* at this u is then a cache hit.
            let mut w = self.cached_w();
            if self.solve_exact(u, Some(gamma), &mut w, Some(v)).is_err() {
                return false;
            }
            *self.cache.lock().expect("cache lock") = Some((u.to_vec(), w));
            return true;
        }
        // (X_valᵀX_val + γ XᵀΨX + γλ I) W = X_valᵀY_val + γ XᵀΨY: the same weighted Gram as g*.
        let sys = self.system_at(u);
        let (gv, bv) = self.val_system();
        let a = gv + &sys.0 * faer::Scale(gamma);
        let b = bv + &sys.1 * faer::Scale(gamma);
        match solve_ridge(
            "penalty v-block system X_val^T X_val + gamma (X^T diag(psi) X + lambda I)",
            a,
            b.as_ref(),
            gamma * self.s.lambda,
        ) {
            Ok(sol) => {
                v.copy_from_slice(&flatten(sol.as_ref()));
                true
            }
            Err(_) => false,
        }
    }

    fn has_penalty_v_solution(&self) -> bool {
        self.s.loss == CleaningLoss::LeastSquares || self.ce_solvable()
    }

    fn project_u(&self, u: &mut [f64]) {
        let b = self.s.bound;
        for x in u.iter_mut() {
            *x = x.clamp(-b, b);
        }
    }

    fn is_constrained(&self) -> bool {
        true
    }

    fn bilevel_optimum(&self) -> Option<f64> {
        self.certified.then_some(0.0)
    }

    fn penalty_optimum(&self, _gamma: f64) -> Option<PenaltyOptimum> {
        // Paper's regime: some W interpolates train and validation, so L_γ = f + γ(g − g*)
        // reaches 0 for every u; the minimizer is not unique.
        self.certified.then_some(PenaltyOptimum {
            value: 0.0,
            point: None,
        })
    }

    fn assess(&self, u: &[f64], v: &[f64]) -> Result<Option<crate::solution::Assessment>> {
        self.assessment(u, v).map(Some)
    }

    fn solution_views(&self, u: &[f64], v: &[f64]) -> Vec<crate::solution::View> {
        use crate::solution::View;
        let (m, n) = self.shape();
        let psi = self.weights(u);
        let flagged = psi.iter().map(|&w| w < 0.5).collect();
        let mut views = vec![
            View::vector(
                "sample_weights",
                "ψ_i = sigmoid(u_scale · u_i), one per training sample in input order",
                psi,
            ),
            View::mask(
                "flagged",
                "true for the training samples the solution distrusts (ψ_i < ½)",
                flagged,
            ),
            View::matrix(
                "model",
                if self.col_scale.is_some() {
                    "the linear model W (features × classes) in the data's own units (mapped back from the scaled features the problem solves on, W = diag(1/σ) W_scaled): class scores are x·W"
                } else {
                    "the linear model W (features × classes): class scores are x·W"
                },
                m,
                n,
                &self.model_in_data_units(v),
            ),
        ];
        if let Some(names) = &self.data.class_names {
            views.push(View::names(
                "classes",
                "class names in code order: column k of the model scores class classes[k]",
                names.clone(),
            ));
        }
        views
    }

    fn metric_names(&self) -> Vec<String> {
        [
            "val_loss",
            "val_acc",
            "test_loss",
            "test_acc",
            "precision",
            "recall",
            "f1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn metrics(&self, u: &[f64], v: &[f64]) -> Vec<f64> {
        let e = self.evaluate(v);
        let (p, r, f1) = self.cleaning_scores(u);
        vec![e.val_loss, e.val_acc, e.test_loss, e.test_acc, p, r, f1]
    }

    /// Exact Hessian-vector product, for both losses (see [`Cleaning::exact_hvp`]).
    fn hvp(
        &self,
        level: crate::problem::Level,
        u: &[f64],
        v: &[f64],
        du: &[f64],
        dv: &[f64],
        hu: &mut [f64],
        hv: &mut [f64],
    ) {
        self.exact_hvp(level, u, v, du, dv, hu, hv);
        let c = match level {
            crate::problem::Level::Lower => self.sg,
            crate::problem::Level::Upper => self.sf,
        };
        if c != 1.0 {
            scale(c, hu);
            scale(c, hv);
        }
    }
}

/// x ← c x.
fn scale(c: f64, x: &mut [f64]) {
    x.iter_mut().for_each(|a| *a *= c);
}
