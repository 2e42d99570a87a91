//! Runs the phoenix.js interop script (`tests/js/interop.mjs`) with Node, installing the
//! pinned npm packages first (`npm ci`, from `tests/js/package-lock.json`) when they are
//! missing. Included by the test binaries with `#[path]`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// `tests/js` of the workspace: beside the app crate's manifest, or one level up from a
/// member crate's (the runtime's tests include this file too).
fn js_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let here = manifest.join("tests/js");
    if here.join("package.json").exists() {
        here
    } else {
        manifest.join("../tests/js")
    }
}

static INSTALL: Mutex<bool> = Mutex::new(false);

/// Installs `tests/js/node_modules` once per test binary if it is not there.
fn ensure_installed() {
    let mut done = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if *done
        || js_dir().join("node_modules/phoenix/package.json").exists()
            && js_dir().join("node_modules/ws/package.json").exists()
    {
        *done = true;
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(js_dir())
        .status()
        .expect("npm is needed for the interop tests (Node 20 and npm)");
    assert!(status.success(), "npm ci failed in tests/js");
    *done = true;
}

/// Runs `node interop.mjs ARGS…`; panics with its output unless it passes.
pub(crate) async fn run_interop(args: &[&str]) -> String {
    tokio::task::spawn_blocking(ensure_installed)
        .await
        .expect("install task");
    let child = tokio::process::Command::new("node")
        .arg("interop.mjs")
        .args(args)
        .current_dir(js_dir())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), child)
        .await
        .expect("the interop script finishes within 90 s")
        .expect("node is needed for the interop tests (Node 20)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "phoenix.js interop failed:\n{text}"
    );
    text
}
