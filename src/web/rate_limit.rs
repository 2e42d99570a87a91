//! Rate limits (governor GCRA, keyed; a limit of 0 disables that limiter): REST requests,
//! logins and registrations, all keyed on the client address as
//! [`PeerAddr::client`](crate::runtime::PeerAddr::client) gives it (IPv6 by /64).
//!
//! Every REST request but `/health` and `/ready` counts against its client address
//! (`requests_per_ip_per_second`, with a burst of `requests_burst_per_ip`): one address cannot
//! take more than a bounded share of the API, whatever the route costs (a room post fans out to
//! every member, a history page reads the database).
//!
//! Logins (and password checks of profile changes) are limited three ways, each checked before
//! any password is hashed and counting every attempt:
//! - per client address (`login_per_ip_per_minute`): one address cannot try many accounts;
//! - per (client address, e-mail) (`login_per_email_per_minute`): one address cannot guess one
//!   account's password quickly; a victim logging in from elsewhere is not affected;
//! - per e-mail across all addresses (`login_per_email_all_addresses_per_minute`, much higher):
//!   many addresses together cannot guess quickly either. When it runs out the e-mail is locked
//!   for a minute, doubling with each lockout up to an hour (forgotten an hour after the last
//!   one ends). A single address never reaches it, since the pair limit stops it first.
//!
//! Attempts are counted before the password is checked, successes included: counting only
//! failures would need a check before the hash and a count after it, and concurrent guesses
//! would all pass the check before any was counted.
//!
//! Memory: every limiter keeps state only for keys seen within about one refill period;
//! [`LoginLimiter::prune`] and [`RegisterLimiter::prune`] (run by the server's maintenance
//! task) drop the rest, and a lockout is dropped an hour after it ends.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::accounts::MAX_EMAIL_LEN;
use crate::config::RateLimitConfig;

/// The first lockout of an e-mail whose across-addresses limit ran out.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(60);
/// The longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(3600);
/// How long after a lockout ends its count is remembered.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

fn keyed<K: Clone + Eq + std::hash::Hash>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

fn check<K: Clone + Eq + std::hash::Hash>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
    clock: &DefaultClock,
) -> Result<(), Duration> {
    match limiter {
        Some(limiter) => limiter
            .check_key(key)
            .map_err(|until| until.wait_time_from(clock.now())),
        None => Ok(()),
    }
}

fn prune<K: Clone + Eq + std::hash::Hash>(limiter: Option<&DefaultKeyedRateLimiter<K>>) {
    if let Some(limiter) = limiter {
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}

/// An e-mail locked after its across-addresses limit ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lockout {
    /// How many lockouts in a row (none forgotten in between).
    strikes: u32,
    until: Instant,
}

impl Lockout {
    /// The lockout after `previous` when the limit runs out again at `now`.
    fn next(previous: Option<Lockout>, now: Instant) -> Lockout {
        let strikes = match previous {
            Some(p) if now < p.until + FORGET_AFTER => p.strikes.saturating_add(1),
            _ => 1,
        };
        let wait = FIRST_LOCKOUT
            .saturating_mul(1u32 << (strikes - 1).min(16))
            .min(MAX_LOCKOUT);
        Lockout {
            strikes,
            until: now + wait,
        }
    }
}

/// Login limits; see the module docs.
pub struct LoginLimiter {
    by_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    by_ip_and_email: Option<DefaultKeyedRateLimiter<(IpAddr, String)>>,
    by_email: Option<DefaultKeyedRateLimiter<String>>,
    lockouts: DashMap<String, Lockout>,
    clock: DefaultClock,
}

impl LoginLimiter {
    /// Limiters for `config`.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            by_ip: keyed(config.login_per_ip_per_minute),
            by_ip_and_email: keyed(config.login_per_email_per_minute),
            by_email: keyed(config.login_per_email_all_addresses_per_minute),
            lockouts: DashMap::new(),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one attempt from `ip` for `email` (compared without case); `Err(wait)` if any
    /// limit is exhausted or the e-mail is locked.
    ///
    /// Only the first `MAX_EMAIL_LEN + 1` characters are kept as a key: no account has a
    /// longer address, and a key never holds more than a few hundred bytes however large the
    /// request.
    pub fn check(&self, ip: IpAddr, email: &str) -> Result<(), Duration> {
        let email = email
            .trim()
            .chars()
            .take(MAX_EMAIL_LEN + 1)
            .collect::<String>()
            .to_lowercase();
        check(self.by_ip.as_ref(), &ip, &self.clock)?;
        check(
            self.by_ip_and_email.as_ref(),
            &(ip, email.clone()),
            &self.clock,
        )?;
        let now = Instant::now();
        if let Some(lockout) = self.lockouts.get(&email).map(|l| *l)
            && now < lockout.until
        {
            return Err(lockout.until - now);
        }
        if check(self.by_email.as_ref(), &email, &self.clock).is_err() {
            let mut entry = self.lockouts.entry(email).or_insert(Lockout {
                strikes: 0,
                until: now,
            });
            let previous = (entry.strikes > 0).then_some(*entry);
            *entry = Lockout::next(previous, now);
            return Err(entry.until - now);
        }
        Ok(())
    }

