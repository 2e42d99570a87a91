//! What a connection is doing, for its timeouts: requests in progress, and since when it has
//! had none. A request whose response body waits for the client to take data (HTTP/2 flow
//! control, or a client that does not read) is in progress for the server's sake only as long
//! as the client keeps taking some: a connection whose every request has waited on the client
//! for `keep_alive_timeout` counts as idle, so a client advertising a zero window cannot keep
//! it open forever.

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
    /// Requests in progress whose response body waits for the client (hyper has not asked for
    /// more since the body's last data, or since its head).
    waiting_on_client: AtomicUsize,
    /// Milliseconds from `start` to the last progress: a request began, or hyper asked a body
    /// for more.
    progress_ms: AtomicU64,
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
    /// Requests in progress, but every one has waited for the client to take its response for
    /// `keep_alive_timeout`.
    Stalled,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
            waiting_on_client: AtomicUsize::new(0),
            progress_ms: AtomicU64::new(0),
            request_ended: tokio::sync::Notify::new(),
        })
    }

    /// A request head arrived.
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        self.progressed();
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Milliseconds from `start` to now.
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn progressed(&self) {
        self.progress_ms.store(self.elapsed_ms(), Ordering::SeqCst);
    }

    /// A response body starts or stops waiting for the client.
    fn waiting(&self, waiting: bool) {
        self.progressed();
        if waiting {
            self.waiting_on_client.fetch_add(1, Ordering::SeqCst);
        } else {
            self.waiting_on_client.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// What is due at `now`.
    pub(super) fn check(&self, limits: &HttpLimits, now: Instant) -> Check {
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        if in_flight > 0 {
            if self.waiting_on_client.load(Ordering::SeqCst) < in_flight {
                // The server is still working on one.
                return Check::Until(now + limits.keep_alive_timeout);
            }
            let progress =
                self.start + Duration::from_millis(self.progress_ms.load(Ordering::SeqCst));
            let deadline = progress + limits.keep_alive_timeout;
            return if deadline > now {
                Check::Until(deadline)
            } else {
                Check::Stalled
            };
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
/// a connection streaming a slow body is not idle. Between handing hyper data (or its head)
/// and hyper asking for more, it waits for the client ([`Activity`]'s `waiting_on_client`).
#[derive(Debug)]
pub(super) struct Tracked<B> {
    body: B,
    in_flight: Option<InFlight>,
    /// Counted in `waiting_on_client`.
    waiting: bool,
}

impl<B> Tracked<B> {
    /// `body`, whose head hyper is about to send: waiting for hyper (and so the client) to
    /// ask for its data.
    pub(super) fn new(body: B, in_flight: InFlight) -> Self {
        in_flight.0.waiting(true);
        Self {
            body,
            in_flight: Some(in_flight),
            waiting: true,
        }
    }

    fn set_waiting(&mut self, waiting: bool) {
        if self.waiting != waiting
            && let Some(in_flight) = &self.in_flight
        {
            in_flight.0.waiting(waiting);
            self.waiting = waiting;
        }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.set_waiting(false);
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        // Asked for more: whatever was handed over has gone on its way.
        self.set_waiting(false);
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None | Some(Err(_))) => {
                // Its end: the request is over.
                self.in_flight = None;
            }
            // Handed over: hyper asks again once the client has made room for it.
            Poll::Ready(Some(Ok(_))) => self.set_waiting(true),
            // The body itself is not ready: the server's doing.
            Poll::Pending => {}
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
        let elapsed = activity.elapsed_ms();
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

    #[test]
    fn a_request_waiting_on_the_client_for_the_keep_alive_timeout_is_stalled() {
        use std::task::Waker;

        use bytes::Bytes;
        use http_body::Body as _;

        let limits = HttpLimits::default();
        let secs = Duration::from_secs;
        let mut cx = Context::from_waker(Waker::noop());
        let activity = Activity::new();
        // The handler is working: not the client's doing, however long.
        let request = activity.begin();
        assert!(matches!(
            activity.check(&limits, Instant::now() + secs(1000)),
            Check::Until(_)
        ));
        // Its response's head went out and hyper has not asked for the body (HTTP/2 with a
        // zero window): stalled once the keep-alive timeout has passed.
        let mut body = Tracked::new(http_body_util::Full::new(Bytes::from("x")), request);
        let now = Instant::now();
        assert!(matches!(activity.check(&limits, now), Check::Until(_)));
        assert_eq!(activity.check(&limits, now + secs(76)), Check::Stalled);
        // Asked, and handed its data: waiting on the client again, from now.
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
        assert_eq!(activity.waiting_on_client.load(Ordering::SeqCst), 1);
        drop(body);
        assert_eq!(activity.waiting_on_client.load(Ordering::SeqCst), 0);
        assert_eq!(activity.in_flight.load(Ordering::SeqCst), 0);

        // A body that is not ready yet is the server's doing.
        let activity = Activity::new();
        let pending = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<http_body::Frame<Bytes>, std::convert::Infallible>,
        >());
        let mut body = Tracked::new(pending, activity.begin());
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert!(matches!(
            activity.check(&limits, Instant::now() + secs(1000)),
            Check::Until(_)
        ));
    }
}
