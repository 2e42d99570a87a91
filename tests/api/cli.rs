//! The `fawkes` binary: subcommands, start-up checks, configuration precedence, serving and
//! stopping on a signal.

use std::io::{Read as _, Write as _};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::TestDb;
use crate::support::process::{Process, fawkes};

fn run(command: &mut Command) -> (Output, String) {
    let output = command.output().expect("run fawkes");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

#[test]
fn help_lists_the_subcommands() {
    let dir = tempfile::tempdir().expect("dir");
    let (output, text) = run(fawkes(dir.path()).arg("--help"));
    assert!(output.status.success(), "{text}");
    for word in [
        "serve",
        "migrate",
        "gen-secret",
        "config",
        "--database-url",
        "--env",
    ] {
        assert!(text.contains(word), "--help mentions {word}: {text}");
    }
}

#[test]
fn gen_secret_prints_a_key_the_server_accepts() {
    let dir = tempfile::tempdir().expect("dir");
    let (output, text) = run(fawkes(dir.path()).arg("gen-secret"));
    assert!(output.status.success(), "{text}");
    let key = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(key.starts_with("k4.local."), "{key}");
    let (again, _) = run(fawkes(dir.path()).arg("gen-secret"));
    assert_ne!(
        String::from_utf8_lossy(&again.stdout).trim(),
        key,
        "random each time"
    );

    let (output, text) = run(fawkes(dir.path())
        .arg("config")
        .env("FAWKES_SECRET_KEY", &key));
    assert!(output.status.success(), "{text}");
    let config: Value = serde_json::from_slice(&output.stdout).expect("JSON config");
    assert_eq!(config["secret_key"], "[redacted]");
    assert!(!text.contains(&key), "the key is never printed back");
}

#[test]
fn prod_without_a_key_refuses_to_start_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("dir");
    let (output, text) = run(fawkes(dir.path()).args(["--env", "prod", "--bind", "127.0.0.1:0"]));
    assert!(!output.status.success());
    assert!(
        text.contains("no secret_key configured: --env prod requires one"),
        "{text}"
    );
    assert!(text.contains("fawkes gen-secret"), "{text}");
    assert!(
        !dir.path().join(".fawkes-secret").exists(),
        "no key generated in prod"
    );
}

#[test]
fn a_public_bind_without_a_key_refuses_to_start() {
    let dir = tempfile::tempdir().expect("dir");
    let (output, text) = run(fawkes(dir.path()).args(["--bind", "0.0.0.0:0"]));
    assert!(!output.status.success());
    assert!(text.contains("non-loopback address"), "{text}");
}

#[test]
fn socket_and_presence_settings_keep_their_names_and_environment_variables() {
    let dir = tempfile::tempdir().expect("dir");
    let (output, text) = run(fawkes(dir.path()).arg("config"));
    assert!(output.status.success(), "{text}");
    let defaults: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        defaults["socket"],
        json!({
            "check_origin": "conn", "allowed_origins": [], "max_frame_bytes": 1_048_576,
            "idle_timeout_secs": 60, "outbound_queue": 1024, "outbound_queue_bytes": 4_194_304,
            "write_timeout_secs": 10, "max_channels": 100, "read_buffer_bytes": 1024,
            "close_grace_secs": 5, "max_topic_bytes": 255, "max_sockets_per_id": 32,
            "token_ttl_secs": 60, "max_messages_per_second": 200, "max_messages_burst": 500,
            "message_timeout_secs": 30, "longpoll": false, "longpoll_window_secs": 10,
        })
    );
    assert_eq!(defaults["presence"], json!({"window_ms": 25, "shards": 16}));

    // Every setting through its environment variable (durations may be decimal).
    let mut command = fawkes(dir.path());
    command.arg("config");
    for (name, value) in [
        ("CHECK_ORIGIN", "list"),
        (
            "ALLOWED_ORIGINS",
            r#"["https://app.example.com", "//*.example.org"]"#,
        ),
        ("MAX_FRAME_BYTES", "1000"),
        ("IDLE_TIMEOUT_SECS", "61"),
        ("OUTBOUND_QUEUE", "11"),
        ("OUTBOUND_QUEUE_BYTES", "12000"),
        ("WRITE_TIMEOUT_SECS", "13"),
        ("MAX_CHANNELS", "14"),
        ("READ_BUFFER_BYTES", "4096"),
        ("CLOSE_GRACE_SECS", "1.5"),
        ("MAX_TOPIC_BYTES", "100"),
        ("MAX_SOCKETS_PER_ID", "3"),
        ("TOKEN_TTL_SECS", "30"),
        ("MAX_MESSAGES_PER_SECOND", "50"),
        ("MAX_MESSAGES_BURST", "60"),
        ("MESSAGE_TIMEOUT_SECS", "0"),
        ("LONGPOLL", "true"),
        ("LONGPOLL_WINDOW_SECS", "7"),
    ] {
        command.env(format!("FAWKES_SOCKET__{name}"), value);
    }
    command
        .env("FAWKES_PRESENCE__WINDOW_MS", "0")
        .env("FAWKES_PRESENCE__SHARDS", "4");
    let (output, text) = run(&mut command);
    assert!(output.status.success(), "{text}");
    let config: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        config["socket"],
        json!({
            "check_origin": "list", "allowed_origins": ["https://app.example.com", "//*.example.org"],
            "max_frame_bytes": 1000, "idle_timeout_secs": 61, "outbound_queue": 11,
            "outbound_queue_bytes": 12000, "write_timeout_secs": 13, "max_channels": 14,
            "read_buffer_bytes": 4096, "close_grace_secs": 1.5, "max_topic_bytes": 100,
            "max_sockets_per_id": 3, "token_ttl_secs": 30, "max_messages_per_second": 50,
            "max_messages_burst": 60, "message_timeout_secs": 0, "longpoll": true,
            "longpoll_window_secs": 7,
        })
    );
    assert_eq!(config["presence"], json!({"window_ms": 0, "shards": 4}));

    // A file's [socket] section, and its mistakes named.
    std::fs::write(
        dir.path().join("fawkes.toml"),
        "[socket]\ncheck_origin = \"list\"\nallowed_origins = [\"example.com\"]\n",
    )
    .expect("write toml");
    let (output, text) = run(fawkes(dir.path()).arg("config"));
    assert!(!output.status.success());
    assert!(
        text.contains("invalid configuration") && text.contains("invalid origin pattern"),
        "{text}"
    );
    std::fs::write(
        dir.path().join("fawkes.toml"),
        "[socket]\nidle_timeout_secs = \"soon\"\n",
    )
    .expect("write toml");
    let (output, text) = run(fawkes(dir.path()).arg("config"));
    assert!(!output.status.success());
    assert!(
        text.contains("invalid configuration") && text.contains("socket.idle_timeout_secs"),
        "the key at fault is named: {text}"
    );
}

