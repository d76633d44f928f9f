//! A quadratic bilevel family with closed-form answers.
//!
//! With z = (u, v) ∈ R^{du+dv}: f = ½ zᵀ H_f z + b_fᵀ z and g = ½ zᵀ H_g z + b_gᵀ z, where the
//! block H_g,vv is positive definite (g strongly convex in v). Then
//! w*(u) = M u + m₀ with M = −H_vv⁻¹ H_vu, m₀ = −H_vv⁻¹ b_g,v, and g(u, v) − g*(u) =
//! ½ (v − w*(u))ᵀ H_vv (v − w*(u)). The bilevel optimum minimizes f(u, M u + m₀) (one linear
//! solve); the penalty optimum solves (H_f + γ Dᵀ H_vv D) z = −b_f + γ Dᵀ H_vv m₀ with
//! D = [−M, I].

use crate::error::{Error, Result};
use crate::limits::Footprint;
use crate::linalg::{col, spd_solve, sym_eig_range, to_vec};
use crate::problem::{Level, PenaltyOptimum, Problem, Smoothness};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use rand_distr::{Distribution, StandardNormal};
use std::path::Path;
use std::sync::Mutex;

/// A quadratic bilevel problem.
#[derive(Debug)]
pub struct Quadratic {
    du: usize,
    dv: usize,
    hf: Mat<f64>,
    bf: Mat<f64>,
    hg: Mat<f64>,
    bg: Mat<f64>,
    hvv: Mat<f64>,
    m: Mat<f64>,
    m0: Mat<f64>,
    smooth: Smoothness,
    bilevel: (Vec<f64>, Vec<f64>, f64),
    cache: Mutex<Option<(f64, PenaltyOptimum)>>,
}

impl Clone for Quadratic {
    fn clone(&self) -> Self {
        Quadratic::from_matrices(
            self.hf.clone(),
            self.bf.clone(),
            self.hg.clone(),
            self.bg.clone(),
            self.du,
        )
        .expect("a valid instance stays valid")
    }
}

fn gaussian(rng: &mut impl rand::Rng, r: usize, c: usize) -> Mat<f64> {
    let mut m = Mat::zeros(r, c);
    for j in 0..c {
        for i in 0..r {
            m[(i, j)] = StandardNormal.sample(rng);
        }
    }
    m
}

fn check_symmetric(what: &str, a: MatRef<'_, f64>) -> Result<()> {
    let n = a.nrows();
    let scale = (0..n)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .map(|(i, j)| a[(i, j)].abs())
        .fold(0.0, f64::max)
        .max(1e-300);
    for i in 0..n {
        for j in 0..i {
            if (a[(i, j)] - a[(j, i)]).abs() > 1e-10 * scale {
                return Err(Error::data(
                    what,
                    format!("matrix is not symmetric: entry ({i}, {j}) differs from ({j}, {i})"),
                ));
            }
        }
    }
    Ok(())
}

impl Quadratic {
    /// A seeded instance with `du` upper and `dv` lower variables. H_f = AᵀA/(n+2) + ½ I and
    /// H_g = CᵀC/(n+2) + ½ diag(0, I_v), A and C standard Gaussian; b_f, b_g Gaussian.
    pub fn generate(seed: u64, du: usize, dv: usize) -> Result<Self> {
        if du == 0 || dv == 0 {
            return Err(Error::setting(
                "quadratic sizes",
                format!("du={du}, dv={dv}"),
                "both sizes must be at least 1",
            ));
        }
        Self::footprint(du, dv).check_global()?;
        let n = du + dv;
        let mut rng = crate::seeds::rng(seed, crate::seeds::Stream::Data);
        let a = gaussian(&mut rng, n + 2, n);
        let c = gaussian(&mut rng, n + 2, n);
        let scale = 1.0 / (n + 2) as f64;
        let mut hf = a.transpose() * &a * faer::Scale(scale);
        let mut hg = c.transpose() * &c * faer::Scale(scale);
        for i in 0..n {
            hf[(i, i)] += 0.5;
            if i >= du {
                hg[(i, i)] += 0.5;
            }
        }
        // Exact symmetry, so the closed forms and the gradients agree to rounding.
        let hf = Mat::from_fn(n, n, |i, j| 0.5 * (hf[(i, j)] + hf[(j, i)]));
        let hg = Mat::from_fn(n, n, |i, j| 0.5 * (hg[(i, j)] + hg[(j, i)]));
        let bf = gaussian(&mut rng, n, 1);
        let bg = gaussian(&mut rng, n, 1);
        Self::from_matrices(hf, bf, hg, bg, du)
    }

