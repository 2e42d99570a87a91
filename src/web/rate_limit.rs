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
//! Many addresses together can still keep an e-mail locked (about 11 IPv4 addresses, or one
//! IPv6 /56, with some 100 requests an hour). So the lockout spares the places the owner logs in
//! from: an (address, e-mail) pair that logged in with the right password within
//! [`KNOWN_PAIR_FOR`] is exempt from the across-addresses limit and its lockout (never from the
//! per-address and per-pair limits). Those pairs are made only by a correct password, at most
//! [`MAX_KNOWN_PAIRS_PER_EMAIL`] per e-mail (a new address replaces that e-mail's oldest), at
//! most [`MAX_KNOWN_PAIRS`] in all (when full, no new pair is learnt until the maintenance
//! task prunes expired ones: a login never evicts another e-mail's pairs), and forgotten when
//! the account's password or e-mail changes ([`LoginLimiter::forget`]). The owner on an
//! address they have not logged in from lately is still locked out while an attack lasts.
//!
//! Registrations are limited per client address (`register_per_ip_per_minute`) and for the
//! whole node (`register_per_minute`): per-address keys (an IPv6 /64 each) alone would let a
//! /48 register, and mail, 65,536 times as much. Every attempt counts against the address;
//! only valid requests against the node (invalid bodies cannot use it up for everyone).
//!
//! Every refusal is counted in `fawkes_rate_limited_total{limiter}` (`requests`, `login`,
//! `registration`, `registration_node`; see [`crate::metrics`]).
//!
//! Attempts are counted before the password is checked, successes included: counting only
//! failures would need a check before the hash and a count after it, and concurrent guesses
//! would all pass the check before any was counted.
//!
//! Memory: a keyed limiter keeps state for a key until its limit has fully refilled (at most a
//! minute after its last request for the per-minute limits, two seconds for REST requests), and
//! the server's maintenance task prunes every [`PRUNE_EVERY`]: the maps hold the keys seen in
//! the last two minutes at most, so they are bounded by the requests the node accepts in that
//! time (and each key by the e-mail length cut below). A lockout is dropped an hour after it
//! ends, a known pair [`KNOWN_PAIR_FOR`] after its last login.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::accounts::MAX_EMAIL_LEN;
use crate::config::RateLimitConfig;

/// The first lockout of an e-mail whose across-addresses limit ran out.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(60);
/// The longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(3600);
/// How long after a lockout ends its count is remembered.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// How often the server prunes the rate limiters (revocations are pruned less often).
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How long a correct login keeps its (client address, e-mail) pair exempt from the
/// across-addresses limit and its lockout.
pub const KNOWN_PAIR_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most (client address, e-mail) pairs remembered as known (about 200 bytes each); when full,
/// no new pair is learnt until expired ones are pruned.
pub const MAX_KNOWN_PAIRS: usize = 100_000;
/// Most addresses remembered as known for one e-mail; a new one replaces the e-mail's oldest.
pub const MAX_KNOWN_PAIRS_PER_EMAIL: usize = 8;

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

