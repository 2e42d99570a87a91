//! `fawkes-bench`: load scenarios against a running Fawkes server, on loopback only.
//!
//! Run (see BENCHMARKS.md for the whole procedure):
//!
//! ```sh
//! cargo run --release -p fawkes-bench -- presence-storm --tokens tokens.txt --connections 15000 --server-pid PID
//! ```
//!
//! Every scenario bounds its run time and its connection count, spreads connections over
//! several 127.0.0.x source addresses (so one address's ephemeral ports never run out), never
//! panics on server errors (it counts them), and samples the server's CPU time and RSS from
//! `/proc/<pid>` when given `--server-pid`.
//!
//! `fanout` and `presence-storm` also take `--servers A,B,C` (the nodes of a cluster: their
//! connections go round-robin over them, and figures are given per node) with
//! `--server-pids P1,P2,P3` and `--redis-pid`; `conns` processes can hold together
//! (`--barrier`), one per node; `redis-subs` measures what per-topic Redis subscriptions cost.
//! `bash bench/cluster.sh` runs them against three nodes.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod abuse;
mod churn;
mod client;
mod conns;
mod echo;
mod fanout;
mod floor;
mod logins;
mod nodes;
mod redis_subs;
mod rest;
mod stats;
mod storm;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Load generator for Fawkes.
#[derive(Parser)]
#[command(name = "fawkes-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// Options every WebSocket scenario shares.
#[derive(clap::Args, Clone)]
pub(crate) struct Target {
    /// The server's address (loopback only).
    #[arg(long, default_value = "127.0.0.1:4000")]
    pub(crate) server: SocketAddr,
    /// The socket path.
    #[arg(long, default_value = "/socket/websocket")]
    pub(crate) path: String,
    /// A file of access tokens, one per line (`fawkes seed --tokens-out`).
    #[arg(long)]
    pub(crate) tokens: PathBuf,
    /// How many 127.0.0.x source addresses to spread connections over (127.0.0.2 upwards).
    #[arg(long, default_value_t = 4)]
    pub(crate) sources: u8,
    /// The server's process id, to sample its CPU time and memory.
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub(crate) timeout_secs: u64,
}

impl Target {
    /// The tokens in the `--tokens` file (at least one).
    pub(crate) fn tokens(&self) -> Result<Vec<String>, String> {
        let text = std::fs::read_to_string(&self.tokens)
            .map_err(|e| format!("{}: {e}", self.tokens.display()))?;
        let tokens: Vec<String> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if tokens.is_empty() {
            return Err(format!("{}: no tokens", self.tokens.display()));
        }
        Ok(tokens)
    }
}

/// Runs a scenario, giving up after the target's `--timeout-secs`.
async fn bounded(
    target: &Target,
    run: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(Duration::from_secs(target.timeout_secs), run)
        .await
        .unwrap_or_else(|_| Err(format!("gave up after {}s", target.timeout_secs)))
}