#[test]
fn configuration_precedence_is_defaults_file_env_flags() {
    let dir = tempfile::tempdir().expect("dir");
    let (output, text) = run(fawkes(dir.path()).arg("config"));
    assert!(output.status.success(), "{text}");
    let defaults: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(defaults["bind"], "127.0.0.1:4000");
    assert_eq!(defaults["database_url"], "sqlite://fawkes.db");
    assert_eq!(defaults["token_ttl_secs"], 86400);
    assert_eq!(defaults["env"], "dev");
    assert_eq!(defaults["mail"]["transport"], "outbox");

    std::fs::write(
        dir.path().join("fawkes.toml"),
        "bind = \"127.0.0.1:5000\"\nlog = \"debug\"\ntoken_ttl_secs = 100\n[http]\nbody_limit_bytes = 2048\n",
    )
    .expect("write toml");
    let (output, text) = run(fawkes(dir.path())
        .arg("config")
        .env("FAWKES_LOG", "warn")
        .env("FAWKES_HTTP__BODY_LIMIT_BYTES", "4096")
        .env("DATABASE_URL", "postgres://app:s3cret@db.internal/fawkes")
        .args(["--bind", "127.0.0.1:6000"]));
    assert!(output.status.success(), "{text}");
    let config: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(config["token_ttl_secs"], 100, "file over defaults");
    assert_eq!(config["log"], "warn", "env over file");
    assert_eq!(
        config["http"]["body_limit_bytes"], 4096,
        "nested env over file"
    );
    assert_eq!(config["bind"], "127.0.0.1:6000", "flag over file");
    assert_eq!(
        config["database_url"],
        "postgres://app:[redacted]@db.internal/fawkes"
    );
    assert!(!text.contains("s3cret"));

    let (output, text) = run(fawkes(dir.path()).args(["--config", "missing.toml", "config"]));
    assert!(!output.status.success());
    assert!(text.contains("missing.toml not found"), "{text}");
    std::fs::write(
        dir.path().join("fawkes.toml"),
        "token_ttl_secs = \"soon\"\n",
    )
    .expect("write");
    let (output, text) = run(fawkes(dir.path()).arg("config"));
    assert!(!output.status.success());
    assert!(
        text.contains("invalid configuration") && text.contains("token_ttl_secs"),
        "{text}"
    );
}

