//! A cluster of real `fawkes serve` processes: one Redis of their own, one shared database
//! and one shared server key, nodes `node-1`…`node-n` on ports of their own, and a driver
//! for the phoenix.js scenarios of `tests/js/cluster.mjs`.

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use fawkes_redis::testing::RedisServer;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use super::TestDb;
use super::http::{self, Resp};
use super::process::{Process, fawkes};

// `interop.rs` includes it too, privately; `ensure_installed` locks across the copies.
#[allow(clippy::duplicate_mod)]
#[path = "../../js/node.rs"]
mod node;

/// How long a node has to start, and the nodes to see each other.
const START_WITHIN: Duration = Duration::from_secs(30);

/// How long a stopped node has to exit.
const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// Settings every node gets besides the cluster's: limits out of the tests' way.
const BASE_ENV: [(&str, &str); 9] = [
    ("FAWKES_RATE_LIMIT__LOGIN_PER_IP_PER_MINUTE", "1000"),
    ("FAWKES_RATE_LIMIT__LOGIN_PER_EMAIL_PER_MINUTE", "1000"),
    (
        "FAWKES_RATE_LIMIT__LOGIN_PER_EMAIL_ALL_ADDRESSES_PER_MINUTE",
        "1000",
    ),
    ("FAWKES_RATE_LIMIT__REGISTER_PER_IP_PER_MINUTE", "1000"),
    ("FAWKES_RATE_LIMIT__REGISTER_PER_MINUTE", "10000"),
    ("FAWKES_RATE_LIMIT__REQUESTS_PER_IP_PER_SECOND", "0"),
    ("FAWKES_HTTP__SHUTDOWN_TIMEOUT_SECS", "5"),
    ("FAWKES_DATABASE_POOL_SIZE", "5"),
    ("FAWKES_PUBSUB__ADAPTER", "redis"),
];

/// One `fawkes serve` of the cluster.
struct Node {
    name: String,
    /// Its working directory (nothing is written there: the key and database are given).
    dir: tempfile::TempDir,
    /// The current process (running, or stopped and kept for its log); `None` only while
    /// [`Cluster::wait_exit`] waits on another thread.
    process: Option<Process>,
    /// Whether it was stopped (killed or signalled) and not restarted.
    stopped: bool,
}

impl Node {
    fn process(&self) -> &Process {
        self.process.as_ref().expect("the process")
    }

    fn process_mut(&mut self) -> &mut Process {
        self.process.as_mut().expect("the process")
    }
}

/// A registered, logged-in user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub password: String,
    /// An access token from the login.
    pub token: String,
}

impl User {
    /// `{"id", "token"}` for the scenario script.
    pub fn json(&self) -> Value {
        json!({ "id": self.id.to_string(), "token": self.token })
    }
}

