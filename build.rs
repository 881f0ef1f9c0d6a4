//! Build-time steps:
//! - turns on the PostgreSQL integration tests when a test database URL is given, so that
//!   `cargo test` without one lists them as ignored with the reason instead of passing silently;
//! - embeds the browser side (`web/`: console, field app, client library, vendored libraries)
//!   into the binary as a table of (path, bytes, etag), so `serve` needs no other files.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(pg_tests)");
    println!("cargo::rerun-if-env-changed=FIELDSYNC_TEST_PG_URL");
    if std::env::var("FIELDSYNC_TEST_PG_URL").is_ok_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=pg_tests");
    }
    embed_web_assets();
}

/// Directories of `web/` that are served; tests and tooling beside them are not.
const SERVED: &[&str] = &["console", "field", "client", "vendor"];
/// Files that are never served even inside a served directory.
fn skipped(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with('.')
        || name.ends_with(".sh")
        || name.ends_with(".md")
        || path.components().any(|c| c.as_os_str() == "test")
}

fn embed_web_assets() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("web");
    // A directory here makes cargo rescan everything below it.
    println!("cargo::rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    for dir in SERVED {
        collect(&root.join(dir), &mut files);
    }
    files.sort();
    let mut out = String::from("/// (path under web/, contents, etag), sorted by path.\n");
    out.push_str("pub static ASSETS: &[(&str, &[u8], &str)] = &[\n");
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let bytes = std::fs::read(file).unwrap();
        writeln!(
            out,
            "    ({rel:?}, include_bytes!({:?}), \"\\\"{:016x}\\\"\"),",
            file.display(),
            fnv1a(&bytes)
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("web_assets.rs");
    std::fs::write(dest, out).unwrap();
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if skipped(&path) {
            continue;
        }
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// A content hash for the ETag (not a security boundary: the bytes are public).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