    /// Forgets keys whose limits have fully replenished and lockouts long over (bounded
    /// memory).
    pub fn prune(&self) {
        prune(self.by_ip.as_ref());
        prune(self.by_ip_and_email.as_ref());
        prune(self.by_email.as_ref());
        let now = Instant::now();
        self.lockouts
            .retain(|_, lockout| now < lockout.until + FORGET_AFTER);
        self.lockouts.shrink_to_fit();
    }
}

/// REST requests per client address.
pub struct RequestLimiter {
    by_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl RequestLimiter {
    /// The limiter for `config`.
    pub fn new(config: &RateLimitConfig) -> Self {
        let by_ip = NonZeroU32::new(config.requests_per_ip_per_second).map(|rate| {
            let burst = NonZeroU32::new(config.requests_burst_per_ip).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst.max(rate)))
        });
        Self {
            by_ip,
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request from `ip`; `Err(wait)` if the address is over its rate.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        check(self.by_ip.as_ref(), &ip, &self.clock)
    }

    /// Forgets addresses whose limit has fully replenished.
    pub fn prune(&self) {
        prune(self.by_ip.as_ref());
    }
}

/// Registrations per client address.
pub struct RegisterLimiter {
    by_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl RegisterLimiter {
    /// The limiter for `config`.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            by_ip: keyed(config.register_per_ip_per_minute),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one registration attempt from `ip`; `Err(wait)` if the limit is exhausted.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        check(self.by_ip.as_ref(), &ip, &self.clock)
    }

    /// Forgets addresses whose limit has fully replenished.
    pub fn prune(&self) {
        prune(self.by_ip.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ip: u32, pair: u32, email: u32) -> RateLimitConfig {
        RateLimitConfig {
            login_per_ip_per_minute: ip,
            login_per_email_per_minute: pair,
            login_per_email_all_addresses_per_minute: email,
            register_per_ip_per_minute: 0,
            requests_per_ip_per_second: 0,
            requests_burst_per_ip: 0,
        }
    }

    fn addr(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn the_pair_limit_does_not_lock_out_other_addresses() {
        let limiter = LoginLimiter::new(&config(0, 3, 100));
        for _ in 0..3 {
            assert_eq!(limiter.check(addr(2), "victim@example.com"), Ok(()));
        }
        let wait = limiter
            .check(addr(2), "Victim@Example.com ")
            .expect_err("limited");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        assert_eq!(limiter.check(addr(3), "victim@example.com"), Ok(()));
        assert_eq!(limiter.check(addr(2), "other@example.com"), Ok(()));
    }

    #[test]
    fn over_long_addresses_share_one_bounded_key() {
        let limiter = LoginLimiter::new(&config(0, 2, 0));
        let prefix = "x".repeat(MAX_EMAIL_LEN + 1);
        assert_eq!(
            limiter.check(addr(2), &format!("{prefix}{}", "a".repeat(60_000))),
            Ok(())
        );
        assert_eq!(
            limiter.check(addr(2), &format!("{prefix}{}", "b".repeat(60_000))),
            Ok(())
        );
        assert!(limiter.check(addr(2), &format!("{prefix}c")).is_err());
        let kept = limiter
            .by_ip_and_email
            .as_ref()
            .map(|l| l.len())
            .expect("limiter");
        assert_eq!(kept, 1);
    }

    #[test]
    fn the_across_addresses_limit_locks_with_a_growing_backoff() {
        let limiter = LoginLimiter::new(&config(0, 1000, 4));
        for i in 0..4 {
            assert_eq!(limiter.check(addr(i), "x@example.com"), Ok(()));
        }
        let wait = limiter.check(addr(9), "x@example.com").expect_err("locked");
        assert!(wait > Duration::from_secs(59), "{wait:?}");
        // Locked for every address, even though the bucket refills meanwhile.
        assert!(limiter.check(addr(10), "x@example.com").is_err());
        assert_eq!(limiter.check(addr(10), "y@example.com"), Ok(()));
    }

    #[test]
    fn lockouts_double_up_to_the_maximum_and_are_forgotten() {
        let start = Instant::now();
        let first = Lockout::next(None, start);
        assert_eq!((first.strikes, first.until - start), (1, FIRST_LOCKOUT));
        let mut lockout = first;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let next = Lockout::next(Some(lockout), lockout.until);
            waits.push((next.until - lockout.until).as_secs());
            lockout = next;
        }
        assert_eq!(waits, [120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        let forgotten = Lockout::next(Some(lockout), lockout.until + FORGET_AFTER);
        assert_eq!(forgotten.strikes, 1);
    }

    #[test]
    fn a_zero_limit_is_off_and_pruning_keeps_limits() {
        let limiter = LoginLimiter::new(&config(0, 0, 0));
        for _ in 0..100 {
            assert_eq!(limiter.check(addr(2), "a@example.com"), Ok(()));
        }
        let register = RegisterLimiter::new(&RateLimitConfig {
            register_per_ip_per_minute: 2,
            ..config(0, 0, 0)
        });
        assert_eq!(register.check(addr(2)), Ok(()));
        assert_eq!(register.check(addr(2)), Ok(()));
        register.prune();
        assert!(
            register.check(addr(2)).is_err(),
            "pruning forgets only replenished keys"
        );
        assert_eq!(register.check(addr(3)), Ok(()));
    }
}