    /// The memory a generated instance with `du` upper and `dv` lower variables needs: the two
    /// generating matrices, H_f and H_g with their symmetrized copies, and the eigenvalues and
    /// solves of the closed forms, all (du + dv)².
    pub fn footprint(du: usize, dv: usize) -> Footprint {
        let n = du.saturating_add(dv);
        let keys = format!("`du` = {du} and `dv` = {dv} (matrices of (du + dv)² entries)");
        Footprint::new("the quadratic problem")
            .f64s(keys.clone(), 2, &[n.saturating_add(2), n])
            .f64s(keys, 6, &[n, n])
    }

    /// An instance from its matrices; `du` splits z into (u, v). Checks shapes, finiteness,
    /// symmetry, that H_g,vv is positive definite and that the bilevel optimum is unique.
    pub fn from_matrices(
        hf: Mat<f64>,
        bf: Mat<f64>,
        hg: Mat<f64>,
        bg: Mat<f64>,
        du: usize,
    ) -> Result<Self> {
        let n = hf.nrows();
        if hf.ncols() != n {
            return Err(Error::dim(
                "H_f (must be square)",
                format!("{n}x{n}"),
                format!("{n}x{}", hf.ncols()),
            ));
        }
        if hg.nrows() != n || hg.ncols() != n {
            return Err(Error::dim(
                "H_g",
                format!("{n}x{n}"),
                format!("{}x{}", hg.nrows(), hg.ncols()),
            ));
        }
        for (name, b) in [("b_f", &bf), ("b_g", &bg)] {
            if b.nrows() != n || b.ncols() != 1 {
                return Err(Error::dim(
                    name,
                    format!("{n}x1"),
                    format!("{}x{}", b.nrows(), b.ncols()),
                ));
            }
        }
        if du == 0 || du >= n {
            return Err(Error::setting(
                "du",
                du,
                format!(
                    "the split must leave both u and v non-empty: 1 <= du <= {}",
                    n.saturating_sub(1)
                ),
            ));
        }
        // The eigenvalues and solves of the closed forms work on (du + dv)² matrices.
        Footprint::new("the quadratic problem's closed forms")
            .f64s(format!("the size of H_f ({n} × {n})"), 6, &[n, n])
            .check_global()?;
        for (name, m) in [("H_f", &hf), ("b_f", &bf), ("H_g", &hg), ("b_g", &bg)] {
            for j in 0..m.ncols() {
                for i in 0..m.nrows() {
                    if !m[(i, j)].is_finite() {
                        return Err(Error::NonFinite {
                            what: name.into(),
                            index: i + j * m.nrows(),
                        });
                    }
                }
            }
        }
        for (name, m) in [("H_f", &hf), ("b_f", &bf), ("H_g", &hg), ("b_g", &bg)] {
            crate::problem::check_data_scale(name, m.as_ref())?;
        }
        check_symmetric("H_f", hf.as_ref())?;
        check_symmetric("H_g", hg.as_ref())?;
        let dv = n - du;
        let hvv = hg.as_ref().submatrix(du, du, dv, dv).to_owned();
        let hvu = hg.as_ref().submatrix(du, 0, dv, du);
        let rhs = Mat::from_fn(dv, du + 1, |i, j| {
            if j < du {
                -hvu[(i, j)]
            } else {
                -bg[(du + i, 0)]
            }
        });
        let sol = spd_solve(
            "H_g,vv (the lower level must be strongly convex in v)",
            hvv.as_ref(),
            rhs.as_ref(),
        )?;
        let m = sol.as_ref().submatrix(0, 0, dv, du).to_owned();
        let m0 = sol.as_ref().submatrix(0, du, dv, 1).to_owned();
        let (lf_lo, lf_hi) = sym_eig_range(hf.as_ref())?;
        let (lg_lo, lg_hi) = sym_eig_range(hg.as_ref())?;
        let (_, lvv) = sym_eig_range(hvv.as_ref())?;
        let smooth = Smoothness {
            lf: lf_hi.abs().max(lf_lo.abs()),
            lg: lg_hi.abs().max(lg_lo.abs()),
            lg_vv: lvv,
        };
        let mut q = Quadratic {
            du,
            dv,
            hf,
            bf,
            hg,
            bg,
            hvv,
            m,
            m0,
            smooth,
            bilevel: (Vec::new(), Vec::new(), 0.0),
            cache: Mutex::new(None),
        };
        q.bilevel = q.solve_bilevel()?;
        Ok(q)
    }

