//! Property tests of the config loader: malformed TOML and random key/value combinations never
//! panic, and every error names the key it is about.

use bilevel_cli::config::Config;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// A config as sections of (key, value-literal) pairs; "" is the top level.
type Doc = BTreeMap<String, Vec<(String, String)>>;

fn base(variant: usize) -> Doc {
    let mut d = Doc::new();
    let kv = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, x)| (k.to_string(), x.to_string()))
            .collect()
    };
    d.insert("".into(), kv(&[("seeds", "[0, 1]")]));
    if variant == 0 {
        d.insert(
            "problem".into(),
            kv(&[("kind", "\"quadratic\""), ("du", "2"), ("dv", "3")]),
        );
        d.insert(
            "solver".into(),
            kv(&[("kind", "\"pbgd\""), ("gamma", "10.0")]),
        );
    } else {
        d.insert(
            "problem".into(),
            kv(&[("kind", "\"toy1d\""), ("lo", "0.0"), ("hi", "3.0")]),
        );
        d.insert(
            "solver".into(),
            kv(&[
                ("kind", "\"v-pbgd\""),
                ("gamma_start", "1.0"),
                ("gamma_end", "10.0"),
                ("gamma_iters", "100"),
            ]),
        );
    }
    d.insert("run".into(), kv(&[("max_iter", "100")]));
    d.insert("start".into(), kv(&[("box", "[-1.0, 1.0]")]));
    d.insert("output".into(), kv(&[("figure", "true")]));
    d.insert(
        "solver.smoothness".into(),
        kv(&[("lf", "1.0"), ("lg", "2.0"), ("lg_vv", "1.0")]),
    );
    d
}

fn render(d: &Doc) -> String {
    let mut s = String::new();
    for (k, v) in &d[""] {
        s += &format!("{k} = {v}\n");
    }
    for (sec, kvs) in d.iter().filter(|(k, _)| !k.is_empty()) {
        s += &format!("[{sec}]\n");
        for (k, v) in kvs {
            s += &format!("{k} = {v}\n");
        }
    }
    s
}

const KEYS: &[&str] = &[
    "seeds",
    "kind",
    "du",
    "dv",
    "seed",
    "hf",
    "bf",
    "hg",
    "bg",
    "lo",
    "hi",
    "update",
    "gamma",
    "gamma_start",
    "gamma_end",
    "gamma_iters",
    "c",
    "alpha",
    "alpha0",
    "v_steps",
    "inner",
    "inner_steps",
    "inner_warm",
    "inner_beta",
    "batch_size",
    "smoothness",
    "lf",
    "lg",
    "lg_vv",
    "max_iter",
    "record_every",
    "grad_tol",
    "rel_tol",
    "target",
    "dist_tol",
    "max_time_s",
    "monitor_inner_steps",
    "divergence_factor",
    "u0",
    "v0",
    "box",
    "formats",
    "figure",
];

const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "3",
    "1000000000000",
    "-9223372036854775808",
    "0.0",
    "-0.5",
    "1.5",
    "1e308",
    "nan",
    "inf",
    "-inf",
    "true",
    "false",
    "\"\"",
    "\"x\"",
    "\"jacobi\"",
    "\"gauss-seidel\"",
    "\"gd\"",
    "\"exact\"",
    "\"csv\"",
    "[]",
    "[1]",
    "[1.0, 2.0]",
    "[2.0, 1.0]",
    "[1, 1]",
    "[\"csv\", \"json\"]",
    "[\"pdf\"]",
    "[1, \"a\"]",
    "{}",
    "{ a = 1 }",
    "{ lf = 1.0, lg = 1.0, lg_vv = 1.0 }",
    "1979-05-27",
    "\"data/none.npy\"",
];

const SECTIONS: &[&str] = &[
    "",
    "problem",
    "solver",
    "run",
    "start",
    "output",
    "solver.smoothness",
];

