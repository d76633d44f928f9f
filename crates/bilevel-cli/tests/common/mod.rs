//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh, empty directory under the system temp dir, unique to this process and `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bilevel-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the built `bilevel` binary.
pub fn bilevel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(args)
        .output()
        .expect("the bilevel binary runs")
}

/// The repository root (for configs/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Checks a PNG: signature, IHDR chunk, non-zero width and height.
pub fn assert_png(p: &Path) {
    let b = std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    assert!(b.len() > 33, "{} is too short for a PNG", p.display());
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} lacks the PNG signature",
        p.display()
    );
    assert_eq!(&b[12..16], b"IHDR", "{} lacks an IHDR chunk", p.display());
    let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
    assert!(
        w > 0 && h > 0 && w < 20_000 && h < 20_000,
        "{}: size {w}×{h}",
        p.display()
    );
    // The last chunk is IEND.
    assert_eq!(
        &b[b.len() - 8..b.len() - 4],
        b"IEND",
        "{} is truncated",
        p.display()
    );
}

/// Checks an SVG: an `<svg` (or XML) opening and a closing `</svg>`.
pub fn assert_svg(p: &Path) {
    let s =
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    let t = s.trim_start();
    assert!(
        t.starts_with("<svg") || t.starts_with("<?xml"),
        "{} does not start like an SVG",
        p.display()
    );
    assert!(
        s.trim_end().ends_with("</svg>"),
        "{} does not end with </svg>",
        p.display()
    );
}

/// Relative link targets `](target)` in a Markdown text.
pub fn md_links(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = md;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(j) = rest.find(')') {
            let t = &rest[..j];
            if !t.starts_with('#') && !t.contains("://") {
                out.push(t.to_string());
            }
            rest = &rest[j..];
        }
    }
    out
}
