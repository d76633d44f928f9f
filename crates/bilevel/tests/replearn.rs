//! Representation learning (two-layer linear network): gradients, closed forms against
//! independent computations, PBGD reaching the penalty optimum, data loading errors,
//! reproducibility.

use bilevel::diagnostics::gradient_check;
use bilevel::experiments::{Context, Experiment, Fig3, Fig3Settings};
use bilevel::problems::replearn::{Regime, RepLearning, RepSizes, Scaling, pinv_solve};
use bilevel::{Error, Pbgd, Problem, RunOptions, StepRule, run};
use faer::Mat;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

const REGIMES: [Regime; 3] = [
    Regime::CertifiedGlobal,
    Regime::Intermediate,
    Regime::General,
];

fn random_vec(seed: u64, n: usize, scale: f64) -> Vec<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let x: f64 = StandardNormal.sample(&mut rng);
            scale * x
        })
        .collect()
}

fn max_abs(a: &Mat<f64>) -> f64 {
    let mut m = 0.0f64;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            m = m.max(a[(i, j)].abs());
        }
    }
    m
}

fn small(regime: Regime, seed: u64) -> RepLearning {
    RepLearning::generate(regime, &RepSizes::quick_for(regime), seed).expect("valid instance")
}

#[test]
fn gradients_match_finite_differences_in_every_regime() {
    for (k, regime) in REGIMES.into_iter().enumerate() {
        for scaling in [Scaling::Sum, Scaling::Mean] {
            let sizes = RepSizes {
                scaling,
                ..RepSizes::quick_for(regime)
            };
            let p = RepLearning::generate(regime, &sizes, 11 + k as u64).unwrap();
            let (u0, _) = p.init(3);
            let u: Vec<f64> = u0
                .iter()
                .zip(random_vec(5, u0.len(), 0.3))
                .map(|(a, b)| a + b)
                .collect();
            let v = random_vec(6, p.dim_v(), 0.5);
            let e = gradient_check(&p, &u, &v, 1000);
            assert!(e.max() <= 1e-6, "{regime:?} {scaling:?}: {e:?}");
        }
    }
}

#[test]
fn mean_scaling_divides_each_loss_by_its_sample_count() {
    let regime = Regime::Intermediate;
    let sum = small(regime, 2);
    let sizes = RepSizes {
        scaling: Scaling::Mean,
        ..RepSizes::quick_for(regime)
    };
    let mean = RepLearning::generate(regime, &sizes, 2).unwrap();
    let (u, _) = sum.init(1);
    let v = random_vec(9, sum.dim_v(), 0.5);
    let (nt, nv) = sum.samples();
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
    assert!(
        rel(
            mean.f(&u, &v, None, None),
            sum.f(&u, &v, None, None) / nv as f64
        ) <= 1e-12
    );
    assert!(
        rel(
            mean.g(&u, &v, None, None),
            sum.g(&u, &v, None, None) / nt as f64
        ) <= 1e-12
    );
    assert!(rel(mean.f_star_full(), sum.f_star_full() / nv as f64) <= 1e-9);
}

