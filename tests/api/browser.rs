//! The browser client (`web/`) end to end in headless Chromium: the real binary serves the
//! built client at `/` with LongPoll on, and `web/e2e/chat.mjs` (playwright-core driving
//! Debian's `/usr/bin/chromium`) goes through two people's registration, presence, room and
//! private chat, a reload with history, a cut connection, a network that blocks WebSockets and a logout.
//!
//! Needs Node 20 and npm (the pinned packages are installed with `npm ci` in `web` when
//! missing) and Chromium (`web/e2e/ensure-chromium.sh` installs Debian's package when run as
//! root, else fails saying the command). Screenshots of every step are left in
//! `target/browser-artifacts/<test>/`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::TestDb;
use crate::support::process::serve_binary;

/// The steps `chat.mjs` reports, in order.
const STEPS: &[&str] = &[
    "both register and are connected over WebSocket",
    "a bad login and a taken e-mail show the API's errors",
    "both join a room and see each other in presence",
    "a second device of Ann's counts as one person on two devices",
    "room messages go both ways",
    "a private conversation goes both ways",
    "Bob reloads, stays logged in and pages through the history",
    "Ann's connection is cut; she recovers what she missed",
    "Bob's network blocks WebSockets: he falls back to LongPoll and still chats",
    "Ann logs out: the log-in form again, and she leaves the room",
];

/// How long the whole scenario may take (it takes about 25 s).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(150);

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// `target/browser-artifacts/NAME`: beside the test binary's `target/<profile>/deps`.
fn artifact_dir(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary is in target/<profile>/deps");
    let dir = target.join("browser-artifacts").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the artifact directory");
    dir
}

/// Runs `program args…` in `dir` to its end; panics with its output unless it succeeds.
fn run(dir: &Path, program: &str, args: &[&str], what: &str) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Chromium, the npm packages and a fresh `web/dist`. Returns a shared lock on
/// `web/package-lock.json` to hold while the build is in use: installing and building take
/// it exclusively, so another test run cannot rebuild `web/dist` under a running scenario.
fn prepare() -> File {
    let web = web_dir();
    run(
        &web,
        "bash",
        &["e2e/ensure-chromium.sh"],
        "installing Chromium",
    );
    let lock_path = web.join("package-lock.json");
    let lock = File::open(&lock_path).expect("web/package-lock.json");
    lock.lock().expect("lock web/package-lock.json");
    let installed = ["phoenix", "esbuild", "playwright-core"]
        .iter()
        .all(|package| {
            web.join("node_modules")
                .join(package)
                .join("package.json")
                .exists()
        });
    if !installed {
        run(
            &web,
            "npm",
            &["ci", "--no-audit", "--no-fund"],
            "npm ci in web (Node 20 and npm are needed)",
        );
    }
    run(&web, "npm", &["run", "build"], "npm run build in web");
    lock.unlock().expect("unlock web/package-lock.json");
    // Between the two locks another run may build again: the same sources, the same files.
    let shared = File::open(&lock_path).expect("web/package-lock.json");
    shared.lock_shared().expect("share web/package-lock.json");
    shared
}

#[tokio::test]
async fn two_people_chat_in_headless_chromium_over_websocket_and_longpoll() {
    let _build = tokio::task::spawn_blocking(prepare)
        .await
        .expect("prepare task");
    let db = TestDb::new().await;
    let name = if db.is_postgres() {
        "chat-postgres"
    } else {
        "chat-sqlite"
    };
    let artifacts = artifact_dir(name);
    let dist = web_dir().join("dist");
    let dir = tempfile::tempdir().expect("dir");
    let static_dir = dist.to_str().expect("a UTF-8 path");
    let settings = [
        ("FAWKES_SOCKET__LONGPOLL", "true"),
        ("FAWKES_WEB__STATIC_DIR", static_dir),
        // One client address registers, logs in and posts for everyone here.
        ("FAWKES_RATE_LIMIT__REGISTER_PER_IP_PER_MINUTE", "0"),
        ("FAWKES_RATE_LIMIT__LOGIN_PER_IP_PER_MINUTE", "0"),
        ("FAWKES_RATE_LIMIT__REQUESTS_PER_IP_PER_SECOND", "0"),
    ];
    let (_process, t) = serve_binary(dir.path(), db, &["--env", "dev"], &settings);

    let index = t.get("/", None).await;
    assert_eq!(index.status, 200, "{}", index.text);
    assert!(
        index.text.contains("data-testid=\"auth\""),
        "/ serves the built client, not: {}",
        index.text
    );

    let child = tokio::process::Command::new("node")
        .arg("e2e/chat.mjs")
        .arg(&t.url)
        .arg(&artifacts)
        .current_dir(web_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is needed for the browser tests (Node 20)");
    let output = tokio::time::timeout(SCENARIO_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the scenario ends within {SCENARIO_TIMEOUT:?}"))
        .expect("chat.mjs output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let text = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "chat.mjs failed (screenshots in {}):\n{text}",
        artifacts.display()
    );
    let oks: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("ok "))
        .collect();
    assert_eq!(oks, STEPS, "the steps passed:\n{text}");
    assert!(stdout.contains("all steps passed"), "{text}");
    for (n, step) in STEPS.iter().enumerate() {
        let prefix = format!("{:02}-", n + 1);
        let shots = std::fs::read_dir(&artifacts)
            .expect("artifacts")
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
            .count();
        assert!(
            shots >= 2,
            "screenshots of step {step:?} in {}",
            artifacts.display()
        );
    }
}