/// The keys each section accepts (for some kind), by section index.
const SECTION_KEYS: &[&[&str]] = &[
    &["seeds"],
    &[
        "kind", "du", "dv", "seed", "hf", "bf", "hg", "bg", "lo", "hi",
    ],
    &[
        "kind",
        "update",
        "gamma",
        "gamma_start",
        "gamma_end",
        "gamma_iters",
        "c",
        "alpha",
        "alpha0",
        "v_steps",
        "inner",
        "inner_steps",
        "inner_warm",
        "inner_beta",
        "batch_size",
        "smoothness",
    ],
    &[
        "max_iter",
        "record_every",
        "grad_tol",
        "rel_tol",
        "target",
        "dist_tol",
        "max_time_s",
        "monitor_inner_steps",
        "divergence_factor",
    ],
    &["u0", "v0", "box"],
    &["formats", "figure"],
    &["lf", "lg", "lg_vv"],
];

/// Sets `key = value` in section `sec` of base config `variant`; the rendered TOML.
fn with(variant: usize, sec: usize, key: &str, value: &str) -> String {
    let mut d = base(variant);
    let section = d.get_mut(SECTIONS[sec]).unwrap();
    match section.iter_mut().find(|(k, _)| k == key) {
        Some(kv) => kv.1 = value.to_string(),
        None => section.push((key.to_string(), value.to_string())),
    }
    render(&d)
}

/// Every section × every key it accepts × every value: accepted, or an error naming the key.
#[test]
fn every_key_with_every_value() {
    let mut errors = 0;
    for variant in 0..2 {
        for (sec, keys) in SECTION_KEYS.iter().enumerate() {
            for key in *keys {
                for value in VALUES {
                    let text = with(variant, sec, key, value);
                    if let Err(msg) = parse(&text) {
                        errors += 1;
                        assert!(
                            names_key(&msg, key),
                            "error does not name `{key}`:\n{msg}\n--- config:\n{text}"
                        );
                    }
                }
            }
        }
    }
    // Most combinations are invalid; the loop must have exercised the error paths.
    assert!(errors > 1000, "only {errors} errors");
}

/// True when `key` appears in `msg` as a whole word (not inside another identifier).
fn names_key(msg: &str, key: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    msg.match_indices(key).any(|(i, _)| {
        let before = msg[..i].chars().next_back();
        let after = msg[i + key.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

fn parse(text: &str) -> Result<Config, String> {
    // Relative .npy paths resolve against a directory that does not exist: parsing must not
    // touch the files.
    Config::parse(text, Path::new("/nonexistent")).map_err(|e| format!("{e:#}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, .. ProptestConfig::default() })]

    #[test]
    fn one_key_value_changed(
        variant in 0usize..2,
        sec in 0usize..SECTIONS.len(),
        key in prop_oneof![
            2 => (0usize..KEYS.len()).prop_map(|i| KEYS[i].to_string()),
            1 => "[a-z][a-z_0-9]{0,10}",
        ],
        val in 0usize..VALUES.len(),
    ) {
        let text = with(variant, sec, &key, VALUES[val]);
        if let Err(msg) = parse(&text) {
            prop_assert!(names_key(&msg, &key), "error does not name `{}`:\n{}\n--- config:\n{}", key, msg, text);
        }
        if !SECTION_KEYS[sec].contains(&key.as_str()) {
            prop_assert!(parse(&text).is_err(), "key `{}` accepted in [{}]:\n{}", key, SECTIONS[sec], text);
        }
    }

    #[test]
    fn one_key_removed(variant in 0usize..2, sec in 0usize..SECTIONS.len(), idx in 0usize..4) {
        let mut d = base(variant);
        let section = d.get_mut(SECTIONS[sec]).unwrap();
        if section.is_empty() {
            return Ok(());
        }
        let (key, _) = section.remove(idx % section.len());
        let text = render(&d);
        if let Err(msg) = parse(&text) {
            prop_assert!(names_key(&msg, &key), "error does not name `{}`:\n{}\n--- config:\n{}", key, msg, text);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        prop_assert!(parse(&text).is_err());
    }

    #[test]
    fn mangled_valid_config_never_panics(variant in 0usize..2, cut in 0usize..400, insert in "[\\[\\]=\"{},. a-z0-9\n]{0,8}") {
        let text = render(&base(variant));
        let cut = cut.min(text.len());
        let mangled = format!("{}{}{}", &text[..cut], insert, &text[cut..]);
        // Must return (Ok or Err) without panicking.
        let _ = parse(&mangled);
    }
}

#[test]
fn base_configs_parse() {
    for v in 0..2 {
        parse(&render(&base(v))).unwrap();
    }
}