/// Z* satisfies the lower-level optimality X_trnᵀ(X_trn Z − Y_trn) = 0 and minimizes f over
/// that affine set: the f-gradient projected on null(X_trn) vanishes, with the projector built
/// independently (QR of X_trnᵀ), and random moves inside the set never decrease f.
#[test]
fn full_rank_optimum_is_lower_level_optimal_and_minimizes_f_on_the_solution_set() {
    for (k, regime) in REGIMES.into_iter().enumerate() {
        let p = small(regime, 20 + k as u64);
        let [xt, yt, xv, yv] = p.data();
        let z = p.z_star();
        let scale = max_abs(xt) * (max_abs(xt) * max_abs(z) + max_abs(yt));
        let ll = xt.transpose() * (xt * z - yt);
        assert!(
            max_abs(&ll) <= 1e-10 * scale,
            "{regime:?}: LL optimality {}",
            max_abs(&ll)
        );
        // Independent projector onto null(X_trn) from a QR of X_trnᵀ (when X_trn has full row
        // rank) or zero (full column rank).
        let m = xt.ncols();
        let proj = if xt.nrows() < m {
            let q = xt.transpose().qr().compute_thin_Q();
            Mat::<f64>::identity(m, m) - &q * q.transpose()
        } else {
            Mat::<f64>::zeros(m, m)
        };
        let gf = &proj * (xv.transpose() * (xv * z - yv));
        let fscale = max_abs(xv) * (max_abs(xv) * max_abs(z) + max_abs(yv));
        assert!(
            max_abs(&gf) <= 1e-9 * fscale,
            "{regime:?}: projected f-gradient {}",
            max_abs(&gf)
        );
        let f = |z: &Mat<f64>| 0.5 * (xv * z - yv).norm_l2().powi(2);
        let fs = f(z);
        assert!((fs - p.f_star_full()).abs() <= 1e-12 * (1.0 + fs));
        for t in 0..20 {
            let d = Mat::from_fn(m, z.ncols(), |i, j| {
                random_vec(100 + t, m * z.ncols(), 0.1)[i + j * m]
            });
            let moved = z + &proj * d;
            let ll2 = xt.transpose() * (xt * &moved - yt);
            assert!(max_abs(&ll2) <= 1e-9 * scale);
            assert!(
                f(&moved) >= fs - 1e-10 * (1.0 + fs),
                "{regime:?}: a feasible move lowered f"
            );
        }
        match regime {
            Regime::CertifiedGlobal => {
                assert!(p.is_certified());
                let (fy, _) = p.target_scales();
                assert!(p.f_star_full() <= 1e-20 * fy);
                assert_eq!(p.bilevel_optimum(), Some(p.f_star_full()));
            }
            _ => {
                assert!(!p.is_certified());
                assert!(p.f_star_full() > 0.0);
                assert_eq!(p.bilevel_optimum(), None);
            }
        }
    }
}

/// Brute force on a tiny intermediate instance (N = N' = 2, m = 3): the lower-level solution
/// set is the line Z0 + t·n (n ⟂ both training rows, by a cross product); a grid over t finds
/// the minimum of f.
#[test]
fn brute_force_on_a_tiny_instance_matches_f_star_full() {
    let x_trn = Mat::from_fn(2, 3, |i, j| [[1.0, 2.0, 0.5], [-0.3, 1.0, 2.0]][i][j]);
    let y_trn = Mat::from_fn(2, 1, |i, _| [1.0, -2.0][i]);
    let x_val = Mat::from_fn(2, 3, |i, j| [[0.7, -1.0, 1.5], [2.0, 0.1, -0.4]][i][j]);
    let y_val = Mat::from_fn(2, 1, |i, _| [0.5, 3.0][i]);
    let p = RepLearning::from_data(
        x_trn.clone(),
        y_trn.clone(),
        x_val.clone(),
        y_val.clone(),
        3,
        Scaling::Sum,
    )
    .unwrap();
    assert_eq!(p.regime(), Regime::Intermediate);
    let r0 = [1.0, 2.0, 0.5];
    let r1 = [-0.3, 1.0, 2.0];
    let nvec = [
        r0[1] * r1[2] - r0[2] * r1[1],
        r0[2] * r1[0] - r0[0] * r1[2],
        r0[0] * r1[1] - r0[1] * r1[0],
    ];
    let z0 = p.z0();
    let f = |t: f64| {
        let z = Mat::from_fn(3, 1, |i, _| z0[(i, 0)] + t * nvec[i]);
        0.5 * (&x_val * &z - &y_val).norm_l2().powi(2)
    };
    let mut best = f64::INFINITY;
    let mut t = -10.0;
    while t <= 10.0 {
        best = best.min(f(t));
        t += 1e-5;
    }
    let fs = p.f_star_full();
    assert!(fs > 0.0);
    assert!(
        (best - fs).abs() <= 1e-6 * (1.0 + fs),
        "brute force {best}, closed form {fs}"
    );
    assert!(best >= fs - 1e-12);
}

