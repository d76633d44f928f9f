//! One output folder per run: refusal of a non-empty --out, --force, the lock, --threads, and
//! Ctrl-C during reproduce.

mod common;
use common::{bilevel, repo_root, temp_dir};

fn run_cfg(cfg: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    bilevel(&args)
}

#[test]
fn a_second_run_into_the_same_folder_is_refused_and_force_replaces_only_ours() {
    let tmp = temp_dir("outdir-force");
    let out = tmp.join("out");
    let cfg = tmp.join("a.toml");
    let text = |seeds: &str, gamma: u32| {
        format!(
            "seeds = {seeds}\n[problem]\nkind = \"example1\"\n[solver]\nkind = \"pbgd\"\ngamma = {gamma}\n[run]\nmax_iter = 50\n"
        )
    };
    std::fs::write(&cfg, text("[0, 5]", 10)).unwrap();
    let o = run_cfg(&cfg, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("traces/seed5.csv").exists());
    std::fs::write(out.join("notes.txt"), "the user's own file").unwrap();

    std::fs::write(&cfg, text("[0]", 20)).unwrap();
    let o = run_cfg(&cfg, &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("not empty") && e.contains("--force"), "{e}");
    // Refused before anything was touched.
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .contains("gamma = 10")
    );

    let o = run_cfg(&cfg, &out, &["--force"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.join("traces/seed5.csv").exists(), "stale trace left");
    assert!(
        out.join("notes.txt").exists(),
        "a file bilevel did not write was deleted"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("gamma = 20") && !report.contains("gamma = 10"));
    // The trace is the same run's: γ = 20 in its records.
    let csv = std::fs::read_to_string(out.join("traces/seed0.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "gamma")
        .expect("a gamma column");
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[col].parse::<f64>().unwrap(), 20.0);
    // No temporary or staging files remain.
    for e in walk(&out) {
        let name = e.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            !name.ends_with(".partial") && !name.contains("staging") && name != ".bilevel.lock",
            "left behind: {}",
            e.display()
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        }
        v.push(p);
    }
    v
}

#[test]
fn a_held_lock_names_the_holder() {
    let tmp = temp_dir("outdir-lock");
    let out = tmp.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // This test's own process is alive, so its pid holds the lock.
    let pid = std::process::id();
    std::fs::write(out.join(".bilevel.lock"), format!("{pid}\n")).unwrap();
    let o = run_cfg(
        &repo_root().join("configs/quadratic.toml"),
        &out,
        &["--force"],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains(&format!("pid {pid}")), "{e}");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn threads_beyond_the_bound_are_refused_at_once() {
    let t = std::time::Instant::now();
    let o = bilevel(&["--threads", "100000", "list"]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("--threads 100000: at most"), "{e}");
    assert!(t.elapsed().as_secs() < 10);
}

#[test]
fn ctrl_c_during_reproduce_exits_130_with_claims_not_run() {
    let tmp = temp_dir("reproduce-int");
    let out = tmp.join("out");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(["reproduce", "--quick", "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let it start an experiment, then send SIGINT as a terminal's Ctrl-C would.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let k = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.starts_with("# bilevel: reproduction report\n\n**Interrupted (Ctrl-C)"),
        "{report}"
    );
    assert!(!report.contains("FAIL"), "{report}");
    assert!(!out.join(".bilevel.lock").exists());
    let _ = std::fs::remove_dir_all(&tmp);
}
