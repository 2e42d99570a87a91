//! The topic actor: one per topic with subscribers. It starts with its first subscriber and
//! stops when a removal empties it and no subscription is on its way; one that ends with
//! subscribers tells them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc::error::TrySendError;
use tokio_tungstenite::tungstenite::Message;

use super::{Broadcast, Delivery, PubSub, SubscriberId};
use crate::protocol::{self, Vsn};
use crate::socket_actor::SocketMsg;
use crate::transport::{Framed, Sent, encoded_to_message};

pub(crate) enum TopicMsg {
    /// Add a subscriber, first queueing `Option<Message>` for it; answers `false` if this actor
    /// is closing (subscribe on a fresh one).
    Subscribe(SubscriberId, Delivery, Option<Message>, RpcReplyPort<bool>),
    Unsubscribe(SubscriberId),
    Broadcast(Arc<Broadcast>),
    /// The topic's state elsewhere (its presences) is lost: end every subscription, so each
    /// subscriber starts over (a channel join gets `phx_error` and rejoins).
    Lost,
    /// Fault injection: panic in the handler.
    #[cfg(feature = "testing")]
    Fail,
    /// Fault injection: stay busy (handle nothing else) until the sender is used or dropped.
    #[cfg(feature = "testing")]
    Stall(tokio::sync::oneshot::Receiver<()>),
}

pub(crate) struct TopicActor;

/// What a topic actor starts with: its topic and its first subscriber (a topic actor never
/// exists without one, so it can stop as soon as a removal empties it).
pub(crate) struct TopicArgs {
    pub(crate) topic: String,
    pub(crate) pubsub: PubSub,
    /// Its membership count in the topic map (see [`super::TopicEntry`]).
    pub(crate) members: Arc<AtomicUsize>,
    pub(crate) first: (SubscriberId, Delivery),
}

pub(crate) struct TopicState {
    topic: String,
    pubsub: PubSub,
    myself: ActorId,
    members: Arc<AtomicUsize>,
    subscribers: HashMap<SubscriberId, Delivery>,
    closing: bool,
}

impl Actor for TopicActor {
    type Msg = TopicMsg;
    type State = TopicState;
    type Arguments = TopicArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<TopicMsg>,
        args: TopicArgs,
    ) -> Result<TopicState, ActorProcessingErr> {
        let (id, delivery) = args.first;
        Ok(TopicState {
            topic: args.topic,
            pubsub: args.pubsub,
            myself: myself.get_id(),
            members: args.members,
            subscribers: HashMap::from([(id, delivery)]),
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
                // An id this actor never had (its subscription was on an actor that has
                // stopped since) changes nothing.
                if state.subscribers.remove(&id).is_some() {
                    state.removed(1, &myself);
                }
            }
            TopicMsg::Broadcast(broadcast) => {
                let FannedOut {
                    gone,
                    queued,
                    dropped,
                } = fan_out(state, &broadcast);
                // Once per broadcast, never per frame.
                let meters = state.pubsub.meters();
                meters.deliveries.increment(queued);
                if dropped > 0 {
                    meters.deliveries_dropped.increment(dropped);
                }
                if gone > 0 {
                    state.removed(gone, &myself);
                }
            }
            TopicMsg::Lost => {
                let gone = state.abandon();
                state.removed(gone, &myself);
            }
            #[cfg(feature = "testing")]
            TopicMsg::Fail => panic!("fault injected into the topic actor of {}", state.topic),
            #[cfg(feature = "testing")]
            TopicMsg::Stall(until) => {
                let _ = until.await;
            }
        }
        Ok(())
    }
}

impl TopicState {
    /// `count` subscribers were removed. Once that empties it and no subscription is on its
    /// way (the map's count, under the map's lock): leave the map and stop.
    fn removed(&mut self, count: usize, myself: &ActorRef<TopicMsg>) {
        self.members.fetch_sub(count, Ordering::AcqRel);
        if self.subscribers.is_empty()
            && !self.closing
            && self.pubsub.leave_if_unused(&self.topic, self.myself)
        {
            self.closing = true;
            myself.stop(None);
        }
    }

    /// Ends every subscription: a channel join is told through its socket actor (which ends
    /// it with `phx_error`, so the client rejoins); a [`super::Subscription`] ends (`recv`
    /// gives `None`).
    fn abandon(&mut self) -> usize {
        let count = self.subscribers.len();
        let topic: Arc<str> = Arc::from(self.topic.as_str());
        for (subscriber, delivery) in self.subscribers.drain() {
            if let Delivery::Fastlane { socket, .. } = delivery {
                let _ = socket.cast(SocketMsg::SubscriptionLost {
                    topic: topic.clone(),
                    subscriber,
                });
            }
        }
        count
    }
}

impl Drop for TopicState {
    /// An actor that ends with subscribers (it failed, was killed with its supervisor, or never
    /// got linked) must not leave them joined and deaf: it leaves the map and tells them.
    fn drop(&mut self) {
        if !self.subscribers.is_empty() {
            self.pubsub.forget(&self.topic, self.myself);
            self.abandon();
        }
    }
}

/// What one broadcast's fan-out did.
struct FannedOut {
    /// Subscribers removed because they are gone (or fell behind).
    gone: usize,
    /// Frames (or broadcasts, for a `Subscription`) queued to subscribers.
    queued: u64,
    /// Frames not queued because a subscriber's queue was full.
    dropped: u64,
}

/// Delivers one broadcast to every subscriber, encoding and framing at most once per
/// serializer (a subscriber that can take it at once gets it written directly).
fn fan_out(state: &mut TopicState, broadcast: &Arc<Broadcast>) -> FannedOut {
    let mut encoded: [Option<Option<Framed>>; 2] = [None, None];
    let mut gone = Vec::new();
    let (mut queued, mut dropped) = (0u64, 0u64);
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
                let frame = slot.get_or_insert_with(|| encode(*vsn, broadcast).map(Framed::new));
                if let Some(frame) = frame {
                    match out.send_framed(frame) {
                        Sent::Queued => queued += 1,
                        Sent::Overflow => dropped += 1,
                        Sent::Gone => gone.push(*id),
                    }
                }
            }
            Delivery::Forward { tx, overflowed } => match tx.try_send(broadcast.clone()) {
                Ok(()) => queued += 1,
                Err(TrySendError::Full(_)) => {
                    dropped += 1;
                    tracing::warn!(topic = %broadcast.topic, "a subscription fell behind; ending it");
                    overflowed.store(true, Ordering::Release);
                    gone.push(*id);
                }
                Err(TrySendError::Closed(_)) => gone.push(*id),
            },
        }
    }
    let removed = gone.len();
    for id in gone {
        state.subscribers.remove(&id);
    }
    FannedOut {
        gone: removed,
        queued,
        dropped,
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
