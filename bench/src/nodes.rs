//! Several servers at once (the nodes of a cluster): connection `i` goes to node `i % k`, and
//! each node's process (and Redis's) is sampled for CPU time and memory.

use std::net::SocketAddr;
use std::time::Duration;

use crate::Target;
use crate::stats::{self, ProcSample, mib, percentile};

/// The nodes a scenario spreads its connections over, and the processes to sample.
#[derive(clap::Args, Clone, Default)]
pub(crate) struct Nodes {
    /// Spread connections round-robin over these servers (overrides `--server`), e.g.
    /// `127.0.0.1:4001,127.0.0.1:4002,127.0.0.1:4003`.
    #[arg(long, value_delimiter = ',')]
    pub(crate) servers: Vec<SocketAddr>,
    /// The process ids of the `--servers`, in the same order, to sample each node's CPU time
    /// and memory (overrides `--server-pid`).
    #[arg(long, value_delimiter = ',')]
    pub(crate) server_pids: Vec<u32>,
    /// The `redis-server` process id, to sample its CPU time.
    #[arg(long)]
    pub(crate) redis_pid: Option<u32>,
}

/// The resolved node list of a run.
#[derive(Clone)]
pub(crate) struct Cluster {
    /// The servers, node 0 first.
    pub(crate) servers: Vec<SocketAddr>,
    /// Their process ids, where known (same length as `servers`).
    pub(crate) pids: Vec<Option<u32>>,
    /// Redis's process id.
    pub(crate) redis_pid: Option<u32>,
}

/// One reading of every node and of Redis.
#[derive(Clone)]
pub(crate) struct Readings {
    nodes: Vec<Option<ProcSample>>,
    redis_cpu: Option<f64>,
}

impl Cluster {
    /// `--servers`/`--server-pids` if given, else the target's `--server`/`--server-pid`.
    pub(crate) fn resolve(target: &Target, nodes: &Nodes) -> Result<Self, String> {
        if nodes.servers.is_empty() {
            if !nodes.server_pids.is_empty() {
                return Err("--server-pids needs --servers".into());
            }
            return Ok(Self {
                servers: vec![target.server],
                pids: vec![target.server_pid],
                redis_pid: nodes.redis_pid,
            });
        }
        let pids = match nodes.server_pids.len() {
            0 => vec![None; nodes.servers.len()],
            n if n == nodes.servers.len() => nodes.server_pids.iter().copied().map(Some).collect(),
            n => {
                return Err(format!(
                    "{n} --server-pids for {} --servers",
                    nodes.servers.len()
                ));
            }
        };
        Ok(Self {
            servers: nodes.servers.clone(),
            pids,
            redis_pid: nodes.redis_pid,
        })
    }

    /// How many nodes.
    pub(crate) fn len(&self) -> usize {
        self.servers.len()
    }

    /// The node connection `i` goes to.
    pub(crate) fn node_of(&self, i: usize) -> usize {
        i % self.len()
    }

    /// The server of connection `i`.
    pub(crate) fn server_of(&self, i: usize) -> SocketAddr {
        self.servers[self.node_of(i)]
    }

    /// Reads every node's process and Redis's.
    pub(crate) fn sample(&self) -> Readings {
        Readings {
            nodes: self
                .pids
                .iter()
                .map(|p| p.and_then(stats::sample))
                .collect(),
            redis_cpu: self
                .redis_pid
                .and_then(|pid| stats::cpu_seconds(&format!("/proc/{pid}/stat"))),
        }
    }
}

impl Readings {
    /// Node `node`'s CPU seconds between `self` (before) and `after`.
    pub(crate) fn node_cpu(&self, after: &Self, node: usize) -> Option<f64> {
        Some(after.nodes.get(node).copied()??.cpu - self.nodes.get(node).copied()??.cpu)
    }

    /// Node `node`'s reading.
    pub(crate) fn node(&self, node: usize) -> Option<ProcSample> {
        self.nodes.get(node).copied()?
    }

    /// Redis's CPU seconds between `self` (before) and `after`.
    pub(crate) fn redis_cpu(&self, after: &Self) -> Option<f64> {
        Some(after.redis_cpu? - self.redis_cpu?)
    }
}

/// Prints one line per node: its server, RSS before → after (peak) and CPU between the two
/// readings, and the RSS growth per connection it got (`conns[node]`).
pub(crate) fn print_servers(
    cluster: &Cluster,
    before: &Readings,
    after: &Readings,
    conns: &[usize],
) {
    for node in 0..cluster.len() {
        let (Some(b), Some(a)) = (before.node(node), after.node(node)) else {
            continue;
        };
        let n = conns.get(node).copied().unwrap_or(0).max(1) as u64;
        println!(
            "node {} ({}):  RSS {} -> {} (peak {}; {} bytes per connection), CPU {:.2}s",
            node + 1,
            cluster.servers[node],
            mib(b.rss),
            mib(a.rss),
            mib(a.peak_rss),
            a.rss.saturating_sub(b.rss) / n,
            a.cpu - b.cpu
        );
    }
    if let Some(cpu) = before.redis_cpu(after) {
        println!("redis-server:        CPU {cpu:.2}s");
    }
}

/// Percentiles of sorted `latencies`, on one line.
pub(crate) fn latency_line(latencies: &[Duration]) -> String {
    format!(
        "p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        percentile(latencies, 50.0),
        percentile(latencies, 90.0),
        percentile(latencies, 99.0),
        latencies.last().copied().unwrap_or_default()
    )
}