#[test]
fn penalty_optimum_is_stationary_and_below_f_star_full() {
    for (k, regime) in REGIMES.into_iter().enumerate() {
        let p = small(regime, 30 + k as u64);
        for gamma in [10.0, 1e3] {
            let ps = p.penalty_solution(gamma).unwrap();
            let (x, y) = p.stacked(gamma);
            let grad = x.transpose() * (&x * &ps.z - &y);
            let scale = max_abs(&x) * (max_abs(&x) * max_abs(&ps.z) + max_abs(&y));
            assert!(
                max_abs(&grad) <= 1e-10 * scale,
                "{regime:?} γ={gamma}: {}",
                max_abs(&grad)
            );
            // L_γ* ≤ L_γ(Z*) = f*_full, and the penalty optimum is below f*_full in f.
            assert!(ps.value <= p.f_star_full() + 1e-9 * (1.0 + p.f_star_full()));
            assert!(ps.f <= p.f_star_full() + 1e-9 * (1.0 + p.f_star_full()));
            assert!(ps.ll_gap >= -1e-9);
        }
    }
}

#[test]
fn lower_level_head_matches_the_svd_pseudo_inverse() {
    for (k, regime) in REGIMES.into_iter().enumerate() {
        let p = small(regime, 40 + k as u64);
        let (m, h, n) = p.shape();
        let (u, _) = p.init(7);
        let mut w = vec![0.0; h * n];
        assert!(p.ll_solution(&u, &mut w));
        let [xt, yt, _, _] = p.data();
        let w1 = faer::MatRef::from_column_major_slice(&u, m, h);
        let a = xt * w1;
        let want = pinv_solve(a.as_ref(), yt.as_ref()).unwrap();
        let got = faer::MatRef::from_column_major_slice(&w, h, n).to_owned();
        let err = max_abs(&(&got - &want)) / max_abs(&want);
        assert!(err <= 1e-9, "{regime:?}: relative error {err}");
        // g*(W1) over a full-rank backbone is the least-squares residual of X_trn alone.
        let gs = p.g(&u, &w, None, None);
        assert!((gs - p.g_star_full()).abs() <= 1e-9 * (1.0 + p.g_star_full()));
    }
}

fn pbgd_run(p: &RepLearning, gamma: f64, seed: u64) -> bilevel::RunOutput {
    let (u0, v0) = p.init(seed);
    let mut solver = Pbgd::jacobi(gamma).with_step(StepRule::Smoothness { c: 1.5 });
    let opts = RunOptions {
        max_iter: 50_000,
        record_every: 10,
        dist_tol: Some(1e-9),
        seed,
        ..RunOptions::default()
    };
    run(p, &mut solver, &u0, &v0, &opts, &mut []).expect("run converges")
}

#[test]
fn jacobi_pbgd_reaches_the_penalty_optimum_on_a_certified_instance() {
    let p = small(Regime::CertifiedGlobal, 50);
    let out = pbgd_run(&p, 10.0, 1);
    let last = out.last();
    assert!(last.dist_opt <= 1e-9, "distance {}", last.dist_opt);
    let (fy, gy) = p.target_scales();
    assert!(last.f <= 1e-9 * fy, "f = {}", last.f);
    assert!(last.ll_gap <= 1e-9 * gy, "LL gap = {}", last.ll_gap);
    // The smoothness bound gave a monotone run: L_γ never increased between records.
    for w in out.trace.records.windows(2) {
        assert!(w[1].l_gamma <= w[0].l_gamma * (1.0 + 1e-12) + 1e-300);
    }
}

#[test]
fn reruns_are_bit_identical() {
    let a = small(Regime::Intermediate, 60);
    let b = small(Regime::Intermediate, 60);
    let ra = pbgd_run(&a, 10.0, 2);
    let rb = pbgd_run(&b, 10.0, 2);
    assert!(ra.trace.same_numbers(&rb.trace));
    assert_eq!(ra.u, rb.u);
    assert_eq!(a.f_star_full().to_bits(), b.f_star_full().to_bits());
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("bilevel-replearn-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn export_and_reload_as_npy_and_csv() {
    let p = small(Regime::Intermediate, 70);
    let dir = tmpdir("roundtrip");
    p.save_npy(&dir).unwrap();
    let (_, h, _) = p.shape();
    let q = RepLearning::from_dir(&dir, h, Scaling::Sum).unwrap();
    assert_eq!(q.f_star_full(), p.f_star_full());
    let z = bilevel::npy::read_matrix(&dir.join("z_star.npy")).unwrap();
    assert_eq!(max_abs(&(&z - p.z_star())), 0.0);
    // CSV with a header line.
    let [xt, yt, xv, yv] = p.data();
    let csv = tmpdir("csv");
    for (name, a) in [("x_trn", xt), ("y_trn", yt), ("x_val", xv), ("y_val", yv)] {
        let mut s = (0..a.ncols())
            .map(|j| format!("c{j}"))
            .collect::<Vec<_>>()
            .join(",")
            + "\n";
        for i in 0..a.nrows() {
            s += &((0..a.ncols())
                .map(|j| format!("{:e}", a[(i, j)]))
                .collect::<Vec<_>>()
                .join(",")
                + "\n");
        }
        std::fs::write(csv.join(format!("{name}.csv")), s).unwrap();
    }
    let c = RepLearning::from_dir(&csv, h, Scaling::Sum).unwrap();
    assert!((c.f_star_full() - p.f_star_full()).abs() <= 1e-12 * p.f_star_full());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&csv);
}

