//! Softmax cross-entropy hyper-cleaning: the fused passes against the separate f and g calls and
//! finite differences, the mean / full-ridge form against its formula, the Newton-CG solves of
//! g*(u) and of the v block, and Gauss–Seidel PBGD with the exact v block.

use bilevel::diagnostics::gradient_check;
use bilevel::problems::cleaning::{
    Cleaning, CleaningData, CleaningLoss, CleaningSettings, ClusterConfig, LossScale, RidgeForm,
};
use bilevel::solvers::{Pbgd, StepRule};
use bilevel::{Problem, RunOptions, run};
use rand::RngExt;

fn clusters(seed: u64, n_trn: usize, m: usize) -> CleaningData {
    CleaningData::gaussian_clusters(&ClusterConfig {
        n_trn,
        n_val: n_trn / 2,
        n_test: 100,
        m,
        classes: 4,
        p: 0.4,
        separation: 3.0,
        seed,
    })
    .unwrap()
}

fn softmax(lambda: f64, mean: bool) -> CleaningSettings {
    CleaningSettings {
        loss: CleaningLoss::SoftmaxCrossEntropy,
        lambda,
        u_scale: 1.5,
        loss_scale: if mean {
            LossScale::Mean
        } else {
            LossScale::Sum
        },
        ridge_form: if mean {
            RidgeForm::Full
        } else {
            RidgeForm::Half
        },
        ..Default::default()
    }
}

fn point(p: &dyn Problem, seed: u64, scale: f64) -> (Vec<f64>, Vec<f64>) {
    let mut r = bilevel::seeds::rng(seed, bilevel::seeds::Stream::Init);
    let u = (0..p.dim_u()).map(|_| r.random_range(-2.0..2.0)).collect();
    let v = (0..p.dim_v())
        .map(|_| scale * r.random_range(-1.0..1.0))
        .collect();
    (u, v)
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    bilevel::linalg::dist(a, b) / bilevel::linalg::norm(b).max(1e-300)
}

/// The fused evaluation (one pass over X_trn for both models, threaded when large) equals f,
/// g(u, v) and g(u, w) from the separate calls, values and both gradient blocks, to 1e-12; sum
/// and mean forms, a size whose passes split over threads and row blocks.
#[test]
fn fused_softmax_passes_match_the_separate_calls() {
    for (n_trn, m) in [(90, 7), (3000, 120)] {
        for mean in [false, true] {
            let p = Cleaning::new(clusters(3, n_trn, m), softmax(0.3, mean)).unwrap();
            let (u, v) = point(&p, 1, 0.3);
            let (_, w) = point(&p, 2, 0.3);
            let gamma = 7.0;
            let (nu, nv) = (p.dim_u(), p.dim_v());
            let (mut fu, mut fv, mut gu, mut gv, mut hu) = (
                vec![0.0; nu],
                vec![0.0; nv],
                vec![0.0; nu],
                vec![0.0; nv],
                vec![0.0; nu],
            );
            let f = p.f(&u, &v, Some(&mut fu), Some(&mut fv));
            let g = p.g(&u, &v, Some(&mut gu), Some(&mut gv));
            let gs = p.g(&u, &w, Some(&mut hu), None);
            let du_ref: Vec<f64> = (0..nu).map(|i| fu[i] + gamma * (gu[i] - hu[i])).collect();
            let dv_ref: Vec<f64> = (0..nv).map(|i| fv[i] + gamma * gv[i]).collect();
            let (mut du, mut dv) = (vec![0.0; nu], vec![0.0; nv]);
            let got = p
                .penalty_eval(&u, &v, &w, gamma, Some(&mut du), Some(&mut dv))
                .expect("softmax has the fused evaluation");
            for (a, b) in got.iter().zip([f, g, gs]) {
                assert!(
                    (a - b).abs() <= 1e-12 * b.abs(),
                    "{n_trn} {mean}: {got:?} vs {f} {g} {gs}"
                );
            }
            assert!(rel(&du, &du_ref) <= 1e-12, "du {:e}", rel(&du, &du_ref));
            assert!(rel(&dv, &dv_ref) <= 1e-12, "dv {:e}", rel(&dv, &dv_ref));
            // Without ∇_v: the same values and ∇_u.
            let got2 = p
                .penalty_eval(&u, &v, &w, gamma, Some(&mut du), None)
                .unwrap();
            assert_eq!(got, got2);
            assert!(rel(&du, &du_ref) <= 1e-12);
        }
    }
}

