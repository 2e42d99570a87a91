//! The `abuse` verdict: what the legitimate client saw and what the attackers got, each
//! compared with the bound the server is configured with (the options default to the server's
//! defaults). A check with nothing to compare (no `--server-pid`, a limit of 0, topics within
//! the limit) is reported as skipped.

use crate::stats::mib;

/// The bounds the server under test should hold the attackers to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// The server's `socket.max_topic_bytes`: joins of longer topics must all be refused.
    pub(crate) max_topic_bytes: usize,
    /// The server's `socket.max_sockets_per_id` (0: no limit, not checked).
    pub(crate) max_sockets_per_id: usize,
    /// How much the server's resident memory may grow during the attack, in MiB.
    pub(crate) max_rss_growth_mib: u64,
}

/// What one run observed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Observed {
    /// Failed probes of the legitimate client, both phases.
    pub(crate) legit_failures: u64,
    /// Whether the legitimate client got answers under attack (joins and `/health` both).
    pub(crate) legit_answered_under_attack: bool,
    /// Bytes of each huge topic.
    pub(crate) topic_bytes: usize,
    /// Huge-topic joins sent.
    pub(crate) huge_joins_sent: u64,
    /// Huge-topic joins the server accepted.
    pub(crate) huge_joins_accepted: u64,
    /// Sockets the socket loop opened with its one token.
    pub(crate) sockets_on_one_token: u64,
    /// The server's peak resident memory during the attack less its resident memory before,
    /// in bytes (`None` without `--server-pid`).
    pub(crate) rss_growth: Option<u64>,
}

/// One line of the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    /// What is checked, with its bound.
    pub(crate) what: String,
    /// What the run saw.
    pub(crate) seen: String,
    /// `Some(passed)`, or `None` when skipped.
    pub(crate) passed: Option<bool>,
}

impl Check {
    fn new(what: String, seen: String, passed: Option<bool>) -> Self {
        Self { what, seen, passed }
    }

    /// The line printed for it.
    pub(crate) fn line(&self) -> String {
        let mark = match self.passed {
            Some(true) => "ok",
            Some(false) => "FAILED",
            None => "skipped",
        };
        format!("check: {:<72} {:<24} {mark}", self.what, self.seen)
    }
}

/// Every check of a run, in the order printed.
pub(crate) fn checks(seen: &Observed, bounds: &Bounds) -> Vec<Check> {
    let mut checks = vec![Check::new(
        "the legitimate client saw no failure".into(),
        format!("{} failed probes", seen.legit_failures),
        Some(seen.legit_failures == 0 && seen.legit_answered_under_attack),
    )];
    checks.push(if seen.topic_bytes > bounds.max_topic_bytes {
        Check::new(
            format!(
                "no join of a {}-byte topic accepted (limit {}, --max-topic-bytes)",
                seen.topic_bytes, bounds.max_topic_bytes
            ),
            format!(
                "{} of {} accepted",
                seen.huge_joins_accepted, seen.huge_joins_sent
            ),
            // Nothing sent proves nothing.
            Some(seen.huge_joins_sent > 0 && seen.huge_joins_accepted == 0),
        )
    } else {
        Check::new(
            format!(
                "huge topics refused: {} bytes is within --max-topic-bytes {}",
                seen.topic_bytes, bounds.max_topic_bytes
            ),
            format!("{} accepted", seen.huge_joins_accepted),
            None,
        )
    });
    checks.push(Check::new(
        format!(
            "sockets opened with one token <= {} (--max-sockets-per-id)",
            bounds.max_sockets_per_id
        ),
        format!("{} opened", seen.sockets_on_one_token),
        (bounds.max_sockets_per_id > 0)
            .then_some(seen.sockets_on_one_token <= bounds.max_sockets_per_id as u64),
    ));
    let max_growth = bounds.max_rss_growth_mib.saturating_mul(1024 * 1024);
    checks.push(Check::new(
        format!(
            "server RSS growth during the attack <= {} MiB (--max-rss-growth-mib)",
            bounds.max_rss_growth_mib
        ),
        seen.rss_growth
            .map_or_else(|| "no --server-pid".to_owned(), mib),
        seen.rss_growth.map(|growth| growth <= max_growth),
    ));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Bounds = Bounds {
        max_topic_bytes: 255,
        max_sockets_per_id: 32,
        max_rss_growth_mib: 256,
    };

    fn fixed_server() -> Observed {
        Observed {
            legit_failures: 0,
            legit_answered_under_attack: true,
            topic_bytes: 1_000_000,
            huge_joins_sent: 11_461,
            huge_joins_accepted: 0,
            sockets_on_one_token: 32,
            rss_growth: Some(18 << 20),
        }
    }

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks
            .iter()
            .filter(|c| c.passed == Some(false))
            .map(|c| c.what.as_str())
            .collect()
    }

    #[test]
    fn the_fixed_server_passes_every_check() {
        let checks = checks(&fixed_server(), &DEFAULTS);
        assert_eq!(checks.len(), 4);
        assert!(checks.iter().all(|c| c.passed == Some(true)), "{checks:?}");
    }

    #[test]
    fn the_unfixed_server_fails_on_the_attackers_side_alone() {
        // Issue 9's probe of the unfixed server: the legitimate client saw no failure, but the
        // attackers got 300 huge joins, 1,586 sockets on one token and 530 MiB of memory.
        let unfixed = Observed {
            huge_joins_sent: 300,
            huge_joins_accepted: 300,
            sockets_on_one_token: 1_586,
            rss_growth: Some(530 << 20),
            ..fixed_server()
        };
        let checks = checks(&unfixed, &DEFAULTS);
        assert_eq!(failed(&checks).len(), 3, "{checks:?}");
        assert_eq!(checks[0].passed, Some(true));
    }

    #[test]
    fn checks_without_a_bound_or_a_reading_are_skipped_not_passed() {
        let seen = Observed {
            topic_bytes: 100,
            rss_growth: None,
            ..fixed_server()
        };
        let bounds = Bounds {
            max_sockets_per_id: 0,
            ..DEFAULTS
        };
        let checks = checks(&seen, &bounds);
        let skipped = checks.iter().filter(|c| c.passed.is_none()).count();
        assert_eq!(skipped, 3, "{checks:?}");
        // An attacker that never got a join out proves nothing.
        let idle = Observed {
            huge_joins_sent: 0,
            ..fixed_server()
        };
        assert_eq!(failed(&super::checks(&idle, &DEFAULTS)).len(), 1);
        // Neither does a legitimate client that got no answer under attack.
        let unanswered = Observed {
            legit_answered_under_attack: false,
            ..fixed_server()
        };
        assert_eq!(failed(&super::checks(&unanswered, &DEFAULTS)).len(), 1);
    }
}