#[test]
fn bad_data_gives_clear_errors() {
    let p = small(Regime::Intermediate, 80);
    let [xt, yt, xv, yv] = p.data();
    let (_, h, _) = p.shape();
    // Shape mismatch: Y_trn with one row too few.
    let short = yt.as_ref().get(..yt.nrows() - 1, ..).to_owned();
    let e = RepLearning::from_data(xt.clone(), short, xv.clone(), yv.clone(), h, Scaling::Sum)
        .unwrap_err();
    assert!(matches!(e, Error::Dimension { .. }), "{e}");
    assert!(e.to_string().contains("Y_trn"), "{e}");
    // X_val with other features.
    let e = RepLearning::from_data(
        xt.clone(),
        yt.clone(),
        xv.as_ref().get(.., 1..).to_owned(),
        yv.clone(),
        h,
        Scaling::Sum,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Dimension { .. }), "{e}");
    // Hidden width below m.
    let e = RepLearning::from_data(
        xt.clone(),
        yt.clone(),
        xv.clone(),
        yv.clone(),
        xt.ncols() - 1,
        Scaling::Sum,
    )
    .unwrap_err();
    assert!(matches!(e, Error::InvalidSetting { .. }), "{e}");
    // NaN in memory and in a CSV file.
    let mut bad = xt.clone();
    bad[(1, 2)] = f64::NAN;
    let e = RepLearning::from_data(bad, yt.clone(), xv.clone(), yv.clone(), h, Scaling::Sum)
        .unwrap_err();
    assert!(matches!(e, Error::NonFinite { .. }), "{e}");
    let dir = tmpdir("bad");
    p.save_npy(&dir).unwrap();
    std::fs::remove_file(dir.join("x_val.npy")).unwrap();
    std::fs::write(dir.join("x_val.csv"), "1,2\n3,NaN\n").unwrap();
    let e = RepLearning::from_dir(&dir, h, Scaling::Sum).unwrap_err();
    assert!(matches!(e, Error::NonFinite { .. }), "{e}");
    assert!(e.to_string().contains("line 2"), "{e}");
    std::fs::write(dir.join("x_val.csv"), "1,2\n3\n").unwrap();
    let e = RepLearning::from_dir(&dir, h, Scaling::Sum).unwrap_err();
    assert!(matches!(e, Error::File { .. }), "{e}");
    // A .npy file with a wrong shape.
    std::fs::remove_file(dir.join("x_val.csv")).unwrap();
    bilevel::npy::write_matrix(&dir.join("x_val.npy"), &Mat::zeros(3, 2)).unwrap();
    let e = RepLearning::from_dir(&dir, h, Scaling::Sum).unwrap_err();
    assert!(matches!(e, Error::Dimension { .. }), "{e}");
    // Missing file.
    std::fs::remove_file(dir.join("x_val.npy")).unwrap();
    assert!(matches!(
        RepLearning::from_dir(&dir, h, Scaling::Sum).unwrap_err(),
        Error::File { .. }
    ));
    let _ = std::fs::remove_dir_all(&dir);
    // Zero features: an error. Duplicated samples: accepted with a warning.
    let e = RepLearning::from_data(
        Mat::zeros(xt.nrows(), xt.ncols()),
        yt.clone(),
        xv.clone(),
        yv.clone(),
        h,
        Scaling::Sum,
    )
    .unwrap_err();
    assert!(matches!(e, Error::InvalidData { .. }), "{e}");
    let mut dup = xt.clone();
    for j in 0..dup.ncols() {
        dup[(1, j)] = dup[(0, j)];
    }
    let q =
        RepLearning::from_data(dup, yt.clone(), xv.clone(), yv.clone(), h, Scaling::Sum).unwrap();
    assert!(
        q.warnings().iter().any(|w| w.contains("X_trn has rank")),
        "{:?}",
        q.warnings()
    );
    // Generator sizes outside the regime.
    let bad_sizes = RepSizes {
        m: 4,
        ..RepSizes::quick_for(Regime::CertifiedGlobal)
    };
    assert!(RepLearning::generate(Regime::CertifiedGlobal, &bad_sizes, 0).is_err());
}

