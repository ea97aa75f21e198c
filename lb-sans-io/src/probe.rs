//! What a health probe does once connected, how its reply is judged (a plain connect, a
//! `send` / `expect` exchange, or an HTTP `GET` whose status must be 2xx or 3xx), and what
//! a probe's outcome is, with the reason of a failure. The driver writes
//! [`ProbeKind::request`], reads, asks [`ProbeKind::judge`] after every read until it has a
//! verdict, and reports a [`ProbeOutcome`] to the pool. The probe's timeout is the pool's:
//! it fails a probe still running at its deadline ([`CheckFailure::Timeout`]).

use crate::config::{CheckType, HealthCheckConfig, ProxyProtocol};
use crate::proxy_header::probe_header;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a health check failed, as logs, `/status` and the dashboard show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckFailure {
    /// The backend refused the connection (nothing listens on its port).
    Refused,
    /// The connection could not be made for another reason (reset, unreachable, ...), in
    /// the system's words.
    Connect(String),
    /// No verdict before the check's timeout.
    Timeout(Duration),
    /// An HTTP check got a status other than 2xx or 3xx.
    HttpStatus(u16),
    /// An HTTP check got a reply that is not an HTTP/1.x status line.
    NotHttp,
    /// The reply did not contain `expect` before the backend closed (or in the first
    /// [`MAX_PROBE_REPLY`] bytes).
    ExpectNotMatched,
    /// The backend closed or reset the connection before the check had its answer, or
    /// writing the request failed.
    Closed,
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Refused => f.write_str("connection refused"),
            CheckFailure::Connect(why) => write!(f, "connect failed: {why}"),
            CheckFailure::Timeout(d) => write!(f, "timeout after {}ms", d.as_millis()),
            CheckFailure::HttpStatus(code) => write!(f, "HTTP {code}"),
            CheckFailure::NotHttp => f.write_str("not an HTTP response"),
            CheckFailure::ExpectNotMatched => f.write_str("expect not matched"),
            CheckFailure::Closed => f.write_str("closed before answering"),
        }
    }
}

/// What one probe found, as the driver reports it to the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The check passed.
    Passed,
    /// The check failed, for this reason.
    Failed(CheckFailure),
    /// The probe could not run: this host is out of file descriptors, ephemeral ports or
    /// memory (the reason, in the system's words). The backend is not to blame, so this
    /// neither passes nor fails.
    NotRun(String),
}

/// The most reply bytes a probe reads; a reply that has not decided by then fails.
pub const MAX_PROBE_REPLY: usize = 16 * 1024;

/// The kind of check a probe performs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// Connect, then close.
    TcpConnect,
    /// Connect, write `send` (if any); with `expect`, read until the reply contains it.
    Exchange {
        /// Bytes to write once connected.
        send: Vec<u8>,
        /// Bytes the reply must contain.
        expect: Option<Vec<u8>>,
    },
    /// Connect, write an HTTP/1.1 `GET`, and read the status line.
    Http {
        /// The whole request.
        request: Vec<u8>,
    },
}

impl ProbeKind {
    /// The probe a health check config asks for, against a backend at `addr` (the HTTP
    /// `Host` header names it). With `proxy`, the probe first sends a PROXY header that
    /// names no client (`PROXY UNKNOWN`, or version 2's `LOCAL` command), as backends that
    /// expect the header on every connection need.
    pub fn from_config(
        hc: &HealthCheckConfig,
        addr: SocketAddr,
        proxy: Option<ProxyProtocol>,
    ) -> ProbeKind {
        let kind = ProbeKind::without_proxy(hc, addr);
        let Some(version) = proxy else {
            return kind;
        };
        let mut preamble = probe_header(version);
        match kind {
            ProbeKind::TcpConnect => ProbeKind::Exchange {
                send: preamble,
                expect: None,
            },
            ProbeKind::Exchange { send, expect } => {
                preamble.extend_from_slice(&send);
                ProbeKind::Exchange {
                    send: preamble,
                    expect,
                }
            }
            ProbeKind::Http { request } => {
                preamble.extend_from_slice(&request);
                ProbeKind::Http { request: preamble }
            }
        }
    }

