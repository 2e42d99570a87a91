//! A throwaway `redis-server` for tests (the `testing` feature).

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a started server has to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// First starts tried before giving up (another process may take the free port first).
const START_ATTEMPTS: usize = 5;

/// A `redis-server` of its own, on a free port of 127.0.0.1, with nothing saved to disk.
///
/// [`RedisServer::stop`] kills it and [`RedisServer::start_again`] brings it back on the same
/// port (to test outages); dropping it kills it. Its output goes to a log file in the
/// temporary directory, shown when it fails to start and kept if the test panics.
///
/// Panics if `redis-server` is not installed, with what to install.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    pub fn start() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let log = std::env::temp_dir().join(format!(
            "fawkes-redis-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut server = Self {
            port: 0,
            child: None,
            log,
        };
        for attempt in 1..=START_ATTEMPTS {
            if server.port != 0 {
                taken().remove(&server.port);
            }
            server.port = free_port();
            match server.launch() {
                Ok(()) => return server,
                Err(_) if attempt < START_ATTEMPTS => {}
                Err(why) => panic!("{}", server.failure(&why)),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on (the same after [`RedisServer::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server is running (started and not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (as a crash would: clients see their connections drop) and waits
    /// for it to exit. The port is kept for [`RedisServer::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`RedisServer::stop`]; a running one is
    /// stopped first) and waits until it answers `PING`; panics, with its log, if it does not.
    pub fn start_again(&mut self) {
        self.stop();
        if let Err(why) = self.launch() {
            panic!("{}", self.failure(&why));
        }
    }

    /// What the server wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Spawns `redis-server` on `self.port` and waits for it to answer; on failure it is
    /// killed and the reason returned.
    fn launch(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open the log file {}: {e}", self.log.display()))?;
        let stderr = log
            .try_clone()
            .map_err(|e| format!("cannot share the log file: {e}"))?;
        let spawned = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!(
                    "redis-server not found: install Redis (Debian: apt-get install redis-server)"
                )
            }
            Err(e) => return Err(format!("cannot run redis-server: {e}")),
        };
        let child = self.child.insert(child);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!("redis-server exited ({status}) before answering"));
            }
            if answers_ping(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "redis-server did not answer PING within {READY_WITHIN:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn failure(&self, why: &str) -> String {
        format!(
            "{why} (port {}); its log ({}):\n{}",
            self.port,
            self.log.display(),
            self.log()
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        taken().remove(&self.port);
        if std::thread::panicking() {
            // Kept for the failing test's reader.
            let mut stderr = std::io::stderr();
            let _ = writeln!(stderr, "redis-server log kept at {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Ports of this process's servers, stopped ones included: never handed out twice, so a
/// stopped server can start again on its port.
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn taken() -> MutexGuard<'static, BTreeSet<u16>> {
    TAKEN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A port free on 127.0.0.1 a moment ago, and not another server's of this process.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port on 127.0.0.1");
        if taken().insert(port) {
            return port;
        }
    }
}

/// Whether a server on `port` answers `PING` with `+PONG`.
fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    let mut read = 0;
    while read < reply.len() {
        match stream.read(&mut reply[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    reply.starts_with(b"+PONG")
}
