//! How fast and how much a client may send: its messages per second, and the frames in flight
//! to its socket actor, by count and by bytes. Over either the connection stops reading (TCP
//! pushes back on the client) until the rate or the actor allows: nothing is lost.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock as _, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// The inbound window, in units of [`UNIT`] bytes of frame text: client frames handed to the
/// socket actor and not yet handled hold at most this much between them.
pub(super) const WINDOW_BYTES: usize = 1024 * 1024;

/// Frames in flight at most: a frame holds at least `1/INBOUND_FRAMES` of the window.
pub(super) const WINDOW_FRAMES: u32 = 32;

/// The window's unit.
const UNIT: usize = 1024;

const WINDOW_UNITS: u32 = (WINDOW_BYTES / UNIT) as u32;

/// One connection's inbound flow control. Small and inline: an atomic and a few words for the
/// rate, and the window's semaphore.
pub(super) struct Inflow {
    window: Arc<Semaphore>,
    rate: Option<
        RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<std::time::Instant>>,
    >,
}

impl std::fmt::Debug for Inflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflow")
            .field("window", &self.window.available_permits())
            .field("rate", &self.rate.is_some())
            .finish()
    }
}

impl Inflow {
    /// `per_second` messages sustained with bursts of `burst` (0 per second: no limit).
    pub(super) fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::direct_with_clock(
                Quota::per_second(rate).allow_burst(burst),
                MonotonicClock,
            )
        });
        Self {
            window: Arc::new(Semaphore::new(WINDOW_UNITS as usize)),
            rate,
        }
    }

    /// Takes one message from the rate, or says when to try again.
    pub(super) fn rate(&self) -> Result<(), Instant> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        rate.check()
            .map_err(|not_until| Instant::now() + not_until.wait_time_from(MonotonicClock.now()))
    }

    /// The window units `message` holds while in flight: its size in KiB, at least
    /// `1/WINDOW_FRAMES` of the window, at most all of it. Control messages hold none (they
    /// never reach the socket actor).
    pub(super) fn cost(message: &Message) -> u32 {
        let len = match message {
            Message::Text(text) => text.len(),
            Message::Binary(bytes) => bytes.len(),
            _ => return 0,
        };
        let units = u32::try_from(len.div_ceil(UNIT)).unwrap_or(u32::MAX);
        units.clamp(WINDOW_UNITS / WINDOW_FRAMES, WINDOW_UNITS)
    }

    /// `cost` units of the window, if free now.
    pub(super) fn try_window(&self, cost: u32) -> Option<OwnedSemaphorePermit> {
        self.window.clone().try_acquire_many_owned(cost).ok()
    }

    /// `cost` units of the window, once free.
    pub(super) async fn window(&self, cost: u32) -> Option<OwnedSemaphorePermit> {
        self.window.clone().acquire_many_owned(cost).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_costs_its_size_between_a_share_of_the_window_and_all_of_it() {
        let text = |n: usize| Message::Text("x".repeat(n).into());
        assert_eq!(
            Inflow::cost(&text(10)),
            32,
            "a small frame: 1/32 of the window"
        );
        assert_eq!(Inflow::cost(&text(32 * 1024)), 32);
        assert_eq!(Inflow::cost(&text(32 * 1024 + 1)), 33);
        assert_eq!(Inflow::cost(&text(400 * 1024)), 400);
        assert_eq!(
            Inflow::cost(&text(5 * 1024 * 1024)),
            1024,
            "never more than the window"
        );
        assert_eq!(Inflow::cost(&Message::Binary(vec![0; 2048].into())), 32);
        assert_eq!(Inflow::cost(&Message::Ping(vec![0; 100].into())), 0);

        let inflow = Inflow::new(0, 0);
        let held: Vec<_> = (0..WINDOW_FRAMES)
            .map(|_| inflow.try_window(Inflow::cost(&text(10))).expect("room"))
            .collect();
        assert!(inflow.try_window(32).is_none(), "32 frames at most");
        drop(held);
        let big = inflow
            .try_window(Inflow::cost(&text(600 * 1024)))
            .expect("room");
        assert!(
            inflow.try_window(Inflow::cost(&text(600 * 1024))).is_none(),
            "by bytes"
        );
        assert!(inflow.try_window(32).is_some(), "a small one still fits");
        drop(big);
    }

    #[test]
    fn the_rate_allows_a_burst_then_says_when() {
        let unlimited = Inflow::new(0, 0);
        assert!((0..10_000).all(|_| unlimited.rate().is_ok()));
        let limited = Inflow::new(1, 3);
        assert!((0..3).all(|_| limited.rate().is_ok()), "the burst");
        let now = Instant::now();
        let until = limited.rate().expect_err("over the rate");
        assert!(until > now && until <= now + std::time::Duration::from_secs(1));
    }
}
