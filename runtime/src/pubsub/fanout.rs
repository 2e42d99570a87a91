//! One broadcast's fan-out: encoded and framed at most once per serializer, then handed to
//! every subscriber (written straight to a connection that can take it, queued otherwise).
//! A big topic's fan-out is spread over the runtime's worker threads in shards, because the
//! kernel's work per write (on loopback, the receiver's too) dominates it: one thread walking
//! 10,000 sockets takes twice as long as two walking 5,000 each. A big topic's fan-outs run
//! off its actor, in a [`Pipeline`]: one after another (each subscriber is in one shard, and
//! every shard of a broadcast finishes before the next broadcast starts, so the order per
//! subscriber is the order of the broadcasts), while the actor goes on taking subscriptions:
//! a join is not kept waiting behind writes to 15,000 sockets.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use ractor::ActorRef;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::topic::TopicMsg;
use super::{Broadcast, Delivery, PubSub, SubscriberId};
use crate::protocol::{self, Vsn};
use crate::socket_actor::SocketMsg;
use crate::transport::{Framed, Sent, encoded_to_message};

/// Topics with at least this many subscribers have their fan-out spread over the worker
/// threads, in two shards per worker (so that a worker busy elsewhere leaves its second shard
/// to the other). Measured on the 2-core machine (BENCHMARKS.md, issue 14): 1,000 subscribers
/// in four shards reach their last subscriber about a fifth sooner than in one or two;
/// shards of 128 were no better than four at 10,000.
pub(super) const SPREAD_FROM: usize = 256;

/// Deliveries a shard makes before it lets its worker run other tasks.
const YIELD_EVERY: usize = 64;

/// A broadcast and its frames, made on first use for each serializer.
pub(super) struct Encodings {
    broadcast: Arc<Broadcast>,
    /// V1 and V2; `None` inside when it is not encodable for that serializer.
    frames: [OnceLock<Option<Framed>>; 2],
}

impl Encodings {
    pub(super) fn new(broadcast: Arc<Broadcast>) -> Self {
        Self {
            broadcast,
            frames: [OnceLock::new(), OnceLock::new()],
        }
    }

    fn framed(&self, vsn: Vsn) -> Option<&Framed> {
        self.frames[usize::from(vsn == Vsn::V2)]
            .get_or_init(|| encode(vsn, &self.broadcast).map(Framed::new))
            .as_ref()
    }
}

/// What one broadcast's fan-out did (or one shard of it).
#[derive(Debug, Default)]
pub(super) struct Delivered {
    /// Subscribers to remove because they are gone (or fell behind).
    pub(super) gone: Vec<SubscriberId>,
    /// Frames (or broadcasts, for a `Subscription`) handed to subscribers.
    pub(super) queued: u64,
    /// Frames not handed on because a subscriber's queue was full.
    pub(super) dropped: u64,
}

impl Delivered {
    fn add(&mut self, other: Delivered) {
        self.gone.extend(other.gone);
        self.queued += other.queued;
        self.dropped += other.dropped;
    }
}

/// Hands the broadcast to each of `subscribers` (but its sender).
pub(super) fn deliver<'a>(
    subscribers: impl Iterator<Item = (&'a SubscriberId, &'a Delivery)>,
    encodings: &Encodings,
) -> Delivered {
    let broadcast = &encodings.broadcast;
    let mut done = Delivered::default();
    for (id, delivery) in subscribers {
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
                        done.gone.push(*id);
                    }
                    continue;
                }
                if let Some(frame) = encodings.framed(*vsn) {
                    match out.send_framed(frame) {
                        Sent::Queued => done.queued += 1,
                        Sent::Overflow => done.dropped += 1,
                        Sent::Gone => done.gone.push(*id),
                    }
                }
            }
            Delivery::Forward { tx, overflowed } => match tx.try_send(broadcast.clone()) {
                Ok(()) => done.queued += 1,
                Err(TrySendError::Full(_)) => {
                    done.dropped += 1;
                    tracing::warn!(topic = %broadcast.topic, "a subscription fell behind; ending it");
                    overflowed.store(true, Ordering::Release);
                    done.gone.push(*id);
                }
                Err(TrySendError::Closed(_)) => done.gone.push(*id),
            },
        }
    }
    done
}

