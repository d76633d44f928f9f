//! `bilevel run`, `check` and `list` through the built binary.

mod common;
use common::*;
use std::path::Path;

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap();
}

#[test]
fn every_shipped_config_parses_and_runs() {
    let dir = repo_root().join("configs");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        n += 1;
        bilevel_cli::config::Config::load(&p).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
        // Same file with a small iteration budget (and a small subset of Fashion-MNIST).
        let text = std::fs::read_to_string(&p).unwrap();
        let fashion = text.contains("data = \"fashion-mnist\"");
        let fm_dir = std::path::Path::new(bilevel::data::FASHION_MNIST_DIR);
        if fashion
            && !["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"]
                .iter()
                .any(|f| fm_dir.join(f).exists())
        {
            println!(
                "SKIPPED running {}: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)",
                p.display()
            );
            continue;
        }
        let small: String = text
            .lines()
            .map(|l| {
                let t = l.trim_start();
                if t.starts_with("max_iter") {
                    "max_iter = 40"
                } else if fashion && (t.starts_with("n_trn") || t.starts_with("n_val")) {
                    if t.starts_with("n_trn") {
                        "n_trn = 500"
                    } else {
                        "n_val = 500"
                    }
                } else if fashion && t.starts_with("n_test") {
                    "n_test = 500"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        let tmp = temp_dir(&format!("cfg-{stem}"));
        let cfg = tmp.join(format!("{stem}.toml"));
        write(&cfg, &small);
        let out = tmp.join("out");
        let o = bilevel(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.join("report.md").exists());
        let traces: Vec<_> = std::fs::read_dir(out.join("traces")).unwrap().collect();
        assert!(!traces.is_empty(), "{}: no traces", p.display());
        assert_png(&out.join("figures/convergence.png"));
        assert_svg(&out.join("figures/convergence.svg"));
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(n >= 3, "expected a config per problem in {}", dir.display());
}

const DIVERGING: &str = r#"
seeds = [0, 1]
[problem]
kind = "example1"
[solver]
kind = "pbgd"
gamma = 10
alpha = 5.0
[run]
max_iter = 1000
[output]
formats = ["csv", "json"]
"#;

#[test]
fn diverging_run_exits_nonzero_and_keeps_partial_trace() {
    let tmp = temp_dir("diverge");
    let cfg = tmp.join("div.toml");
    write(&cfg, DIVERGING);
    let out = tmp.join("out");
    let o = bilevel(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("diverged") && err.contains("alpha"), "{err}");
    let csv = std::fs::read_to_string(out.join("traces/seed0.csv")).unwrap();
    let rows = csv.lines().count();
    assert!((2..1000).contains(&rows), "partial trace of {rows} lines");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("traces/seed0.json")).unwrap())
            .unwrap();
    assert_eq!(json["status"]["status"], "diverged", "{}", json["status"]);
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .contains("diverged")
    );
    // The last finite point is written, and marked partial.
    let sol: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("solutions/seed0/solution.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sol["partial"], true, "{sol}");
    let u = bilevel::npy::read_matrix(&out.join("solutions/seed0/u.npy")).unwrap();
    assert!((0..u.nrows()).all(|i| u[(i, 0)].is_finite()));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn same_config_gives_identical_traces() {
    let tmp = temp_dir("determinism");
    let cfg = repo_root().join("configs/quadratic.toml");
    let mut csvs = Vec::new();
    for k in 0..2 {
        let out = tmp.join(format!("out{k}"));
        let o = bilevel(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(out.join("traces/seed1.csv")).unwrap();
        // Drop the wall-time column (the second).
        let rows: Vec<String> = text
            .lines()
            .map(|l| {
                let mut c: Vec<&str> = l.split(',').collect();
                c.remove(1);
                c.join(",")
            })
            .collect();
        csvs.push(rows);
    }
    assert!(csvs[0].len() > 2);
    assert_eq!(csvs[0], csvs[1]);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn quadratic_from_npy_files() {
    let tmp = temp_dir("npy");
    let q = bilevel::problems::Quadratic::generate(3, 2, 3).unwrap();
    std::fs::create_dir_all(tmp.join("data")).unwrap();
    q.save_npy(&tmp.join("data")).unwrap();
    let cfg = tmp.join("q.toml");
    write(
        &cfg,
        r#"seeds = [5]
[problem]
kind = "quadratic"
du = 2
hf = "data/hf.npy"
bf = "data/bf.npy"
hg = "data/hg.npy"
bg = "data/bg.npy"
[solver]
kind = "pbgd"
gamma = 5
[run]
max_iter = 50
"#,
    );
    let out = tmp.join("out");
    let o = bilevel(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("traces/seed5.csv").exists());
    // A missing file is named in the error.
    write(
        &cfg,
        &std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("data/bg.npy", "data/nope.npy"),
    );
    let o = bilevel(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.npy"));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn check_example1_passes() {
    let o = bilevel(&["check", "example1", "--seed", "3"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert_eq!(out.matches("PASS").count(), 5, "{out}");
    assert!(!out.contains("FAIL"));
    let o = bilevel(&["check", "nope"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("example1"));
}

#[test]
fn list_names_problems_solvers_experiments() {
    let o = bilevel(&["list"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for (k, _) in bilevel_cli::config::PROBLEM_KINDS
        .iter()
        .chain(bilevel_cli::config::SOLVER_KINDS)
    {
        assert!(out.contains(k), "{k} missing from list");
    }
    for e in bilevel::experiments::all() {
        assert!(out.contains(e.name()) && out.contains(e.title()));
    }
}

#[test]
fn flatness_observer_adds_trace_columns() {
    let tmp = temp_dir("flatness-cols");
    let cfg = tmp.join("alt.toml");
    write(
        &cfg,
        r#"
seeds = [0]
[problem]
kind = "counterexample"
[solver]
kind = "alt-pbgd"
gamma = 10.0
v_block = "gradient"
w_block = "gradient"
inner_steps = 5
[run]
max_iter = 200
record_every = 10
[start]
u0 = [1.0]
v0 = [-3.0]
[observe]
flatness = true
[output]
formats = ["csv", "json"]
"#,
    );
    let out = tmp.join("out");
    let o = bilevel(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("traces/seed0.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let k = header.iter().position(|c| *c == "grad_reduced").unwrap();
    assert!(header.contains(&"flatness_floor"), "{header:?}");
    // ALT-PBGD reaches u = −5, where ∇F_γ = 2u + 10 = 0.
    let last: f64 = csv
        .lines()
        .last()
        .unwrap()
        .split(',')
        .nth(k)
        .unwrap()
        .parse()
        .unwrap();
    assert!(last < 1e-3, "‖∇F_γ‖ at the end: {last}");
    let json = std::fs::read_to_string(out.join("traces/seed0.json")).unwrap();
    assert!(json.contains("\"extra_names\""));
    assert_png(&out.join("figures/convergence.png"));
    let _ = std::fs::remove_dir_all(&tmp);
}
