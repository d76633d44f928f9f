//! Data hyper-cleaning: problem gradients, exact lower-level solution, the IDX reader and
//! loaders, all solvers on small instances, and a small Fashion-MNIST run where installed.

use bilevel::data::{
    FASHION_MNIST_DIR, FashionMnistConfig, UserDataPaths, load_fashion_mnist, load_user_data,
    read_idx,
};
use bilevel::diagnostics::gradient_check;
use bilevel::problems::cleaning::{
    Cleaning, CleaningData, CleaningLoss, CleaningSettings, ClusterConfig, Split,
};
use bilevel::solvers::{Bome, F2sa, InnerLoop, Pbgd, Solver};
use bilevel::{Error, Problem, RunOptions, run};
use faer::Mat;
use rand::RngExt;
use std::io::Write;
use std::path::PathBuf;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bilevel-cleaning-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small_clusters(seed: u64, p: f64) -> CleaningData {
    CleaningData::gaussian_clusters(&ClusterConfig {
        n_trn: 60,
        n_val: 40,
        n_test: 100,
        m: 6,
        classes: 3,
        p,
        separation: 4.0,
        seed,
    })
    .unwrap()
}

fn random_point(p: &dyn Problem, seed: u64, scale: f64) -> (Vec<f64>, Vec<f64>) {
    let mut r = bilevel::seeds::rng(seed, bilevel::seeds::Stream::Init);
    let u = (0..p.dim_u()).map(|_| r.random_range(-2.0..2.0)).collect();
    let v = (0..p.dim_v()).map(|_| scale * r.random_range(-1.0..1.0)).collect();
    (u, v)
}

#[test]
fn gradients_match_finite_differences_for_both_losses() {
    for loss in [CleaningLoss::LeastSquares, CleaningLoss::SoftmaxCrossEntropy] {
        for (lambda, u_scale) in [(0.0, 1.0), (0.3, 2.5)] {
            let p = Cleaning::new(
                small_clusters(1, 0.3),
                CleaningSettings {
                    loss,
                    lambda,
                    u_scale,
                    ..Default::default()
                },
            )
            .unwrap();
            let (u, v) = random_point(&p, 3, 0.5);
            // Coordinate-wise on every block (60 + 18 coordinates).
            let c = gradient_check(&p, &u, &v, 100);
            assert!(c.max() <= 1e-6, "{loss:?} lambda={lambda}: {c:?}");
        }
    }
    let p = Cleaning::new(
        CleaningData::paper_regime(2, 8, 5, 16, 3, 0.5).unwrap(),
        CleaningSettings::default(),
    )
    .unwrap();
    let (u, v) = random_point(&p, 4, 1.0);
    let c = gradient_check(&p, &u, &v, 100);
    assert!(c.max() <= 1e-6, "paper regime: {c:?}");
}

#[test]
fn exact_lower_level_solution_zeroes_the_gradient() {
    // Ridge (λ > 0, N > m) and the λ = 0 pseudo-inverse case with m > N (singular system).
    let cases = [
        (small_clusters(5, 0.4), 0.7),
        (CleaningData::paper_regime(6, 10, 6, 24, 4, 0.5).unwrap(), 0.0),
    ];
    for (data, lambda) in cases {
        let p = Cleaning::new(data, CleaningSettings { lambda, ..Default::default() }).unwrap();
        let (u, _) = random_point(&p, 7, 1.0);
        let mut w = vec![0.0; p.dim_v()];
        assert!(p.ll_solution(&u, &mut w));
        let mut gv = vec![0.0; p.dim_v()];
        let gs = p.g(&u, &w, None, Some(&mut gv));
        let mut gv0 = vec![0.0; p.dim_v()];
        p.g(&u, &vec![0.0; p.dim_v()], None, Some(&mut gv0));
        let rel = bilevel::linalg::norm(&gv) / bilevel::linalg::norm(&gv0);
        assert!(rel <= 1e-10, "lambda={lambda}: relative gradient at w* = {rel:e}");
        // No nearby point is lower (convexity check along random directions).
        let mut r = bilevel::seeds::rng(9, bilevel::seeds::Stream::Run);
        for _ in 0..5 {
            let d: Vec<f64> = (0..w.len()).map(|_| r.random_range(-1e-3..1e-3)).collect();
            let wd: Vec<f64> = w.iter().zip(&d).map(|(a, b)| a + b).collect();
            assert!(p.g(&u, &wd, None, None) >= gs - 1e-12 * gs.abs().max(1.0));
        }
        if lambda == 0.0 {
            // Minimum norm: w lies in the span of the training samples, so it has no component
            // along the validation samples (orthogonal to every training sample here).
            let (m, n) = (p.data().features(), p.data().classes);
            let wm = faer::MatRef::from_column_major_slice(&w, m, n);
            let xv = &p.data().val.x;
            let proj = xv * wm;
            let worst = (0..proj.nrows())
                .flat_map(|i| (0..n).map(move |j| (i, j)))
                .map(|(i, j)| proj[(i, j)].abs())
                .fold(0.0, f64::max);
            assert!(worst <= 1e-10, "least-norm solution leaks into validation directions: {worst:e}");
        }
    }
}