/// Central differences of L_γ along random directions against the fused gradient blocks.
#[test]
fn fused_softmax_gradients_match_finite_differences() {
    for mean in [false, true] {
        let p = Cleaning::new(clusters(4, 80, 6), softmax(0.5, mean)).unwrap();
        let (u, v) = point(&p, 3, 0.4);
        let (_, w) = point(&p, 4, 0.4);
        let gamma = 3.0;
        let (mut du, mut dv) = (vec![0.0; p.dim_u()], vec![0.0; p.dim_v()]);
        p.penalty_eval(&u, &v, &w, gamma, Some(&mut du), Some(&mut dv))
            .unwrap();
        let l = |u: &[f64], v: &[f64]| {
            let [f, g, gs] = p.penalty_eval(u, v, &w, gamma, None, None).unwrap();
            f + gamma * (g - gs)
        };
        let (du_dir, dv_dir) = point(&p, 5, 1.0);
        let h = 1e-5;
        let shift = |x: &[f64], d: &[f64], t: f64| -> Vec<f64> {
            x.iter().zip(d).map(|(a, b)| a + t * b).collect()
        };
        let fd_u = (l(&shift(&u, &du_dir, h), &v) - l(&shift(&u, &du_dir, -h), &v)) / (2.0 * h);
        let fd_v = (l(&u, &shift(&v, &dv_dir, h)) - l(&u, &shift(&v, &dv_dir, -h))) / (2.0 * h);
        let an_u = bilevel::linalg::dot(&du, &du_dir);
        let an_v = bilevel::linalg::dot(&dv, &dv_dir);
        assert!(
            (fd_u - an_u).abs() <= 1e-6 * an_u.abs().max(1e-3),
            "{fd_u} {an_u}"
        );
        assert!(
            (fd_v - an_v).abs() <= 1e-6 * an_v.abs().max(1e-3),
            "{fd_v} {an_v}"
        );
        // And the separate calls pass the coordinate-wise check in the mean form too.
        let c = gradient_check(&p, &u, &v, 60);
        assert!(c.max() <= 1e-6, "{c:?}");
    }
}

/// The mean form with the full ridge is (1/N) Σ ψ_i ℓ_i + λ‖W‖² and (1/N') Σ ℓ_j.
#[test]
fn mean_form_matches_its_formula() {
    let data = clusters(5, 60, 5);
    let (nt, nv) = (data.train.len() as f64, data.val.len() as f64);
    let sum = Cleaning::new(data.clone(), softmax(0.0, false)).unwrap();
    let mean = Cleaning::new(data, softmax(0.2, true)).unwrap();
    let (u, v) = point(&sum, 6, 0.5);
    let reg = 0.2 * v.iter().map(|a| a * a).sum::<f64>();
    let gs = sum.g(&u, &v, None, None);
    let gm = mean.g(&u, &v, None, None);
    assert!(
        (gm - (gs / nt + reg)).abs() <= 1e-13 * gm.abs(),
        "{gm} {gs}"
    );
    let (fs, fm) = (sum.f(&u, &v, None, None), mean.f(&u, &v, None, None));
    assert!((fm - fs / nv).abs() <= 1e-13 * fm.abs());
    assert_eq!(mean.settings().lambda, 0.2);
}

fn grad_w(p: &Cleaning, u: &[f64], w: &[f64], gamma: Option<f64>) -> f64 {
    let mut g = vec![0.0; p.dim_v()];
    p.g(u, w, None, Some(&mut g));
    if let Some(gm) = gamma {
        let mut fv = vec![0.0; p.dim_v()];
        p.f(u, w, None, Some(&mut fv));
        for (a, b) in g.iter_mut().zip(&fv) {
            *a = b + gm * *a;
        }
    }
    bilevel::linalg::norm(&g)
}

