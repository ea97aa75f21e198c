//! Owns HTTP/1.x request-head parsing for the workspace: built on [`httparse`], the one
//! parser behind both the admin endpoint ([`crate::admin::parse_request`]) and the demo
//! backend's HTTP mode (`lb_runtime::demo`), so the two agree on what a request head is.
//!
//! [`parse_head`] decides the framing, the same for every caller:
//!
//! - line endings are CRLF or a bare LF (whatever `httparse` accepts; a bare CR is an
//!   error), and empty lines before the request line are skipped (RFC 9112, 2.2);
//! - the head (empty lines before it, request line, header lines and the blank line) may
//!   take at most the caller's `max_head` bytes, and at most [`MAX_HEADERS`] header lines;
//! - only `HTTP/1.0` and `HTTP/1.1`; one space between the parts of the request line; no
//!   obsolete line folding;
//! - `Content-Length` is a decimal number; several are allowed only if they are equal;
//!   `Transfer-Encoding` with `Content-Length` is refused (RFC 9112, 6.3: a possible request
//!   smuggling attempt);
//! - `Connection` tokens `close` and `keep-alive` are noted, case-insensitively.
//!
//! What a caller then does with a well-formed head is its own policy: the admin endpoint
//! routes on letters-only methods and paths and reads no body (so it ignores
//! `Transfer-Encoding`); the demo backend discards `Content-Length` bodies and refuses
//! `Transfer-Encoding`.

/// The most header lines a head may have; one more is [`BadHead::TooManyHeaders`].
pub const MAX_HEADERS: usize = 100;

/// The HTTP version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`: the connection closes after the response unless `keep-alive` is asked.
    Http10,
    /// `HTTP/1.1`: the connection stays open unless `close` is asked.
    Http11,
}

/// A whole, well-formed request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head<'a> {
    /// The method token, as sent (case-sensitive).
    pub method: &'a str,
    /// The request target, as sent (not decoded; query string included).
    pub target: &'a str,
    /// The HTTP version.
    pub version: Version,
    /// The bytes the head takes at the start of the buffer: empty lines before it, the
    /// request line, the headers and the blank line. The body, if any, starts here.
    pub len: usize,
    /// The `Content-Length`, if the request has one.
    pub content_length: Option<u64>,
    /// Whether the request has a `Transfer-Encoding` header (its body's length is then
    /// not known from the head).
    pub transfer_encoding: bool,
    /// Whether a `Connection` header holds the token `close`.
    pub connection_close: bool,
    /// Whether a `Connection` header holds the token `keep-alive`.
    pub connection_keep_alive: bool,
}

impl Head<'_> {
    /// Whether the connection may carry another request after this one's response, as
    /// HTTP/1.x says: never after `Connection: close`; for HTTP/1.0 only with
    /// `Connection: keep-alive`; for HTTP/1.1 otherwise always.
    pub fn keep_alive(&self) -> bool {
        !self.connection_close && (self.version == Version::Http11 || self.connection_keep_alive)
    }
}

/// Why bytes are not a request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadHead {
    /// The head takes more than the caller's limit (no blank line within it).
    TooLarge,
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// A version other than `HTTP/1.0` or `HTTP/1.1`.
    Version,
    /// Not HTTP/1.x syntax: what `httparse` found wrong (a bad token, header name or value,
    /// line ending...).
    Malformed(&'static str),
    /// A `Content-Length` that is not a decimal number (or overflows).
    InvalidContentLength,
    /// Several `Content-Length` headers that differ.
    ConflictingContentLength,
    /// Both `Transfer-Encoding` and `Content-Length`.
    TransferEncodingAndContentLength,
}

impl BadHead {
    /// A short explanation, for logs and error bodies.
    pub fn reason(&self) -> &'static str {
        match self {
            BadHead::TooLarge => "request head too large",
            BadHead::TooManyHeaders => "too many header fields",
            BadHead::Version => "only HTTP/1.0 and HTTP/1.1 are served",
            BadHead::Malformed(what) => what,
            BadHead::InvalidContentLength => "invalid Content-Length",
            BadHead::ConflictingContentLength => "conflicting Content-Length headers",
            BadHead::TransferEncodingAndContentLength => {
                "both Transfer-Encoding and Content-Length"
            }
        }
    }
}

/// What [`parse_head`] made of the bytes read so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParsedHead<'a> {
    /// Not a whole head yet, and not wrong so far: read more.
    Incomplete,
    /// A whole head at the start of the buffer (bytes after [`Head::len`] are not looked at).
    Head(Head<'a>),
    /// No request head can start with these bytes.
    Bad(BadHead),
}

/// Parses the request head at the start of `buf`, allowing it at most `max_head` bytes.
///
/// The verdict depends only on the first `max_head` bytes of `buf` (and on whether there
/// are that many): reading more never turns a verdict other than
/// [`ParsedHead::Incomplete`] into another one, and a head is accepted however its bytes
/// were split between reads.
pub fn parse_head(buf: &[u8], max_head: usize) -> ParsedHead<'_> {
    let window = &buf[..buf.len().min(max_head)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return ParsedHead::Bad(BadHead::TooLarge)
        }
        Ok(httparse::Status::Partial) => return ParsedHead::Incomplete,
        Err(httparse::Error::TooManyHeaders) => return ParsedHead::Bad(BadHead::TooManyHeaders),
        Err(httparse::Error::Version) => return ParsedHead::Bad(BadHead::Version),
        Err(e) => return ParsedHead::Bad(BadHead::Malformed(error_reason(e))),
    };
    // A complete parse fills all three; httparse only accepts HTTP/1.0 and HTTP/1.1.
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return ParsedHead::Bad(BadHead::Malformed("incomplete request line"));
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let mut head = Head {
        method,
        target,
        version,
        len,
        content_length: None,
        transfer_encoding: false,
        connection_close: false,
        connection_keep_alive: false,
    };
    for header in req.headers.iter() {
        let name = header.name;
        let value = trim_ows(header.value);
        if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = parse_decimal(value) else {
                return ParsedHead::Bad(BadHead::InvalidContentLength);
            };
            if head.content_length.is_some_and(|m| m != n) {
                return ParsedHead::Bad(BadHead::ConflictingContentLength);
            }
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(trim_ows) {
                if token.eq_ignore_ascii_case(b"close") {
                    head.connection_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    head.connection_keep_alive = true;
                }
            }
        }
    }
    if head.transfer_encoding && head.content_length.is_some() {
        return ParsedHead::Bad(BadHead::TransferEncodingAndContentLength);
    }
    ParsedHead::Head(head)
}

/// `httparse`'s error as a reason with a little more context.
fn error_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Token => "malformed request line",
        httparse::Error::Status => "invalid status",
        httparse::Error::TooManyHeaders => "too many header fields",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// `s` without leading and trailing spaces and tabs.
fn trim_ows(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

/// A non-empty run of ASCII digits as a number (`None` on anything else or overflow).
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests;
