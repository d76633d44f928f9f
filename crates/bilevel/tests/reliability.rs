//! Issue 18 in the library: the problems' memory estimates refuse oversized settings before
//! allocating, data whose squares overflow is refused at construction naming the row and
//! column, and a run whose start or γ overflows is an error naming them, never a divergence.
//! (The CLI's versions, under an address-space limit, are in bilevel-cli's tests/reliability.rs.)

use bilevel::limits::MemoryLimit;
use bilevel::problem::{MAX_DATA_SQ_NORM, check_data_scale};
use bilevel::problems::Quadratic;
use bilevel::problems::cleaning::{
    Cleaning, CleaningData, CleaningLoss, CleaningSettings, ClusterConfig, Split,
};
use bilevel::problems::replearn::{Regime, RepLearning, RepSizes, Scaling};
use bilevel::{Error, Pbgd, RunOptions, Update, run};
use faer::Mat;

fn too_large(e: Error, key: &str) {
    match &e {
        Error::TooLarge { driver, .. } => assert!(driver.contains(key), "{e}"),
        _ => panic!("expected TooLarge naming {key}, got {e}"),
    }
}

#[test]
fn oversized_settings_are_refused_before_allocating() {
    let e = Quadratic::generate(0, 100_000, 100_000).unwrap_err();
    too_large(e, "`du` = 100000");
    let sizes = RepSizes {
        n_trn: 1_000_000_000,
        ..RepSizes::default_for(Regime::General)
    };
    too_large(
        RepLearning::generate(Regime::General, &sizes, 0).unwrap_err(),
        "`n_trn` = 1000000000",
    );
    let sizes = RepSizes {
        m: 30_000,
        h: 30_000,
        ..RepSizes::default_for(Regime::CertifiedGlobal)
    };
    too_large(
        RepLearning::generate(Regime::CertifiedGlobal, &sizes, 0).unwrap_err(),
        "`m` = 30000",
    );
    for (c, key) in [
        (
            ClusterConfig {
                classes: 1_000_000_000,
                ..Default::default()
            },
            "`classes` = 1000000000",
        ),
        (
            ClusterConfig {
                n_trn: 1_000_000_000,
                ..Default::default()
            },
            "`n_trn` = 1000000000",
        ),
    ] {
        too_large(CleaningData::gaussian_clusters(&c).unwrap_err(), key);
    }
    // The problem's own estimate counts the m × m Gram of the exact least-squares solves.
    let f = Cleaning::footprint(40, 20, 0, 1_000_000, 5, CleaningLoss::LeastSquares);
    too_large(f.check_global().unwrap_err(), "`m` = 1000000");
    let f = Cleaning::footprint(40, 20, 0, 1_000_000, 5, CleaningLoss::SoftmaxCrossEntropy);
    assert!(f.bytes() < 10_000_000_000, "{}", f.bytes());
    // Sizes whose products overflow 64 bits are an error, not a wrapped size.
    let e = Quadratic::footprint(usize::MAX / 2, usize::MAX / 2)
        .check(&MemoryLimit::new(u64::MAX))
        .unwrap_err();
    assert!(matches!(e, Error::SizeOverflow { .. }), "{e}");
    // Shipped sizes pass.
    assert!(Quadratic::generate(0, 5, 10).is_ok());
    assert!(CleaningData::gaussian_clusters(&ClusterConfig::default()).is_ok());
}

#[test]
fn data_whose_squares_overflow_names_row_and_column() {
    let mut x = Mat::from_fn(4, 3, |i, j| (i + j) as f64);
    assert!(check_data_scale("x", x.as_ref()).is_ok());
    x[(2, 1)] = 1e74;
    assert!(check_data_scale("x", x.as_ref()).is_ok());
    x[(2, 1)] = -1e76;
    let e = check_data_scale("x.npy", x.as_ref())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("x.npy") && e.contains("-1e76 at row 2, column 1"),
        "{e}"
    );
    assert!(e.contains("rescale"), "{e}");
    assert!(MAX_DATA_SQ_NORM.is_finite());

    // The cleaning problem names the split.
    let mut xt = Mat::from_fn(4, 3, |i, j| if i % 3 == j { 1.0 } else { 0.0 });
    xt[(1, 2)] = 1e200;
    let xv = Mat::from_fn(2, 3, |i, j| (i + j) as f64);
    let data = CleaningData::new(
        Split::new(xt, vec![0, 1, 0, 1]),
        Split::new(xv.clone(), vec![0, 1]),
        Split::empty(3),
        2,
        None,
        "test",
    )
    .unwrap();
    let e = Cleaning::new(data, CleaningSettings::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("training features") && e.contains("1e200 at row 1, column 2"),
        "{e}"
    );
    assert!(!e.contains("smoothness"), "{e}");

    // Representation learning names the matrix.
    let p =
        RepLearning::generate(Regime::General, &RepSizes::quick_for(Regime::General), 0).unwrap();
    let dir = std::env::temp_dir().join(format!("bilevel-rel-{}", std::process::id()));
    p.save_npy(&dir).unwrap();
    let mut xv = bilevel::npy::read_matrix(&dir.join("x_val.npy")).unwrap();
    xv[(0, 3)] = 1e200;
    bilevel::npy::write_matrix(&dir.join("x_val.npy"), &xv).unwrap();
    let e = RepLearning::from_dir(&dir, 10, Scaling::Sum)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("x_val.npy") && e.contains("row 0, column 3"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_start_or_gamma_that_overflows_is_named_not_called_divergence() {
    let q = Quadratic::generate(1, 3, 4).unwrap();
    let opts = RunOptions {
        max_iter: 50,
        ..RunOptions::default()
    };
    let far = (vec![1e300; 3], vec![-1e300; 4]);
    let e = run(
        &q,
        &mut Pbgd::new(Update::Jacobi, 10.0),
        &far.0,
        &far.1,
        &opts,
        &mut [],
    )
    .unwrap_err();
    assert!(e.trace.is_none(), "no partial trace: the run never started");
    match &e.error {
        Error::InvalidSetting { name, .. } => assert_eq!(name, "start point", "{}", e.error),
        other => panic!("expected the start point named, got {other}"),
    }
    let s = e.error.to_string();
    assert!(s.contains("overflow") && !s.contains("alpha"), "{s}");

    let near = (vec![0.5; 3], vec![-0.5; 4]);
    let e = run(
        &q,
        &mut Pbgd::new(Update::Jacobi, 1e300),
        &near.0,
        &near.1,
        &opts,
        &mut [],
    )
    .unwrap_err();
    match &e.error {
        Error::InvalidSetting { name, value, .. } => {
            assert_eq!(name, "gamma", "{}", e.error);
            assert_eq!(value, "1e300");
        }
        other => panic!("expected gamma named, got {other}"),
    }
    // A large but sane γ still runs.
    assert!(
        run(
            &q,
            &mut Pbgd::new(Update::Jacobi, 1e6),
            &near.0,
            &near.1,
            &opts,
            &mut []
        )
        .is_ok()
    );
}
