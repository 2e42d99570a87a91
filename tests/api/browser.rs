//! The browser client (`web/`) end to end in headless Chromium: the real binary serves the
//! built client at `/` with LongPoll on, and `web/e2e/chat.mjs` (playwright-core driving
//! Debian's `/usr/bin/chromium`) goes through two people's registration, presence, room and
//! private chat, a reload with history, a cut connection, a network that blocks WebSockets (and
//! lets them through again) and a logout.
//!
//! Needs Node 20 and npm (the pinned packages are installed with `npm ci` in `web` when
//! missing) and Chromium (`web/e2e/ensure-chromium.sh` installs Debian's package when run as
//! root, else fails saying the command). Screenshots of every step are left in
//! `target/browser-artifacts/<test>/`.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
    "WebSockets get through again: Bob goes back to WebSocket",
    "Ann logs out: the log-in form again, and she leaves the room",
];

/// How long the whole scenario may take (it takes about 40 s).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

/// How long installing Chromium (`apt-get`) may take.
const APT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long `npm ci` or `npm run build` may take.
const NPM_TIMEOUT: Duration = Duration::from_secs(300);

/// The pages `chat.mjs` screenshots after every step.
const PAGES: &[&str] = &["ann", "bob"];

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

/// Runs `program args…` in `dir`; panics with its output (stdout and stderr) unless it
/// succeeds within `limit`. On expiry its whole process group is ended (TERM, then KILL).
fn run(dir: &Path, program: &str, args: &[&str], what: &str, limit: Duration) {
    let (status, text) = run_captured(dir, program, args, what, limit);
    match status {
        None => panic!("{what} did not finish within {limit:?} and was ended:\n{text}"),
        Some(status) => assert!(status.success(), "{what} failed ({status}):\n{text}"),
    }
}

/// Runs `program args…` in `dir` for at most `limit`: its exit status (`None` if it had to be
/// ended: TERM to its process group, then KILL) and its output, stdout and stderr together.
fn run_captured(
    dir: &Path,
    program: &str,
    args: &[&str],
    what: &str,
    limit: Duration,
) -> (Option<ExitStatus>, String) {
    let mut output = tempfile::tempfile().expect("a file for the output");
    let sink = || Stdio::from(output.try_clone().expect("the output file"));
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(sink())
        .stderr(sink())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot run {program}: {e}"));
    let status = wait_until(&mut child, Instant::now() + limit);
    if status.is_none() {
        end_group(&mut child);
    }
    let mut text = String::new();
    output.rewind().expect("rewind the output");
    let _ = output.read_to_string(&mut text);
    (status, text)
}

/// The child's exit status, or `None` if it is still running at `deadline`.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Ends the process group that `child` leads: TERM (apt-get and npm clean up), KILL after 10 s.
fn end_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    for (signal, grace) in [("-TERM", 10), ("-KILL", 30)] {
        let _ = Command::new("kill")
            .args([signal, "--", &group])
            .stderr(Stdio::null())
            .status();
        if wait_until(child, Instant::now() + Duration::from_secs(grace)).is_some() {
            return;
        }
    }
}

/// Whether `web/node_modules` holds what `web/package-lock.json` pins. npm records what it
/// installed in `node_modules/.package-lock.json`: each package there must be as the lock file
/// has it, installed, and no package the lock file requires (not optional) may be missing.
fn installed(web: &Path) -> bool {
    let read = |path: &Path| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    };
    let lock = read(&web.join("package-lock.json")).expect("web/package-lock.json is JSON");
    let Some(record) = read(&web.join("node_modules/.package-lock.json")) else {
        return false;
    };
    let (Some(wanted), Some(have)) = (lock["packages"].as_object(), record["packages"].as_object())
    else {
        return false;
    };
    let as_locked = have.iter().all(|(path, package)| {
        wanted.get(path) == Some(package) && web.join(path).join("package.json").exists()
    });
    let complete = wanted
        .iter()
        .filter(|(path, package)| !path.is_empty() && package["optional"] != true)
        .all(|(path, _)| have.contains_key(path));
    as_locked && complete
}

/// The file name part `chat.mjs` makes of a step's name (its `slug`).
fn slug(step: &str) -> String {
    let mut out = String::new();
    for c in step.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    out.chars().take(60).collect()
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
        APT_TIMEOUT,
    );
    let lock_path = web.join("package-lock.json");
    let lock = File::open(&lock_path).expect("web/package-lock.json");
    lock.lock().expect("lock web/package-lock.json");
    if !installed(&web) {
        run(
            &web,
            "npm",
            &["ci", "--no-audit", "--no-fund"],
            "npm ci in web (Node 20 and npm are needed)",
            NPM_TIMEOUT,
        );
    }
    run(
        &web,
        "npm",
        &["run", "build"],
        "npm run build in web",
        NPM_TIMEOUT,
    );
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

    // On expiry node gets TERM first, so that playwright closes the browser it started (in a
    // process group of its own); the output so far says which step hung.
    let (url, shots) = (t.url.clone(), artifacts.display().to_string());
    let (status, text) = tokio::task::spawn_blocking(move || {
        run_captured(
            &web_dir(),
            "node",
            &["e2e/chat.mjs", &url, &shots],
            "the browser scenario (node e2e/chat.mjs)",
            SCENARIO_TIMEOUT,
        )
    })
    .await
    .expect("the scenario's task");
    let Some(status) = status else {
        panic!(
            "the scenario did not end within {SCENARIO_TIMEOUT:?} (screenshots in {}):\n{text}",
            artifacts.display()
        );
    };
    assert!(
        status.success(),
        "chat.mjs failed (screenshots in {}):\n{text}",
        artifacts.display()
    );
    let stdout = text.as_str();
    let oks: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("ok "))
        .collect();
    assert_eq!(oks, STEPS, "the steps passed:\n{text}");
    assert!(stdout.contains("all steps passed"), "{text}");
    for (n, step) in STEPS.iter().enumerate() {
        for page in PAGES {
            let shot = artifacts.join(format!("{:02}-{}-{page}.png", n + 1, slug(step)));
            let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
            assert!(
                size > 0,
                "a screenshot of {page}'s page after step {step:?}: {}",
                shot.display()
            );
        }
    }
}

#[test]
fn slugs_are_those_of_chat_mjs() {
    assert_eq!(
        slug("Bob's network blocks WebSockets: he falls back to LongPoll and still chats"),
        "bob-s-network-blocks-websockets-he-falls-back-to-longpoll-an"
    );
    assert_eq!(slug("  a -- B!  "), "a-b");
}

#[test]
fn a_command_past_its_deadline_is_ended_with_its_children() {
    let dir = tempfile::tempdir().expect("dir");
    let pid_file = dir.path().join("child.pid");
    let script = format!("sleep 60 & echo $! > {}; wait", pid_file.display());
    let failure = std::panic::catch_unwind(|| {
        run(
            dir.path(),
            "bash",
            &["-c", &script],
            "a hung command",
            Duration::from_secs(1),
        )
    })
    .expect_err("the command outlives its deadline");
    let message = failure.downcast_ref::<String>().expect("a panic message");
    assert!(
        message.contains("a hung command did not finish within 1s and was ended"),
        "{message}"
    );
    // The `sleep` bash started has ended too (it was in the same process group): gone, or a
    // zombie where nothing reaps orphans.
    let pid = std::fs::read_to_string(&pid_file).expect("the sleep's pid");
    let stat = PathBuf::from(format!("/proc/{}/stat", pid.trim()));
    let running = || {
        std::fs::read_to_string(&stat).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!running(), "the sleep {} still runs", pid.trim());
}
