//! The admin endpoint's HTTP: reads a request head from bytes (bounded) and writes a whole
//! response. Only what the endpoint needs: one request per connection, no bodies read,
//! `Connection: close` on every answer.

use std::fmt::Write as _;

/// The longest request head (request line and headers) accepted; longer ones get `431`.
pub const MAX_HEAD: usize = 8 * 1024;

/// A request method the endpoint tells apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: answered like `GET`, without the body.
    Head,
    /// `POST`.
    Post,
    /// Any other token.
    Other(String),
}

/// A parsed request: what the endpoint routes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, percent-decoded, without the query string.
    pub path: String,
}

/// What [`parse_request`] made of the bytes read so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet: read more (the caller stops at [`MAX_HEAD`]).
    Incomplete,
    /// A whole request head.
    Request(Request),
    /// Bytes no request could start with: answer this and close.
    Bad(Response),
}

/// Parses the request head at the start of `buf` (everything read from the connection).
pub fn parse_request(buf: &[u8]) -> Parsed {
    let Some(end) = head_end(buf) else {
        return if buf.len() >= MAX_HEAD {
            Parsed::Bad(Response::text(431, "request head too large\n"))
        } else {
            Parsed::Incomplete
        };
    };
    if end > MAX_HEAD {
        return Parsed::Bad(Response::text(431, "request head too large\n"));
    }
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Bad(Response::text(400, "request head is not UTF-8\n"));
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Bad(Response::text(400, "malformed request line\n"));
    };
    if !version.starts_with("HTTP/1.") {
        return Parsed::Bad(Response::text(505, "only HTTP/1.x is served\n"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Parsed::Bad(Response::text(400, "malformed request method\n"));
    }
    let raw_path = target.split(['?', '#']).next().unwrap_or("");
    if !raw_path.starts_with('/') {
        return Parsed::Bad(Response::text(400, "the request target must be a path\n"));
    }
    let Some(path) = percent_decode(raw_path) else {
        return Parsed::Bad(Response::text(
            400,
            "malformed percent-encoding in the path\n",
        ));
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        other => Method::Other(other.to_string()),
    };
    Parsed::Request(Request { method, path })
}

/// Where the head ends (just past the blank line), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `%XX` decoding; `None` for a bad escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A whole response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The `Allow` header of a `405`.
    pub allow: Option<&'static str>,
    /// The body.
    pub body: String,
}

impl Response {
    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            allow: None,
            body: body.into(),
        }
    }

    /// An `application/json` response.
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            allow: None,
            body,
        }
    }

    /// The response on the wire; `with_body` false for `HEAD` (the length is still the
    /// body's).
    pub fn to_bytes(&self, with_body: bool) -> Vec<u8> {
        let mut head = String::new();
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            let _ = write!(head, "Allow: {allow}\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if with_body {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str) -> Parsed {
        Parsed::Request(Request {
            method,
            path: path.to_string(),
        })
    }

    #[test]
    fn a_request_head_is_parsed_once_complete() {
        let full = b"GET /status?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
        for n in 0..full.len() {
            assert_eq!(parse_request(&full[..n]), Parsed::Incomplete, "{n} bytes");
        }
        assert_eq!(parse_request(full), request(Method::Get, "/status"));
        assert_eq!(
            parse_request(b"POST /backends/a%20b/drain HTTP/1.0\n\n"),
            request(Method::Post, "/backends/a b/drain")
        );
        assert_eq!(
            parse_request(b"DELETE / HTTP/1.1\r\n\r\n"),
            request(Method::Other("DELETE".into()), "/")
        );
    }

    #[test]
    fn bad_heads_get_a_status_not_a_panic() {
        let status = |b: &[u8]| match parse_request(b) {
            Parsed::Bad(r) => r.status,
            other => panic!("{other:?}"),
        };
        assert_eq!(status(b"GET /\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1 x\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/2\r\n\r\n"), 505);
        assert_eq!(status(b"GET http://x/ HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET /%zz HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET /%ff HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\xff HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"G3T / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(&[b'a'; MAX_HEAD]), 431);
    }

    #[test]
    fn a_response_has_its_length_and_closes() {
        let r = Response::text(200, "hi\n");
        let wire = String::from_utf8(r.to_bytes(true)).unwrap();
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        assert!(wire.contains("Content-Length: 3\r\n"), "{wire}");
        assert!(wire.contains("Connection: close\r\n"), "{wire}");
        assert!(wire.ends_with("\r\n\r\nhi\n"), "{wire}");
        let head_only = String::from_utf8(r.to_bytes(false)).unwrap();
        assert!(
            head_only.ends_with(
                "Content-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
            ),
            "{head_only}"
        );
    }
}