    fn without_proxy(hc: &HealthCheckConfig, addr: SocketAddr) -> ProbeKind {
        match hc.kind {
            CheckType::Tcp if hc.send.is_none() && hc.expect.is_none() => ProbeKind::TcpConnect,
            CheckType::Tcp => ProbeKind::Exchange {
                send: hc.send.clone().unwrap_or_default().into_bytes(),
                expect: hc.expect.clone().map(String::into_bytes),
            },
            CheckType::Http => ProbeKind::Http {
                request: format!(
                    "GET {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: loadbalancer-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
                    hc.http_path()
                )
                .into_bytes(),
            },
        }
    }

    /// Bytes to write once connected (none for a plain connect).
    pub fn request(&self) -> &[u8] {
        match self {
            ProbeKind::TcpConnect => &[],
            ProbeKind::Exchange { send, .. } => send,
            ProbeKind::Http { request } => request,
        }
    }

    /// The verdict on the reply read so far, after the request was written: `Some(Ok(()))`
    /// passed, `Some(Err(why))` failed, `None` read more. `closed` says the backend closed
    /// (no more bytes will come): then there is always a verdict.
    pub fn judge(&self, reply: &[u8], closed: bool) -> Option<Result<(), CheckFailure>> {
        let undecided = |why: CheckFailure| {
            if closed || reply.len() >= MAX_PROBE_REPLY {
                Some(Err(why))
            } else {
                None
            }
        };
        match self {
            ProbeKind::TcpConnect | ProbeKind::Exchange { expect: None, .. } => Some(Ok(())),
            ProbeKind::Exchange {
                expect: Some(expect),
                ..
            } => {
                if reply.windows(expect.len()).any(|w| w == expect.as_slice()) {
                    Some(Ok(()))
                } else {
                    undecided(CheckFailure::ExpectNotMatched)
                }
            }
            ProbeKind::Http { .. } => match reply.iter().position(|&b| b == b'\n') {
                Some(end) => Some(http_status(&reply[..end])),
                None if reply.is_empty() => undecided(CheckFailure::Closed),
                None => undecided(CheckFailure::NotHttp),
            },
        }
    }

    /// The outcome of a probe that read `reply` and then saw the connection end (EOF, a
    /// reset or a failed write).
    pub fn judge_end(&self, reply: &[u8]) -> ProbeOutcome {
        match self.judge(reply, true) {
            Some(Ok(())) => ProbeOutcome::Passed,
            Some(Err(why)) => ProbeOutcome::Failed(why),
            None => ProbeOutcome::Failed(CheckFailure::Closed),
        }
    }
}

