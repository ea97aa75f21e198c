use super::*;
use crate::net::TokioNet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nconnection: Close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n",
        )
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

/// The position of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What a server made of a connection's bytes, once the client stopped sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// A request was answered (`200`).
    Served,
    /// The bytes were refused (the demo's `400`; any admin error status).
    Refused,
    /// Still waiting for the rest of a head: no answer.
    Waiting,
}

/// The admin endpoint's verdict on `bytes` (the parser its driver calls on every read).
fn admin_verdict(bytes: &[u8]) -> Verdict {
    match lb_sans_io::admin::parse_request(bytes) {
        lb_sans_io::admin::Parsed::Incomplete => Verdict::Waiting,
        lb_sans_io::admin::Parsed::Request(_) => Verdict::Served,
        lb_sans_io::admin::Parsed::Bad(_) => Verdict::Refused,
    }
}

/// The demo HTTP server's verdict on `bytes`, sent on one connection followed by a FIN: its
/// first response's status, or no response at all.
async fn demo_verdict(bytes: &[u8]) -> Verdict {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let client_side = async {
        client.write_all(bytes).await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        got
    };
    let ((), got) = bounded(async { tokio::join!(http_conn(server, "same"), client_side) }).await;
    let shown = || String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned();
    if got.is_empty() {
        return Verdict::Waiting;
    }
    match got.get(..12) {
        Some(b"HTTP/1.1 200") => Verdict::Served,
        Some(b"HTTP/1.1 400") => Verdict::Refused,
        _ => panic!("{:?} got {:?}", shown(), String::from_utf8_lossy(&got)),
    }
}

/// A `GET` head of exactly `len` bytes (padded in a header), with CRLF or bare LF lines.
fn head_of_len(len: usize, eol: &str) -> Vec<u8> {
    let mut h = format!("GET /status HTTP/1.1{eol}X-Pad: ").into_bytes();
    h.resize(len - 2 * eol.len(), b'p');
    h.extend_from_slice(format!("{eol}{eol}").as_bytes());
    assert_eq!(h.len(), len);
    h
}

