//! The demo backend behind the `server` binary and `loadbalancer --demo`: an accept loop
//! generic over [`Net`] (so it also runs inside the turmoil simulation) and two
//! per-connection handlers, a small keep-alive-aware HTTP/1.1 responder that answers every
//! request with `Hello from NAME\n`, and a raw TCP echo that honours half-close.
//!
//! It owns nothing else: no configuration files, no timeouts besides a short lingering close
//! after a `Connection: close` response, and no state shared between connections.

use std::fmt;
use std::io::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::net::Net;

/// Largest request head (request line, headers and the blank line) the HTTP mode accepts.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body (`Content-Length`) the HTTP mode accepts and discards.
pub const MAX_BODY: u64 = 1024 * 1024;
/// Size of the echo mode's buffer.
pub const ECHO_BUF: usize = 64 * 1024;

/// How much the HTTP mode reads from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;
/// Pause after a failed `accept`, so a persistent error (e.g. EMFILE) does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// After a closing response: how long, and how many bytes, to keep reading (and discarding)
/// what the client still sends, so its unread data does not turn our FIN into an RST that
/// could destroy the response before the client reads it.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// What a demo backend does with its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoMode {
    /// Answer every HTTP/1.x request with `200 OK` and `Hello from NAME\n`.
    Http,
    /// Echo every byte back; after the client's FIN, finish echoing and send a FIN.
    Echo,
}

impl DemoMode {
    /// The mode's lower-case name, as logged: `http` or `echo`.
    pub fn as_str(self) -> &'static str {
        match self {
            DemoMode::Http => "http",
            DemoMode::Echo => "echo",
        }
    }
}

impl fmt::Display for DemoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One demo backend: its name (shown in bodies and the `X-Backend` header) and its mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoServer {
    /// The name in `Hello from NAME\n` and `X-Backend: NAME`.
    pub name: String,
    /// HTTP responder or echo.
    pub mode: DemoMode,
}

impl DemoServer {
    /// A backend for `port`, named `name` or, by default, [`default_name`]`(port)`.
    pub fn new(port: u16, name: Option<String>, mode: DemoMode) -> Self {
        DemoServer {
            name: name.unwrap_or_else(|| default_name(port)),
            mode,
        }
    }

    /// Serves `listener` forever; see [`serve`].
    pub async fn run<N: Net>(self, net: N, listener: N::Listener) {
        serve(net, listener, self.name, self.mode).await;
    }
}

/// The default backend name for `port`: `server-PORT`.
pub fn default_name(port: u16) -> String {
    format!("server-{port}")
}

/// The body the HTTP mode answers with: `Hello from NAME\n`.
pub fn hello_body(name: &str) -> String {
    format!("Hello from {name}\n")
}

