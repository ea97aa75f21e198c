//! Writes the seed corpus of the `client_hello` target, `corpus/client_hello/`: real
//! ClientHellos from rustls (TLS 1.3, TLS 1.2, both; with and without SNI), the same
//! message in records of 100 bytes and of 1 byte, a cut one, one followed by the client's
//! next record, and bytes that are not TLS. Each file is the target's input: two big-endian
//! `u16` split points, then the bytes.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example client_hellos`

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedProtocolVersion};
use std::path::Path;
use std::sync::Arc;

/// The first flight of a rustls client: its ClientHello records.
fn client_hello(name: Option<&str>, versions: &[&'static SupportedProtocolVersion]) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("the ring provider supports these versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.enable_sni = name.is_some();
    let server = ServerName::try_from(name.unwrap_or("no-sni.example").to_string())
        .expect("a valid server name");
    let mut conn = ClientConnection::new(Arc::new(config), server).expect("a client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("writing to a Vec");
    }
    out
}

/// The handshake message of `flight` sent again in records of `size` bytes each.
fn rerecord(flight: &[u8], size: usize) -> Vec<u8> {
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

fn main() {
    let tls13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let tls12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let both: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
    let sni13 = client_hello(Some("api.example.com"), tls13);
    let mut then_data = client_hello(Some("www.example.org"), both);
    then_data.extend_from_slice(b"\x17\x03\x03\x00\x05hello");
    let inputs: Vec<(&str, [u16; 2], Vec<u8>)> = vec![
        ("tls13-sni", [3, 100], sni13.clone()),
        (
            "tls12-sni",
            [5, 6],
            client_hello(Some("www.example.com"), tls12),
        ),
        (
            "tls13-tls12-sni",
            [0, 40],
            client_hello(Some("a.b.example.com"), both),
        ),
        (
            "tls13-sni-upper-case",
            [1, 2],
            client_hello(Some("API.Example.COM"), tls13),
        ),
        ("tls13-no-sni", [9, 200], client_hello(None, tls13)),
        ("tls12-no-sni", [200, 9], client_hello(None, tls12)),
        ("tls13-sni-records-100", [50, 150], rerecord(&sni13, 100)),
        ("tls13-sni-records-1", [4, 600], rerecord(&sni13, 1)),
        ("tls13-sni-cut", [10, 20], sni13[..sni13.len() / 2].to_vec()),
        ("tls13-sni-then-data", [u16::MAX, 1], then_data),
        (
            "http-request",
            [4, 8],
            b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n".to_vec(),
        ),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/client_hello");
    std::fs::create_dir_all(&dir).expect("the corpus directory");
    for (name, splits, bytes) in inputs {
        let mut data = Vec::new();
        for s in splits {
            data.extend_from_slice(&s.to_be_bytes());
        }
        data.extend_from_slice(&bytes);
        std::fs::write(dir.join(name), &data).expect("the corpus file");
        println!("{name}: {} bytes", data.len());
    }
}
