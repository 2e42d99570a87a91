//! The topic actor: one per topic with subscribers.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio_tungstenite::tungstenite::Message;

use super::{Broadcast, Delivery, PubSub, SubscriberId};
use crate::runtime::protocol::{self, Vsn};
use crate::runtime::socket_actor::SocketMsg;
use crate::runtime::transport::{Sent, encoded_to_message};

pub(crate) enum TopicMsg {
    /// Add a subscriber, first queueing `Option<Message>` for it; answers `false` if this actor
    /// is closing (subscribe on a fresh one).
    Subscribe(SubscriberId, Delivery, Option<Message>, RpcReplyPort<bool>),
    Unsubscribe(SubscriberId),
    Broadcast(Arc<Broadcast>),
}

pub(crate) struct TopicActor;

pub(crate) struct TopicState {
    topic: String,
    pubsub: PubSub,
    subscribers: HashMap<SubscriberId, Delivery>,
    closing: bool,
}

impl Actor for TopicActor {
    type Msg = TopicMsg;
    type State = TopicState;
    type Arguments = (String, PubSub);

    async fn pre_start(
        &self,
        _myself: ActorRef<TopicMsg>,
        (topic, pubsub): (String, PubSub),
    ) -> Result<TopicState, ActorProcessingErr> {
        Ok(TopicState {
            topic,
            pubsub,
            subscribers: HashMap::new(),
            closing: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<TopicMsg>,
        message: TopicMsg,
        state: &mut TopicState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TopicMsg::Subscribe(id, delivery, first, reply) => {
                if state.closing {
                    let _ = reply.send(false);
                    return Ok(());
                }
                if let (Some(frame), Delivery::Fastlane { out, .. }) = (first, &delivery) {
                    out.send(frame);
                }
                state.subscribers.insert(id, delivery);
                let _ = reply.send(true);
            }
            TopicMsg::Unsubscribe(id) => {
                state.subscribers.remove(&id);
                state.stop_if_empty(&myself);
            }
            TopicMsg::Broadcast(broadcast) => {
                fan_out(state, &broadcast);
                state.stop_if_empty(&myself);
            }
        }
        Ok(())
    }
}

impl TopicState {
    /// With no subscribers left: stop taking subscriptions, leave the map, and stop.
    /// Subscriptions already queued are refused and retried on a fresh actor.
    fn stop_if_empty(&mut self, myself: &ActorRef<TopicMsg>) {
        if self.subscribers.is_empty() && !self.closing {
            self.closing = true;
            self.pubsub.forget(&self.topic, myself);
            myself.stop(None);
        }
    }
}

/// Delivers one broadcast to every subscriber, encoding at most once per serializer.
fn fan_out(state: &mut TopicState, broadcast: &Arc<Broadcast>) {
    let mut encoded: [Option<Option<Message>>; 2] = [None, None];
    let mut gone = Vec::new();
    for (id, delivery) in &state.subscribers {
        if broadcast.from == Some(*id) {
            continue;
        }
        match delivery {
            Delivery::Fastlane {
                out,
                vsn,
                intercepts,
                socket,
            } => {
                if intercepts.iter().any(|e| *e == broadcast.event) {
                    let sent = socket.cast(SocketMsg::Intercepted {
                        topic: Arc::from(broadcast.topic.as_str()),
                        subscriber: *id,
                        broadcast: broadcast.clone(),
                    });
                    if sent.is_err() {
                        gone.push(*id);
                    }
                    continue;
                }
                let slot = &mut encoded[usize::from(*vsn == Vsn::V2)];
                let frame = slot.get_or_insert_with(|| encode(*vsn, broadcast));
                if let Some(frame) = frame
                    && out.send(frame.clone()) == Sent::Gone
                {
                    gone.push(*id);
                }
            }
            Delivery::Forward(tx) => {
                if tx.send(broadcast.clone()).is_err() {
                    gone.push(*id);
                }
            }
        }
    }
    for id in gone {
        state.subscribers.remove(&id);
    }
}

fn encode(vsn: Vsn, broadcast: &Broadcast) -> Option<Message> {
    match protocol::encode_broadcast(vsn, &broadcast.topic, &broadcast.event, &broadcast.payload) {
        Ok(encoded) => Some(encoded_to_message(encoded)),
        Err(e) => {
            tracing::warn!(topic = %broadcast.topic, event = %broadcast.event, error = %e, "broadcast not encodable for {vsn:?} subscribers");
            None
        }
    }
}