/// Accepts clients on `listener` forever and serves each one on its own task (spawned with
/// [`Net::spawn`]). An accept error is logged and followed by a 10 ms pause; it never ends
/// the loop.
pub async fn serve<N: Net>(net: N, listener: N::Listener, name: String, mode: DemoMode) {
    let name: Arc<str> = Arc::from(name);
    loop {
        match net.accept(&listener).await {
            Ok((stream, peer)) => {
                tracing::debug!(%peer, mode = mode.as_str(), "demo: accepted");
                match mode {
                    DemoMode::Http => {
                        let name = Arc::clone(&name);
                        net.spawn(async move { http_conn(stream, &name).await });
                    }
                    DemoMode::Echo => net.spawn(echo_conn(stream)),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "demo: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Echoes every byte of `stream` back to it. On the client's FIN it flushes, shuts its write
/// side down and returns (dropping the stream closes it). Errors end the connection quietly.
pub async fn echo_conn<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    match echo_loop(&mut stream).await {
        Ok(bytes) => tracing::debug!(bytes, "demo echo: client finished"),
        Err(error) => tracing::debug!(%error, "demo echo: connection ended"),
    }
}

async fn echo_loop<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> io::Result<u64> {
    let mut buf = vec![0u8; ECHO_BUF];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await?;
        total += n as u64;
    }
    stream.flush().await?;
    stream.shutdown().await?;
    Ok(total)
}

/// Serves HTTP/1.x requests on `stream`, answering each with `200 OK` and
/// `Hello from NAME\n` (headers only for `HEAD`), in order, keeping the connection alive as
/// HTTP/1.x says. Malformed or unsupported requests (bad request line, chunked bodies,
/// `Content-Length` over [`MAX_BODY`], heads over [`MAX_HEAD`]) get `400` and a close. The
/// client's EOF ends the connection quietly; so do I/O errors.
pub async fn http_conn<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, name: &str) {
    match http_loop(&mut stream, name).await {
        Ok(End::Eof) => tracing::debug!("demo http: client closed"),
        Ok(End::Close) => linger_close(&mut stream).await,
        Err(error) => tracing::debug!(%error, "demo http: connection ended"),
    }
}

/// How the HTTP loop ended without an I/O error.
enum End {
    /// The client closed (EOF); nothing more to do.
    Eof,
    /// A closing response was written; shut the write side down and linger.
    Close,
}

async fn http_loop<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    name: &str,
) -> io::Result<End> {
    let header_name = header_safe(name);
    let body = hello_body(name);
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    // Responses to the requests already buffered: written out before the next read, so a
    // pipelined batch costs one write.
    let mut out: Vec<u8> = Vec::new();
    loop {
        match parse_head(&buf) {
            Parse::Partial => {
                if buf.len() > MAX_HEAD {
                    tracing::debug!("demo http: request head too large");
                    return bad_request(stream, &mut out, &header_name).await;
                }
                if read_more(stream, &mut buf, &mut out).await? == 0 {
                    return Ok(End::Eof);
                }
            }
            Parse::Bad(reason) => {
                tracing::debug!(reason, "demo http: bad request");
                return bad_request(stream, &mut out, &header_name).await;
            }
            Parse::Request(req) => {
                buf.drain(..req.head_len);
                let mut remaining = req.content_length;
                while remaining > 0 {
                    if buf.is_empty() && read_more(stream, &mut buf, &mut out).await? == 0 {
                        return Ok(End::Eof);
                    }
                    let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                    buf.drain(..n);
                    remaining -= n as u64;
                }
                let conn = if !req.keep_alive {
                    ConnHeader::Close
                } else if req.http10 {
                    ConnHeader::KeepAlive
                } else {
                    ConnHeader::None
                };
                push_response(
                    &mut out,
                    "200 OK",
                    &header_name,
                    body.as_bytes(),
                    req.head_only,
                    conn,
                );
                if !req.keep_alive {
                    stream.write_all(&out).await?;
                    return Ok(End::Close);
                }
            }
        }
    }
}

/// Writes out the pending responses, then reads up to [`READ_CHUNK`] more bytes into `buf`.
/// Returns the number read (0 at EOF).
async fn read_more<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> io::Result<usize> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        stream.flush().await?;
        out.clear();
    }
    let start = buf.len();
    buf.resize(start + READ_CHUNK, 0);
    let read = stream.read(&mut buf[start..]).await;
    buf.truncate(start + *read.as_ref().unwrap_or(&0));
    read
}

/// Queues a `400 Bad Request` with `Connection: close` after the pending responses and
/// writes them all.
async fn bad_request<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    header_name: &str,
) -> io::Result<End> {
    push_response(
        out,
        "400 Bad Request",
        header_name,
        b"bad request\n",
        false,
        ConnHeader::Close,
    );
    stream.write_all(out).await?;
    Ok(End::Close)
}

