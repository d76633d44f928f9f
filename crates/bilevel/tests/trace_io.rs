//! Traces as data: CSV and JSON round trips, NaN handling, observers.

use bilevel::problems::{Example1, Quadratic};
use bilevel::trace::{Observer, PathRecorder, Snapshot};
use bilevel::{Pbgd, RunOptions, Status, Trace, run};
use proptest::prelude::*;

fn short_run() -> bilevel::RunOutput {
    let q = Quadratic::generate(2, 2, 3).unwrap();
    let o = RunOptions {
        max_iter: 40,
        record_every: 10,
        ..RunOptions::default()
    };
    run(
        &q,
        &mut Pbgd::jacobi(5.0),
        &[0.5, -0.5],
        &[0.0; 3],
        &o,
        &mut [],
    )
    .unwrap()
}

#[test]
fn csv_has_one_header_and_one_row_per_record_at_full_precision() {
    let out = short_run();
    let mut buf = Vec::new();
    out.trace.write_csv(&mut buf).unwrap();
    let mut rd = csv::Reader::from_reader(&buf[..]);
    let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, out.trace.columns());
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), out.trace.records.len());
    assert_eq!(rows.len(), 5);
    let l_col = header.iter().position(|h| h == "l_gamma").unwrap();
    for (row, rec) in rows.iter().zip(&out.trace.records) {
        let parsed: f64 = row[l_col].parse().unwrap();
        assert_eq!(
            parsed.to_bits(),
            rec.l_gamma.to_bits(),
            "CSV loses precision"
        );
        assert_eq!(row[0].parse::<usize>().unwrap(), rec.iter);
    }
}

#[test]
fn csv_writes_unknown_quantities_as_empty_cells() {
    // The toy problem has no penalty optimum: l_gap and dist_opt are unknown.
    let toy = bilevel::problems::Toy1d::default();
    let out = run(
        &toy,
        &mut Pbgd::jacobi(1.0),
        &[1.0],
        &[0.0],
        &RunOptions {
            max_iter: 3,
            ..RunOptions::default()
        },
        &mut [],
    )
    .unwrap();
    let mut buf = Vec::new();
    out.trace.write_csv(&mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    let gap = header.iter().position(|h| h == "l_gap").unwrap();
    let fgap = header.iter().position(|h| h == "f_gap").unwrap();
    for row in rd.records() {
        let row = row.unwrap();
        assert_eq!(&row[gap], "");
        assert!(!row[fgap].is_empty(), "the toy certifies f*");
    }
}

#[test]
fn json_round_trip_keeps_status_and_turns_nan_into_null() {
    let out = short_run();
    let dir = std::env::temp_dir().join(format!("bilevel-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.json");
    out.trace.save_json(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["status"]["status"], "max-iterations");
    assert_eq!(
        v["records"].as_array().unwrap().len(),
        out.trace.records.len()
    );
    assert_eq!(v["g_star_source"], "exact");
    // A NaN field (unknown) is written as null.
    let mut t: Trace = out.trace.clone();
    t.records[0].dist_opt = f64::NAN;
    t.save_json(&path).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(v["records"][0]["dist_opt"].is_null());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn observers_see_every_record_and_the_end() {
    struct Count(usize, Option<Status>);
    impl Observer for Count {
        fn observe(&mut self, _s: &Snapshot<'_>) {
            self.0 += 1;
        }
        fn finish(&mut self, status: &Status) {
            self.1 = Some(status.clone());
        }
    }
    let mut c = Count(0, None);
    let mut path = PathRecorder::default();
    let o = RunOptions {
        max_iter: 25,
        record_every: 10,
        ..RunOptions::default()
    };
    let out = run(
        &Example1,
        &mut Pbgd::jacobi(1.0),
        &[2.0],
        &[-1.0],
        &o,
        &mut [&mut c, &mut path],
    )
    .unwrap();
    // Records at 0, 10, 20 and the final iterate 25.
    assert_eq!(c.0, 4);
    assert_eq!(c.1, Some(Status::MaxIterations));
    assert_eq!(path.points.len(), 4);
    assert_eq!(path.points[3].1, out.u);
    assert_eq!(path.points[0].1, vec![2.0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Gradients of random quadratic instances at random points pass the check (≤ 1e-6).
    #[test]
    fn random_quadratics_pass_the_gradient_check(seed in 0u64..10_000, du in 1usize..5, dv in 1usize..5,
                                                 scale in 0.1f64..5.0) {
        let q = Quadratic::generate(seed, du, dv).unwrap();
        let u: Vec<f64> = (0..du).map(|i| scale * ((i as f64 * 1.7 + seed as f64).sin())).collect();
        let v: Vec<f64> = (0..dv).map(|i| scale * ((i as f64 * 2.3 - seed as f64).cos())).collect();
        let c = bilevel::diagnostics::gradient_check(&q, &u, &v, 64);
        prop_assert!(c.max() <= 1e-6, "{:?}", c);
    }

    /// The penalty optimum never lies above the bilevel optimum: min L_γ ≤ f*, and it
    /// increases with γ.
    #[test]
    fn penalty_optimum_is_below_the_bilevel_optimum(seed in 0u64..10_000) {
        let q = Quadratic::generate(seed, 2, 3).unwrap();
        let fs = q.bilevel_solution().2;
        let mut prev = f64::NEG_INFINITY;
        for gamma in [0.1, 1.0, 10.0, 100.0] {
            let l = q.penalty_solution(gamma).unwrap().value;
            prop_assert!(l <= fs + 1e-9 * (1.0 + fs.abs()), "gamma {}: {} > f* {}", gamma, l, fs);
            prop_assert!(l >= prev - 1e-9 * (1.0 + l.abs()));
            prev = l;
        }
    }
}