    /// Loads H_f, b_f, H_g, b_g from `.npy` files; `du` splits z into (u, v).
    pub fn from_npy(hf: &Path, bf: &Path, hg: &Path, bg: &Path, du: usize) -> Result<Self> {
        // Checked here too, so that a bad scale names its file.
        let read = |p: &Path| -> Result<Mat<f64>> {
            let m = crate::npy::read_matrix(p)?;
            crate::problem::check_data_scale(&p.display().to_string(), m.as_ref())?;
            Ok(m)
        };
        Self::from_matrices(read(hf)?, read(bf)?, read(hg)?, read(bg)?, du)
    }

    /// Writes hf.npy, bf.npy, hg.npy, bg.npy into `dir`.
    pub fn save_npy(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Write {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        for (name, m) in [
            ("hf", &self.hf),
            ("bf", &self.bf),
            ("hg", &self.hg),
            ("bg", &self.bg),
        ] {
            crate::npy::write_matrix(&dir.join(format!("{name}.npy")), m)?;
        }
        Ok(())
    }

    fn solve_bilevel(&self) -> Result<(Vec<f64>, Vec<f64>, f64)> {
        let (du, n) = (self.du, self.du + self.dv);
        // J = [I; M], z0 = [0; m0]: F(u) = f(J u + z0).
        let j = Mat::from_fn(n, du, |i, k| {
            if i < du {
                f64::from(i == k)
            } else {
                self.m[(i - du, k)]
            }
        });
        let z0 = Mat::from_fn(n, 1, |i, _| if i < du { 0.0 } else { self.m0[(i - du, 0)] });
        let hj = &self.hf * &j;
        let a = j.transpose() * &hj;
        let r = (&self.hf * &z0 + &self.bf) * faer::Scale(-1.0);
        let b = j.transpose() * &r;
        let u = spd_solve(
            "J^T H_f J (the bilevel optimum must be unique: f restricted to the lower-level solution set must be strongly convex)",
            a.as_ref(),
            b.as_ref(),
        )?;
        let u = to_vec(u.as_ref());
        let mut v = vec![0.0; self.dv];
        self.ll_solution(&u, &mut v);
        let fs = self.f(&u, &v, None, None);
        Ok((u, v, fs))
    }

    /// The bilevel solution (u*, v*) and f*.
    pub fn bilevel_solution(&self) -> (&[f64], &[f64], f64) {
        (&self.bilevel.0, &self.bilevel.1, self.bilevel.2)
    }

    // D = [−M, I], so that v − w*(u) = D z − m₀.
    fn d_matrix(&self) -> Mat<f64> {
        let (du, dv) = (self.du, self.dv);
        Mat::from_fn(dv, du + dv, |i, k| {
            if k < du {
                -self.m[(i, k)]
            } else {
                f64::from(i == k - du)
            }
        })
    }

    /// The Hessian of L_γ, H_f + γ Dᵀ H_vv D (constant: L_γ is quadratic).
    pub fn penalty_hessian(&self, gamma: f64) -> Mat<f64> {
        let d = self.d_matrix();
        let hd = &self.hvv * &d;
        &self.hf + d.transpose() * &hd * faer::Scale(gamma)
    }

    /// The minimizer and minimum of L_γ, by one linear solve.
    pub fn penalty_solution(&self, gamma: f64) -> Result<PenaltyOptimum> {
        crate::error::check_gamma("gamma", gamma)?;
        if let Some((g, p)) = self.cache.lock().expect("cache lock").as_ref()
            && *g == gamma
        {
            return Ok(p.clone());
        }
        let (du, dv) = (self.du, self.dv);
        let d = self.d_matrix();
        let a = self.penalty_hessian(gamma);
        let hm = &self.hvv * &self.m0;
        let b = d.transpose() * &hm * faer::Scale(gamma) - &self.bf;
        let z = spd_solve(
            "H_f + gamma D^T H_vv D (penalty Hessian)",
            a.as_ref(),
            b.as_ref(),
        )?;
        let z = to_vec(z.as_ref());
        let (u, v) = z.split_at(du);
        let f = self.f(u, v, None, None);
        let g = self.g(u, v, None, None);
        let mut w = vec![0.0; dv];
        self.ll_solution(u, &mut w);
        let gs = self.g(u, &w, None, None);
        let p = PenaltyOptimum {
            value: f + gamma * (g - gs),
            point: Some((u.to_vec(), v.to_vec())),
        };
        *self.cache.lock().expect("cache lock") = Some((gamma, p.clone()));
        Ok(p)
    }

    fn quad(
        &self,
        h: &Mat<f64>,
        b: &Mat<f64>,
        u: &[f64],
        v: &[f64],
        gu: Option<&mut [f64]>,
        gv: Option<&mut [f64]>,
    ) -> f64 {
        let n = self.du + self.dv;
        let mut z = Vec::with_capacity(n);
        z.extend_from_slice(u);
        z.extend_from_slice(v);
        let mut hz = b.clone();
        matmul(hz.as_mut(), Accum::Add, h.as_ref(), col(&z), 1.0, Par::Seq);
        // ½ zᵀ H z + bᵀ z = zᵀ (H z + b) − ½ zᵀ H z = ½ zᵀ (H z + 2 b).
        let val: f64 = (0..n)
            .map(|i| z[i] * (0.5 * (hz[(i, 0)] - b[(i, 0)]) + b[(i, 0)]))
            .sum();
        if let Some(gu) = gu {
            for (i, x) in gu.iter_mut().enumerate() {
                *x = hz[(i, 0)];
            }
        }
        if let Some(gv) = gv {
            for (i, x) in gv.iter_mut().enumerate() {
                *x = hz[(self.du + i, 0)];
            }
        }
        val
    }
}

impl Problem for Quadratic {
    fn name(&self) -> String {
        format!("quadratic(du={}, dv={})", self.du, self.dv)
    }
    fn dim_u(&self) -> usize {
        self.du
    }
    fn dim_v(&self) -> usize {
        self.dv
    }
    fn f(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        self.quad(&self.hf, &self.bf, u, v, gu, gv)
    }
    fn g(&self, u: &[f64], v: &[f64], gu: Option<&mut [f64]>, gv: Option<&mut [f64]>) -> f64 {
        self.quad(&self.hg, &self.bg, u, v, gu, gv)
    }
    fn ll_solution(&self, u: &[f64], w: &mut [f64]) -> bool {
        let mut out = self.m0.clone();
        matmul(
            out.as_mut(),
            Accum::Add,
            self.m.as_ref(),
            col(u),
            1.0,
            Par::Seq,
        );
        for (i, x) in w.iter_mut().enumerate() {
            *x = out[(i, 0)];
        }
        true
    }
    fn has_ll_solution(&self) -> bool {
        true
    }
    fn penalty_v_solution(&self, u: &[f64], gamma: f64, v: &mut [f64]) -> bool {
        // (H_f,vv + γ H_g,vv) v = −(H_f,vu + γ H_g,vu) u − (b_f,v + γ b_g,v).
        let (du, dv) = (self.du, self.dv);
        let a = Mat::from_fn(dv, dv, |i, j| {
            self.hf[(du + i, du + j)] + gamma * self.hg[(du + i, du + j)]
        });
        let b = Mat::from_fn(dv, 1, |i, _| {
            -(0..du)
                .map(|j| (self.hf[(du + i, j)] + gamma * self.hg[(du + i, j)]) * u[j])
                .sum::<f64>()
                - self.bf[(du + i, 0)]
                - gamma * self.bg[(du + i, 0)]
        });
        match spd_solve("H_f,vv + gamma H_g,vv", a.as_ref(), b.as_ref()) {
            Ok(x) => {
                v.copy_from_slice(&to_vec(x.as_ref()));
                true
            }
            Err(_) => false,
        }
    }
    fn has_penalty_v_solution(&self) -> bool {
        true
    }
    fn smoothness(&self) -> Option<Smoothness> {
        Some(self.smooth)
    }
    fn bilevel_optimum(&self) -> Option<f64> {
        Some(self.bilevel.2)
    }
    fn penalty_optimum(&self, gamma: f64) -> Option<PenaltyOptimum> {
        self.penalty_solution(gamma).ok()
    }
    fn hvp(
        &self,
        level: Level,
        _u: &[f64],
        _v: &[f64],
        du: &[f64],
        dv: &[f64],
        hu: &mut [f64],
        hv: &mut [f64],
    ) {
        // The Hessian is the constant matrix H: one product, no differences.
        let h = match level {
            Level::Upper => &self.hf,
            Level::Lower => &self.hg,
        };
        let mut d = Vec::with_capacity(self.du + self.dv);
        d.extend_from_slice(du);
        d.extend_from_slice(dv);
        let mut out = Mat::<f64>::zeros(d.len(), 1);
        matmul(
            out.as_mut(),
            Accum::Replace,
            h.as_ref(),
            col(&d),
            1.0,
            Par::Seq,
        );
        for (i, x) in hu.iter_mut().chain(hv.iter_mut()).enumerate() {
            *x = out[(i, 0)];
        }
    }
}
