//! Repository hygiene: every source module says what it owns in a `//!` line, no source file
//! grows past 1,000 lines, and no module outside `server` imports axum (the mock provider is a
//! separate HTTP server and the testkit serves Sluice, so both are exempt).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn workspace_sources() -> Vec<PathBuf> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let mut out = Vec::new();
    for krate in std::fs::read_dir(&crates).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            sources(&src, &mut out);
        }
    }
    assert!(out.len() > 20, "found the sources");
    out
}

#[test]
fn every_module_starts_with_a_doc_line() {
    let missing: Vec<String> = workspace_sources()
        .into_iter()
        .filter(|p| !std::fs::read_to_string(p).unwrap().starts_with("//!"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a `//!` line: {missing:?}"
    );
}

#[test]
fn no_source_file_is_past_a_thousand_lines() {
    let long: Vec<String> = workspace_sources()
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).unwrap().lines().count() > 1_000)
        .map(|p| p.display().to_string())
        .collect();
    assert!(long.is_empty(), "split these: {long:?}");
}

#[test]
fn only_the_server_knows_axum() {
    let offenders: Vec<String> = workspace_sources()
        .into_iter()
        .filter(|p| {
            let s = p.display().to_string();
            !(s.contains("/server/") || s.contains("/mock/") || s.contains("/testkit/"))
        })
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.contains("use axum") || text.contains("axum::")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "axum outside the server: {offenders:?}"
    );
}
