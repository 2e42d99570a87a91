//! `check_origin`: which browser origins may open a socket.
//!
//! Only requests carrying an `Origin` header are checked (native clients send none).

/// The origin policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOrigin {
    /// Accept any origin.
    Off,
    /// The origin's host must equal the request's `Host` (scheme and port ignored).
    SameHost,
    /// The origin must match one of these patterns.
    List(Vec<OriginPattern>),
}

/// An allowed origin: `https://example.com` (scheme, host and port — 443 implied — must
/// match), `//example.com` (any scheme and port), `//*.example.com` (the domain and any
/// subdomain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: Option<String>,
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

/// A pattern without a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid origin pattern {0:?}: expected scheme://host[:port] or //host")]
pub struct InvalidOrigin(pub String);

struct Parsed<'a> {
    scheme: Option<&'a str>,
    host: &'a str,
    port: Option<u16>,
}

fn parse(origin: &str) -> Option<Parsed<'_>> {
    let (scheme, rest) = match origin.split_once("//") {
        Some(("", rest)) => (None, rest),
        Some((scheme, rest)) => (Some(scheme.strip_suffix(':')?), rest),
        None => return None,
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = split_host_port(authority)?;
    let port = port.or(match scheme {
        Some("https" | "wss") => Some(443),
        Some("http" | "ws") => Some(80),
        _ => None,
    });
    (!host.is_empty()).then_some(Parsed { scheme, host, port })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` → (host, port). `None` for a bad port.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &authority[..close + 2];
        return match &rest[close + 1..] {
            "" => Some((host, None)),
            port => Some((host, Some(port.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

impl OriginPattern {
    /// Parses one allowed-origin entry.
    pub fn parse(pattern: &str) -> Result<Self, InvalidOrigin> {
        let parsed = parse(pattern).ok_or_else(|| InvalidOrigin(pattern.to_owned()))?;
        let (host, wildcard) = match parsed.host.strip_prefix("*.") {
            Some(domain) => (domain, true),
            None => (parsed.host, false),
        };
        Ok(Self {
            scheme: parsed.scheme.map(str::to_ascii_lowercase),
            host: host.to_ascii_lowercase(),
            wildcard,
            port: parsed.port,
        })
    }

    fn matches(&self, origin: &Parsed<'_>) -> bool {
        let host = origin.host.to_ascii_lowercase();
        let host_ok = host == self.host
            || (self.wildcard
                && host
                    .strip_suffix(self.host.as_str())
                    .is_some_and(|p| p.ends_with('.')));
        let scheme_ok = self
            .scheme
            .as_deref()
            .is_none_or(|s| origin.scheme.is_some_and(|o| o.eq_ignore_ascii_case(s)));
        let port_ok = self.port.is_none() || self.port == origin.port;
        host_ok && scheme_ok && port_ok
    }
}

impl std::fmt::Display for OriginPattern {
    /// The pattern as it parses back: `https://example.com`, `//*.example.com:8080` (a port
    /// its scheme implies is left out).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.scheme {
            Some(scheme) => write!(f, "{scheme}://")?,
            None => f.write_str("//")?,
        }
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.host)?;
        let implied = match self.scheme.as_deref() {
            Some("https" | "wss") => Some(443),
            Some("http" | "ws") => Some(80),
            _ => None,
        };
        match self.port {
            Some(port) if Some(port) != implied => write!(f, ":{port}"),
            _ => Ok(()),
        }
    }
}

impl CheckOrigin {
    /// Whether a request with `origin` (the header, if any) to `host` (the `Host` header) is
    /// allowed.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        if *self == CheckOrigin::Off {
            return true;
        }
        let Some(parsed) = parse(origin) else {
            return false;
        };
        match self {
            CheckOrigin::Off => true,
            CheckOrigin::SameHost => {
                let request_host = host.and_then(|h| split_host_port(h).map(|(name, _)| name));
                request_host.is_some_and(|h| h.eq_ignore_ascii_case(parsed.host))
            }
            CheckOrigin::List(patterns) => patterns.iter().any(|p| p.matches(&parsed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> CheckOrigin {
        CheckOrigin::List(
            patterns
                .iter()
                .map(|p| OriginPattern::parse(p).expect("pattern"))
                .collect(),
        )
    }

    #[test]
    fn no_origin_header_is_always_allowed() {
        assert!(list(&["https://a.com"]).allows(None, Some("x")));
        assert!(CheckOrigin::SameHost.allows(None, None));
    }

    #[test]
    fn same_host_compares_hosts_only() {
        let check = CheckOrigin::SameHost;
        assert!(check.allows(Some("http://localhost:3000"), Some("localhost:4000")));
        assert!(!check.allows(Some("http://evil.com"), Some("localhost:4000")));
        assert!(!check.allows(Some("null"), Some("localhost:4000")));
    }

    #[test]
    fn lists_match_scheme_host_port_and_wildcards() {
        let check = list(&["https://example.com", "//*.example.org", "//localhost"]);
        assert!(check.allows(Some("https://example.com"), None));
        assert!(check.allows(Some("https://example.com:443"), None));
        assert!(!check.allows(Some("http://example.com"), None), "scheme");
        assert!(
            !check.allows(Some("https://example.com:8443"), None),
            "port"
        );
        assert!(
            !check.allows(Some("https://www.example.com"), None),
            "no wildcard"
        );
        assert!(check.allows(Some("https://example.org"), None));
        assert!(check.allows(Some("http://a.b.example.org:81"), None));
        assert!(!check.allows(Some("https://badexample.org"), None));
        assert!(check.allows(Some("http://localhost:4000"), None));
        assert!(!check.allows(Some("null"), None));
        assert!(OriginPattern::parse("example.com").is_err());
        let v6 = list(&["http://[::1]:4000"]);
        assert!(v6.allows(Some("http://[::1]:4000"), None));
        assert!(!v6.allows(Some("http://[::1]:4001"), None));
        assert!(CheckOrigin::SameHost.allows(Some("http://[::1]"), Some("[::1]:4000")));
        assert!(!CheckOrigin::SameHost.allows(Some("http://[::2]"), Some("[::1]:4000")));
        assert!(CheckOrigin::Off.allows(Some("null"), None));
    }

    #[test]
    fn a_pattern_displays_as_text_that_parses_back_to_it() {
        for (text, shown) in [
            ("https://example.com", "https://example.com"),
            ("https://Example.com:443", "https://example.com"),
            ("http://example.com:8080", "http://example.com:8080"),
            ("//*.example.org", "//*.example.org"),
            ("//localhost:4000", "//localhost:4000"),
            ("http://[::1]:4000", "http://[::1]:4000"),
            ("app://host", "app://host"),
        ] {
            let pattern = OriginPattern::parse(text).expect("pattern");
            assert_eq!(pattern.to_string(), shown);
            assert_eq!(OriginPattern::parse(shown), Ok(pattern));
        }
    }
}