#[tokio::test]
async fn the_admin_endpoint_and_the_demo_agree_on_request_heads() {
    use Verdict::*;
    let too_many_headers = {
        let mut h = b"GET /status HTTP/1.1\r\n".to_vec();
        for _ in 0..=lb_sans_io::http::MAX_HEADERS {
            h.extend_from_slice(b"X: y\r\n");
        }
        h.extend_from_slice(b"\r\n");
        h
    };
    let cases: Vec<(Vec<u8>, Verdict)> = vec![
        (b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Served),
        // Bare LF line endings, alone or mixed with CRLF.
        (b"GET /status HTTP/1.1\nHost: x\n\n".to_vec(), Served),
        (b"GET /status HTTP/1.0\n\n".to_vec(), Served),
        (b"GET /status HTTP/1.1\r\nHost: x\n\r\n".to_vec(), Served),
        // Empty lines before the request line.
        (b"\r\n\r\nGET /status HTTP/1.1\r\n\r\n".to_vec(), Served),
        (b"\n\r\nGET /status HTTP/1.1\n\n".to_vec(), Served),
        // A bare CR is no line ending.
        (b"GET /status HTTP/1.1\rHost: x\r\r".to_vec(), Refused),
        // Not finished yet.
        (b"GET /status HTTP/1.1\r\nHost: x\r\n".to_vec(), Waiting),
        (b"GET /status HTTP/1.1\nHost: x\n".to_vec(), Waiting),
        (b"\r\n\n".to_vec(), Waiting),
        (b"GET /sta".to_vec(), Waiting),
        // Content-Length must be one number.
        (
            b"GET /status HTTP/1.1\r\nContent-Length: 0\r\ncontent-length: 0\r\n\r\n".to_vec(),
            Served,
        ),
        (
            b"POST /status HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
            Refused,
        ),
        (
            b"POST /status HTTP/1.1\r\nContent-Length: 12x\r\n\r\n".to_vec(),
            Refused,
        ),
        (
            b"POST /status HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                .to_vec(),
            Refused,
        ),
        // Syntax errors.
        (b"GET /status HTTP/2.0\r\n\r\n".to_vec(), Refused),
        (b"GET /status HTTP/1.2\r\n\r\n".to_vec(), Refused),
        (b"GET  /status HTTP/1.1\r\n\r\n".to_vec(), Refused),
        (b"GET /status\r\n\r\n".to_vec(), Refused),
        (
            b"GET /status HTTP/1.1\r\nno colon\r\n\r\n".to_vec(),
            Refused,
        ),
        (
            b"GET /status HTTP/1.1\r\nA: b\r\n folded\r\n\r\n".to_vec(),
            Refused,
        ),
        (b"GET /status HTTP/1.1\r\nA: \x01\r\n\r\n".to_vec(), Refused),
        (b"\x16\x03\x01\x00\xa5\x01\r\n\r\n".to_vec(), Refused),
        (too_many_headers, Refused),
    ];
    for (bytes, expected) in cases {
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        assert_eq!(admin_verdict(&bytes), expected, "admin: {shown:?}");
        assert_eq!(demo_verdict(&bytes).await, expected, "demo: {shown:?}");
    }
    // Each has its own head limit, counted the same way: a head of exactly the limit is
    // served, one byte more is refused, and so is the limit's worth of bytes without a
    // blank line.
    let admin_limit = lb_sans_io::admin::MAX_HEAD;
    for eol in ["\r\n", "\n"] {
        assert_eq!(admin_verdict(&head_of_len(admin_limit, eol)), Served);
        assert_eq!(admin_verdict(&head_of_len(admin_limit + 1, eol)), Refused);
        assert_eq!(demo_verdict(&head_of_len(MAX_HEAD, eol)).await, Served);
        assert_eq!(demo_verdict(&head_of_len(MAX_HEAD + 1, eol)).await, Refused);
    }
    let endless = head_of_len(MAX_HEAD + 100, "\r\n");
    assert_eq!(admin_verdict(&endless[..admin_limit - 1]), Waiting);
    assert_eq!(admin_verdict(&endless[..admin_limit]), Refused);
    assert_eq!(demo_verdict(&endless[..MAX_HEAD - 1]).await, Waiting);
    assert_eq!(demo_verdict(&endless[..MAX_HEAD]).await, Refused);
    // Both read bodies by Content-Length only, and refuse Transfer-Encoding.
    let chunked = b"POST /status HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(admin_verdict(chunked), Refused);
    assert_eq!(demo_verdict(chunked).await, Refused);
}

#[tokio::test]
async fn http_bare_lf_and_leading_empty_lines_are_served_with_keep_alive() {
    bounded(async {
        let addr = start(DemoMode::Http, "lf").await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        // Pipelined: bare LF heads, one with a body, empty lines between requests.
        s.write_all(b"GET /a HTTP/1.1\nHost: x\n\nPOST /b HTTP/1.1\nContent-Length: 3\n\nabc\r\n\nHEAD /c HTTP/1.1\n\n")
            .await
            .unwrap();
        assert_hello(&read_response(&mut s, &mut buf, false).await, "lf");
        assert_hello(&read_response(&mut s, &mut buf, false).await, "lf");
        let head = read_response(&mut s, &mut buf, true).await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("Connection"), None);
        // Still open; a bare-LF HTTP/1.0 request closes it.
        s.write_all(b"GET / HTTP/1.0\n\n").await.unwrap();
        let resp = read_response(&mut s, &mut buf, false).await;
        assert_hello(&resp, "lf");
        assert_eq!(resp.header("Connection"), Some("close"));
        assert_eq!(read_to_eof(&mut s, &mut buf).await, b"");
    })
    .await;
}