/// Newton-CG: w*(u) and argmin_W f + γ g are stationary to the solves' tolerance (relative to
/// the gradient at W = 0), in a sequence of nearby u (warm starts, secant path) and at a new γ;
/// the v block with g* cached at the same u reuses it.
#[test]
fn newton_solves_are_stationary() {
    for mean in [false, true] {
        let p = Cleaning::new(clusters(7, 400, 30), softmax(0.05, mean)).unwrap();
        assert!(p.has_ll_solution() && p.has_penalty_v_solution());
        let zero = vec![0.0; p.dim_v()];
        let (u0, _) = point(&p, 8, 0.0);
        let mut w = vec![0.0; p.dim_v()];
        let mut v = vec![0.0; p.dim_v()];
        for (t, gamma) in [(0, 10.0), (1, 10.0), (2, 10.0), (3, 10.0), (4, 30.0)] {
            let u: Vec<f64> = u0
                .iter()
                .enumerate()
                .map(|(i, a)| a + 0.05 * t as f64 * ((i % 7) as f64 - 3.0))
                .collect();
            assert!(
                p.penalty_v_solution(&u, gamma, &mut v),
                "v block at t = {t}"
            );
            assert!(p.ll_solution(&u, &mut w));
            let rg = grad_w(&p, &u, &w, None) / grad_w(&p, &u, &zero, None);
            let rv = grad_w(&p, &u, &v, Some(gamma)) / grad_w(&p, &u, &zero, Some(gamma));
            assert!(
                rg <= 1e-9,
                "mean {mean}, t {t}: g* relative gradient {rg:e}"
            );
            assert!(
                rv <= 1e-9,
                "mean {mean}, t {t}: v block relative gradient {rv:e}"
            );
        }
        let c = p.newton_counts();
        assert!(c.newton > 0 && c.cg > 0 && c.refreshes >= 1, "{c:?}");
    }
}

/// Gauss–Seidel PBGD with the exact v block runs on softmax (it was refused before), lowers the
/// validation loss below the unweighted model's, and ends with a small lower-level gap.
#[test]
fn exact_v_block_runs_on_softmax() {
    let p = Cleaning::new(clusters(9, 300, 10), softmax(0.1, true)).unwrap();
    let r = p.reference_unweighted().unwrap();
    let mut s = Pbgd::gauss_seidel(10.0).with_exact_v(StepRule::Fixed(30.0));
    let (u0, v0) = p.default_start();
    let o = RunOptions {
        max_iter: 60,
        record_every: 10,
        target: Some(1e-14),
        ..RunOptions::default()
    };
    let out = run(&p, &mut s, &u0, &v0, &o, &mut []).unwrap();
    let (first, last) = (&out.trace.records[0], out.trace.records.last().unwrap());
    assert_eq!(out.trace.g_star_source, "exact");
    assert!(
        last.f < r.f,
        "f {} -> {} (unweighted {})",
        first.f,
        last.f,
        r.f
    );
    assert!(
        last.ll_gap >= 0.0 && last.ll_gap <= 0.1 * first.g,
        "gap {}",
        last.ll_gap
    );
    assert!(
        last.grad_u < first.grad_u,
        "{} -> {}",
        first.grad_u,
        last.grad_u
    );
}

/// Without Fashion-MNIST the `cleaning-benchopt` experiment reports its part as SKIPPED with the
/// install command, and claims nothing.
#[test]
fn benchopt_experiment_without_the_data_set_is_skipped() {
    let dir = std::env::temp_dir().join(format!("bilevel-no-fmnist-{}", std::process::id()));
    // Only this test of the binary reads the variable.
    unsafe { std::env::set_var("BILEVEL_FASHION_MNIST_DIR", &dir) };
    let e = bilevel::experiments::by_name("cleaning-benchopt").expect("registered");
    let r = e.run(&bilevel::experiments::Context::default()).unwrap();
    assert!(r.claims.is_empty());
    assert_eq!(r.skipped.len(), 1);
    assert!(
        r.skipped[0]
            .fix
            .contains("apt-get install dataset-fashion-mnist")
    );
}
