//! Applies the other nodes' frames, one at a time, in arrival order.

use std::sync::Arc;

use super::wire::{Control, Frame};
use super::{Cluster, Heard};
use crate::presence::Presence;
use crate::pubsub::PubSub;
use crate::registry::SocketRegistry;

/// Handles other nodes' frames.
pub(super) struct Handler {
    pub(super) cluster: Arc<Cluster>,
    pub(super) pubsub: PubSub,
    pub(super) presence: Presence,
    pub(super) registry: SocketRegistry,
}

impl Handler {
    pub(super) async fn handle(&self, bytes: &[u8]) {
        let frame = match Frame::decode(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!(error = %e, "cluster frame dropped");
                return;
            }
        };
        let cluster = &self.cluster;
        let control = match frame {
            Frame::Broadcast(b) => {
                if b.node != *cluster.node {
                    self.pubsub.dispatch_remote(&b.topic, &b.event, b.payload);
                }
                return;
            }
            Frame::Control(control) => control,
        };
        let (node, inc) = control.sender();
        if node == &*cluster.node {
            return;
        }
        let node = node.to_owned();
        if let Control::Bye { .. } = control {
            if cluster.members().get(&node).is_some_and(|m| m.inc == inc) {
                tracing::info!(%node, "cluster node left");
                cluster.forget(&node, &self.presence);
            }
            return;
        }
        let heard = cluster.heard(&node, inc);
        if heard == Heard::Restarted {
            self.presence.drop_node(&node);
        }
        if heard != Heard::Known {
            // A member heard of for the first time (or again, after it was forgotten): it may
            // lack this node's presences (sent while it was unknown here, or lost), and this
            // node lacks its: exchange whole states.
            cluster.send_to(&node, &cluster.sync());
            self.presence.dump(Some(&node));
            if let Control::Sync { .. } = control {
                return;
            }
        }
        self.apply(control, node).await;
    }

    async fn apply(&self, control: Control, from: String) {
        match control {
            Control::Heartbeat { .. } | Control::Bye { .. } => {}
            Control::Sync { .. } => self.presence.dump(Some(&from)),
            Control::PresenceOps {
                inc,
                shard,
                topic,
                ops,
                ..
            } => self.presence.remote_ops(&from, inc, shard, topic, ops),
            Control::PresenceDump {
                inc, shard, topics, ..
            } => self.presence.replace(&from, inc, shard, topics),
            Control::Push {
                inc,
                id,
                name,
                topic,
                event,
                payload,
                ..
            } => {
                let count = match payload.into_payload() {
                    Ok(payload) => {
                        self.registry
                            .push_local(&name, &topic, &event, &payload)
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "direct push with a bad payload dropped");
                        0
                    }
                };
                self.cluster.send_to(
                    &from,
                    &Control::Ack {
                        node: self.cluster.node.to_string(),
                        inc: self.cluster.inc,
                        of: inc,
                        id,
                        count,
                    },
                );
            }
            Control::Ack { of, id, count, .. } => self.cluster.acked(&from, of, id, count),
            Control::DisconnectExcept { name, keep, .. } => {
                self.registry.disconnect_except(&name, &keep);
            }
        }
    }
}
