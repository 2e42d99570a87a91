//! The `[pubsub]` section and the node name: how this node reaches the other nodes of a
//! cluster.

use serde::{Deserialize, Serialize};

/// Which adapter carries broadcasts, presence and direct pushes between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// One node, no other process involved (the default).
    Memory,
    /// Redis pub/sub at `pubsub.redis_url`: every node using the same Redis (and
    /// `pubsub.redis_prefix`) is one cluster.
    Redis,
}

/// The `[pubsub]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PubSubConfig {
    /// `memory` or `redis`.
    pub adapter: AdapterKind,
    /// The Redis server of the `redis` adapter.
    pub redis_url: String,
    /// The prefix of the Redis channels: clusters sharing one Redis need different ones.
    pub redis_prefix: String,
    /// How nodes watch each other: `heartbeat_ms`, `node_timeout_ms`, `push_timeout_ms`.
    #[serde(flatten)]
    pub cluster: crate::runtime::ClusterConfig,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        Self {
            adapter: AdapterKind::Memory,
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            redis_prefix: "fawkes".to_owned(),
            cluster: crate::runtime::ClusterConfig::default(),
        }
    }
}

/// This process's default node name: the host name and the process id, which no other
/// process on the host has while this one lives.
pub(crate) fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "fawkes".to_owned());
    format!("{host}-{}", std::process::id())
}
