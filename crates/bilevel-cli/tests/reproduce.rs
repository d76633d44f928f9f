//! `bilevel reproduce --quick`: every experiment passes and every figure it references is a
//! valid PNG/SVG. Generic over whatever `bilevel::experiments::all()` holds.

mod common;
use common::*;

#[test]
fn quick_reproduce_passes_and_writes_valid_figures() {
    let out = temp_dir("reproduce");
    let o = bilevel(&["reproduce", "--quick", "--out", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "reproduce failed: {stderr}");
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md is written");
    assert!(!md.contains("FAIL"), "the report has a FAIL:\n{md}");
    assert!(
        !md.contains("ERROR"),
        "an experiment stopped with an error:\n{md}"
    );
    let links = md_links(&md);
    let mut pngs = 0;
    for l in &links {
        let p = out.join(l);
        assert!(p.exists(), "report links to {l}, which does not exist");
        if l.ends_with(".png") {
            assert_png(&p);
            pngs += 1;
            let svg = p.with_extension("svg");
            assert_svg(&svg);
        } else if l.ends_with(".svg") {
            assert_svg(&p);
        }
    }
    // Every experiment has a section, a JSON summary, and every figure file written is linked.
    for e in bilevel::experiments::all() {
        assert!(
            md.contains(&format!("## {}:", e.name())),
            "no section for {}",
            e.name()
        );
        let j = out.join("traces").join(e.name()).join("summary.json");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&j).expect("summary.json exists"))
                .unwrap();
        assert_eq!(
            v["passed"],
            serde_json::Value::Bool(true),
            "{}",
            j.display()
        );
        assert!(
            v["claims"].as_array().is_some_and(|c| !c.is_empty()),
            "{} has no claims",
            j.display()
        );
    }
    let written: Vec<_> = std::fs::read_dir(out.join("figures"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(pngs > 0, "no figure in the report");
    for f in written.iter().filter(|f| f.ends_with(".png")) {
        assert!(
            links.iter().any(|l| l == &format!("figures/{f}")),
            "figure {f} is not in the report"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn unknown_experiment_lists_valid_names() {
    let out = temp_dir("reproduce-unknown");
    let o = bilevel(&[
        "reproduce",
        "no-such-figure",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("no-such-figure"), "{e}");
    for x in bilevel::experiments::all() {
        assert!(
            e.contains(x.name()),
            "valid name {} missing from: {e}",
            x.name()
        );
    }
}

#[test]
fn a_missing_data_set_is_skipped_not_passed() {
    let out = temp_dir("reproduce-skip");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args([
            "reproduce",
            "cleaning",
            "--quick",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("BILEVEL_FASHION_MNIST_DIR", out.join("no-such-dir"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("1 part(s) SKIPPED"), "{stdout}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let top: String = report.lines().take(8).collect::<Vec<_>>().join("\n");
    assert!(
        top.contains("1 part(s) SKIPPED") && top.contains("apt-get install dataset-fashion-mnist"),
        "{top}"
    );
    assert!(report.contains("PASS, 1 part(s) SKIPPED"), "{report}");
    let _ = std::fs::remove_dir_all(&out);
}
