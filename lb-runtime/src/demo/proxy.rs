//! PROXY protocol headers as a backend that expects them reads them: with
//! `--proxy-protocol`, the demo backend reads one header (version 1 or 2) from the front of
//! every connection before serving it, as nginx's `listen ... proxy_protocol` does. Parsing
//! is the `ppp` crate's, an implementation independent of the load balancer's own writer,
//! so the simulation also uses it to check what the load balancer sends.

use ppp::v1;
use ppp::v2;
use ppp::{HeaderResult, PartialResult};
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest version 1 header (the spec's bound).
const V1_MAX: usize = 107;
/// Fixed part of a version 2 header: signature, version and command, family, length.
const V2_FIXED: usize = 16;
/// Shortest possible header: `PROXY UNKNOWN\r\n`.
const SHORTEST: usize = 15;

/// What a PROXY header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A proxied client: its address, and the address it connected to.
    Client {
        /// The client.
        source: SocketAddr,
        /// The address the client connected to (the proxy's).
        destination: SocketAddr,
    },
    /// No client behind the connection: `PROXY UNKNOWN`, or version 2's `LOCAL` command
    /// (health checks), or an address family without IP addresses.
    Local,
}

/// What the front of a connection holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not enough bytes yet.
    Incomplete,
    /// A header of this many bytes, saying this.
    Header(usize, Origin),
    /// Not a PROXY header.
    Invalid,
}

/// Parses the PROXY header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return Parsed::Incomplete;
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            let origin = match h.addresses {
                v1::Addresses::Tcp4(a) => Origin::Client {
                    source: (a.source_address, a.source_port).into(),
                    destination: (a.destination_address, a.destination_port).into(),
                },
                v1::Addresses::Tcp6(a) => Origin::Client {
                    source: (a.source_address, a.source_port).into(),
                    destination: (a.destination_address, a.destination_port).into(),
                },
                v1::Addresses::Unknown => Origin::Local,
            };
            Parsed::Header(h.header.len(), origin)
        }
        HeaderResult::V2(Ok(h)) => {
            let origin = match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Origin::Client {
                    source: (a.source_address, a.source_port).into(),
                    destination: (a.destination_address, a.destination_port).into(),
                },
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Origin::Client {
                    source: (a.source_address, a.source_port).into(),
                    destination: (a.destination_address, a.destination_port).into(),
                },
                _ => Origin::Local,
            };
            Parsed::Header(h.header.len(), origin)
        }
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Parsed::Invalid,
    }
}

/// Reads exactly one PROXY header from `stream` (never a byte of what follows it).
/// `InvalidData` when the connection does not start with one.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Origin> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "no PROXY protocol header");
    let mut buf = vec![0u8; SHORTEST];
    stream.read_exact(&mut buf).await?;
    if buf.starts_with(&lb_sans_io::proxy_header::V2_SIGNATURE) {
        let mut rest = [0u8; V2_FIXED - SHORTEST];
        stream.read_exact(&mut rest).await?;
        buf.extend_from_slice(&rest);
        let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
        let start = buf.len();
        buf.resize(start + len, 0);
        stream.read_exact(&mut buf[start..]).await?;
    } else if buf.starts_with(b"PROXY ") {
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX {
                return Err(invalid());
            }
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await?;
            buf.push(byte[0]);
        }
    } else {
        return Err(invalid());
    }
    match parse(&buf) {
        Parsed::Header(len, origin) if len == buf.len() => Ok(origin),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_sans_io::config::ProxyProtocol;
    use lb_sans_io::proxy_header::{header, probe_header};

    /// The load balancer's writer and this reader (ppp's) agree on every kind of header.
    #[test]
    fn reads_what_the_load_balancer_writes() {
        let client: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let local: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let client6: SocketAddr = "[2001:db8::7]:40001".parse().unwrap();
        let local6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        for version in [ProxyProtocol::V1, ProxyProtocol::V2] {
            for (c, l) in [(client, local), (client6, local6)] {
                let h = header(version, c, Some(l));
                let mut bytes = h.to_vec();
                bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
                let want = Origin::Client {
                    source: c,
                    destination: l,
                };
                assert_eq!(parse(&bytes), Parsed::Header(h.len(), want), "{version:?}");
                assert_eq!(parse(&h[..h.len() - 1]), Parsed::Incomplete);
                let mut stream: &[u8] = &bytes;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                assert_eq!(rt.block_on(read_header(&mut stream)).unwrap(), want);
                assert_eq!(stream, b"GET / HTTP/1.1\r\n\r\n", "read past the header");
            }
            let p = probe_header(version);
            assert_eq!(parse(&p), Parsed::Header(p.len(), Origin::Local));
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Parsed::Invalid);
    }
}