#[test]
fn flag_marks_instances_where_the_zero_backbone_wins() {
    // Validation targets unrelated to the training teacher and tiny: W1 = 0 (f = ½‖Y_val‖²)
    // beats every full-rank backbone, which must fit the training data exactly.
    let p = small(Regime::Intermediate, 90);
    let [xt, yt, xv, yv] = p.data();
    let (_, h, _) = p.shape();
    let tiny = yv * faer::Scale(1e-3);
    let q =
        RepLearning::from_data(xt.clone(), yt.clone(), xv.clone(), tiny, h, Scaling::Sum).unwrap();
    assert!(q.f_star_full() > q.f_at_zero_backbone());
    assert!(q.flagged());
    assert!(!p.flagged());
    assert!(q.flags_point(0.0, 0.0, 1e-9, 0.0));
    assert!(!q.flags_point(0.0, 1.0, 1e-9, 0.0));
}

#[test]
fn fig3_small_run_passes_its_claims() {
    let s = Fig3Settings {
        seeds: 2,
        gammas: vec![10.0, 100.0, 300.0],
        gauss_seidel: false,
        ..Fig3Settings::quick()
    };
    let r = Fig3 { settings: Some(s) }.run(&Context::default()).unwrap();
    for c in &r.claims {
        assert!(
            c.pass,
            "{}: {} (threshold {})",
            c.text, c.measured, c.threshold
        );
    }
    assert!(r.figures.iter().any(|f| f.name == "fig3-certified-global"));
}

/// The fused penalty evaluation (one pass over each data matrix, stacked right-hand sides)
/// agrees with f, g and g(u, w) evaluated separately, for every combination of gradients, and
/// at a size where the passes and the W1 products split over threads and row blocks.
#[test]
fn fused_penalty_matches_separate_evaluations() {
    let mut sizes = RepSizes::default_for(Regime::General);
    (sizes.n_trn, sizes.n_val, sizes.m, sizes.h, sizes.n) = (700, 300, 200, 210, 13);
    for p in [
        small(Regime::CertifiedGlobal, 3),
        RepLearning::generate(Regime::General, &sizes, 1).unwrap(),
    ] {
        let (nu, nv) = (p.dim_u(), p.dim_v());
        let (u, v, w) = (
            random_vec(1, nu, 1.0),
            random_vec(2, nv, 1.0),
            random_vec(3, nv, 1.0),
        );
        let gamma = 7.0;
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
        let close = |a: &[f64], b: &[f64]| {
            let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
            let n: f64 = b.iter().map(|y| y * y).sum::<f64>();
            assert!(
                d.sqrt() <= 1e-12 * n.sqrt().max(1.0),
                "{} vs {}",
                d.sqrt(),
                n.sqrt()
            );
        };
        for (want_u, want_v) in [(true, true), (true, false), (false, true), (false, false)] {
            let (mut du, mut dv) = (vec![0.0; nu], vec![0.0; nv]);
            let vals = p
                .penalty_eval(
                    &u,
                    &v,
                    &w,
                    gamma,
                    want_u.then_some(&mut du[..]),
                    want_v.then_some(&mut dv[..]),
                )
                .expect("replearn fuses the penalty");
            for (a, b) in vals.iter().zip([f, g, gs]) {
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
            }
            if want_u {
                close(&du, &du_ref);
            }
            if want_v {
                close(&dv, &dv_ref);
            }
        }
    }
}
