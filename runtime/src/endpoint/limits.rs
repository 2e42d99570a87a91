//! The front door's limits: connection slots per node and per client address, the refusal
//! beyond them, the open-file limit they derive from, and warnings at most once an interval.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::metering::Refused;

/// Limits of an endpoint's HTTP connections (WebSockets are HTTP connections that were
/// upgraded: they hold a connection slot until they end). They belong to
/// [`super::Endpoint::serve`]: a [`super::SocketService`] mounted in a server the application
/// runs is under that server's limits instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// A new connection must deliver a complete request head within this, or it is closed
    /// (without a response: the client may not even speak HTTP).
    pub header_read_timeout: Duration,
    /// A connection with no request in progress (HTTP/1.1 between requests, HTTP/2 with no
    /// open stream) is closed after this; a later request's head must be complete by then. A
    /// request whose response waits for the client to take data (HTTP/2 flow control, a client
    /// that does not read) stops counting as in progress once the client has taken none for
    /// this long.
    pub keep_alive_timeout: Duration,
    /// Open connections, WebSockets included. `None`: derived from the process's open-file
    /// soft limit, less `reserved_fds` (see [`HttpLimits::connection_cap`]), so that `accept`
    /// never runs out of file descriptors. Beyond it, a connection gets a short 503 and is
    /// closed.
    pub max_connections: Option<usize>,
    /// Open connections per client address (IPv6: per /64 prefix). `None`: no limit. Behind a
    /// reverse proxy every connection comes from the proxy's address: leave it off there.
    pub max_connections_per_ip: Option<usize>,
    /// File descriptors kept for everything but connections (database, files, outgoing
    /// connections) when `max_connections` is derived.
    pub reserved_fds: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
            max_connections: None,
            max_connections_per_ip: None,
            reserved_fds: 128,
        }
    }
}

impl HttpLimits {
    /// The cap on open connections: `max_connections`, or, when unset, the open-file soft
    /// limit less `reserved_fds` (half the limit if the reserve takes all of it), or no cap
    /// when the limit is unlimited or unknown. A derived cap stays below the open-file limit.
    pub fn connection_cap(&self) -> usize {
        self.max_connections
            .unwrap_or_else(|| match open_file_limit() {
                None => usize::MAX,
                Some(limit) => derived_cap(
                    usize::try_from(limit).unwrap_or(usize::MAX),
                    self.reserved_fds,
                ),
            })
            .max(1)
    }
}

/// The connection cap for an open-file limit of `limit` with `reserved` descriptors kept for
/// everything else: never more than `limit - reserved`; when the reserve takes the whole limit
/// (a tiny limit), half of it, so that connections are still served and `accept` still has
/// descriptors left.
fn derived_cap(limit: usize, reserved: usize) -> usize {
    match limit.saturating_sub(reserved) {
        0 => limit / 2,
        room => room,
    }
}

/// The process's open-file soft limit; `None` when unlimited or unknown.
fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The open connections of an endpoint, in total and per client address.
#[derive(Debug)]
pub(super) struct Slots {
    max: usize,
    max_per_ip: Option<usize>,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection's slot, given back when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    slots: Arc<Slots>,
    ip: Option<IpAddr>,
}

impl Slot {
    /// Another slot of the same limits, for a client at `ip`: a LongPoll session holds one for
    /// its life, as a WebSocket holds its connection's.
    pub(super) fn another(&self, ip: IpAddr) -> Result<Slot, Refused> {
        self.slots.acquire(ip)
    }
}

/// The address connections are counted under: IPv4 (mapped ones too) as is, IPv6 by /64 (one
/// host usually has a whole /64).
pub(super) fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl Slots {
    pub(super) fn new(max: usize, max_per_ip: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_ip,
            open: AtomicUsize::new(0),
            per_ip: Mutex::default(),
        })
    }

    fn per_ip(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a connection from `ip`, or which cap is reached.
    pub(super) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::NodeCap);
        }
        let mut slot = Slot {
            slots: self.clone(),
            ip: None,
        };
        if let Some(max) = self.max_per_ip {
            let key = ip_key(ip);
            let mut per_ip = self.per_ip();
            let count = per_ip.entry(key).or_insert(0);
            if *count >= max {
                if *count == 0 {
                    per_ip.remove(&key);
                }
                // Dropping `slot` gives the node-wide place back.
                return Err(Refused::AddressCap);
            }
            *count += 1;
            slot.ip = Some(key);
        }
        Ok(slot)
    }

    /// Open connections.
    #[cfg(test)]
    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut per_ip = self.slots.per_ip();
            if let Some(count) = per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
        self.slots.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer to a connection over a cap.
