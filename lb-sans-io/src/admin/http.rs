//! The admin endpoint's HTTP: reads a request head from bytes (bounded) and writes a whole
//! response. Only what the endpoint needs: one request per connection, no bodies read,
//! `Connection: close` on every answer. The head's syntax is [`crate::http::parse_head`]'s
//! (the same parser as the demo backend's); this module adds the endpoint's own rules.

use crate::http::{self, BadHead, ParsedHead};
use std::fmt::Write as _;

/// The longest request head (request line and headers) accepted; longer ones get `431`.
pub const MAX_HEAD: usize = 8 * 1024;

/// The longest request body accepted (`Content-Length`); longer ones get `413`.
pub const MAX_BODY: usize = 1024;

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
    /// The body (`Content-Length` bytes after the head; at most [`MAX_BODY`]).
    pub body: Vec<u8>,
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
///
/// The head is read by [`crate::http::parse_head`] with a limit of [`MAX_HEAD`]: CRLF or
/// bare LF line endings, empty lines before the request line skipped, `431` for a head too
/// large or with too many headers, `505` for a version other than HTTP/1.0 or 1.1, `400` for
/// any other syntax error (including conflicting `Content-Length`s, or `Transfer-Encoding`
/// with `Content-Length`). A body is read by its `Content-Length` (up to [`MAX_BODY`],
/// `413` beyond); `Transfer-Encoding` alone is refused with `411`.
/// On top of that the endpoint wants a method of letters only and a target that is a path
/// (`/...`) with valid percent-encoding of UTF-8; the query string and fragment are
/// dropped.
pub fn parse_request(buf: &[u8]) -> Parsed {
    let head = match http::parse_head(buf, MAX_HEAD) {
        ParsedHead::Incomplete => return Parsed::Incomplete,
        ParsedHead::Bad(bad) => return Parsed::Bad(bad_head(bad)),
        ParsedHead::Head(head) => head,
    };
    let method = head.method;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Parsed::Bad(Response::text(400, "malformed request method\n"));
    }
    let raw_path = head.target.split(['?', '#']).next().unwrap_or("");
    if !raw_path.starts_with('/') {
        return Parsed::Bad(Response::text(400, "the request target must be a path\n"));
    }
    let Some(path) = percent_decode(raw_path) else {
        return Parsed::Bad(Response::text(
            400,
            "malformed percent-encoding in the path\n",
        ));
    };
    if head.transfer_encoding {
        return Parsed::Bad(Response::text(
            411,
            "send the body with a Content-Length, not Transfer-Encoding\n",
        ));
    }
    let body_len = head.content_length.unwrap_or(0);
    if body_len > MAX_BODY as u64 {
        return Parsed::Bad(Response::text(
            413,
            format!("request body over {MAX_BODY} bytes\n"),
        ));
    }
    let Some(body) = buf.get(head.len..head.len + body_len as usize) else {
        return Parsed::Incomplete;
    };
    let body = body.to_vec();
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        other => Method::Other(other.to_string()),
    };
    Parsed::Request(Request { method, path, body })
}

/// The answer to a head [`crate::http::parse_head`] refused.
fn bad_head(bad: BadHead) -> Response {
    let status = match bad {
        BadHead::TooLarge | BadHead::TooManyHeaders => 431,
        BadHead::Version => 505,
        BadHead::Malformed(_)
        | BadHead::InvalidContentLength
        | BadHead::ConflictingContentLength
        | BadHead::TransferEncodingAndContentLength => 400,
    };
    Response::text(status, format!("{}\n", bad.reason()))
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
            body: Vec::new(),
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
    fn line_endings_leading_lines_and_limits_follow_the_shared_parser() {
        let status = |b: &[u8]| match parse_request(b) {
            Parsed::Bad(r) => r.status,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(b)),
        };
        // Bare LF anywhere, and empty lines before the request line.
        for input in [
            &b"GET /status HTTP/1.1\nHost: a\n\n"[..],
            b"GET /status HTTP/1.1\r\nHost: a\n\r\n",
            b"\r\n\nGET /status HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                parse_request(input),
                request(Method::Get, "/status"),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // A head of exactly MAX_HEAD bytes is served; one more byte is 431.
        let head_of = |len: usize| {
            let mut h = b"GET /status HTTP/1.1\r\nX-Pad: ".to_vec();
            h.resize(len - 4, b'p');
            h.extend_from_slice(b"\r\n\r\n");
            h
        };
        assert_eq!(
            parse_request(&head_of(MAX_HEAD)),
            request(Method::Get, "/status")
        );
        assert_eq!(status(&head_of(MAX_HEAD + 1)), 431);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..=http::MAX_HEADERS {
            many.extend_from_slice(b"X: y\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many), 431);
        // Bodies are read by their length, and their framing must make sense.
        assert_eq!(
            status(b"POST /status HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST /status HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            400
        );
        assert_eq!(
            status(
                b"POST /status HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            status(b"POST /status HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
    }

    #[test]
    fn a_body_is_read_by_its_length_and_bounded() {
        let whole =
            b"POST /backends/a/weight HTTP/1.1\r\nContent-Length: 13\r\n\r\n{\"weight\": 5}";
        // Not complete until the last byte of the body.
        for cut in 0..whole.len() {
            assert_eq!(parse_request(&whole[..cut]), Parsed::Incomplete, "{cut}");
        }
        assert_eq!(
            parse_request(whole),
            Parsed::Request(Request {
                method: Method::Post,
                path: "/backends/a/weight".to_string(),
                body: b"{\"weight\": 5}".to_vec(),
            })
        );
        let at_limit = format!("POST / HTTP/1.1\r\nContent-Length: {MAX_BODY}\r\n\r\n");
        assert_eq!(parse_request(at_limit.as_bytes()), Parsed::Incomplete);
        let over = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        match parse_request(over.as_bytes()) {
            Parsed::Bad(r) => assert_eq!(r.status, 413),
            other => panic!("{other:?}"),
        }
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
