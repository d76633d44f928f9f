//! Exact Hessian-vector products of representation learning and hyper-cleaning against
//! central differences of gradients (relative error ≤ 1e-6) and the symmetry uᵀHv = vᵀHu.

use bilevel::Level;
use bilevel::Problem;
use bilevel::linalg::{dist, dot, norm};
use bilevel::problems::cleaning::{
    Cleaning, CleaningData, CleaningLoss, CleaningSettings, ClusterConfig,
};
use bilevel::problems::replearn::{Regime, RepLearning, RepSizes};
use rand::RngExt;

fn draw(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    let mut r = bilevel::seeds::rng(seed, bilevel::seeds::Stream::Init);
    (0..n).map(|_| r.random_range(lo..=hi)).collect()
}

/// Hessian-vector product by a Richardson-extrapolated central difference of gradients:
/// (4 D(h/2) − D(h)) / 3 with D(h) = (∇(z + h d) − ∇(z − h d)) / 2h, error O(h⁴).
fn hvp_richardson(
    p: &dyn Problem,
    level: Level,
    z: (&[f64], &[f64]),
    d: (&[f64], &[f64]),
    h: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (nu, nv) = (z.0.len(), z.1.len());
    let grad = |t: f64| {
        let u: Vec<f64> = z.0.iter().zip(d.0).map(|(a, b)| a + t * b).collect();
        let v: Vec<f64> = z.1.iter().zip(d.1).map(|(a, b)| a + t * b).collect();
        let (mut gu, mut gv) = (vec![0.0; nu], vec![0.0; nv]);
        match level {
            Level::Upper => p.f(&u, &v, Some(&mut gu), Some(&mut gv)),
            Level::Lower => p.g(&u, &v, Some(&mut gu), Some(&mut gv)),
        };
        gu.into_iter().chain(gv).collect::<Vec<f64>>()
    };
    let central = |h: f64| {
        let (a, b) = (grad(h), grad(-h));
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y) / (2.0 * h))
            .collect::<Vec<f64>>()
    };
    let (d1, d2) = (central(h), central(h / 2.0));
    let r: Vec<f64> = d1
        .iter()
        .zip(&d2)
        .map(|(a, b)| (4.0 * b - a) / 3.0)
        .collect();
    (r[..nu].to_vec(), r[nu..].to_vec())
}

/// Checks the exact product of `p` at (u, v) against differences and symmetry, both levels.
fn check(p: &dyn Problem, u: &[f64], v: &[f64], seed: u64, h: f64) {
    let (nu, nv) = (u.len(), v.len());
    let a = (draw(seed, nu, -1.0, 1.0), draw(seed + 1, nv, -1.0, 1.0));
    let b = (draw(seed + 2, nu, -1.0, 1.0), draw(seed + 3, nv, -1.0, 1.0));
    for level in [Level::Upper, Level::Lower] {
        let (mut hu, mut hv) = (vec![0.0; nu], vec![0.0; nv]);
        p.hvp(level, u, v, &a.0, &a.1, &mut hu, &mut hv);
        let (du, dv) = hvp_richardson(p, level, (u, v), (&a.0, &a.1), h);
        let scale = norm(&du).hypot(norm(&dv)).max(1e-12);
        let err = dist(&hu, &du).hypot(dist(&hv, &dv)) / scale;
        assert!(
            err <= 1e-6,
            "{} {level:?}: relative HVP error {err:e} (stated tolerance 1e-6)",
            p.name()
        );
        // Symmetry: bᵀ H a = aᵀ H b.
        let (mut gu, mut gv) = (vec![0.0; nu], vec![0.0; nv]);
        p.hvp(level, u, v, &b.0, &b.1, &mut gu, &mut gv);
        let bha = dot(&b.0, &hu) + dot(&b.1, &hv);
        let ahb = dot(&a.0, &gu) + dot(&a.1, &gv);
        assert!(
            (bha - ahb).abs() <= 1e-10 * (bha.abs() + ahb.abs() + 1.0),
            "{} {level:?}: bᵀHa = {bha} but aᵀHb = {ahb}",
            p.name()
        );
    }
}

#[test]
fn replearn_exact_hvp_matches_differences_in_every_regime() {
    for (k, regime) in [
        Regime::CertifiedGlobal,
        Regime::Intermediate,
        Regime::General,
    ]
    .into_iter()
    .enumerate()
    {
        let p = RepLearning::generate(regime, &RepSizes::quick_for(regime), 40 + k as u64)
            .expect("valid instance");
        // A point with both layers non-zero (the default start has W2 = 0).
        let (u, _) = p.init(7);
        let v = draw(8, p.dim_v(), -0.5, 0.5);
        check(&p, &u, &v, 100 + 10 * k as u64, 1e-3);
    }
}

#[test]
fn cleaning_exact_hvp_matches_differences_for_both_losses() {
    let data = || {
        CleaningData::gaussian_clusters(&ClusterConfig {
            n_trn: 40,
            n_val: 30,
            n_test: 10,
            m: 5,
            classes: 3,
            p: 0.5,
            separation: 4.0,
            seed: 3,
        })
        .unwrap()
    };
    for loss in [
        CleaningLoss::LeastSquares,
        CleaningLoss::SoftmaxCrossEntropy,
    ] {
        for (u_scale, lambda) in [(1.0, 0.0), (30.0, 1.0)] {
            let p = Cleaning::new(
                data(),
                CleaningSettings {
                    loss,
                    lambda,
                    u_scale,
                    bound: 10.0 / u_scale,
                    ..Default::default()
                },
            )
            .unwrap();
            // Logits s·u within ±3, a model of moderate size.
            let u = draw(11, p.dim_u(), -3.0 / u_scale, 3.0 / u_scale);
            let v = draw(12, p.dim_v(), -0.3, 0.3);
            // The step scales with 1/u_scale: the sigmoid's curvature grows as u_scale².
            check(&p, &u, &v, 200, 1e-3 / u_scale);
        }
    }
}
