//! The real `fawkes` binary as a child process: started in a directory with no inherited
//! Fawkes settings, its log lines collected, killed if a test ends before stopping it.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary, run in `dir`, with no inherited Fawkes settings.
pub fn fawkes(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fawkes"));
    command
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        // The standard OpenTelemetry variables of the developer's shell stay out too.
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    // Tests are outside the server's configuration rule: they shape the child's environment.
    #[allow(clippy::disallowed_methods)]
    let inherited = std::env::vars();
    for (key, _) in inherited {
        if key.starts_with("FAWKES_") {
            command.env_remove(key);
        }
    }
    command
}

/// The binary serving on port 0 over `db` with the test key, `args` (e.g. `["--env",
/// "prod"]`) and the `extra` environment; and a client of it.
pub fn serve_binary(
    dir: &std::path::Path,
    db: super::TestDb,
    args: &[&str],
    extra: &[(&str, &str)],
) -> (Process, super::TestServer) {
    let config = super::test_config(&db);
    let mut command = fawkes(dir);
    command
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env(
            "FAWKES_SECRET_KEY",
            config.secret_key.clone().expect("a test key"),
        );
    for (key, value) in extra {
        command.env(key, value);
    }
    let process = Process::serve(command);
    let t = super::TestServer::at(process.url.clone(), db, config);
    (process, t)
}

/// A running `fawkes serve`.
pub struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every log line read so far.
    pub log: Vec<String>,
    /// `http://ADDR` from the "listening on" line.
    pub url: String,
}

impl Process {
    /// Spawns `command` (a `fawkes` serve command; bind it to port 0) and waits up to 30 s for
    /// the line announcing its URL.
    pub fn serve(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fawkes");
        let stdout = child.stdout.take().expect("stdout");
        let (lines_tx, lines) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let mut process = Self {
            child,
            lines,
            log: Vec::new(),
            url: String::new(),
        };
        process.url = loop {
            let line = process
                .next_line(Duration::from_secs(30))
                .unwrap_or_else(|| panic!("no URL announced: {:#?}", process.log));
            if let Some(at) = line.find("listening on http://") {
                let rest = &line[at + "listening on ".len()..];
                break rest.split_whitespace().next().expect("url").to_owned();
            }
        };
        process
    }

    /// The next log line within `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        self.log.push(line.clone());
        Some(line)
    }

    /// `ADDR` of the URL.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM: a graceful shutdown (the drain).
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success(), "kill -TERM {}", self.pid());
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "exited within {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
