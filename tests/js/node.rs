//! Runs the phoenix.js scripts of `tests/js` (`interop.mjs`, `cluster.mjs`, `longpoll.mjs`) with Node,
//! installing the pinned npm packages first (`npm ci`, from `tests/js/package-lock.json`) when
//! they are missing. Included by the test binaries with `#[path]`.

use std::path::PathBuf;
use std::process::Stdio;
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
///
/// This file may be included more than once in one binary (each inclusion has its own
/// `INSTALL`), and test binaries may run at once: an exclusive lock on `package-lock.json`
/// keeps two `npm ci` from running in the same directory together.
fn ensure_installed() {
    let mut done = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    let installed = || {
        js_dir().join("node_modules/phoenix/package.json").exists()
            && js_dir().join("node_modules/ws/package.json").exists()
    };
    let lock = std::fs::File::open(js_dir().join("package-lock.json"))
        .expect("tests/js/package-lock.json");
    lock.lock().expect("lock tests/js/package-lock.json");
    if !installed() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(js_dir())
            .status()
            .expect("npm is needed for the interop tests (Node 20 and npm)");
        assert!(status.success(), "npm ci failed in tests/js");
    }
    *done = true;
}

/// Starts `node SCRIPT ARGS…` in `tests/js` with its standard input, output and error piped;
/// it is killed if the handle is dropped.
pub(crate) async fn spawn_script(script: &str, args: &[&str]) -> tokio::process::Child {
    tokio::task::spawn_blocking(ensure_installed)
        .await
        .expect("install task");
    tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(js_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is needed for the interop tests (Node 20)")
}

/// Runs `node SCRIPT ARGS…` to its end (at most 90 s); panics with its output unless it
/// passes, else returns it.
pub(crate) async fn run_script(script: &str, args: &[&str]) -> String {
    let child = spawn_script(script, args).await.wait_with_output();
    let output = tokio::time::timeout(Duration::from_secs(90), child)
        .await
        .unwrap_or_else(|_| panic!("{script} finishes within 90 s"))
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{script} failed:\n{text}");
    text
}

/// Runs `node interop.mjs ARGS…`; panics with its output unless it passes.
pub(crate) async fn run_interop(args: &[&str]) -> String {
    run_script("interop.mjs", args).await
}
