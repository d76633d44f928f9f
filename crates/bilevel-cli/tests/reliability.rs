//! Issue 18 through the built binary: oversized inputs refused by the memory estimate before
//! anything is allocated (each run under an address-space limit set here, so a regression fails
//! the test instead of taking the machine down), bounded records, and messages that name the
//! real cause (a data value too large, a start too far out, a γ that overflows).

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Address-space limit of the guarded runs, in KiB (`ulimit -v`): 4 GB.
const ULIMIT_KIB: u64 = 4_000_000;

/// Runs `bilevel ARGS` under `ulimit -v` and a 60 s deadline; returns the output and the time.
fn guarded(args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -v {ULIMIT_KIB}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_bilevel"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let deadline = t + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("bilevel {args:?} ran past 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), t.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `cfg` as NAME.toml in a fresh folder and runs it (guarded) into NAME/out.
fn run_config(name: &str, cfg: &str) -> (Output, Duration, std::path::PathBuf) {
    let dir = temp_dir(&format!("rel-{name}"));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, cfg).unwrap();
    let out = dir.join("out");
    let (o, t) = guarded(&[
        "run",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    (o, t, out)
}

const SOLVER: &str = "[solver]\nkind = \"pbgd\"\ngamma = 10.0\n[run]\nmax_iter = 10\n";

/// Exit 1, at once, with the estimate, the limit, the key that drives it and the fix; the output
/// folder untouched.
fn assert_too_large(name: &str, problem: &str, key: &str) {
    let cfg = format!("seeds = [0]\n[problem]\n{problem}\n{SOLVER}");
    let (o, t, out) = run_config(name, &cfg);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{name}: {e}");
    assert!(
        e.contains("would need about") && e.contains("memory limit") && e.contains(key),
        "{name}: {e}"
    );
    assert!(
        e.contains("--max-memory") && e.contains("max_memory"),
        "{e}"
    );
    assert!(
        !e.contains("panicked") && !e.contains("memory allocation"),
        "{e}"
    );
    assert!(t < Duration::from_secs(20), "{name} took {t:?}");
    assert!(!out.exists(), "{name}: the output folder was touched");
}

#[test]
fn oversized_replearn_is_refused_by_the_estimate() {
    assert_too_large(
        "replearn-ntrn",
        "kind = \"replearn\"\nregime = \"general\"\nn_trn = 1000000000",
        "`n_trn` = 1000000000",
    );
    // The certified-global closed forms: m × m projectors and SVDs, the m × h layer.
    assert_too_large(
        "replearn-mh",
        "kind = \"replearn\"\nregime = \"certified-global\"\nm = 30000\nh = 30000",
        "`m` = 30000",
    );
}

#[test]
fn oversized_quadratic_is_refused_by_the_estimate() {
    assert_too_large(
        "quadratic",
        "kind = \"quadratic\"\ndu = 100000\ndv = 100000",
        "`du` = 100000 and `dv` = 100000",
    );
}

#[test]
fn oversized_cleaning_is_refused_by_the_estimate() {
    assert_too_large(
        "cleaning-classes",
        "kind = \"cleaning\"\ndata = \"clusters\"\nclasses = 1000000000",
        "`classes` = 1000000000",
    );
    // Was an abort: "memory allocation of 8000000000 bytes failed".
    assert_too_large(
        "cleaning-ntrn",
        "kind = \"cleaning\"\ndata = \"clusters\"\nn_trn = 1000000000",
        "`n_trn` = 1000000000",
    );
    // Was a process growing past 5.6 GB: the m × m Gram of the exact solves.
    assert_too_large(
        "cleaning-m",
        "kind = \"cleaning\"\ndata = \"paper\"\nm = 1000000",
        "`m` = 1000000",
    );
}

#[test]
fn the_limit_follows_the_flag_and_the_config_key() {
    // A small problem passes under the machine's memory, is refused under a tiny limit from
    // either source, and the flag wins over the key.
    let problem = "kind = \"quadratic\"\ndu = 40\ndv = 40";
    let dir = temp_dir("rel-limit");
    let write = |name: &str, run: &str| {
        let p = dir.join(name);
        std::fs::write(
            &p,
            format!(
                "seeds = [0]\n[problem]\n{problem}\n[solver]\nkind = \"pbgd\"\ngamma = 10.0\n[run]\nmax_iter = 10\n{run}"
            ),
        )
        .unwrap();
        p
    };
    let plain = write("plain.toml", "");
    let keyed = write("keyed.toml", "max_memory = \"100k\"\n");
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let out = |n: &str| p(&dir.join(n));
    let (o, _) = guarded(&["run", &p(&plain), "--out", &out("a")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (o, _) = guarded(&[
        "--max-memory",
        "100k",
        "run",
        &p(&plain),
        "--out",
        &out("b"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the memory limit is 100.0 kB"),
        "{}",
        stderr(&o)
    );
    let (o, _) = guarded(&["run", &p(&keyed), "--out", &out("c")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the memory limit is 100.0 kB"),
        "{}",
        stderr(&o)
    );
    let (o, _) = guarded(&["--max-memory", "1G", "run", &p(&keyed), "--out", &out("d")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Bad sizes name the flag or the key.
    let (o, _) = guarded(&["--max-memory", "lots", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--max-memory lots"), "{}", stderr(&o));
    let bad = write("bad.toml", "max_memory = \"-3G\"\n");
    let (o, _) = guarded(&["run", &p(&bad), "--out", &out("e")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("`max_memory` = \"-3G\""),
        "{}",
        stderr(&o)
    );
}

fn write_files(dir: &Path, x_trn: &str) {
    std::fs::write(dir.join("train_x.csv"), x_trn).unwrap();
    std::fs::write(dir.join("train_y.csv"), "0\n1\n0\n1\n").unwrap();
    std::fs::write(dir.join("val_x.csv"), "1,0,2\n0,1,1\n").unwrap();
    std::fs::write(dir.join("val_y.csv"), "0\n1\n").unwrap();
}

const FILES: &str = "seeds = [0]\n[problem]\nkind = \"cleaning\"\ndata = \"files\"\nlambda = 1.0\n[problem.files]\ntrain_x = \"train_x.csv\"\ntrain_y = \"train_y.csv\"\nval_x = \"val_x.csv\"\nval_y = \"val_y.csv\"\n[solver]\nkind = \"pbgd\"\ngamma = 10.0\n[run]\nmax_iter = 20\n";

#[test]
fn a_huge_feature_value_names_its_file_row_and_column() {
    let dir = temp_dir("rel-scale");
    write_files(&dir, "1,0,0\n0,1,0\n0,1e200,0\n1,1,1\n");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, FILES).unwrap();
    let out = dir.join("out");
    let (o, _) = guarded(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("train_x.csv"), "{e}");
    assert!(e.contains("1e200 at row 2, column 1"), "{e}");
    assert!(e.contains("rescale"), "{e}");
    assert!(!e.contains("smoothness"), "{e}");
    assert!(!out.exists());
    // The same data with sane values runs.
    write_files(&dir, "1,0,0\n0,1,0\n0,2,0\n1,1,1\n");
    let (o, _) = guarded(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn huge_labels_are_a_clear_error() {
    for label in ["1000000000000", "1e300"] {
        let dir = temp_dir(&format!("rel-label-{}", label.len()));
        write_files(&dir, "1,0,0\n0,1,0\n0,2,0\n1,1,1\n");
        std::fs::write(dir.join("train_y.csv"), format!("0\n{label}\n0\n1\n")).unwrap();
        let cfg = dir.join("c.toml");
        std::fs::write(&cfg, FILES).unwrap();
        let out = dir.join("out");
        let (o, t) = guarded(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains("train_y.csv") && e.contains("label"), "{e}");
        assert!(
            !e.contains("`classes` = 0") && !e.contains("panicked"),
            "{e}"
        );
        assert!(t < Duration::from_secs(20));
    }
}

const QUADRATIC: &str =
    "seeds = [0, 1]\n[problem]\nkind = \"quadratic\"\ndu = 3\ndv = 4\n[solver]\nkind = \"pbgd\"\n";

#[test]
fn a_start_too_far_out_names_the_start_keys_not_divergence() {
    let cfg =
        format!("{QUADRATIC}gamma = 10.0\n[run]\nmax_iter = 100\n[start]\nbox = [-1e300, 1e300]\n");
    let (o, _, out) = run_config("start", &cfg);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("[start] `box` = [-1e300, 1e300]"), "{e}");
    assert!(e.contains("start point") && e.contains("overflow"), "{e}");
    assert!(!e.contains("diverged") && !e.contains("alpha"), "{e}");
    assert!(!out.exists(), "checked before the output folder is touched");
}

#[test]
fn a_gamma_that_overflows_is_an_error_naming_gamma() {
    let cfg = format!("{QUADRATIC}gamma = 1e300\n[run]\nmax_iter = 100\n");
    let (o, _, out) = run_config("gamma", &cfg);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("`gamma` = 1e300") && e.contains("smaller gamma"),
        "{e}"
    );
    assert!(!e.contains("diverged"), "{e}");
    assert!(!out.exists());
}

fn csv_records(p: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn records_are_bounded_by_default() {
    // 10⁹ iterations cut at 2 s: at most ~10,001 records, a small CSV and a small figure.
    let cfg = "seeds = [0]\n[problem]\nkind = \"example1\"\n[solver]\nkind = \"pbgd\"\ngamma = 10.0\n[run]\nmax_iter = 1000000000\nmax_time_s = 2.0\n";
    let (o, t, out) = run_config("records", cfg);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let csv = out.join("traces/seed0.csv");
    let recs = csv_records(&csv);
    assert!(
        recs.len() >= 2 && recs.len() <= 10_001,
        "{} records",
        recs.len()
    );
    // record_every = ceil(10⁹ / 10⁴): the first record at 0, the next at 100,000.
    assert_eq!(recs[0][0], "0");
    if recs.len() > 2 {
        assert_eq!(recs[1][0], "100000");
    }
    assert!(std::fs::metadata(&csv).unwrap().len() < 5_000_000);
    let svg = std::fs::metadata(out.join("figures/convergence.svg"))
        .unwrap()
        .len();
    assert!(svg < 2_000_000, "svg of {svg} bytes");
    assert!(t < Duration::from_secs(30), "{t:?}");
}

#[test]
fn max_records_and_an_explicit_record_every() {
    let base = "seeds = [0]\n[problem]\nkind = \"example1\"\n[solver]\nkind = \"pbgd\"\ngamma = 10.0\n[run]\nmax_iter = 1000\n";
    // max_records = 50 over 1000 iterations: every 20th, plus the first.
    let (o, _, out) = run_config("maxrec", &format!("{base}max_records = 50\n"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let recs = csv_records(&out.join("traces/seed0.csv"));
    assert_eq!(recs.len(), 51);
    assert_eq!(recs[1][0], "20");
    assert_eq!(recs[50][0], "1000");
    // An explicit record_every wins over max_records.
    let (o, _, out) = run_config(
        "every",
        &format!("{base}max_records = 50\nrecord_every = 1\n"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(csv_records(&out.join("traces/seed0.csv")).len(), 1001);
    // The default over 1000 iterations keeps every one.
    let (o, _, out) = run_config("default", base);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(csv_records(&out.join("traces/seed0.csv")).len(), 1001);
    let (o, _, _) = run_config("zero", &format!("{base}max_records = 0\n"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("`max_records` = 0"), "{}", stderr(&o));
}

#[test]
fn ctrl_c_during_run_exits_130_and_writes_the_partial_run() {
    let dir = temp_dir("rel-int");
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "seeds = [0, 1]\n[problem]\nkind = \"example1\"\n[solver]\nkind = \"pbgd\"\ngamma = 10.0\n[run]\nmax_iter = 1000000000\nmax_time_s = 60.0\n",
    )
    .unwrap();
    let out = dir.join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let k = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    // The seed cut short keeps its trace and its point, marked partial; the next seed is not run.
    assert!(out.join("traces/seed0.csv").exists());
    assert!(!out.join("traces/seed1.csv").exists());
    let sol: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("solutions/seed0/solution.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sol["partial"], true, "{sol}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.to_lowercase().contains("interrupted"), "{report}");
}