/// `n` nodes over one Redis and one database. Dropping it kills the nodes, then Redis, then
/// drops the database.
pub struct Cluster {
    // Field order is drop order: the nodes go before the database they use.
    nodes: Vec<Node>,
    client: http::Client,
    redis: RedisServer,
    db: TestDb,
    key: String,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts Redis and `n` nodes named `node-1`…`node-n`, each with `env` (extra `FAWKES_*`
    /// settings, e.g. the cluster's timeouts) on top of the cluster settings, one after the
    /// other (the first migrates the database); returns once every node lists the others as
    /// members.
    pub async fn start(n: usize, env: &[(&str, &str)]) -> Self {
        let mut cluster = Self {
            nodes: Vec::new(),
            client: http::Client::new(),
            redis: RedisServer::start(),
            db: TestDb::new().await,
            key: fawkes::config::generate_secret_key(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        for i in 1..=n {
            let name = format!("node-{i}");
            let dir = tempfile::tempdir().expect("node dir");
            let process = cluster.spawn(&name, dir.path()).await;
            cluster.nodes.push(Node {
                name,
                dir,
                process: Some(process),
                stopped: false,
            });
        }
        cluster.wait_members().await;
        cluster
    }

    /// Starts a node's process and waits for its URL.
    async fn spawn(&self, name: &str, dir: &std::path::Path) -> Process {
        let mut command = fawkes(dir);
        command
            .args(["serve", "--env", "test", "--bind", "127.0.0.1:0"])
            .args(["--database-url", &self.db.url])
            .env("FAWKES_SECRET_KEY", &self.key)
            .env("FAWKES_NODE_NAME", name)
            .env("FAWKES_PUBSUB__REDIS_URL", self.redis.url())
            .env("FAWKES_PUBSUB__REDIS_PREFIX", "fawkes-cluster-test");
        for (key, value) in BASE_ENV {
            command.env(key, value);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        serve(command).await
    }

    fn node(&self, node: usize) -> &Node {
        assert!(
            (1..=self.nodes.len()).contains(&node),
            "no node-{node} in a cluster of {}",
            self.nodes.len()
        );
        &self.nodes[node - 1]
    }

    fn node_mut(&mut self, node: usize) -> &mut Node {
        assert!((1..=self.nodes.len()).contains(&node), "no node-{node}");
        &mut self.nodes[node - 1]
    }

    /// `node-N`.
    pub fn name(&self, node: usize) -> &str {
        &self.node(node).name
    }

    /// `http://ADDR` of a node.
    pub fn url(&self, node: usize) -> &str {
        &self.node(node).process().url
    }

    /// The phoenix.js endpoint of a node: `ws://ADDR/socket`.
    pub fn socket_url(&self, node: usize) -> String {
        format!("{}/socket", self.url(node).replace("http://", "ws://"))
    }

    /// The nodes still running, by number.
    fn running(&self) -> Vec<usize> {
        (1..=self.nodes.len())
            .filter(|&i| !self.nodes[i - 1].stopped)
            .collect()
    }

    /// `method path` on a node, with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        node: usize,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut builder = ::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url(node)));
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                body.to_string()
            }
            None => String::new(),
        };
        self.client
            .send(builder.body(body.into()).expect("request"))
            .await
    }

    /// `GET /ready` of a node.
    pub async fn ready(&self, node: usize) -> Resp {
        self.call(node, "GET", "/ready", None, None).await
    }

    /// Registers `name` (e-mail `name@example.com`) through a node and logs in there.
    pub async fn user(&self, node: usize, name: &str) -> User {
        let email = format!("{}@example.com", name.to_lowercase());
        let password = "correct horse battery".to_owned();
        let user = json!({"user": {"name": name, "subname": "Cluster", "email": email, "job": "Tester", "password": password}});
        let resp = self
            .call(node, "POST", "/api/v1/users", None, Some(user))
            .await;
        assert_eq!(resp.status, 201, "register {email}: {}", resp.text);
        let id = resp.body["data"]["id"].as_i64().expect("id");
        let token = self.login(node, &email, &password).await;
        User {
            id,
            email,
            password,
            token,
        }
    }

    /// Logs in through a node; returns the access token.
    pub async fn login(&self, node: usize, email: &str, password: &str) -> String {
        let body = json!({"email": email, "password": password});
        let resp = self
            .call(node, "POST", "/api/v1/sessions", None, Some(body))
            .await;
        assert_eq!(resp.status, 200, "login {email}: {}", resp.text);
        resp.body["data"]["token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// Opens the conversation of `token`'s owner with `recipient` through a node.
    pub async fn conversation(&self, node: usize, token: &str, recipient: i64) -> i64 {
        let body = json!({ "recipient_id": recipient });
        let resp = self
            .call(
                node,
                "POST",
                "/api/v1/conversations",
                Some(token),
                Some(body),
            )
            .await;
        assert!(matches!(resp.status, 200 | 201), "{}", resp.text);
        resp.body["data"]["id"].as_i64().expect("id")
    }

    /// Waits until every running node is ready, linked, and lists exactly the other running
    /// nodes as members.
    pub async fn wait_members(&self) {
        let running = self.running();
        let deadline = Instant::now() + START_WITHIN;
        for &node in &running {
            let others: Vec<String> = running
                .iter()
                .filter(|&&o| o != node)
                .map(|&o| self.name(o).to_owned())
                .collect();
            loop {
                let ready = self.ready(node).await;
                let pubsub = &ready.body["pubsub"];
                let mut members: Vec<String> = pubsub["members"]
                    .as_array()
                    .map(|m| m.iter().filter_map(|n| n.as_str().map(str::to_owned)))
                    .into_iter()
                    .flatten()
                    .collect();
                members.sort();
                if ready.status == 200 && pubsub["state"] == "connected" && members == others {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} does not list {others:?} as its members within {START_WITHIN:?}: {} {}\n{}",
                    self.name(node),
                    ready.status,
                    ready.text,
                    self.logs()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Polls a node's `/ready` until its `pubsub.state` is `state`, for at most `within`;
    /// every answer meanwhile must be 200 (a lost link does not fail readiness).
    pub async fn wait_link(&self, node: usize, state: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ready = self.ready(node).await;
            assert_eq!(
                ready.status,
                200,
                "{} /ready while waiting for {state}: {}",
                self.name(node),
                ready.text
            );
            if ready.body["pubsub"]["state"] == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} /ready is not {state} within {within:?}: {}",
                self.name(node),
                ready.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: the node dies without a word to the others.
    pub fn kill(&mut self, node: usize) {
        let node = self.node_mut(node);
        node.process_mut().kill();
        node.stopped = true;
    }

    /// Sends SIGTERM (a graceful shutdown); see [`Cluster::wait_exit`].
    pub fn terminate(&mut self, node: usize) {
        let node = self.node_mut(node);
        let status = Command::new("kill")
            .args(["-TERM", &node.process().pid().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM {}", node.name);
        node.stopped = true;
    }

    /// Waits for a stopped node to exit; returns its status.
    pub async fn wait_exit(&mut self, node: usize) -> ExitStatus {
        let n = self.node_mut(node);
        let mut process = n.process.take().expect("the process");
        let (process, status) = tokio::task::spawn_blocking(move || {
            let status = process.wait_exit(EXIT_WITHIN);
            (process, status)
        })
        .await
        .unwrap_or_else(|e| panic!("node-{node} exits within {EXIT_WITHIN:?}: {e}"));
        n.process = Some(process);
        status
    }

    /// Starts a stopped node again under the same name (on a new port) and waits until the
    /// running nodes see each other.
    pub async fn restart(&mut self, node: usize) {
        let (name, dir) = {
            let n = self.node(node);
            assert!(n.stopped, "{} is still running", n.name);
            (n.name.clone(), n.dir.path().to_owned())
        };
        let process = self.spawn(&name, &dir).await;
        let n = self.node_mut(node);
        n.process = Some(process);
        n.stopped = false;
        self.wait_members().await;
    }

    /// Kills Redis (as a crash would).
    pub fn stop_redis(&mut self) {
        self.redis.stop();
    }

    /// Starts Redis again on the same port.
    pub fn start_redis(&mut self) {
        self.redis.start_again();
    }

    /// A node's log lines so far (of its current process).
    pub fn log(&mut self, node: usize) -> &[String] {
        let process = self.node_mut(node).process_mut();
        while process.next_line(Duration::ZERO).is_some() {}
        &process.log
    }

    /// Waits until a node's log has at least `count` lines containing `text`, for at most
    /// `within`.
    pub async fn wait_log(&mut self, node: usize, text: &str, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let found = self.log(node).iter().filter(|l| l.contains(text)).count();
            if found >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node-{node} logs `{text}` {count} times within {within:?} (found {found})\n{}",
                self.all_logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The end of every node's log, for failure messages.
    fn logs(&self) -> String {
        const LAST: usize = 60;
        self.nodes
            .iter()
            .map(|n| {
                let log = &n.process().log;
                let tail = &log[log.len().saturating_sub(LAST)..];
                format!(
                    "--- {} (last {LAST} lines) ---\n{}",
                    n.name,
                    tail.join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The end of every node's log so far (drained first), for failure messages.
    pub fn all_logs(&mut self) -> String {
        for node in 1..=self.nodes.len() {
            self.log(node);
        }
        self.logs()
    }
}

/// Spawns `fawkes serve` and waits for its URL, off the async threads.
async fn serve(command: Command) -> Process {
    tokio::task::spawn_blocking(move || Process::serve(command))
        .await
        .expect("the node starts")
}

/// The longest the scenario script may take to reach its next step or its end.
const SCRIPT_STEP_WITHIN: Duration = Duration::from_secs(120);

/// One run of `tests/js/cluster.mjs MODE CONFIG`: phoenix.js clients on the nodes. The
/// script prints `STEP <what>` when the test has to act (kill a node, stop Redis, …) and waits
/// for one JSON line on its input; it prints `ok <check>` as it goes and ends with status 0,
/// or prints `FAIL <why>` and exits non-zero at the first failure.
pub struct Script {
    mode: String,
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    /// Its output lines so far.
    pub output: Vec<String>,
}

impl Script {
    /// Starts `node cluster.mjs MODE CONFIG` (CONFIG as JSON).
    pub async fn start(mode: &str, config: &Value) -> Self {
        let mut child = node::spawn_script("cluster.mjs", &[mode, &config.to_string()]).await;
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        Self {
            mode: mode.to_owned(),
            child,
            stdin,
            stdout,
            stderr,
            output: Vec::new(),
        }
    }

    /// The next line, or `None` at the end of the output.
    async fn line(&mut self, cluster: &mut Cluster) -> Option<String> {
        let line = tokio::time::timeout(SCRIPT_STEP_WITHIN, self.stdout.next_line()).await;
        match line {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                self.fail(cluster, &format!("reading its output: {e}"))
                    .await
            }
            Err(_) => {
                let why = format!("no output within {SCRIPT_STEP_WITHIN:?}");
                self.fail(cluster, &why).await
            }
        }
    }

    /// Reads until the script asks for `step`; panics (with the nodes' logs) if it ends or
    /// asks for something else.
    pub async fn step(&mut self, cluster: &mut Cluster, step: &str) {
        loop {
            let Some(line) = self.line(cluster).await else {
                let why = format!("it ended before the step `{step}`");
                self.fail(cluster, &why).await
            };
            self.output.push(line.clone());
            if let Some(asked) = line.strip_prefix("STEP ") {
                if asked == step {
                    return;
                }
                let why = format!("it asked for `{asked}`, not `{step}`");
                self.fail(cluster, &why).await
            }
        }
    }

    /// Answers the step the script waits on. (If the script is gone, the next
    /// [`Script::step`] or [`Script::finish`] reports why.)
    pub async fn reply(&mut self, answer: Value) {
        let line = format!("{answer}\n");
        let _ = self.stdin.write_all(line.as_bytes()).await;
        let _ = self.stdin.flush().await;
    }

    /// Waits for the script to end; panics (with the nodes' logs) unless it passed. Returns
    /// its output.
    pub async fn finish(mut self, cluster: &mut Cluster) -> String {
        while let Some(line) = self.line(cluster).await {
            self.output.push(line.clone());
            if let Some(asked) = line.strip_prefix("STEP ") {
                let why = format!("it asked for `{asked}`, which the test does not do");
                self.fail(cluster, &why).await
            }
        }
        let status = tokio::time::timeout(SCRIPT_STEP_WITHIN, self.child.wait()).await;
        match status {
            Ok(Ok(status)) if status.success() => self.output.join("\n"),
            Ok(Ok(status)) => {
                self.fail(cluster, &format!("it exited with {status}"))
                    .await
            }
            Ok(Err(e)) => self.fail(cluster, &format!("waiting for it: {e}")).await,
            Err(_) => self.fail(cluster, "it did not exit").await,
        }
    }

    /// Kills the script and panics with its output and the end of every node's log.
    async fn fail(&mut self, cluster: &mut Cluster, why: &str) -> ! {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(1), self.stdout.next_line()).await
        {
            self.output.push(line);
        }
        let stderr = tokio::time::timeout(Duration::from_secs(5), &mut self.stderr)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        panic!(
            "cluster.mjs {}: {why}\n--- output ---\n{}\n--- stderr ---\n{stderr}\n{}",
            self.mode,
            self.output.join("\n"),
            cluster.all_logs()
        )
    }
}
