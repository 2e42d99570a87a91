//! The topic actor: one per topic with subscribers. It starts with its first subscriber and
//! stops when a removal empties it and no subscription is on its way; one that ends with
//! subscribers tells them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio_tungstenite::tungstenite::Message;

use super::fanout::{self, Encodings, Pipeline, SPREAD_FROM};
use super::{Broadcast, Delivery, PubSub, SubscriberId};
use crate::socket_actor::SocketMsg;

pub(crate) enum TopicMsg {
    /// Add a subscriber, first queueing `Option<Message>` for it; answers `false` if this actor
    /// is closing (subscribe on a fresh one).
    Subscribe(SubscriberId, Delivery, Option<Message>, RpcReplyPort<bool>),
    Unsubscribe(SubscriberId),
    Broadcast(Arc<Broadcast>),
    /// These subscribers are gone (or fell behind): found by the topic's [`Pipeline`].
    Gone(Vec<SubscriberId>),
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
    /// `subscribers` as a list for a spread fan-out, made on the first broadcast after a change.
    list: Option<fanout::Shared>,
    /// The runtime's worker threads: the shards of a spread fan-out.
    workers: usize,
    /// Its fan-outs off the actor, once it has had `SPREAD_FROM` subscribers.
    pipeline: Option<Pipeline>,
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
            list: None,
            workers: tokio::runtime::Handle::current().metrics().num_workers(),
            pipeline: None,
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
                state.list = None;
                let _ = reply.send(true);
            }
            TopicMsg::Unsubscribe(id) => {
                // An id this actor never had (its subscription was on an actor that has
                // stopped since) changes nothing.
                if state.subscribers.remove(&id).is_some() {
                    state.list = None;
                    state.removed(1, &myself);
                }
            }
            TopicMsg::Broadcast(broadcast) => {
                let encodings = Encodings::new(broadcast);
                if state.pipeline.is_none()
                    && state.subscribers.len() >= SPREAD_FROM
                    && state.workers > 1
                {
                    let shards = state.workers * 2;
                    let pipeline = Pipeline::start(shards, state.pubsub.clone(), myself.clone());
                    state.pipeline = Some(pipeline);
                }
                if state.pipeline.is_some() {
                    let list = state.list();
                    if let Some(pipeline) = &state.pipeline {
                        pipeline.push(list, encodings);
                    }
                } else {
                    let done = fanout::deliver(state.subscribers.iter(), &encodings);
                    done.count(&state.pubsub);
                    state.remove_gone(done.gone, &myself);
                }
            }
            TopicMsg::Gone(gone) => state.remove_gone(gone, &myself),
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
    /// Removes those of `gone` still subscribed.
    fn remove_gone(&mut self, gone: Vec<SubscriberId>, myself: &ActorRef<TopicMsg>) {
        let mut removed = 0;
        for id in gone {
            removed += usize::from(self.subscribers.remove(&id).is_some());
        }
        if removed > 0 {
            self.list = None;
            self.removed(removed, myself);
        }
    }

    /// The subscribers as a list shared with the shards of a spread fan-out.
    fn list(&mut self) -> fanout::Shared {
        self.list
            .get_or_insert_with(|| {
                Arc::new(
                    self.subscribers
                        .iter()
                        .map(|(id, delivery)| (*id, delivery.clone()))
                        .collect(),
                )
            })
            .clone()
    }

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
        self.list = None;
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