#[tokio::test]
async fn migrate_subcommands_report_apply_and_roll_back() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().expect("dir");
    let status = || {
        let (output, text) =
            run(fawkes(dir.path()).args(["migrate", "status", "--database-url", &db.url]));
        assert!(output.status.success(), "{text}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let before = status();
    assert_eq!(before.lines().count(), 5, "{before}");
    assert!(before.lines().all(|l| l.starts_with("Pending")), "{before}");

    let (output, text) = run(fawkes(dir.path()).args(["migrate", "up", "--database-url", &db.url]));
    assert!(output.status.success(), "{text}");
    assert!(status().lines().all(|l| l.starts_with("Applied")));

    let (output, text) =
        run(fawkes(dir.path()).args(["migrate", "down", "--database-url", &db.url]));
    assert!(output.status.success(), "{text}");
    let after = status();
    let last = after.lines().last().expect("a line");
    assert!(
        last.starts_with("Pending") && last.contains("add_token_revocation_exceptions"),
        "{after}"
    );
    assert_eq!(
        after.lines().filter(|l| l.starts_with("Applied")).count(),
        4
    );
}

#[test]
fn the_binary_serves_with_no_set_up_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = fawkes(dir.path());
    command.args(["--bind", "127.0.0.1:0"]);
    let mut process = Process::serve(command);
    assert!(
        process
            .log
            .iter()
            .any(|l| l.contains("generated a development key")),
        "{:#?}",
        process.log
    );
    assert!(dir.path().join(".fawkes-secret").exists());
    assert!(
        dir.path().join("fawkes.db").exists(),
        "embedded database in the working directory"
    );

    let mut stream = std::net::TcpStream::connect(process.addr()).expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    process.terminate();
    let status = process.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "clean exit: {status:?}");
    while process.next_line(Duration::from_secs(5)).is_some() {}
    assert!(
        process.log.iter().any(|l| l.contains("shutdown complete")),
        "{:#?}",
        process.log
    );
}

#[test]
fn dev_on_a_public_address_logs_an_error_and_serves_dev_routes_to_loopback_only() {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = fawkes(dir.path());
    command
        .args(["--bind", "0.0.0.0:0"])
        .env("FAWKES_SECRET_KEY", fawkes::config::generate_secret_key());
    let process = Process::serve(command);
    let warning = process
        .log
        .iter()
        .find(|l| l.contains("env = dev on a non-loopback address"))
        .unwrap_or_else(|| panic!("no warning: {:#?}", process.log));
    assert!(warning.contains("ERROR"), "{warning}");
    assert!(warning.contains("0.0.0.0:"), "names the address: {warning}");

    // This machine reaches itself over loopback: the mailbox answers (other peers get 404, see
    // the router's unit tests).
    let port = process.addr().rsplit(':').next().expect("port");
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("port")))
            .expect("connect");
    stream
        .write_all(b"GET /dev/mailbox HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[test]
fn a_zero_socket_token_lifetime_refuses_to_start_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("dir");
    let mut child = fawkes(dir.path())
        .args(["--bind", "127.0.0.1:0"])
        .env("FAWKES_SOCKET__TOKEN_TTL_SECS", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn fawkes");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if child.try_wait().expect("wait").is_some() {
            break true;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(exited, "the server started anyway: {text}");
    assert!(!output.status.success());
    assert!(
        text.contains("invalid configuration: socket.token_ttl_secs = 0")
            && text.contains("FAWKES_SOCKET__TOKEN_TTL_SECS"),
        "{text}"
    );
    assert!(
        !dir.path().join("fawkes.db").exists(),
        "refused before anything was created"
    );
}

#[test]
fn the_old_shutdown_timeout_key_still_works_with_a_warning() {
    let dir = tempfile::tempdir().expect("dir");
    let (output, text) = run(fawkes(dir.path()).arg("config"));
    assert!(output.status.success(), "{text}");
    let defaults: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        defaults["shutdown"],
        json!({"timeout_secs": 30, "drain_batch_size": 1000, "drain_interval_ms": 200})
    );
    assert!(defaults["http"].get("shutdown_timeout_secs").is_none());

    let (output, text) = run(fawkes(dir.path())
        .arg("config")
        .env("FAWKES_HTTP__SHUTDOWN_TIMEOUT_SECS", "7"));
    assert!(output.status.success(), "{text}");
    let config: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(config["shutdown"]["timeout_secs"], 7, "the old key sets it");
    let (output, text) = run(fawkes(dir.path())
        .arg("config")
        .env("FAWKES_HTTP__SHUTDOWN_TIMEOUT_SECS", "7")
        .env("FAWKES_SHUTDOWN__TIMEOUT_SECS", "9"));
    assert!(output.status.success(), "{text}");
    let config: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(config["shutdown"]["timeout_secs"], 9, "the new key wins");

    // Served: a warning at start; SIGTERM still drains and exits cleanly.
    let mut command = fawkes(dir.path());
    command
        .args(["--bind", "127.0.0.1:0"])
        .env("FAWKES_HTTP__SHUTDOWN_TIMEOUT_SECS", "3");
    let mut process = Process::serve(command);
    assert!(
        process.log.iter().any(|l| l.contains("deprecated")
            && l.contains("http.shutdown_timeout_secs")
            && l.contains("shutdown.timeout_secs")),
        "{:#?}",
        process.log
    );
    process.terminate();
    let status = process.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "clean exit: {status:?}");
    while process.next_line(Duration::from_secs(5)).is_some() {}
    assert!(
        process.log.iter().any(|l| l.contains("shutdown complete")),
        "{:#?}",
        process.log
    );
}
