use super::*;
use proptest::prelude::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedProtocolVersion};
use std::sync::Arc;

/// The first flight of a real TLS client (rustls): its ClientHello records. (The flow
/// tests use it too.)
pub(crate) fn client_hello(
    name: Option<&str>,
    versions: &[&'static SupportedProtocolVersion],
) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.enable_sni = name.is_some();
    let server = ServerName::try_from(name.unwrap_or("no-sni.example").to_string()).unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), server).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

pub(crate) const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
pub(crate) const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The handshake message of `flight` sent again in records of `size` bytes each.
pub(crate) fn rerecord(flight: &[u8], size: usize) -> Vec<u8> {
    let mut message = Vec::new();
    let mut pos = 0;
    while pos + 5 <= flight.len() {
        let len = usize::from(u16::from_be_bytes([flight[pos + 3], flight[pos + 4]]));
        message.extend_from_slice(&flight[pos + 5..pos + 5 + len]);
        pos += 5 + len;
    }
    let mut out = Vec::new();
    for chunk in message.chunks(size) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[test]
fn real_client_hellos_of_tls_1_2_and_1_3_name_their_server() {
    for versions in [TLS13, TLS12, BOTH] {
        let bytes = client_hello(Some("API.Example.com"), versions);
        assert_eq!(
            read_client_hello(&bytes),
            ClientHello::ServerName("api.example.com".into()),
            "{versions:?}"
        );
        let bytes = client_hello(None, versions);
        assert_eq!(read_client_hello(&bytes), ClientHello::NoServerName);
    }
}

#[test]
fn a_client_hello_split_at_every_byte_waits_for_the_rest() {
    for versions in [TLS13, TLS12] {
        for name in [Some("a.internal.example.com"), None] {
            let bytes = client_hello(name, versions);
            for cut in 0..bytes.len() {
                assert_eq!(
                    read_client_hello(&bytes[..cut]),
                    ClientHello::Incomplete,
                    "cut at {cut} of {}",
                    bytes.len()
                );
            }
            let whole = read_client_hello(&bytes);
            assert_eq!(
                whole,
                name.map_or(ClientHello::NoServerName, |n| ClientHello::ServerName(
                    n.into()
                ))
            );
            // Bytes after the ClientHello (the client's next flight) change nothing.
            let mut more = bytes.clone();
            more.extend_from_slice(b"\x17\x03\x03\x00\x05hello");
            assert_eq!(read_client_hello(&more), whole);
        }
    }
}

#[test]
fn a_client_hello_across_many_records_is_reassembled() {
    let flight = client_hello(Some("www.example.org"), BOTH);
    for size in [1, 2, 3, 4, 5, 7, 64, 100, 511, 4096] {
        let bytes = rerecord(&flight, size);
        assert_eq!(
            read_client_hello(&bytes),
            ClientHello::ServerName("www.example.org".into()),
            "records of {size} bytes"
        );
        for cut in (0..bytes.len()).step_by(13) {
            assert_eq!(read_client_hello(&bytes[..cut]), ClientHello::Incomplete);
        }
    }
}

#[test]
fn what_is_not_a_client_hello_has_no_server_name() {
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x16\x02\x00\x00\x05hello",            // not version 3
        b"\x17\x03\x03\x00\x05hello",            // application data
        b"\x16\x03\x01\x00\x00",                 // an empty record
        b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", // a ServerHello
        b"\x15",                                 // an alert's first byte
    ] {
        assert_eq!(
            read_client_hello(garbage),
            ClientHello::NoServerName,
            "{garbage:?}"
        );
    }
    // A ClientHello that claims more than 16 KiB.
    let mut big = vec![22, 3, 1, 0x40, 0x00, 1, 0x00, 0x50, 0x00];
    big.resize(5 + 0x4000, 0);
    assert_eq!(read_client_hello(&big), ClientHello::NoServerName);
    // 16 KiB of records that never complete the message.
    let mut endless = Vec::new();
    endless.extend_from_slice(&[22, 3, 1, 0, 4, 1, 0x00, 0x3f, 0xff]);
    while endless.len() < MAX_CLIENT_HELLO {
        endless.extend_from_slice(&[22, 3, 1, 0, 1, 0]);
    }
    assert_eq!(read_client_hello(&endless), ClientHello::NoServerName);
    // A server name that is not a host name.
    let flight = client_hello(Some("ok.example"), TLS13);
    let bad = String::from_utf8_lossy(&flight).replace("ok.example", "ok exampl");
    let _ = read_client_hello(bad.as_bytes()); // must not panic, whatever it says
}

#[test]
fn routes_take_an_exact_name_then_the_longest_suffix() {
    let routes = SniRoutes::new([
        ("api.example.com".to_string(), 1),
        ("*.example.com".to_string(), 2),
        ("*.internal.example.com".to_string(), 3),
        ("API2.Example.com".to_string(), 4),
    ]);
    assert_eq!(routes.route("api.example.com"), Some(1));
    assert_eq!(routes.route("api2.example.com"), Some(4));
    assert_eq!(routes.route("www.example.com"), Some(2));
    assert_eq!(routes.route("a.b.example.com"), Some(2));
    assert_eq!(routes.route("db.internal.example.com"), Some(3));
    assert_eq!(
        routes.route("example.com"),
        None,
        "*.x does not match x itself"
    );
    assert_eq!(routes.route("notexample.com"), None);
    assert_eq!(routes.route("other.org"), None);
    assert!(SniRoutes::<u8>::new([]).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any bytes: no panic, and more bytes never take back a decision.
    #[test]
    fn any_bytes_are_judged_without_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let whole = read_client_hello(&data);
        for cut in 0..data.len() {
            let part = read_client_hello(&data[..cut]);
            if part != ClientHello::Incomplete {
                prop_assert_eq!(&part, &whole, "decided at {} then changed", cut);
            }
        }
    }

    /// A real ClientHello cut into records anywhere still names its server.
    #[test]
    fn real_client_hellos_in_any_records(size in 1usize..700, name in "[a-z]{1,10}(\\.[a-z]{1,10}){1,3}") {
        let flight = client_hello(Some(&name), BOTH);
        prop_assert_eq!(read_client_hello(&rerecord(&flight, size)), ClientHello::ServerName(name));
    }
}
