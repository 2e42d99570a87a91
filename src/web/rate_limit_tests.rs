//! Tests of the rate limiters (`rate_limit.rs`).

use super::*;

fn config(ip: u32, pair: u32, email: u32) -> RateLimitConfig {
    RateLimitConfig {
        login_per_ip_per_minute: ip,
        login_per_email_per_minute: pair,
        login_per_email_all_addresses_per_minute: email,
        register_per_ip_per_minute: 0,
        register_per_minute: 0,
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
    assert_eq!(register.check_address(addr(2)), Ok(()));
    assert_eq!(register.check_address(addr(2)), Ok(()));
    register.prune();
    assert!(
        register.check_address(addr(2)).is_err(),
        "pruning forgets only replenished keys"
    );
    assert_eq!(register.check_address(addr(3)), Ok(()));
    assert_eq!(register.check_node(), Ok(()), "no node-wide limit");
}

#[test]
fn a_pair_that_logged_in_passes_the_lockout_and_no_other() {
    let limiter = LoginLimiter::new(&config(0, 3, 4));
    assert_eq!(limiter.check(addr(2), "owner@example.com"), Ok(()));
    limiter.succeeded(addr(2), " Owner@Example.com");
    for i in 3..6 {
        assert_eq!(limiter.check(addr(i), "owner@example.com"), Ok(()));
    }
    assert!(
        limiter.check(addr(9), "owner@example.com").is_err(),
        "locked"
    );
    assert!(limiter.check(addr(10), "owner@example.com").is_err());
    // The owner's address passes (its attempts do not count across addresses)...
    assert_eq!(limiter.check(addr(2), "OWNER@example.com"), Ok(()));
    assert_eq!(limiter.check(addr(2), "owner@example.com"), Ok(()));
    // ...but never past its own pair limit,
    assert!(limiter.check(addr(2), "owner@example.com").is_err());
    // and the pair is for that e-mail only.
    limiter.succeeded(addr(11), "other@example.com");
    assert!(limiter.check(addr(11), "owner@example.com").is_err());
}

#[test]
fn known_pairs_expire_and_a_full_map_learns_nothing_new_until_pruned() {
    let known = KnownPairs::new(3);
    let start = Instant::now();
    let at = |secs: u64| start + Duration::from_secs(secs);
    let pair = |i: u8| (addr(i), format!("u{i}@example.com"));
    for i in 0..3 {
        known.insert(pair(i), at(u64::from(i)));
    }
    assert!(known.contains(&pair(0), start + KNOWN_PAIR_FOR - Duration::from_secs(1)));
    assert!(!known.contains(&pair(0), start + KNOWN_PAIR_FOR));
    // Full: a new pair is not learnt, and no one else's is evicted for it.
    known.insert(pair(3), at(3));
    assert_eq!(known.len(), 3);
    assert!(!known.contains(&pair(3), at(3)));
    assert!((0..3).all(|i| known.contains(&pair(i), at(3))));
    assert_eq!(known.by_email.len(), 3, "no empty entry left behind");
    // A login refreshes its pair; pruning drops the expired ones and makes room.
    known.insert(pair(1), start + KNOWN_PAIR_FOR);
    known.prune(start + KNOWN_PAIR_FOR + Duration::from_secs(3));
    let kept: Vec<_> = known.by_email.iter().map(|e| e.value()[0].0).collect();
    assert_eq!(kept, [addr(1)]);
    assert_eq!(known.len(), 1);
    known.insert(pair(3), start + KNOWN_PAIR_FOR + Duration::from_secs(4));
    assert!(known.contains(&pair(3), start + KNOWN_PAIR_FOR + Duration::from_secs(4)));
}

#[test]
fn one_email_keeps_at_most_its_cap_of_addresses_and_takes_no_one_elses_room() {
    let cap = MAX_KNOWN_PAIRS_PER_EMAIL;
    let known = KnownPairs::new(cap + 1);
    let start = Instant::now();
    let at = |secs: usize| start + Duration::from_secs(secs as u64);
    known.insert((addr(200), "owner@example.com".to_owned()), start);
    // Someone with their own account logs in from many addresses: it keeps its latest
    // `cap`, each new one in place of its oldest.
    let mine = |i: usize| (addr(i as u8), "mine@example.com".to_owned());
    for i in 0..3 * cap {
        known.insert(mine(i), at(i + 1));
    }
    assert_eq!(known.len(), cap + 1);
    let now = at(3 * cap);
    assert!((0..2 * cap).all(|i| !known.contains(&mine(i), now)));
    assert!((2 * cap..3 * cap).all(|i| known.contains(&mine(i), now)));
    // The owner's pair is still there.
    assert!(known.contains(&(addr(200), "owner@example.com".to_owned()), now));
    // A refreshed pair is not the oldest any more.
    known.insert(mine(2 * cap), now);
    known.insert(mine(99), now);
    assert!(known.contains(&mine(2 * cap), now));
    assert!(!known.contains(&mine(2 * cap + 1), now));
}

#[test]
fn a_credential_change_forgets_the_emails_known_addresses() {
    let limiter = LoginLimiter::new(&config(0, 3, 4));
    limiter.succeeded(addr(2), "owner@example.com");
    limiter.succeeded(addr(3), "owner@example.com");
    limiter.succeeded(addr(2), "other@example.com");
    limiter.forget(" Owner@Example.com");
    let now = Instant::now();
    let pair = |i: u8, email: &str| (addr(i), email.to_owned());
    assert!(!limiter.known.contains(&pair(2, "owner@example.com"), now));
    assert!(!limiter.known.contains(&pair(3, "owner@example.com"), now));
    assert!(limiter.known.contains(&pair(2, "other@example.com"), now));
    assert_eq!(limiter.known.len(), 1);
    // So the old addresses are locked out with everyone else again.
    for i in 4..8 {
        assert_eq!(limiter.check(addr(i), "owner@example.com"), Ok(()));
    }
    assert!(limiter.check(addr(2), "owner@example.com").is_err());
}

#[test]
fn the_node_wide_registration_limit_covers_every_address() {
    let limiter = RegisterLimiter::new(&RateLimitConfig {
        register_per_ip_per_minute: 2,
        register_per_minute: 3,
        ..config(0, 0, 0)
    });
    // As the controller calls them: the address first, the node only when admitted.
    let register = |ip| {
        limiter
            .check_address(ip)
            .and_then(|()| limiter.check_node())
    };
    assert_eq!(register(addr(2)), Ok(()));
    assert_eq!(register(addr(2)), Ok(()));
    // Over its own limit, an address does not use up the node's.
    assert!(register(addr(2)).is_err());
    assert_eq!(register(addr(3)), Ok(()));
    let wait = register(addr(4)).expect_err("the node's limit");
    assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
}
