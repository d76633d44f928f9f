//! Instances: the three regimes of method.md section 6, their sizes, seeded generation, and
//! the constructor from data, which checks the data, detects the regime from the ranks and
//! computes the closed forms (Z0, Z*, f*_full, g*_full, the row-space projector) once.

use super::optimum::{
    PINV_RTOL, frob, half_sq_residual, pinv_solve, pinv_solve_scaled, rank_of, singular_values,
};
use super::{DataNorms, RepLearning};
use crate::error::{Error, Result};
use crate::kernels::{LsData, Pool};
use crate::limits::Footprint;
use faer::{Mat, MatRef};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// Which of the three instance regimes of method.md section 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Regime {
    /// [X_trn; X_val] of full row rank (m ≥ N + N'): f*_full = 0 is the global optimum.
    CertifiedGlobal,
    /// max(N, N') ≤ m < N + N': f*_full > 0, the penalty bias is visible.
    Intermediate,
    /// N > m: the training loss cannot be fitted exactly (noisy targets from one teacher).
    General,
}

impl Regime {
    /// Short name for tables and file names.
    pub fn label(&self) -> &'static str {
        match self {
            Regime::CertifiedGlobal => "certified-global",
            Regime::Intermediate => "intermediate",
            Regime::General => "general",
        }
    }
}

/// Normalization of the two losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scaling {
    /// ½‖·‖²_F (the project's default).
    #[default]
    Sum,
    /// 1/(2N)‖·‖²_F for the training loss and 1/(2N')‖·‖²_F for the validation loss.
    /// Implemented by scaling the stored data by 1/√N (the closed forms then apply unchanged).
    Mean,
}

/// Sizes and noise of a generated instance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepSizes {
    /// Training samples N.
    pub n_trn: usize,
    /// Validation samples N'.
    pub n_val: usize,
    /// Input features m.
    pub m: usize,
    /// Hidden width h (must be ≥ m so full-rank backbones exist).
    pub h: usize,
    /// Outputs n.
    pub n: usize,
    /// Standard deviation of the label noise added to the teacher's targets.
    pub noise: f64,
    /// Condition number of the stacked features [X_trn; X_val] (≥ 1).
    pub cond: f64,
    /// Loss normalization.
    pub scaling: Scaling,
}

impl RepSizes {
    /// (N, N', m, h, n).
    pub fn shape(&self) -> (usize, usize, usize, usize, usize) {
        (self.n_trn, self.n_val, self.m, self.h, self.n)
    }
}

impl Default for RepSizes {
    fn default() -> Self {
        Self::default_for(Regime::CertifiedGlobal)
    }
}

impl RepSizes {
    /// The default sizes of the Figure 3 experiment for a regime.
    pub fn default_for(regime: Regime) -> Self {
        let (n_trn, n_val, m, h) = match regime {
            Regime::CertifiedGlobal => (20, 20, 50, 60),
            Regime::Intermediate => (20, 20, 30, 32),
            Regime::General => (60, 20, 30, 32),
        };
        RepSizes {
            n_trn,
            n_val,
            m,
            h,
            n: 5,
            noise: 0.3,
            cond: 2.0,
            scaling: Scaling::Sum,
        }
    }

    /// Small sizes for smoke tests.
    pub fn quick_for(regime: Regime) -> Self {
        let (n_trn, n_val, m, h) = match regime {
            Regime::CertifiedGlobal => (6, 6, 16, 18),
            Regime::Intermediate => (6, 6, 9, 10),
            Regime::General => (16, 6, 8, 10),
        };
        RepSizes {
            n_trn,
            n_val,
            m,
            h,
            n: 3,
            noise: 0.3,
            cond: 2.0,
            scaling: Scaling::Sum,
        }
    }