#[derive(Subcommand)]
enum Scenario {
    /// A legitimate client's join and `/health` latency, alone and then while three clients
    /// attack (joins of huge topics, half-open connections, a socket loop on one token).
    Abuse {
        #[command(flatten)]
        target: Target,
        /// Seconds of legitimate traffic alone, before the attack.
        #[arg(long, default_value_t = 5)]
        baseline_secs: u64,
        /// Seconds of attack.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Bytes of each topic the huge-topic attacker joins.
        #[arg(long, default_value_t = 1_000_000)]
        topic_bytes: usize,
        /// Half-open connections the second attacker holds.
        #[arg(long, default_value_t = 1000)]
        half_open: usize,
        /// Milliseconds before the half-open attacker reopens a connection the server closed
        /// or refused.
        #[arg(long, default_value_t = 1000)]
        half_open_retry_ms: u64,
        /// Most sockets the socket-loop attacker keeps open.
        #[arg(long, default_value_t = 2000)]
        socket_loop_max: usize,
        /// The server's `socket.max_topic_bytes`: every join of a longer topic must be refused.
        #[arg(long, default_value_t = 255)]
        max_topic_bytes: usize,
        /// The server's `socket.max_sockets_per_id`: the socket loop may open at most this many
        /// (0: not checked).
        #[arg(long, default_value_t = 32)]
        max_sockets_per_id: usize,
        /// How much the server's resident memory may grow during the attack, in MiB (checked
        /// with `--server-pid` only).
        #[arg(long, default_value_t = 256)]
        max_rss_growth_mib: u64,
    },
    /// Logins (argon2 verifications) at a steady rate as the seeded users.
    Logins {
        #[command(flatten)]
        target: Target,
        /// Logins per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// How many seeded users to cycle through.
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// The seed prefix.
        #[arg(long, default_value = "bench")]
        prefix: String,
        /// The seeded password.
        #[arg(long, default_value = "bench password 1234")]
        password: String,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Keep-alive HTTP connections send `GET PATH` (with a bearer token) in a closed loop.
    Rest {
        #[command(flatten)]
        target: Target,
        /// The request path, e.g. `/api/v1/me` or `/health`.
        #[arg(long, default_value = "/api/v1/me")]
        url_path: String,
        /// Connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Workers loop connect → join → leave → close; cycles/s, CPU per cycle, RSS growth.
    Churn {
        #[command(flatten)]
        target: Target,
        /// Concurrent workers.
        #[arg(long, default_value_t = 20)]
        workers: usize,
        /// The topic joined each cycle.
        #[arg(long, default_value = "echo:churn")]
        topic: String,
        /// Seconds to run.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// C connections push an event and await its reply in a closed loop.
    Echo {
        #[command(flatten)]
        target: Target,
        /// Connections.
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// The topic (the echo example serves `echo:*`; the app's rooms answer `ping`).
        #[arg(long, default_value = "echo:bench")]
        topic: String,
        /// The event pushed.
        #[arg(long, default_value = "ping")]
        event: String,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// S subscribers on one topic, P publishers at R msg/s each; delivery latency.
    Fanout {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        nodes: nodes::Nodes,
        /// With `--servers`: subscribers go round-robin to the first this many nodes (0: all).
        #[arg(long, default_value_t = 0)]
        subscriber_nodes: usize,
        /// With `--servers`: the node the publishers are on (1 is the first).
        #[arg(long, default_value_t = 1)]
        publish_node: usize,
        /// Subscribers.
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Publishers.
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Messages per second per publisher.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// The topic (its channel must broadcast `message:new`).
        #[arg(long, default_value = "echo:fanout")]
        topic: String,
        /// Seconds of publishing.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// N connections each join one of K topics and hold; reports the join rate and latency and
    /// the server's memory per idle joined connection.
    Conns {
        #[command(flatten)]
        target: Target,
        /// Connections.
        #[arg(long, default_value_t = 15000)]
        connections: usize,
        /// Topics the connections are spread over.
        #[arg(long, default_value_t = 100)]
        topics: usize,
        /// Topic names: PREFIX0, PREFIX1, … (the app's rooms track presence; `echo:` on the
        /// echo example does not).
        #[arg(long, default_value = "room:conns-")]
        topic_prefix: String,
        /// Connections being opened and joined at once.
        #[arg(long, default_value_t = 512)]
        concurrency: usize,
        /// Seconds to hold before reading the server's memory.
        #[arg(long, default_value_t = 5)]
        hold_secs: u64,
        /// A directory shared by `--parties` conns processes: each starts its hold only once
        /// all of them have their joins answered.
        #[arg(long, requires = "parties")]
        barrier: Option<PathBuf>,
        /// How many processes meet at the `--barrier`.
        #[arg(long, requires = "barrier")]
        parties: Option<usize>,
    },
    /// The kernel's share of a delivery here: paced small writes to N loopback connections,
    /// with the writing thread's CPU per write (no server involved; see `floor.rs`).
    SendFloor {
        /// Connections written to in turn.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Messages per second, each written to every connection.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// How long to write.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Payload bytes per frame (a fan-out delivery is about 200).
        #[arg(long, default_value_t = 200)]
        bytes: usize,
    },
    /// The memory of N idle ractor actors, per actor (no server involved; see `floor.rs`).
    ActorFloor {
        /// Actors to spawn (after as many as a warm-up).
        #[arg(long, default_value_t = 15000)]
        actors: usize,
    },
    /// N connections, each a distinct user, join one room as fast as possible; checks that
    /// every join succeeds and that sampled clients' synced presence holds all N users.
    PresenceStorm {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        nodes: nodes::Nodes,
        /// Connections (and users: one token each).
        #[arg(long, default_value_t = 15000)]
        connections: usize,
        /// The topic everyone joins.
        #[arg(long, default_value = "room:storm")]
        topic: String,
        /// Connections being opened and joined at once.
        #[arg(long, default_value_t = 512)]
        concurrency: usize,
        /// Clients that keep a full presence view, as phoenix.js does, to check it.
        #[arg(long, default_value_t = 8)]
        sample: usize,
    },
    /// Redis's cost of per-topic subscription: N SUBSCRIBE+UNSUBSCRIBE pairs of distinct
    /// topics on one connection (no Fawkes server involved).
    RedisSubs {
        /// The Redis server (loopback only).
        #[arg(long, default_value = "127.0.0.1:6379")]
        redis: SocketAddr,
        /// SUBSCRIBE+UNSUBSCRIBE pairs.
        #[arg(long, default_value_t = 10_000)]
        pairs: usize,
        /// Pairs sent per round trip.
        #[arg(long, default_value_t = 1)]
        pipeline: usize,
        /// Other subscriptions the connection holds throughout.
        #[arg(long, default_value_t = 0)]
        held: usize,
        /// The `redis-server` process id, to sample its CPU time.
        #[arg(long)]
        redis_pid: Option<u32>,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let outcome = match cli.scenario {
        Scenario::Abuse {
            target,
            baseline_secs,
            seconds,
            topic_bytes,
            half_open,
            half_open_retry_ms,
            socket_loop_max,
            max_topic_bytes,
            max_sockets_per_id,
            max_rss_growth_mib,
        } => {
            let attack = abuse::Attack {
                baseline: Duration::from_secs(baseline_secs),
                duration: Duration::from_secs(seconds),
                topic_bytes,
                half_open,
                half_open_retry: Duration::from_millis(half_open_retry_ms),
                socket_loop_max,
                bounds: abuse::Bounds {
                    max_topic_bytes,
                    max_sockets_per_id,
                    max_rss_growth_mib,
                },
            };
            bounded(&target, abuse::run(&target, attack)).await
        }
        Scenario::Logins {
            target,
            rate,
            users,
            prefix,
            password,
            seconds,
        } => {
            bounded(
                &target,
                logins::run(
                    &target,
                    rate,
                    users,
                    &prefix,
                    &password,
                    Duration::from_secs(seconds),
                ),
            )
            .await
        }
        Scenario::Rest {
            target,
            url_path,
            connections,
            seconds,
        } => {
            bounded(
                &target,
                rest::run(
                    &target,
                    &url_path,
                    connections,
                    Duration::from_secs(seconds),
                ),
            )
            .await
        }
        Scenario::Churn {
            target,
            workers,
            topic,
            seconds,
        } => {
            bounded(
                &target,
                churn::run(&target, workers, &topic, Duration::from_secs(seconds)),
            )
            .await
        }
        Scenario::Echo {
            target,
            connections,
            topic,
            event,
            seconds,
        } => {
            bounded(
                &target,
                echo::run(
                    &target,
                    connections,
                    &topic,
                    &event,
                    Duration::from_secs(seconds),
                ),
            )
            .await
        }
        Scenario::Fanout {
            target,
            nodes,
            subscriber_nodes,
            publish_node,
            subscribers,
            publishers,
            rate,
            topic,
            seconds,
        } => {
            let placement = fanout::Placement {
                subscriber_nodes,
                publish_node: publish_node.saturating_sub(1),
            };
            bounded(
                &target,
                fanout::run(
                    &target,
                    &nodes,
                    &placement,
                    subscribers,
                    publishers,
                    rate,
                    &topic,
                    Duration::from_secs(seconds),
                ),
            )
            .await
        }
        Scenario::Conns {
            target,
            connections,
            topics,
            topic_prefix,
            concurrency,
            hold_secs,
            barrier,
            parties,
        } => {
            bounded(
                &target,
                conns::run(
                    &target,
                    connections,
                    topics,
                    &topic_prefix,
                    concurrency,
                    Duration::from_secs(hold_secs),
                    barrier.as_deref().zip(parties),
                ),
            )
            .await
        }
        Scenario::SendFloor {
            connections,
            rate,
            seconds,
            bytes,
        } => tokio::task::block_in_place(|| floor::run(connections, rate, seconds, bytes)),
        Scenario::ActorFloor { actors } => floor::actors(actors).await,
        Scenario::PresenceStorm {
            target,
            nodes,
            connections,
            topic,
            concurrency,
            sample,
        } => {
            bounded(
                &target,
                storm::run(&target, &nodes, connections, &topic, concurrency, sample),
            )
            .await
        }
        Scenario::RedisSubs {
            redis,
            pairs,
            pipeline,
            held,
            redis_pid,
        } => tokio::time::timeout(
            Duration::from_secs(600),
            redis_subs::run(redis, pairs, pipeline, held, redis_pid),
        )
        .await
        .unwrap_or_else(|_| Err("gave up after 600s".into())),
    };
    if let Err(e) = outcome {
        eprintln!("fawkes-bench: {e}");
        std::process::exit(1);
    }
}