/// Flushes, sends a FIN, then reads and discards what the client still sends for a little
/// while, so that a close with unread data does not reset the connection under the response.
async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    if let Err(error) = stream.flush().await {
        tracing::debug!(%error, "demo http: flush failed");
        return;
    }
    if let Err(error) = stream.shutdown().await {
        tracing::debug!(%error, "demo http: shutdown failed");
        return;
    }
    let drain = async {
        let mut scratch = vec![0u8; READ_CHUNK];
        let mut total = 0usize;
        while total < LINGER_BYTES {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// The `Connection` header a response carries.
#[derive(Clone, Copy)]
enum ConnHeader {
    None,
    Close,
    KeepAlive,
}

fn push_response(
    out: &mut Vec<u8>,
    status: &str,
    header_name: &str,
    body: &[u8],
    head_only: bool,
    conn: ConnHeader,
) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Backend: {header_name}\r\n",
        body.len()
    );
    match conn {
        ConnHeader::None => {}
        ConnHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
        ConnHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// `name` with control characters replaced, fit for a header value.
fn header_safe(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}

/// What the start of the buffer holds.
#[derive(Debug, PartialEq, Eq)]
enum Parse {
    /// Not yet a whole head.
    Partial,
    /// A malformed or unsupported request.
    Bad(&'static str),
    /// A whole, acceptable head.
    Request(Request),
}

/// The parts of a request head the responder needs.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    /// Bytes of the buffer the head takes (including leading blank lines and the final CRLF CRLF).
    head_len: usize,
    /// Body bytes that follow the head.
    content_length: u64,
    /// Whether the connection stays open after the response.
    keep_alive: bool,
    /// Whether the request was HTTP/1.0.
    http10: bool,
    /// Whether the method was `HEAD` (no response body).
    head_only: bool,
}

/// Parses the request head at the start of `buf`, if it is complete.
fn parse_head(buf: &[u8]) -> Parse {
    // A server should ignore empty lines before a request line (RFC 9112, 2.2).
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
    }
    let Some(end) = find(&buf[start..], b"\r\n\r\n") else {
        return Parse::Partial;
    };
    let head_len = start + end + 4;
    if head_len > MAX_HEAD {
        return Parse::Bad("request head too large");
    }
    let mut lines = split_crlf(&buf[start..start + end]);

    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parse::Bad("request line is not METHOD SP TARGET SP VERSION");
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Parse::Bad("bad method");
    }
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Parse::Bad("bad request target");
    }
    let http10 = match version {
        b"HTTP/1.0" => true,
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit() => false,
        _ => return Parse::Bad("not HTTP/1.x"),
    };

    let mut content_length: Option<u64> = None;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    for line in lines {
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return Parse::Bad("obsolete header line folding");
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Parse::Bad("header line without a colon");
        };
        let name = &line[..colon];
        let value = trim_ows(&line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Parse::Bad("bad header name");
        }
        if value.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
            return Parse::Bad("control character in a header value");
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let Some(n) = parse_decimal(value) else {
                return Parse::Bad("bad Content-Length");
            };
            if content_length.is_some_and(|m| m != n) {
                return Parse::Bad("conflicting Content-Length headers");
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Chunked (or any other coding) request bodies are not supported by this demo.
            return Parse::Bad("Transfer-Encoding not supported");
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(trim_ows) {
                if token.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        return Parse::Bad("Content-Length too large");
    }
    let keep_alive = !conn_close && (!http10 || conn_keep_alive);
    Parse::Request(Request {
        head_len,
        content_length,
        keep_alive,
        http10,
        head_only: method == b"HEAD",
    })
}

/// The position of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The lines of `s`, split on CRLF.
fn split_crlf(mut s: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match find(s, b"\r\n") {
            Some(i) => {
                let line = &s[..i];
                s = &s[i + 2..];
                Some(line)
            }
            None => {
                done = true;
                Some(s)
            }
        }
    })
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