/// The subscribers of a big topic, as a list its shards share.
pub(super) type Shared = Arc<Vec<(SubscriberId, Delivery)>>;

/// One broadcast for a [`Pipeline`]: the subscribers when it was published, and its frames.
struct Job {
    subscribers: Shared,
    encodings: Arc<Encodings>,
}

/// A topic's fan-outs, off its actor, one after another. Once a topic has one, every one of
/// its broadcasts goes through it (never around it: that would reorder them).
pub(super) struct Pipeline {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Pipeline {
    /// Starts the pipeline of `topic`'s actor: `shards` per spread fan-out; what is gone is
    /// told to the actor, and the deliveries to the metrics.
    pub(super) fn start(shards: usize, pubsub: PubSub, topic: ActorRef<TopicMsg>) -> Self {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let done = if job.subscribers.len() >= SPREAD_FROM {
                    spread(job.subscribers, job.encodings, shards).await
                } else {
                    let all = job.subscribers.iter().map(|(id, d)| (id, d));
                    Ok(deliver(all, &job.encodings))
                };
                match done {
                    Ok(done) => {
                        done.count(&pubsub);
                        if !done.gone.is_empty() {
                            let _ = topic.cast(TopicMsg::Gone(done.gone));
                        }
                    }
                    Err(e) => {
                        // Subscribers may have missed it: they start over (rejoin).
                        tracing::error!(error = %e, "a fan-out shard failed; the topic's subscribers are told");
                        let _ = topic.cast(TopicMsg::Lost);
                    }
                }
            }
        });
        Self { jobs }
    }

    /// Queues a broadcast to `subscribers` (those of the topic now).
    pub(super) fn push(&self, subscribers: Shared, encodings: Encodings) {
        let _ = self.jobs.send(Job {
            subscribers,
            encodings: Arc::new(encodings),
        });
    }
}

impl Delivered {
    /// Adds the deliveries to the metrics (once per broadcast, never per frame).
    pub(super) fn count(&self, pubsub: &PubSub) {
        let meters = pubsub.meters();
        meters.deliveries.increment(self.queued);
        if self.dropped > 0 {
            meters.deliveries_dropped.increment(self.dropped);
        }
    }
}

/// Delivers to `subscribers` in `shards` tasks, one range each, and waits for them all.
/// `Err` if a shard panicked.
async fn spread(
    subscribers: Shared,
    encodings: Arc<Encodings>,
    shards: usize,
) -> Result<Delivered, tokio::task::JoinError> {
    let len = subscribers.len();
    let per_shard = len.div_ceil(shards.max(1)).max(1);
    // Every shard is a task (none runs inline): the first ones spawned leave the spawning
    // worker's next-task slot for its run queue, where idle workers take them.
    let tasks: Vec<_> = (0..len)
        .step_by(per_shard)
        .map(|start| {
            let (subscribers, encodings) = (subscribers.clone(), encodings.clone());
            tokio::spawn(async move {
                let end = (start + per_shard).min(subscribers.len());
                let mut done = Delivered::default();
                // A few dozen writes at a time: the worker also serves the joins and frames
                // of other connections meanwhile.
                for chunk in subscribers[start..end].chunks(YIELD_EVERY) {
                    done.add(deliver(chunk.iter().map(|(id, d)| (id, d)), &encodings));
                    tokio::task::yield_now().await;
                }
                done
            })
        })
        .collect();
    let mut done = Delivered::default();
    for task in tasks {
        done.add(task.await?);
    }
    Ok(done)
}

fn encode(vsn: Vsn, broadcast: &Broadcast) -> Option<tokio_tungstenite::tungstenite::Message> {
    match protocol::encode_broadcast(vsn, &broadcast.topic, &broadcast.event, &broadcast.payload) {
        Ok(encoded) => Some(encoded_to_message(encoded)),
        Err(e) => {
            tracing::warn!(topic = %broadcast.topic, event = %broadcast.event, error = %e, "broadcast not encodable for {vsn:?} subscribers");
            None
        }
    }
}
