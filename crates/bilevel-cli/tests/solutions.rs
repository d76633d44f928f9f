//! `bilevel run` writes the solution (u, v and the problem's named arrays) and, for
//! hyper-cleaning, an assessment whose numbers the test recomputes from the written files.

mod common;
use common::{bilevel, repo_root, temp_dir};
use std::path::Path;

fn vector(p: &Path) -> Vec<f64> {
    let m = bilevel::npy::read_matrix(p).unwrap();
    assert_eq!(m.ncols(), 1, "{}", p.display());
    (0..m.nrows()).map(|i| m[(i, 0)]).collect()
}

fn bools(p: &Path) -> Vec<bool> {
    let bytes = std::fs::read(p).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.dtype().descr().trim_matches('\''), "|b1");
    npy.into_vec::<bool>().unwrap()
}

fn last_row(csv: &Path) -> std::collections::HashMap<String, f64> {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let last: Vec<f64> = lines
        .last()
        .unwrap()
        .split(',')
        .map(|x| x.parse().unwrap_or(f64::NAN))
        .collect();
    header.into_iter().zip(last).collect()
}

#[test]
fn cleaning_solution_files_match_the_trace_and_the_report() {
    let tmp = temp_dir("solutions-cleaning");
    let cfg = tmp.join("c.toml");
    let text = std::fs::read_to_string(repo_root().join("configs/cleaning.toml"))
        .unwrap()
        .replace("max_iter = 2000", "max_iter = 200");
    write(&cfg, &text);
    let out = tmp.join("out");
    let o = bilevel(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = out.join("solutions/seed0");
    let u = vector(&dir.join("u.npy"));
    let v = vector(&dir.join("v.npy"));
    let psi = vector(&dir.join("sample_weights.npy"));
    let flagged = bools(&dir.join("flagged.npy"));
    let model = bilevel::npy::read_matrix(&dir.join("model.npy")).unwrap();

    let cfg_parsed = bilevel_cli::config::Config::load(&cfg).unwrap();
    let problem = cfg_parsed.problem.build(&cfg_parsed.base_dir).unwrap();
    assert_eq!((u.len(), v.len()), (problem.dim_u(), problem.dim_v()));
    // u_scale = 30 in configs/cleaning.toml.
    for i in 0..u.len() {
        let w = 1.0 / (1.0 + (-30.0 * u[i]).exp());
        assert!((psi[i] - w).abs() <= 1e-15, "weight {i}");
        assert_eq!(flagged[i], psi[i] < 0.5);
    }
    let (m, n) = (model.nrows(), model.ncols());
    assert_eq!(m * n, v.len());
    for i in 0..m {
        for j in 0..n {
            assert_eq!(model[(i, j)], v[i + j * m], "model is W, column-major in v");
        }
    }
    // The trace's final row is this point.
    let row = last_row(&out.join("traces/seed0.csv"));
    let f = problem.f(&u, &v, None, None);
    assert!(
        (row["f"] - f).abs() <= 1e-12 * f.abs().max(1.0),
        "f {} vs {f}",
        row["f"]
    );
    let metrics = problem.metrics(&u, &v);
    for (name, x) in problem.metric_names().iter().zip(&metrics) {
        assert!(
            (row[name] - x).abs() <= 1e-12,
            "{name}: {} vs {x}",
            row[name]
        );
    }
    // The report's numbers, recomputed from the written point.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let a = &summary["runs"][0]["assessment"];
    let again = problem.assess(&u, &v).unwrap().unwrap().summary;
    // serde_json's default float parsing may be one ulp off: compare numbers to 1e-14.
    fn close(a: &serde_json::Value, b: &serde_json::Value, path: &str) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                assert_eq!(x.len(), y.len(), "{path}");
                for (k, xv) in x {
                    close(xv, &y[k], &format!("{path}.{k}"));
                }
            }
            (serde_json::Value::Number(x), serde_json::Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!(
                    (x - y).abs() <= 1e-14 * x.abs().max(1.0),
                    "{path}: {x} vs {y}"
                );
            }
            _ => assert_eq!(a, b, "{path}"),
        }
    }
    close(a, &again, "assessment");
    assert_eq!(
        a["flagged"].as_u64().unwrap() as usize,
        flagged.iter().filter(|&&x| x).count()
    );
    let f1 = a["f1"].as_f64().unwrap();
    assert!((f1 - row["f1"]).abs() <= 1e-12);
    assert!(a["gap_closed"]["retrained_kept"].as_f64().unwrap() > 0.5);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Cleaning result, seed 0"), "{report}");
    assert!(report.contains("retrained on the kept samples"));
    assert!(out.join("figures/metrics.png").exists());
    let sj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("solution.json")).unwrap()).unwrap();
    assert_eq!(sj["partial"], false);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn replearn_writes_both_layers() {
    let tmp = temp_dir("solutions-replearn");
    let cfg = tmp.join("r.toml");
    write(
        &cfg,
        "seeds = [3]\n[problem]\nkind = \"replearn\"\nn_trn = 10\nn_val = 10\nm = 30\nh = 35\nn = 3\n[solver]\nkind = \"pbgd\"\ngamma = 10\n[run]\nmax_iter = 20\n",
    );
    let out = tmp.join("out");
    let o = bilevel(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = out.join("solutions/seed3");
    let w1 = bilevel::npy::read_matrix(&dir.join("w1.npy")).unwrap();
    let w2 = bilevel::npy::read_matrix(&dir.join("w2.npy")).unwrap();
    assert_eq!(
        (w1.nrows(), w1.ncols(), w2.nrows(), w2.ncols()),
        (30, 35, 35, 3)
    );
    let u = vector(&dir.join("u.npy"));
    assert_eq!(w1[(4, 7)], u[4 + 7 * 30]);
    let _ = std::fs::remove_dir_all(&tmp);
}

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap();
}

