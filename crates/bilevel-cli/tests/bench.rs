//! `bilevel bench` through the built binary: what it exports for the peers is complete and
//! consistent with the library, and bad sizes get a clear error.

mod common;
use common::*;

fn json(p: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn bench_exports_the_small_cases_and_the_run_to_tolerance() {
    let out = temp_dir("bench-small");
    let o = bilevel(&["bench", "--out", out.to_str().unwrap(), "--sizes", "small"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ours = json(&out.join("ours.json"));
    let cases: Vec<String> = ours["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(cases, ["small-jacobi", "small-gauss-seidel"]);
    for c in ours["cases"].as_array().unwrap() {
        assert!(c["seconds"].as_f64().unwrap() > 0.0);
        assert!(c["floor"].as_f64().unwrap() > 0.0);
    }
    let runs = ours["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["name"], "small-jacobi-run");
    let dir = out.join("small-jacobi-run");
    for f in [
        "x_trn.npy",
        "y_trn.npy",
        "x_val.npy",
        "y_val.npy",
        "w1_0.npy",
        "w2_0.npy",
        "w_0.npy",
        "w1_k.npy",
        "w2_k.npy",
        "w_k.npy",
        "z_star.npy",
        "row_proj.npy",
        "case.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert_eq!(&json(&dir.join("case.json")), run);
    // The run reached the tolerance, in as many iterations as the library's run to it takes.
    let tol = run["tol"].as_f64().unwrap();
    assert!(run["final_dist"].as_f64().unwrap() <= tol);
    let (regime, sizes) = bilevel_bench::RepSize::Small.sizes();
    let p = bilevel::problems::replearn::RepLearning::generate(regime, &sizes, 0).unwrap();
    let (iters, _, _) =
        bilevel_bench::replearn_run_to_tol(&p, bilevel::Update::Jacobi, 0, tol).unwrap();
    assert_eq!(run["iters"].as_u64().unwrap() as usize, iters);
    assert!(
        iters > 100,
        "a run of {iters} iterations is too short to time"
    );
}

#[test]
fn bench_rejects_an_unknown_size() {
    let out = temp_dir("bench-bad");
    let o = bilevel(&["bench", "--out", out.to_str().unwrap(), "--sizes", "huge"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unknown size \"huge\"") && err.contains("small, medium or large"),
        "{err}"
    );
}
