//! Login rate limits (governor): per client address and per e-mail address.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;

/// Two keyed GCRA limiters; a limit of 0 disables that limiter.
pub struct LoginLimiter {
    by_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    by_email: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

fn keyed<K: Clone + Eq + std::hash::Hash>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

impl LoginLimiter {
    /// Limiters for `config`.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            by_ip: keyed(config.login_per_ip_per_minute),
            by_email: keyed(config.login_per_email_per_minute),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one attempt from `ip` for `email`; `Err(wait)` if either limit is exhausted.
    pub fn check(&self, ip: IpAddr, email: &str) -> Result<(), Duration> {
        if let Some(limiter) = &self.by_ip {
            limiter
                .check_key(&ip)
                .map_err(|until| until.wait_time_from(self.clock.now()))?;
        }
        if let Some(limiter) = &self.by_email {
            limiter
                .check_key(&email.trim().to_lowercase())
                .map_err(|until| until.wait_time_from(self.clock.now()))?;
        }
        Ok(())
    }

    /// Forgets keys whose limits have fully replenished (bounded memory).
    pub fn prune(&self) {
        if let Some(limiter) = &self.by_ip {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.by_email {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}