/// Whether `b` may appear in a token (method, header name): RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::TokioNet;
    use std::future::Future;
    use std::net::SocketAddr;
    use tokio::net::TcpStream;

    const LIMIT: Duration = Duration::from_secs(10);

    /// Runs `fut` under a time limit, failing the test if it is exceeded.
    async fn bounded<T>(fut: impl Future<Output = T>) -> T {
        tokio::time::timeout(LIMIT, fut)
            .await
            .expect("test timed out")
    }

    /// Starts a demo backend on 127.0.0.1, port 0, and returns its address.
    async fn start(mode: DemoMode, name: &str) -> SocketAddr {
        let net = TokioNet;
        let listener = net
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = net.local_addr(&listener).expect("local_addr");
        net.spawn(serve(net, listener, name.to_owned(), mode));
        addr
    }

    struct Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Response {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Reads one response from `stream`, keeping bytes beyond it in `buf`.
    async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>, head_only: bool) -> Response {
        let end = loop {
            if let Some(i) = find(buf, b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "EOF before a whole response head; got {:?}",
                String::from_utf8_lossy(buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..end].to_vec()).expect("utf-8 head");
        buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"));
        let status = parts.next().unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header colon");
                (n.to_owned(), v.trim().to_owned())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let body = if head_only {
            Vec::new()
        } else {
            while buf.len() < len {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.expect("read body");
                assert!(n > 0, "EOF inside a response body");
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..len).collect()
        };
        Response {
            status,
            headers,
            body,
        }
    }

    /// Reads until EOF and returns what came (should be nothing after the last response).
    async fn read_to_eof(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
        let mut rest = std::mem::take(buf);
        stream.read_to_end(&mut rest).await.expect("read to EOF");
        rest
    }

    fn assert_hello(resp: &Response, name: &str) {
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, hello_body(name).as_bytes());
        assert_eq!(resp.header("X-Backend"), Some(name));
        assert_eq!(resp.header("Content-Type"), Some("text/plain"));
    }

    #[tokio::test]
    async fn http_two_keep_alive_requests_on_one_connection() {
        bounded(async {
            let addr = start(DemoMode::Http, "alpha").await;
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            for _ in 0..2 {
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await
                    .unwrap();
                let resp = read_response(&mut s, &mut buf, false).await;
                assert_hello(&resp, "alpha");
                assert_eq!(resp.body, b"Hello from alpha\n");
                assert_eq!(resp.header("Connection"), None);
            }
            assert!(buf.is_empty());
        })
        .await;
    }

    #[tokio::test]
    async fn http_pipelined_requests_each_get_a_response_in_order() {
        bounded(async {
            let addr = start(DemoMode::Http, "pipe").await;
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            assert_hello(&read_response(&mut s, &mut buf, false).await, "pipe");
            let head = read_response(&mut s, &mut buf, true).await;
            assert_eq!(head.status, 200);
            assert_eq!(head.header("Content-Length"), Some(hello_body("pipe").len().to_string().as_str()));
            assert_hello(&read_response(&mut s, &mut buf, false).await, "pipe");
            assert!(buf.is_empty(), "HEAD response must have no body");
            // Still open afterwards.
            s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            assert_hello(&read_response(&mut s, &mut buf, false).await, "pipe");
        })
        .await;
    }

    #[tokio::test]
    async fn http_connection_close_closes_after_the_response() {
        bounded(async {
            let addr = start(DemoMode::Http, "closer").await;
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            // The request after the closing one must be ignored.
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nconnection: Close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n")
                .await
                .unwrap();
            let resp = read_response(&mut s, &mut buf, false).await;
            assert_hello(&resp, "closer");
            assert_eq!(resp.header("Connection"), Some("close"));
            assert_eq!(read_to_eof(&mut s, &mut buf).await, b"");
        })
        .await;
    }

    #[tokio::test]
    async fn http_health_is_200() {
        bounded(async {
            let addr = start(DemoMode::Http, "healthy").await;
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: lb\r\n\r\n")
                .await
                .unwrap();
            assert_hello(&read_response(&mut s, &mut buf, false).await, "healthy");
        })
        .await;
    }

    #[tokio::test]
    async fn http_post_body_is_discarded_and_the_next_request_answered() {
        bounded(async {
            let addr = start(DemoMode::Http, "poster").await;
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            // Head and body in separate writes.
            s.write_all(b"POST /form HTTP/1.1\r\nHost: x\r\nCONTENT-length: 11\r\n\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(b"hello world").await.unwrap();
            assert_hello(&read_response(&mut s, &mut buf, false).await, "poster");
            // Body and the next request in one write; the body looks like a request line.
            s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 20\r\n\r\nGET /evil HTTP/1.1\r\nGET /next HTTP/1.1\r\n\r\n")
                .await
                .unwrap();
            assert_hello(&read_response(&mut s, &mut buf, false).await, "poster");
            assert_hello(&read_response(&mut s, &mut buf, false).await, "poster");
            // A large (but allowed) body.
            let body = vec![b'x'; MAX_BODY as usize];
            s.write_all(format!("PUT / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())
                .await
                .unwrap();
            s.write_all(&body).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            assert_hello(&read_response(&mut s, &mut buf, false).await, "poster");
            assert_hello(&read_response(&mut s, &mut buf, false).await, "poster");
            assert!(buf.is_empty());
        })
        .await;
    }

    #[tokio::test]
    async fn http_garbage_and_unsupported_requests_get_400_and_close() {
        bounded(async {
            let addr = start(DemoMode::Http, "strict").await;
            let huge_head = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD));
            let cases: Vec<Vec<u8>> = vec![
                b"garbage\r\n\r\n".to_vec(),
                b"GET /\r\n\r\n".to_vec(),
                b"GET / HTTP/2.0\r\n\r\n".to_vec(),
                b"GET  / HTTP/1.1\r\n\r\n".to_vec(),
                b"GET / HTTP/1.1\r\nno colon here\r\n\r\n".to_vec(),
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                    .to_vec(),
                b"POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n".to_vec(),
                b"POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n".to_vec(),
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
                huge_head.into_bytes(),
                // No blank line ever: too large a head.
                vec![b'A'; MAX_HEAD + 100],
            ];
            for case in cases {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let mut buf = Vec::new();
                s.write_all(&case).await.unwrap();
                let resp = read_response(&mut s, &mut buf, false).await;
                let shown = String::from_utf8_lossy(&case[..case.len().min(60)]).into_owned();
                assert_eq!(resp.status, 400, "case {shown:?}");
                assert_eq!(resp.header("Connection"), Some("close"), "case {shown:?}");
                assert_eq!(read_to_eof(&mut s, &mut buf).await, b"", "case {shown:?}");
            }
            // A good request before garbage is still answered first.
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            s.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\x01junk\r\n\r\n")
                .await
                .unwrap();
            assert_hello(&read_response(&mut s, &mut buf, false).await, "strict");
            assert_eq!(read_response(&mut s, &mut buf, false).await.status, 400);
            assert_eq!(read_to_eof(&mut s, &mut buf).await, b"");
        })
        .await;
    }

    #[tokio::test]
    async fn http10_closes_unless_keep_alive() {
        bounded(async {
            let addr = start(DemoMode::Http, "old").await;
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            s.write_all(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .await
                .unwrap();
            let resp = read_response(&mut s, &mut buf, false).await;
            assert_hello(&resp, "old");
            assert_eq!(resp.header("Connection"), Some("keep-alive"));
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            let resp = read_response(&mut s, &mut buf, false).await;
            assert_hello(&resp, "old");
            assert_eq!(resp.header("Connection"), Some("close"));
            assert_eq!(read_to_eof(&mut s, &mut buf).await, b"");
        })
        .await;
    }

    #[tokio::test]
    async fn http_client_eof_ends_the_connection_quietly() {
        bounded(async {
            let (mut client, server) = tokio::io::duplex(1024);
            client.write_all(b"GET / HTTP/1.1\r\nHost:").await.unwrap();
            drop(client);
            http_conn(server, "quiet").await;
        })
        .await;
    }

    #[tokio::test]
    async fn echo_returns_one_mib_and_honours_half_close() {
        bounded(async {
            let addr = start(DemoMode::Echo, "echo").await;
            let s = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = s.into_split();
            let data: Vec<u8> = (0..1024 * 1024u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            let writer = async {
                for chunk in data.chunks(10_000) {
                    wr.write_all(chunk).await.unwrap();
                }
                // Half-close: the server must still send everything back, then close.
                wr.shutdown().await.unwrap();
                wr
            };
            let reader = async {
                let mut got = Vec::with_capacity(data.len());
                rd.read_to_end(&mut got).await.unwrap();
                got
            };
            let (_wr, got) = tokio::join!(writer, reader);
            assert_eq!(got.len(), data.len());
            assert!(got == data, "echoed bytes differ");
        })
        .await;
    }

    #[tokio::test]
    async fn echo_conn_works_on_any_stream() {
        bounded(async {
            let (mut client, server) = tokio::io::duplex(64);
            let server_task = echo_conn(server);
            let client_task = async {
                client.write_all(b"ping").await.unwrap();
                client.shutdown().await.unwrap();
                let mut got = Vec::new();
                client.read_to_end(&mut got).await.unwrap();
                got
            };
            let ((), got) = tokio::join!(server_task, client_task);
            assert_eq!(got, b"ping");
        })
        .await;
    }

    #[test]
    fn parse_head_reads_headers_case_insensitively() {
        let input: &[u8] = b"\r\nHEAD /x HTTP/1.1\r\ncOnNeCtIoN: keep-alive, CLOSE\r\ncontent-LENGTH:  7 \r\n\r\nrest";
        let Parse::Request(req) = parse_head(input) else {
            panic!("expected a request");
        };
        assert_eq!(
            req,
            Request {
                head_len: input.len() - 4,
                content_length: 7,
                keep_alive: false,
                http10: false,
                head_only: true
            }
        );
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"), Parse::Partial);
        assert_eq!(parse_head(b""), Parse::Partial);
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\n folded\r\n\r\n"),
            Parse::Bad(_)
        ));
    }
}