/// `checked`, a refusal counted in `fawkes_rate_limited_total{limiter}`.
fn counted(limiter: &'static str, checked: Result<(), Duration>) -> Result<(), Duration> {
    if checked.is_err() {
        crate::metrics::rate_limited(limiter);
    }
    checked
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

/// (client address, e-mail) pairs that logged in with the right password lately, with the
/// time of their last login, by e-mail: at most [`MAX_KNOWN_PAIRS_PER_EMAIL`] per e-mail (a new
/// address replaces that e-mail's oldest) and `capacity` in all. When full, new pairs are not
/// learnt until pruning frees room: no insert ever evicts another e-mail's pairs (whoever owns
/// many accounts could otherwise flush everyone else's) or scans the whole map.
struct KnownPairs {
    by_email: DashMap<String, Vec<(IpAddr, Instant)>>,
    /// Pairs held in all (slots are taken before a pair is added and given back when it goes).
    len: AtomicUsize,
    capacity: usize,
}

impl KnownPairs {
    fn new(capacity: usize) -> Self {
        Self {
            by_email: DashMap::new(),
            len: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Whether `pair` logged in within [`KNOWN_PAIR_FOR`] of `now`.
    fn contains(&self, (ip, email): &(IpAddr, String), now: Instant) -> bool {
        self.by_email.get(email).is_some_and(|pairs| {
            pairs.iter().any(|(known, at)| {
                known == ip && now.saturating_duration_since(*at) < KNOWN_PAIR_FOR
            })
        })
    }

    /// Records a correct login of `pair` at `now`: refreshes the pair if known; otherwise adds
    /// it, in place of the e-mail's oldest pair if it has [`MAX_KNOWN_PAIRS_PER_EMAIL`], and
    /// not at all if the map is full.
    fn insert(&self, (ip, email): (IpAddr, String), now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let mut pairs = self.by_email.entry(email).or_default();
        if let Some(known) = pairs.iter_mut().find(|(known, _)| *known == ip) {
            known.1 = now;
            return;
        }
        if pairs.len() >= MAX_KNOWN_PAIRS_PER_EMAIL {
            if let Some(oldest) = pairs.iter_mut().min_by_key(|(_, at)| *at) {
                *oldest = (ip, now);
            }
            return;
        }
        let slot = self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.capacity).then_some(n + 1)
            });
        if slot.is_ok() {
            pairs.push((ip, now));
        } else if pairs.is_empty() {
            // Full: nothing learnt, and no empty entry left behind.
            let email = pairs.key().clone();
            drop(pairs);
            self.by_email.remove_if(&email, |_, pairs| pairs.is_empty());
        }
    }

    /// Forgets every pair of `email` (a key as [`email_key`] makes it).
    fn forget(&self, email: &str) {
        if let Some((_, pairs)) = self.by_email.remove(email) {
            self.len.fetch_sub(pairs.len(), Ordering::Relaxed);
        }
    }

    /// Forgets the pairs not seen logging in for [`KNOWN_PAIR_FOR`].
    fn prune(&self, now: Instant) {
        self.by_email.retain(|_, pairs| {
            let before = pairs.len();
            pairs.retain(|(_, at)| now.saturating_duration_since(*at) < KNOWN_PAIR_FOR);
            self.len.fetch_sub(before - pairs.len(), Ordering::Relaxed);
            !pairs.is_empty()
        });
    }

    /// Pairs held in all.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

/// An e-mail as a limiter key: trimmed, lower-cased, and only its first `MAX_EMAIL_LEN + 1`
/// characters (no account has a longer address, so a key never holds more than a few hundred
/// bytes however large the request).
fn email_key(email: &str) -> String {
    email
        .trim()
        .chars()
        .take(MAX_EMAIL_LEN + 1)
        .collect::<String>()
        .to_lowercase()
}

/// Why a login attempt was refused before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRefused {
    /// How long until a retry can pass.
    pub wait: Duration,
    /// Whether the e-mail is locked (its across-addresses limit ran out), rather than a
    /// per-address limit exhausted.
    pub locked: bool,
}

/// Login limits; see the module docs.
pub struct LoginLimiter {
    by_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    by_ip_and_email: Option<DefaultKeyedRateLimiter<(IpAddr, String)>>,
    by_email: Option<DefaultKeyedRateLimiter<String>>,
    lockouts: DashMap<String, Lockout>,
    known: KnownPairs,
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
            known: KnownPairs::new(MAX_KNOWN_PAIRS),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one attempt from `ip` for `email` (compared without case); `Err(wait)` if any
    /// limit is exhausted or the e-mail is locked. A pair known from a recent correct login
    /// ([`LoginLimiter::succeeded`]) passes the across-addresses limit and the lockout.
    pub fn check(&self, ip: IpAddr, email: &str) -> Result<(), Duration> {
        self.check_attempt(ip, email)
            .map_err(|refused| refused.wait)
    }

    /// [`LoginLimiter::check`], telling a lockout from a rate limit. Every refusal counts in
    /// `fawkes_rate_limited_total{limiter="login"}`.
    pub fn check_attempt(&self, ip: IpAddr, email: &str) -> Result<(), LoginRefused> {
        let refused = self.refusal(ip, email);
        if refused.is_err() {
            crate::metrics::rate_limited("login");
        }
        refused
    }

