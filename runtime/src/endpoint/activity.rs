//! What a connection is doing, for its timeouts: requests in progress, and since when it has
//! had none.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use super::HttpLimits;

/// Shared by a connection's task (which enforces the timeouts) and its service (which counts
/// requests).
#[derive(Debug)]
pub(super) struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `start` to the end of the last request.
    idle_since_ms: AtomicU64,
    served: AtomicBool,
    /// Notified when a request ends (the connection's deadline moves).
    pub(super) request_ended: tokio::sync::Notify,
}

/// A request in progress, until its response body has been sent ([`Tracked`]); when dropped,
/// the connection is idle from then on (unless another one is in progress).
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

/// What a connection's timer should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Nothing is due: look again at this time.
    Until(Instant),
    /// No complete request head within `header_read_timeout` of the connection's start.
    HeadTimedOut,
    /// No request within `keep_alive_timeout` of the last one's end.
    Idle,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
            request_ended: tokio::sync::Notify::new(),
        })
    }

    /// A request head arrived.
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// What is due at `now`.
    pub(super) fn check(&self, limits: &HttpLimits, now: Instant) -> Check {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Check::Until(now + limits.keep_alive_timeout);
        }
        let served = self.served.load(Ordering::SeqCst);
        let idle_since =
            self.start + Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst));
        let deadline = idle_since
            + if served {
                limits.keep_alive_timeout
            } else {
                limits.header_read_timeout
            };
        match (deadline > now, served) {
            (true, _) => Check::Until(deadline),
            (false, true) => Check::Idle,
            (false, false) => Check::HeadTimedOut,
        }
    }
}

/// A response body that keeps its request in progress until it has been sent (or dropped):
/// a connection streaming a slow body is not idle.
#[derive(Debug)]
pub(super) struct Tracked<B> {
    body: B,
    in_flight: Option<InFlight>,
}

impl<B> Tracked<B> {
    pub(super) fn new(body: B, in_flight: InFlight) -> Self {
        Self {
            body,
            in_flight: Some(in_flight),
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            // Its end: the request is over.
            self.in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let elapsed = u64::try_from(activity.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Written before the count drops, so a check that sees no request sees this time.
        activity.idle_since_ms.store(elapsed, Ordering::SeqCst);
        activity.served.store(true, Ordering::SeqCst);
        activity.in_flight.fetch_sub(1, Ordering::SeqCst);
        activity.request_ended.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_times_out_waiting_for_its_first_head_then_between_requests() {
        let limits = HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
            ..HttpLimits::default()
        };
        let secs = Duration::from_secs;
        let activity = Activity::new();
        let start = activity.start;
        assert_eq!(
            activity.check(&limits, start),
            Check::Until(start + secs(10))
        );
        assert_eq!(
            activity.check(&limits, start + secs(10)),
            Check::HeadTimedOut
        );

        let activity = Activity::new();
        let request = activity.begin();
        assert!(
            matches!(
                activity.check(&limits, Instant::now() + secs(100)),
                Check::Until(_)
            ),
            "a request in progress is not timed out here"
        );
        drop(request);
        let done = Instant::now();
        let Check::Until(deadline) = activity.check(&limits, done) else {
            panic!("idle, not yet timed out");
        };
        assert!(deadline > done + secs(74) && deadline <= done + secs(75));
        assert_eq!(activity.check(&limits, done + secs(75)), Check::Idle);
    }
}