pub(super) const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json; charset=utf-8\r\n\
content-length: 44\r\n\
retry-after: 5\r\n\
connection: close\r\n\
\r\n\
{\"errors\":{\"detail\":\"too many connections\"}}";

/// Refuses a connection over a cap without serving it: takes what the client already sent
/// (closing with unread input would reset the connection, and a reset can destroy the answer),
/// writes [`REFUSAL`] if the socket takes it at once, and closes. Never waits.
pub(super) fn refuse(stream: TcpStream) {
    // Plain non-blocking calls: tokio's `try_read`/`try_write` skip the call until the reactor
    // has seen the new socket ready, which it may not have yet.
    let Ok(stream) = stream.into_std() else {
        return;
    };
    let mut buf = [0u8; 2048];
    for _ in 0..4 {
        match (&stream).read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let _ = (&stream).write(REFUSAL);
}

/// Counts repeated events and says when to log them: at most once per interval, with how
/// many happened since the last time.
#[derive(Debug)]
pub(super) struct Throttle {
    every: Duration,
    last: Option<Instant>,
    unreported: u64,
}

impl Throttle {
    pub(super) fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            unreported: 0,
        }
    }

    fn due(&mut self, now: Instant) -> Option<u64> {
        if self.unreported == 0 || self.last.is_some_and(|last| now < last + self.every) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }

    /// One more event at `now`; `Some(count)` when it is time to log (the count includes it).
    pub(super) fn hit(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        self.due(now)
    }

    /// The events not logged yet, if it is time (`now`) to log them.
    pub(super) fn flush(&mut self, now: Instant) -> Option<u64> {
        self.due(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cap_the_node_and_each_address_and_come_back_when_dropped() {
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let slots = Slots::new(3, Some(2));
        let a1 = slots.acquire(a).expect("a1");
        let a2 = slots.acquire(a).expect("a2");
        assert_eq!(
            slots.acquire(a).err(),
            Some(Refused::AddressCap),
            "per address"
        );
        let b1 = slots.acquire(b).expect("b1");
        assert_eq!(slots.acquire(b).err(), Some(Refused::NodeCap), "per node");
        assert_eq!(slots.open(), 3);
        drop(a1);
        assert!(slots.acquire(a).is_ok(), "a slot came back");
        drop((a2, b1));
        assert_eq!(slots.open(), 0);
        assert!(slots.per_ip().is_empty(), "no entry is left behind");

        let unlimited = Slots::new(usize::MAX, None);
        let held: Vec<Slot> = (0..1000)
            .filter_map(|_| unlimited.acquire(a).ok())
            .collect();
        assert_eq!(held.len(), 1000);
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let two: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(ip_key(one), ip_key(two));
        assert_ne!(ip_key(one), ip_key(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(ip_key(mapped), "10.0.0.1".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn the_refusal_is_a_well_formed_503_with_a_json_body() {
        let text = std::str::from_utf8(REFUSAL).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["errors"]["detail"], "too many connections");
    }

    #[test]
    fn the_derived_cap_keeps_a_reserve_below_the_open_file_limit() {
        let limits = HttpLimits::default();
        match open_file_limit() {
            Some(limit) => {
                let cap = limits.connection_cap() as u64;
                assert!(cap < limit, "{cap} under {limit}");
            }
            None => assert_eq!(limits.connection_cap(), usize::MAX),
        }
        let explicit = HttpLimits {
            max_connections: Some(7),
            ..HttpLimits::default()
        };
        assert_eq!(explicit.connection_cap(), 7);
    }

    #[test]
    fn a_small_open_file_limit_keeps_its_reserve() {
        assert_eq!(derived_cap(1024, 128), 896);
        // The reserve is more than half the limit: it is still kept whole.
        assert_eq!(derived_cap(200, 128), 72);
        assert_eq!(derived_cap(129, 128), 1);
        // The reserve takes all of it: half the limit, still below it.
        assert_eq!(derived_cap(128, 128), 64);
        assert_eq!(derived_cap(100, 128), 50);
        for limit in 2..600 {
            for reserved in [0, 1, 64, 128, 256] {
                let cap = derived_cap(limit, reserved);
                assert!(cap < limit || reserved == 0, "{limit}, {reserved}: {cap}");
                assert!(cap >= 1, "{limit}, {reserved}");
                if limit > reserved {
                    assert!(cap <= limit - reserved, "{limit}, {reserved}: {cap}");
                }
            }
        }
    }

    #[test]
    fn warnings_come_at_most_once_an_interval_with_a_count() {
        let mut throttle = Throttle::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(throttle.hit(t0), Some(1), "the first one at once");
        for i in 0..99 {
            assert_eq!(throttle.hit(t0 + Duration::from_millis(i * 10)), None);
        }
        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(throttle.flush(t1), None, "not yet");
        let t2 = t0 + Duration::from_secs(5);
        assert_eq!(throttle.flush(t2), Some(99));
        assert_eq!(
            throttle.flush(t2 + Duration::from_secs(60)),
            None,
            "nothing left"
        );
        assert_eq!(throttle.hit(t2 + Duration::from_secs(60)), Some(1));
    }
}
