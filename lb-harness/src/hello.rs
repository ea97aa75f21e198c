//! TLS ClientHellos as a client's first bytes, and what a reader must make of them.
//!
//! The harness writes its ClientHellos itself, byte by byte from the TLS 1.3 record and
//! handshake layouts (RFC 8446 §4.1.2, §5.1; `server_name` from RFC 6066 §3), not with the
//! `tls-parser` crate the reader uses, so a reader that misreads a field disagrees with an
//! independent writer. What the reader must answer (the name in lower case without a
//! trailing dot, nothing for a name that is not a host name) is written here from the
//! documented rule too, as is the routing rule in [`crate::ListenerModel::route`].

use bytes::Bytes;

/// Server names the clients of a scenario send in their ClientHello, as written: in any
/// case, with a trailing dot, and one that is not a host name. They are chosen against the
/// `sni` patterns of [`crate::scenario::SNI_PATTERNS`]: exact names, names under one or two
/// wildcards (the longest suffix must win), a wildcard's own suffix (which it does not
/// match), and names nothing matches.
pub const SERVER_NAMES: [&str; 13] = [
    "api.example.com",
    "API.EXAMPLE.COM",
    "www.example.com",
    "db.internal.example.com",
    "example.com",
    "www.example.org",
    "api2.example.com",
    "other.net",
    "www.example.com.",
    "x.internal.example.com",
    "p1.example.net",
    "p2.example.net",
    "bad name.example.com",
];

/// Kinds of first bytes a client sends: one per name of [`SERVER_NAMES`], then these.
const NO_SNI: usize = SERVER_NAMES.len();
const STALLED: usize = SERVER_NAMES.len() + 1;
const GARBAGE: usize = SERVER_NAMES.len() + 2;
const PATTERN: usize = SERVER_NAMES.len() + 3;
/// How many kinds [`client_stream`] chooses among.
pub const STREAM_KINDS: usize = SERVER_NAMES.len() + 4;

/// Largest handshake bytes per record of a ClientHello split across records (a real
/// client sends one record, as a quarter of the connections do here; see
/// [`client_stream`]).
const RECORD_SIZES: [usize; 4] = [1, 5, 64, 200];
/// Sizes of the `padding` extension (517: the size a client pads its hello to, plus some).
const PADDINGS: [usize; 4] = [0, 0, 100, 517];

/// How a ClientHello is laid out: the same message can come in many forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelloShape {
    /// Most handshake bytes per TLS record.
    pub record: usize,
    /// `server_name` is the first extension (else it comes after three others).
    pub sni_first: bool,
    /// Bytes of the `padding` extension (none when 0).
    pub padding: usize,
}

impl Default for HelloShape {
    fn default() -> HelloShape {
        HelloShape {
            record: 16_384,
            sni_first: false,
            padding: 0,
        }
    }
}

/// A ClientHello naming `name` (none: without `server_name`), in TLS records.
pub fn client_hello(name: Option<&[u8]>, shape: HelloShape) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[3, 3]); // legacy_version: TLS 1.2
    body.extend((0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(11))); // random
    body.push(32); // legacy_session_id
    body.extend_from_slice(&[0xab; 32]);
    let suites: [u8; 10] = [0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b, 0xc0, 0x2f];
    body.extend_from_slice(&(suites.len() as u16).to_be_bytes());
    body.extend_from_slice(&suites);
    body.extend_from_slice(&[1, 0]); // legacy_compression_methods: null
    let mut extensions: Vec<(u16, Vec<u8>)> = vec![
        (10, vec![0, 4, 0, 29, 0, 23]), // supported_groups: x25519, secp256r1
        (13, vec![0, 4, 4, 3, 8, 4]),   // signature_algorithms
        (43, vec![4, 3, 4, 3, 3]),      // supported_versions: 1.3, 1.2
    ];
    if let Some(name) = name {
        // ServerNameList: one HostName entry.
        let mut sni = Vec::new();
        sni.extend_from_slice(&((3 + name.len()) as u16).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni.extend_from_slice(name);
        if shape.sni_first {
            extensions.insert(0, (0, sni));
        } else {
            extensions.push((0, sni));
        }
    }
    if shape.padding > 0 {
        extensions.push((21, vec![0; shape.padding]));
    }
    let mut ext = Vec::new();
    for (kind, data) in &extensions {
        ext.extend_from_slice(&kind.to_be_bytes());
        ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext.extend_from_slice(data);
    }
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut message = vec![1]; // client_hello
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    let mut out = Vec::new();
    for chunk in message.chunks(shape.record.clamp(1, 16_384)) {
        out.extend_from_slice(&[22, 3, 1]); // handshake, legacy record version TLS 1.0
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// The server name a reader must give for `raw` as sent: lower case, without one trailing
/// dot; none when it is not a host name (1 to 253 bytes of ASCII letters, digits, `-`, `_`
/// and dots).
pub fn expected_name(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    let host = !raw.is_empty()
        && raw.len() <= 253
        && raw
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    host.then(|| String::from_utf8_lossy(raw).to_ascii_lowercase())
}

/// What a client's first bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hello {
    /// A whole ClientHello: a reader must give `name` once it has all of it, and not
    /// before (then its message is complete and judged, whatever it holds).
    Whole {
        /// The server name a reader must give (none: no usable `server_name`).
        name: Option<String>,
    },
    /// The first bytes of a ClientHello naming a server, then nothing more until the flow is
    /// routed (by the `client_hello` timeout or the client's FIN): no server name.
    Stalled,
    /// Bytes that are not a ClientHello: no server name.
    Garbage,
}

/// A client's first bytes, then the harness's pattern bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientStream {
    /// The first bytes (empty: the client sends only pattern bytes, which are not TLS).
    pub prefix: Bytes,
    /// What they are.
    pub hello: Hello,
}

