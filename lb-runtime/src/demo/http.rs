//! The HTTP mode: answers every HTTP/1.x request on a connection with `200 OK` and
//! `Hello from NAME\n`, in order, keeping the connection alive as HTTP/1.x says.

use std::io::{self, Write as _};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use lb_sans_io::http::{self, ParsedHead, Version};

use super::hello_body;

/// Largest request head (request line, headers and the blank line) the HTTP mode accepts.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body (`Content-Length`) the HTTP mode accepts and discards.
pub const MAX_BODY: u64 = 1024 * 1024;

/// How much the HTTP mode reads from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;
/// After a closing response: how long, and how many bytes, to keep reading (and discarding)
/// what the client still sends, so its unread data does not turn our FIN into an RST that
/// could destroy the response before the client reads it.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// Serves HTTP/1.x requests on `stream`, answering each with `200 OK` and
/// `Hello from NAME\n` (headers only for `HEAD`), in order, keeping the connection alive as
/// HTTP/1.x says. Heads are read by [`lb_sans_io::http::parse_head`], like the admin
/// endpoint's: CRLF or bare LF line endings, empty lines before a request skipped.
/// Malformed or unsupported requests (bad request line or headers, conflicting
/// `Content-Length`s, any `Transfer-Encoding`, `Content-Length` over [`MAX_BODY`], heads over
/// [`MAX_HEAD`] or with too many headers) get `400` and a close. The client's EOF ends the
/// connection quietly; so do I/O errors.
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
        match parse_request(&buf) {
            Parse::Partial => {
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
    /// Bytes of the buffer the head takes (including leading empty lines and the blank line).
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

/// Reads the request head at the start of `buf` with the workspace's one parser
/// ([`lb_sans_io::http::parse_head`], limited to [`MAX_HEAD`]), then applies the demo's own
/// rules: no `Transfer-Encoding` (only `Content-Length` bodies are read and discarded), and
/// no body over [`MAX_BODY`].
fn parse_request(buf: &[u8]) -> Parse {
    let head = match http::parse_head(buf, MAX_HEAD) {
        ParsedHead::Incomplete => return Parse::Partial,
        ParsedHead::Bad(bad) => return Parse::Bad(bad.reason()),
        ParsedHead::Head(head) => head,
    };
    if head.transfer_encoding {
        // Chunked (or any other coding) request bodies are not supported by this demo.
        return Parse::Bad("Transfer-Encoding not supported");
    }
    let content_length = head.content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        return Parse::Bad("Content-Length too large");
    }
    Parse::Request(Request {
        head_len: head.len,
        content_length,
        keep_alive: head.keep_alive(),
        http10: head.version == Version::Http10,
        head_only: head.method == "HEAD",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_request_reads_headers_case_insensitively() {
        let input: &[u8] = b"\r\nHEAD /x HTTP/1.1\r\ncOnNeCtIoN: keep-alive, CLOSE\r\ncontent-LENGTH:  7 \r\n\r\nrest";
        let Parse::Request(req) = parse_request(input) else {
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
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Parse::Partial
        );
        assert_eq!(parse_request(b""), Parse::Partial);
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\n folded\r\n\r\n"),
            Parse::Bad(_)
        ));
    }
}
