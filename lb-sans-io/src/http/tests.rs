use super::*;

const LIMIT: usize = 1024;

fn head(buf: &[u8]) -> Head<'_> {
    match parse_head(buf, LIMIT) {
        ParsedHead::Head(h) => h,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn bad(buf: &[u8]) -> BadHead {
    match parse_head(buf, LIMIT) {
        ParsedHead::Bad(b) => b,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

#[test]
fn a_head_is_incomplete_until_its_blank_line() {
    let full = b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\nbody";
    let len = full.len() - 4;
    for n in 0..len {
        assert_eq!(
            parse_head(&full[..n], LIMIT),
            ParsedHead::Incomplete,
            "{n} bytes"
        );
    }
    let h = head(full);
    assert_eq!(
        h,
        Head {
            method: "GET",
            target: "/a?b",
            version: Version::Http11,
            len,
            content_length: None,
            transfer_encoding: false,
            connection_close: false,
            connection_keep_alive: false,
        }
    );
    assert!(h.keep_alive());
}

#[test]
fn headers_are_read_case_insensitively() {
    let input: &[u8] =
        b"\r\nHEAD /x HTTP/1.1\r\ncOnNeCtIoN: keep-alive, CLOSE\r\ncontent-LENGTH:  7 \r\n\r\nrest";
    let h = head(input);
    assert_eq!(h.method, "HEAD");
    assert_eq!(h.len, input.len() - 4);
    assert_eq!(h.content_length, Some(7));
    assert!(h.connection_close && h.connection_keep_alive);
    assert!(!h.keep_alive());
    assert_eq!(h.version, Version::Http11);
}

#[test]
fn keep_alive_follows_the_version_and_connection() {
    assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive());
    assert!(head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
    assert!(head(b"GET / HTTP/1.1\r\n\r\n").keep_alive());
    assert!(!head(b"GET / HTTP/1.1\r\nConnection: upgrade,\tclose\r\n\r\n").keep_alive());
    assert!(head(b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n").keep_alive());
}

#[test]
fn bare_lf_line_endings_are_accepted_like_crlf() {
    let crlf = head(b"GET /x HTTP/1.0\r\nContent-Length: 3\r\n\r\n");
    for input in [
        &b"GET /x HTTP/1.0\nContent-Length: 3\n\n"[..],
        b"GET /x HTTP/1.0\r\nContent-Length: 3\n\r\n",
        b"GET /x HTTP/1.0\nContent-Length: 3\r\n\n",
    ] {
        let h = head(input);
        assert_eq!(h.len, input.len());
        assert_eq!(
            Head { len: crlf.len, ..h },
            crlf,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // A bare CR is not a line ending.
    assert!(matches!(
        bad(b"GET / HTTP/1.1\rHost: x\r\r"),
        BadHead::Malformed(_)
    ));
}

#[test]
fn empty_lines_before_the_request_line_are_skipped_and_counted() {
    for input in [
        &b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"[..],
        b"\n\nGET / HTTP/1.1\r\n\r\n",
        b"\r\n\nGET / HTTP/1.1\n\n",
    ] {
        let h = head(input);
        assert_eq!((h.method, h.target, h.len), ("GET", "/", input.len()));
    }
    assert_eq!(parse_head(b"\r\n\r\n\n", LIMIT), ParsedHead::Incomplete);
}

#[test]
fn the_head_limit_counts_every_byte_of_the_head() {
    let make = |len: usize| {
        let mut h = b"GET / HTTP/1.1\r\nX: ".to_vec();
        h.resize(len - 4, b'a');
        h.extend_from_slice(b"\r\n\r\n");
        h
    };
    let exact = make(LIMIT);
    assert_eq!(head(&exact).len, LIMIT);
    let mut followed = exact.clone();
    followed.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(head(&followed).len, LIMIT);
    let over = make(LIMIT + 1);
    assert_eq!(bad(&over), BadHead::TooLarge);
    // Known as soon as the limit is reached without a blank line, not before.
    assert_eq!(
        parse_head(&over[..LIMIT - 1], LIMIT),
        ParsedHead::Incomplete
    );
    assert_eq!(bad(&over[..LIMIT]), BadHead::TooLarge);
    // Leading empty lines count too.
    let mut padded = b"\r\n".to_vec();
    padded.extend_from_slice(&make(LIMIT - 2));
    assert_eq!(head(&padded).len, LIMIT);
    padded.splice(0..0, *b"\n");
    assert_eq!(bad(&padded), BadHead::TooLarge);
    // An error inside the limit is found whatever follows; one past it is not looked at.
    let mut junk = b"GET / HTTP/1.1\r\nX\x01: y\r\n".to_vec();
    junk.resize(LIMIT * 2, b'a');
    assert!(matches!(bad(&junk), BadHead::Malformed(_)));
    let mut late = make(LIMIT + 100);
    late[LIMIT + 10] = 0;
    assert_eq!(bad(&late), BadHead::TooLarge);
}

#[test]
fn too_many_headers_are_refused() {
    let mut h = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        h.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    let mut more = h.clone();
    h.extend_from_slice(b"\r\n");
    assert!(matches!(parse_head(&h, 64 * 1024), ParsedHead::Head(_)));
    more.extend_from_slice(b"X-last: y\r\n\r\n");
    assert_eq!(
        parse_head(&more, 64 * 1024),
        ParsedHead::Bad(BadHead::TooManyHeaders)
    );
}

#[test]
fn the_request_line_is_strict() {
    assert_eq!(bad(b"GET / HTTP/2.0\r\n\r\n"), BadHead::Version);
    assert_eq!(bad(b"GET / HTTP/2\r\n\r\n"), BadHead::Version);
    assert_eq!(bad(b"GET / HTTP/1.2\r\n\r\n"), BadHead::Version);
    assert_eq!(bad(b"GET / FOO/1.1\r\n\r\n"), BadHead::Version);
    for input in [
        &b"GET /\r\n\r\n"[..],
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 x\r\n\r\n",
        b"garbage\r\n\r\n",
        b"\x00\x01junk\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nName : v\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n",
    ] {
        assert!(
            matches!(bad(input), BadHead::Malformed(_)),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Methods are any token; targets any visible bytes that are UTF-8.
    let h = head("G3T http://x/é?q#f HTTP/1.1\r\n\r\n".as_bytes());
    assert_eq!((h.method, h.target), ("G3T", "http://x/é?q#f"));
}

#[test]
fn content_length_and_transfer_encoding_are_checked() {
    assert_eq!(
        head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n").content_length,
        Some(5)
    );
    assert_eq!(
        bad(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        BadHead::ConflictingContentLength
    );
    for value in ["12x", "", "-1", "+1", "1 2", "5, 5", "18446744073709551616"] {
        assert_eq!(
            bad(format!("POST / HTTP/1.1\r\nContent-Length: {value}\r\n\r\n").as_bytes()),
            BadHead::InvalidContentLength,
            "{value:?}"
        );
    }
    assert_eq!(
        head(b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n").content_length,
        Some(u64::MAX)
    );
    let te = head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(te.transfer_encoding);
    assert_eq!(te.content_length, None);
    assert_eq!(
        bad(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
        BadHead::TransferEncodingAndContentLength
    );
}

#[test]
fn a_verdict_does_not_depend_on_how_the_bytes_were_split() {
    let inputs: [&[u8]; 4] = [
        b"\nPOST /a HTTP/1.0\nContent-Length: 2\nConnection: keep-alive\n\nhi",
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: \x7f\r\n\r\n",
        b"PUT /x HTTP/1.1\r\nX: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    ];
    for input in inputs {
        let whole = parse_head(input, LIMIT);
        for n in 0..input.len() {
            let part = parse_head(&input[..n], LIMIT);
            assert!(
                part == ParsedHead::Incomplete || part == whole,
                "{n} bytes of {:?}: {part:?} vs {whole:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