impl ClientStream {
    /// A client that sends only pattern bytes (lower-case letters: not a TLS record).
    pub fn plain() -> ClientStream {
        ClientStream {
            prefix: Bytes::new(),
            hello: Hello::Garbage,
        }
    }
}

/// The first bytes client `sel` sends on its `flow`-th connection: a ClientHello naming one
/// of [`SERVER_NAMES`] (in one record or many, with `server_name` first or last, padded or
/// not), one without `server_name`, one cut short (the client stalls), an HTTP request or a
/// ServerHello, or nothing but pattern bytes.
pub fn client_stream(sel: u8, flow: u64) -> ClientStream {
    let kind = usize::from(sel) % STREAM_KINDS;
    // The layout varies with the connection, so one client's hellos come in many forms.
    let v = (flow as usize).wrapping_mul(31) ^ usize::from(sel);
    let shape = HelloShape {
        record: if v % 4 == 0 {
            RECORD_SIZES[v / 4 % RECORD_SIZES.len()]
        } else {
            16_384
        },
        sni_first: v / 16 % 2 == 0,
        padding: PADDINGS[v / 32 % PADDINGS.len()],
    };
    let hello = |name: Option<&str>| Bytes::from(client_hello(name.map(str::as_bytes), shape));
    match kind {
        k if k < SERVER_NAMES.len() => ClientStream {
            prefix: hello(Some(SERVER_NAMES[k])),
            hello: Hello::Whole {
                name: expected_name(SERVER_NAMES[k].as_bytes()),
            },
        },
        NO_SNI => ClientStream {
            prefix: hello(None),
            hello: Hello::Whole { name: None },
        },
        STALLED => {
            let whole = hello(Some(SERVER_NAMES[v % SERVER_NAMES.len()]));
            let cut = 1 + v % (whole.len() - 1);
            ClientStream {
                prefix: whole.slice(..cut),
                hello: Hello::Stalled,
            }
        }
        GARBAGE => ClientStream {
            prefix: if v % 2 == 0 {
                Bytes::from_static(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
            } else {
                // A ServerHello's record: a handshake, but not a ClientHello.
                Bytes::from_static(&[22, 3, 3, 0, 4, 2, 0, 0, 0])
            },
            hello: Hello::Garbage,
        },
        PATTERN => ClientStream::plain(),
        _ => unreachable!("kind is below STREAM_KINDS"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_sans_io::sni::{read_client_hello, ClientHello};

    fn reads(bytes: &[u8]) -> Option<String> {
        match read_client_hello(bytes) {
            ClientHello::ServerName(n) => Some(n),
            ClientHello::NoServerName => None,
            ClientHello::Incomplete => panic!("incomplete: {bytes:?}"),
        }
    }

    #[test]
    fn the_reader_gives_the_names_the_harness_writes() {
        for (k, name) in SERVER_NAMES.iter().enumerate() {
            for record in [16_384, 1, 2, 5, 64] {
                for sni_first in [false, true] {
                    for padding in [0, 517] {
                        let shape = HelloShape {
                            record,
                            sni_first,
                            padding,
                        };
                        let bytes = client_hello(Some(name.as_bytes()), shape);
                        assert_eq!(
                            reads(&bytes),
                            expected_name(name.as_bytes()),
                            "{name} {shape:?}"
                        );
                        assert_eq!(
                            read_client_hello(&bytes[..bytes.len() - 1]),
                            ClientHello::Incomplete
                        );
                    }
                }
            }
            let stream = client_stream(k as u8, 0);
            assert!(
                matches!(stream.hello, Hello::Whole { name: ref n } if *n == expected_name(name.as_bytes()))
            );
        }
        assert_eq!(reads(&client_hello(None, HelloShape::default())), None);
        assert_eq!(
            expected_name(b"API.Example.COM."),
            Some("api.example.com".into())
        );
        assert_eq!(expected_name(b"bad name"), None);
        assert_eq!(expected_name(b"."), None);
    }

    #[test]
    fn every_stream_kind_reads_as_the_harness_says() {
        for sel in 0..=255u8 {
            for flow in 0..8 {
                let s = client_stream(sel, flow);
                match &s.hello {
                    Hello::Whole { name } => assert_eq!(&reads(&s.prefix), name),
                    Hello::Stalled => {
                        assert_eq!(read_client_hello(&s.prefix), ClientHello::Incomplete)
                    }
                    Hello::Garbage => {
                        let mut bytes = s.prefix.to_vec();
                        bytes.extend_from_slice(b"abcdefghijklmnopqrstuvwxyz");
                        assert_eq!(read_client_hello(&bytes), ClientHello::NoServerName);
                    }
                }
            }
        }
    }
}