/// Writes a 1-D .npy of `T` (any npyz-serializable element type).
fn npy_1d<T: npyz::Serialize + npyz::AutoSerialize + Copy>(p: &Path, v: &[T]) {
    use npyz::WriterBuilder;
    let f = std::fs::File::create(p).unwrap();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[v.len() as u64])
        .writer(std::io::BufWriter::new(f))
        .begin_nd()
        .unwrap();
    w.extend(v.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// Gaussian clusters written as the files of `data = "files"`; labels in the format `fmt`.
fn cluster_files(dir: &Path, classes: usize, fmt: &str) -> String {
    use bilevel::problems::cleaning::{CleaningData, ClusterConfig};
    let d = CleaningData::gaussian_clusters(&ClusterConfig {
        n_trn: 120,
        n_val: 60,
        n_test: 100,
        m: 5,
        classes,
        p: 0.3,
        separation: 5.0,
        seed: 11,
    })
    .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let names = ["cat", "dog", "eel"];
    let mut keys = String::new();
    for (split, s) in [("train", &d.train), ("val", &d.val), ("test", &d.test)] {
        bilevel::npy::write_matrix(&dir.join(format!("{split}_x.npy")), &s.x).unwrap();
        let y = match fmt {
            "i64" => {
                let v: Vec<i64> = s.labels.iter().map(|&l| l as i64).collect();
                npy_1d(&dir.join(format!("{split}_y.npy")), &v);
                format!("{split}_y.npy")
            }
            "u8" => {
                let v: Vec<u8> = s.labels.iter().map(|&l| l as u8).collect();
                npy_1d(&dir.join(format!("{split}_y.npy")), &v);
                format!("{split}_y.npy")
            }
            "bool" => {
                let v: Vec<bool> = s.labels.iter().map(|&l| l == 1).collect();
                npy_1d(&dir.join(format!("{split}_y.npy")), &v);
                format!("{split}_y.npy")
            }
            _ => {
                let mut t = String::from("label\n");
                for &l in &s.labels {
                    t.push_str(names[l]);
                    t.push('\n');
                }
                std::fs::write(dir.join(format!("{split}_y.csv")), t).unwrap();
                format!("{split}_y.csv")
            }
        };
        keys.push_str(&format!(
            "{split}_x = \"{split}_x.npy\"\n{split}_y = \"{y}\"\n"
        ));
    }
    format!(
        "seeds = [0]\n[problem]\nkind = \"cleaning\"\ndata = \"files\"\nlambda = 1.0\n[problem.files]\n{keys}[solver]\nkind = \"pbgd\"\nupdate = \"gauss-seidel\"\ngamma = 10\ninner = \"exact\"\n[run]\nmax_iter = 30\n"
    )
}

#[test]
fn integer_bool_and_string_labels_run_and_names_are_written() {
    let tmp = temp_dir("solutions-labels");
    for (fmt, classes) in [("i64", 3), ("u8", 3), ("bool", 2), ("names", 3)] {
        let data = tmp.join(fmt);
        let cfg_text = cluster_files(&data, classes, fmt);
        let cfg = data.join("c.toml");
        write(&cfg, &cfg_text);
        let out = data.join("out");
        let o = bilevel(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "{fmt}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let model = bilevel::npy::read_matrix(&out.join("solutions/seed0/model.npy")).unwrap();
        assert_eq!((model.nrows(), model.ncols()), (5, classes), "{fmt}");
        let names = out.join("solutions/seed0/classes.json");
        if fmt == "names" {
            let v: Vec<String> =
                serde_json::from_str(&std::fs::read_to_string(&names).unwrap()).unwrap();
            assert_eq!(v, ["cat", "dog", "eel"]);
        } else {
            assert!(!names.exists(), "{fmt}: no names for numeric labels");
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