    fn refusal(&self, ip: IpAddr, email: &str) -> Result<(), LoginRefused> {
        let limited = |wait| LoginRefused {
            wait,
            locked: false,
        };
        let locked = |wait| LoginRefused { wait, locked: true };
        let email = email_key(email);
        check(self.by_ip.as_ref(), &ip, &self.clock).map_err(limited)?;
        let pair = (ip, email);
        check(self.by_ip_and_email.as_ref(), &pair, &self.clock).map_err(limited)?;
        let now = Instant::now();
        if self.known.contains(&pair, now) {
            return Ok(());
        }
        let (_, email) = pair;
        if let Some(lockout) = self.lockouts.get(&email).map(|l| *l)
            && now < lockout.until
        {
            return Err(locked(lockout.until - now));
        }
        if check(self.by_email.as_ref(), &email, &self.clock).is_err() {
            let mut entry = self.lockouts.entry(email).or_insert(Lockout {
                strikes: 0,
                until: now,
            });
            let previous = (entry.strikes > 0).then_some(*entry);
            *entry = Lockout::next(previous, now);
            return Err(locked(entry.until - now));
        }
        Ok(())
    }

    /// Records that `ip` logged in as `email` with the right password: that pair is exempt
    /// from the across-addresses limit and its lockout for [`KNOWN_PAIR_FOR`]. Call it only
    /// after the password was verified.
    pub fn succeeded(&self, ip: IpAddr, email: &str) {
        self.known.insert((ip, email_key(email)), Instant::now());
    }

    /// Forgets the addresses known for `email` (compared without case): call it when the
    /// account's password or e-mail changes, so that the addresses that logged in with the old
    /// credentials are no longer exempt from the lockout.
    pub fn forget(&self, email: &str) {
        self.known.forget(&email_key(email));
    }

    /// Forgets keys whose limits have fully replenished, lockouts long over and pairs not
    /// seen logging in for [`KNOWN_PAIR_FOR`] (bounded memory).
    pub fn prune(&self) {
        prune(self.by_ip.as_ref());
        prune(self.by_ip_and_email.as_ref());
        prune(self.by_email.as_ref());
        let now = Instant::now();
        self.lockouts
            .retain(|_, lockout| now < lockout.until + FORGET_AFTER);
        self.lockouts.shrink_to_fit();
        self.known.prune(now);
        self.known.by_email.shrink_to_fit();
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

    /// Counts one request from `ip`; `Err(wait)` if the address is over its rate (counted in
    /// `fawkes_rate_limited_total{limiter="requests"}`).
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        counted("requests", check(self.by_ip.as_ref(), &ip, &self.clock))
    }

    /// Forgets addresses whose limit has fully replenished.
    pub fn prune(&self) {
        prune(self.by_ip.as_ref());
    }
}

/// Registrations per client address and for the whole node.
pub struct RegisterLimiter {
    by_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    node: Option<DefaultDirectRateLimiter>,
    clock: DefaultClock,
}

impl RegisterLimiter {
    /// The limiter for `config`.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            by_ip: keyed(config.register_per_ip_per_minute),
            node: NonZeroU32::new(config.register_per_minute)
                .map(|n| RateLimiter::direct(Quota::per_minute(n))),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one registration attempt from `ip` against the address's limit (every attempt,
    /// valid or not); `Err(wait)` if it is exhausted.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), Duration> {
        counted("registration", check(self.by_ip.as_ref(), &ip, &self.clock))
    }

    /// Counts one registration against the node's limit; `Err(wait)` if it is exhausted. Call
    /// it only for a valid request that passed [`RegisterLimiter::check_address`]: invalid
    /// bodies, and addresses over their own limit, do not use up everyone's registrations.
    pub fn check_node(&self) -> Result<(), Duration> {
        let checked = match &self.node {
            Some(node) => node
                .check()
                .map_err(|until| until.wait_time_from(self.clock.now())),
            None => Ok(()),
        };
        counted("registration_node", checked)
    }

    /// Forgets addresses whose limit has fully replenished.
    pub fn prune(&self) {
        prune(self.by_ip.as_ref());
    }
}

#[cfg(test)]
#[path = "rate_limit_tests.rs"]
mod tests;