    /// Checks the sizes against the regime's definition.
    pub fn validate(&self, regime: Regime) -> Result<()> {
        let s = self;
        if s.n_trn == 0 || s.n_val == 0 || s.m == 0 || s.h == 0 || s.n == 0 {
            return Err(Error::setting(
                "representation-learning sizes",
                format!("{s:?}"),
                "every size must be at least 1",
            ));
        }
        if !(s.cond.is_finite() && s.cond >= 1.0) {
            return Err(Error::setting(
                "cond",
                s.cond,
                "the feature condition number must be finite and >= 1",
            ));
        }
        if !(s.noise.is_finite() && s.noise >= 0.0) {
            return Err(Error::setting("noise", s.noise, "must be finite and >= 0"));
        }
        if s.h < s.m {
            return Err(Error::setting(
                "h",
                s.h,
                format!(
                    "the hidden width must be >= m = {} so that full-rank backbones exist",
                    s.m
                ),
            ));
        }
        let ok = match regime {
            Regime::CertifiedGlobal => s.m >= s.n_trn.saturating_add(s.n_val) && s.h >= s.n,
            Regime::Intermediate => {
                s.n_trn.max(s.n_val) <= s.m && s.m < s.n_trn.saturating_add(s.n_val)
            }
            Regime::General => s.n_trn > s.m,
        };
        if !ok {
            let need = match regime {
                Regime::CertifiedGlobal => "m >= N + N' and h >= max(m, n)",
                Regime::Intermediate => "max(N, N') <= m < N + N'",
                Regime::General => "N > m",
            };
            return Err(Error::setting(
                "representation-learning sizes",
                format!(
                    "N={}, N'={}, m={}, h={}, n={}",
                    s.n_trn, s.n_val, s.m, s.h, s.n
                ),
                format!("the {} regime needs {need}", regime.label()),
            ));
        }
        Ok(())
    }
}

pub(super) fn gaussian(rng: &mut impl rand::Rng, r: usize, c: usize, scale: f64) -> Mat<f64> {
    let mut m = Mat::zeros(r, c);
    for j in 0..c {
        for i in 0..r {
            let x: f64 = StandardNormal.sample(rng);
            m[(i, j)] = scale * x;
        }
    }
    m
}

fn check_matrix(what: &str, a: &Mat<f64>) -> Result<()> {
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            if !a[(i, j)].is_finite() {
                return Err(Error::NonFinite {
                    what: format!("{what} (row {i}, column {j})"),
                    index: i + j * a.nrows(),
                });
            }
        }
    }
    Ok(())
}

impl RepLearning {
    /// A seeded instance of `regime` (data from the seed's Data stream).
    ///
    /// Features: the stacked matrix [X_trn; X_val] = U diag(σ) Vᵀ with U, V the orthonormal
    /// factors of Gaussian matrices (uniformly random singular vectors) and σ spaced evenly in
    /// [1, cond] (`sizes.cond`); its rows are then split into training and validation samples.
    /// Targets come from one teacher: Y = X Z_true + noise · E, Z_true and E standard Gaussian.
    /// The conditioning controls the iteration count (PBGD's rate is set by σ⁺_min(X_γ)).
    pub fn generate(regime: Regime, sizes: &RepSizes, seed: u64) -> Result<Self> {
        sizes.validate(regime)?;
        let s = sizes;
        Self::footprint(s.n_trn, s.n_val, s.m, s.h, s.n).check_global()?;
        let mut rng = crate::seeds::rng(seed, crate::seeds::Stream::Data);
        let rows = s.n_trn + s.n_val;
        let k = rows.min(s.m);
        let u = gaussian(&mut rng, rows, k, 1.0).qr().compute_thin_Q();
        let v = gaussian(&mut rng, s.m, k, 1.0).qr().compute_thin_Q();
        let sig = |i: usize| {
            if k == 1 {
                1.0
            } else {
                1.0 + (s.cond - 1.0) * i as f64 / (k - 1) as f64
            }
        };
        let us = Mat::from_fn(rows, k, |i, j| u[(i, j)] * sig(j));
        let x = &us * v.transpose();
        let x_trn = x.as_ref().get(..s.n_trn, ..).to_owned();
        let x_val = x.as_ref().get(s.n_trn.., ..).to_owned();
        let z_true = gaussian(&mut rng, s.m, s.n, 1.0);
        let e_trn = gaussian(&mut rng, s.n_trn, s.n, s.noise);
        let e_val = gaussian(&mut rng, s.n_val, s.n, s.noise);
        let y_trn = &x_trn * &z_true + e_trn;
        let y_val = &x_val * &z_true + e_val;
        let p = Self::from_data(x_trn, y_trn, x_val, y_val, s.h, s.scaling)?;
        if p.regime != regime {
            return Err(Error::data(
                format!("generated {} instance (seed {seed})", regime.label()),
                format!(
                    "the draw landed in the {} regime (rank deficiency); try another seed",
                    p.regime.label()
                ),
            ));
        }
        Ok(p)
    }