/// The verdict on an HTTP status line (`HTTP/1.1 204 No Content`): 2xx and 3xx pass.
fn http_status(line: &[u8]) -> Result<(), CheckFailure> {
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(CheckFailure::NotHttp);
    };
    let mut parts = line.trim_end_matches('\r').splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(CheckFailure::NotHttp);
    };
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(CheckFailure::NotHttp);
    }
    let Ok(status) = code.parse::<u16>() else {
        return Err(CheckFailure::NotHttp);
    };
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(CheckFailure::HttpStatus(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn failures_read_as_an_operator_expects() {
        for (failure, text) in [
            (CheckFailure::Refused, "connection refused"),
            (
                CheckFailure::Connect("network is unreachable".into()),
                "connect failed: network is unreachable",
            ),
            (
                CheckFailure::Timeout(Duration::from_millis(500)),
                "timeout after 500ms",
            ),
            (CheckFailure::HttpStatus(503), "HTTP 503"),
            (CheckFailure::NotHttp, "not an HTTP response"),
            (CheckFailure::ExpectNotMatched, "expect not matched"),
            (CheckFailure::Closed, "closed before answering"),
        ] {
            assert_eq!(failure.to_string(), text);
        }
    }

    fn kind(check: &str) -> ProbeKind {
        let c = Config::from_json(&format!(
            r#"{{"backends":[{{"address":"127.0.0.1:80"}}],"health_check":{check}}}"#
        ))
        .unwrap();
        ProbeKind::from_config(
            &c.pools[0].health_check,
            "127.0.0.1:80".parse().unwrap(),
            None,
        )
    }

    #[test]
    fn with_proxy_protocol_a_probe_sends_a_header_without_a_client_first() {
        let c = Config::from_json(
            r#"{"backends":[{"address":"127.0.0.1:80"}],"health_check":{"type":"http"}}"#,
        )
        .unwrap();
        let addr = "127.0.0.1:80".parse().unwrap();
        let plain = Config::from_json(r#"{"backends":[{"address":"127.0.0.1:80"}]}"#).unwrap();
        let k = ProbeKind::from_config(&plain.pools[0].health_check, addr, Some(ProxyProtocol::V1));
        assert_eq!(k.request(), b"PROXY UNKNOWN\r\n");
        assert_eq!(k.judge(b"", false), Some(Ok(())));
        let k = ProbeKind::from_config(&c.pools[0].health_check, addr, Some(ProxyProtocol::V2));
        assert!(k.request().starts_with(&crate::proxy_header::V2_SIGNATURE));
        assert_eq!(&k.request()[12..16], &[0x20, 0, 0, 0]);
        assert!(k.request()[16..].starts_with(b"GET /health HTTP/1.1\r\n"));
        assert_eq!(k.judge(b"HTTP/1.1 200 OK\r\n", false), Some(Ok(())));
    }

    #[test]
    fn a_plain_check_passes_on_connect() {
        let k = kind("{}");
        assert_eq!(k, ProbeKind::TcpConnect);
        assert!(k.request().is_empty());
        assert_eq!(k.judge(b"", false), Some(Ok(())));
        assert_eq!(k.judge_end(b""), ProbeOutcome::Passed);
    }

    #[test]
    fn send_expect_needs_the_expected_bytes_before_the_close() {
        let k = kind(r#"{"send":"PING\r\n","expect":"+PONG"}"#);
        assert_eq!(k.request(), b"PING\r\n");
        assert_eq!(k.judge(b"", false), None);
        assert_eq!(k.judge(b"+PO", false), None);
        assert_eq!(k.judge(b"+PONG\r\n", false), Some(Ok(())));
        let unmatched = Some(Err(CheckFailure::ExpectNotMatched));
        assert_eq!(k.judge(b"-ERR", true), unmatched);
        assert_eq!(k.judge(&vec![b'x'; MAX_PROBE_REPLY], false), unmatched);
        assert_eq!(
            k.judge_end(b"-ERR"),
            ProbeOutcome::Failed(CheckFailure::ExpectNotMatched)
        );
        // `send` alone passes once written; `expect` alone waits for a banner.
        assert_eq!(kind(r#"{"send":"x"}"#).judge(b"", false), Some(Ok(())));
        let banner = kind(r#"{"expect":"SSH-2.0"}"#);
        assert!(banner.request().is_empty());
        assert_eq!(banner.judge(b"SSH-2.0-OpenSSH\r\n", false), Some(Ok(())));
    }

    #[test]
    fn http_passes_on_2xx_and_3xx_only() {
        let k = kind(r#"{"type":"http","path":"/ready?full=1"}"#);
        let req = String::from_utf8(k.request().to_vec()).unwrap();
        assert!(
            req.starts_with("GET /ready?full=1 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n"),
            "{req}"
        );
        assert!(req.ends_with("Connection: close\r\n\r\n"), "{req}");
        assert!(kind(r#"{"type":"http"}"#)
            .request()
            .starts_with(b"GET /health "));
        use CheckFailure::{HttpStatus, NotHttp};
        for (reply, verdict) in [
            (&b"HTTP/1.1 200 OK\r\n"[..], Some(Ok(()))),
            (b"HTTP/1.0 204 No Content\r\n", Some(Ok(()))),
            (b"HTTP/1.1 301 Moved\r\n", Some(Ok(()))),
            (b"HTTP/1.1 399 Whatever\r\n", Some(Ok(()))),
            (b"HTTP/1.1 199 Early\r\n", Some(Err(HttpStatus(199)))),
            (b"HTTP/1.1 400 Bad\r\n", Some(Err(HttpStatus(400)))),
            (b"HTTP/1.1 404 Not Found\r\n", Some(Err(HttpStatus(404)))),
            (b"HTTP/1.1 503 Busy\r\n", Some(Err(HttpStatus(503)))),
            (b"HTTP/1.1 200", None),
            (b"HTTP/1.1 200", Some(Err(NotHttp))),
            (b"", Some(Err(CheckFailure::Closed))),
            (b"GET /health HTTP/1.1\r\n", Some(Err(NotHttp))),
            (b"HTTP/1.1 2000 OK\r\n", Some(Err(NotHttp))),
            (b"\xff\xfe\n", Some(Err(NotHttp))),
        ] {
            let closed = verdict.as_ref().is_some_and(Result::is_err) && !reply.ends_with(b"\n");
            assert_eq!(
                k.judge(reply, closed),
                verdict,
                "{:?}",
                String::from_utf8_lossy(reply)
            );
        }
    }
}