    /// The memory an instance with N = `n_trn`, N' = `n_val` training and validation samples,
    /// `m` features, hidden width `h` and `n` outputs needs: the data with its scaled copies,
    /// factors and projections, the m × m projectors and SVDs of the closed forms, and the layers
    /// W1 (m × h) and W2 (h × n) with the iterates, gradients and scratch of a run.
    pub fn footprint(n_trn: usize, n_val: usize, m: usize, h: usize, n: usize) -> Footprint {
        let rows = n_trn.saturating_add(n_val);
        let samples = format!("`n_trn` = {n_trn} + `n_val` = {n_val} samples");
        Footprint::new("the representation-learning problem")
            .f64s(format!("{samples} × `m` = {m} features"), 12, &[rows, m])
            .f64s(format!("{samples} × `n` = {n} outputs"), 8, &[rows, n])
            .f64s(
                format!("`m` = {m} (the m × m projectors and SVDs of the closed forms)"),
                6,
                &[m, m],
            )
            .f64s(format!("`m` = {m} × `h` = {h} (the layer W1)"), 12, &[m, h])
            .f64s(format!("`h` = {h} × `n` = {n} (the layer W2)"), 12, &[h, n])
    }

    /// An instance from data X_trn (N×m), Y_trn (N×n), X_val (N'×m), Y_val (N'×n) and the
    /// hidden width h (≥ m). Checks shapes and finiteness; the regime is detected from the
    /// ranks. Rank-deficient feature matrices are accepted with a warning (see
    /// [`RepLearning::warnings`]); a zero feature matrix is an error.
    pub fn from_data(
        x_trn: Mat<f64>,
        y_trn: Mat<f64>,
        x_val: Mat<f64>,
        y_val: Mat<f64>,
        h: usize,
        scaling: Scaling,
    ) -> Result<Self> {
        let (nt, m) = (x_trn.nrows(), x_trn.ncols());
        let nv = x_val.nrows();
        let n = y_trn.ncols();
        if nt == 0 || m == 0 || nv == 0 || n == 0 {
            return Err(Error::data(
                "representation-learning data",
                format!(
                    "empty matrix: X_trn is {nt}x{m}, X_val is {nv}x{}, Y_trn has {n} columns",
                    x_val.ncols()
                ),
            ));
        }
        if y_trn.nrows() != nt {
            return Err(Error::dim(
                "Y_trn (one row per training sample of X_trn)",
                format!("{nt} rows"),
                format!("{} rows", y_trn.nrows()),
            ));
        }
        if x_val.ncols() != m {
            return Err(Error::dim(
                "X_val (same features as X_trn)",
                format!("{m} columns"),
                format!("{} columns", x_val.ncols()),
            ));
        }
        if y_val.nrows() != nv || y_val.ncols() != n {
            return Err(Error::dim(
                "Y_val (one row per validation sample, same outputs as Y_trn)",
                format!("{nv}x{n}"),
                format!("{}x{}", y_val.nrows(), y_val.ncols()),
            ));
        }
        for (name, a) in [
            ("X_trn", &x_trn),
            ("Y_trn", &y_trn),
            ("X_val", &x_val),
            ("Y_val", &y_val),
        ] {
            check_matrix(name, a)?;
            crate::problem::check_data_scale(name, a.as_ref())?;
        }
        if h < m {
            return Err(Error::setting(
                "h",
                h,
                format!(
                    "the hidden width must be >= m = {m} (number of features) so that full-rank backbones exist and the closed-form optima apply"
                ),
            ));
        }
        Self::footprint(nt, nv, m, h, n).check_global()?;
        let raw = [x_trn.clone(), y_trn.clone(), x_val.clone(), y_val.clone()];
        let (ct, cv) = match scaling {
            Scaling::Sum => (1.0, 1.0),
            Scaling::Mean => ((1.0 / nt as f64).sqrt(), (1.0 / nv as f64).sqrt()),
        };
        let x_trn = x_trn * faer::Scale(ct);
        let y_trn = y_trn * faer::Scale(ct);
        let x_val = x_val * faer::Scale(cv);
        let y_val = y_val * faer::Scale(cv);

        let mut warnings = Vec::new();
        let st = singular_values("X_trn", x_trn.as_ref())?;
        let sv = singular_values("X_val", x_val.as_ref())?;
        let (rt, rv) = (rank_of(&st), rank_of(&sv));
        if rt == 0 || rv == 0 {
            return Err(Error::data(
                "representation-learning data",
                "X_trn or X_val is zero (rank 0): the features carry no information",
            ));
        }
        if rt < nt.min(m) {
            warnings.push(format!("X_trn has rank {rt} < min(N, m) = {}: duplicated or collinear samples or features; the closed forms use pseudo-inverses with relative tolerance {PINV_RTOL:e}", nt.min(m)));
        }
        if rv < nv.min(m) {
            warnings.push(format!("X_val has rank {rv} < min(N', m) = {}: duplicated or collinear samples or features; the closed forms use pseudo-inverses with relative tolerance {PINV_RTOL:e}", nv.min(m)));
        }
        let stacked = Mat::from_fn(nt + nv, m, |i, j| {
            if i < nt {
                x_trn[(i, j)]
            } else {
                x_val[(i - nt, j)]
            }
        });
        let ss = singular_values("[X_trn; X_val]", stacked.as_ref())?;
        let rs = rank_of(&ss);
        let certified = rs == nt + nv;
        let regime = if certified {
            Regime::CertifiedGlobal
        } else if nt <= m {
            Regime::Intermediate
        } else {
            Regime::General
        };

        // Z0 = X_trn⁺ Y_trn, P = I − X_trn⁺ X_trn, Z* = Z0 + P (X_val P)⁺ (Y_val − X_val Z0).
        let z0 = pinv_solve(x_trn.as_ref(), y_trn.as_ref())?;
        let pxt = pinv_solve(x_trn.as_ref(), x_trn.as_ref())?;
        let proj = Mat::<f64>::identity(m, m) - pxt;
        let xvp = &x_val * &proj;
        let rhs = &y_val - &x_val * &z0;
        let mut c = Mat::zeros(m, n);
        pinv_solve_scaled(xvp.as_ref(), rhs.as_ref(), c.as_mut(), Some(sv[0]))?;
        let z_star = &z0 + &proj * &c;
        let f_full = half_sq_residual(x_val.as_ref(), z_star.as_ref(), y_val.as_ref());
        let g_full = half_sq_residual(x_trn.as_ref(), z0.as_ref(), y_trn.as_ref());
        let f_zero = 0.5 * frob(y_val.as_ref()).powi(2);
        // Π = S⁺ S projects onto the row space of [X_trn; X_val] (= that of X_γ for every γ > 0).
        let row_proj = pinv_solve(stacked.as_ref(), stacked.as_ref())?;
        let ys = Mat::from_fn(nt + nv, n, |i, j| {
            if i < nt {
                y_trn[(i, j)]
            } else {
                y_val[(i - nt, j)]
            }
        });
        let z_ls = pinv_solve(stacked.as_ref(), ys.as_ref())?;
        let spec = |a: MatRef<'_, f64>| {
            singular_values("norm", a).map(|s| s.first().copied().unwrap_or(0.0))
        };
        let norms = DataNorms {
            x_trn: st[0],
            x_val: sv[0],
            y_trn: spec(y_trn.as_ref())?,
            y_val: spec(y_val.as_ref())?,
            y_trn_f: frob(y_trn.as_ref()),
            y_val_f: frob(y_val.as_ref()),
            z_ref: spec(z_star.as_ref())?.max(spec(z_ls.as_ref())?),
        };
        Ok(RepLearning {
            m,
            h,
            n,
            scaling,
            raw,
            ls_trn: LsData::new(x_trn.as_ref(), y_trn.as_ref()),
            ls_val: LsData::new(x_val.as_ref(), y_val.as_ref()),
            x_trn,
            y_trn,
            x_val,
            y_val,
            regime,
            certified,
            trn_full_col_rank: rt == m,
            z0,
            z_star,
            f_full,
            g_full,
            f_zero,
            row_proj,
            norms,
            init_scale: (4.0 * norms.z_ref).sqrt().max(1.0),
            warnings,
            cache: Mutex::new(Vec::new()),
            work: Pool::default(),
        })
    }
}
