//! PROXY protocol headers (HAProxy's spec, versions 1 and 2): what a backend connection
//! sends first when `proxy_protocol` is set, so the backend learns the client's address.

use crate::config::ProxyProtocol;
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};

/// The 12-byte signature that starts every version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The header for a client at `client` that connected to `local` (this load balancer's
/// address as the client saw it). IPv4 clients of a dual-stack listener (`::ffff:a.b.c.d`)
/// are written as IPv4. When `local` is unknown or of another family the header says so
/// (`PROXY UNKNOWN` in version 1, an unspecified address family in version 2), and the
/// backend uses the connection's own addresses.
pub fn header(version: ProxyProtocol, client: SocketAddr, local: Option<SocketAddr>) -> Bytes {
    let src = canonical(client);
    let dst = local.map(canonical);
    let pair = match dst {
        Some(dst) if src.is_ipv4() == dst.is_ipv4() => Some((src, dst)),
        _ => None,
    };
    match version {
        ProxyProtocol::V1 => Bytes::from(match pair {
            Some((s, d)) => format!(
                "PROXY {} {} {} {} {}\r\n",
                if s.is_ipv4() { "TCP4" } else { "TCP6" },
                s.ip(),
                d.ip(),
                s.port(),
                d.port()
            ),
            None => "PROXY UNKNOWN\r\n".to_string(),
        }),
        ProxyProtocol::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            out.push(0x21); // version 2, PROXY command
            match pair {
                Some((s, d)) => {
                    let mut addrs = Vec::with_capacity(36);
                    match (s.ip(), d.ip()) {
                        (IpAddr::V4(a), IpAddr::V4(b)) => {
                            out.push(0x11); // TCP over IPv4
                            addrs.extend_from_slice(&a.octets());
                            addrs.extend_from_slice(&b.octets());
                        }
                        (a, b) => {
                            out.push(0x21); // TCP over IPv6
                            addrs.extend_from_slice(&v6(a));
                            addrs.extend_from_slice(&v6(b));
                        }
                    }
                    addrs.extend_from_slice(&s.port().to_be_bytes());
                    addrs.extend_from_slice(&d.port().to_be_bytes());
                    out.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
                    out.extend_from_slice(&addrs);
                }
                None => out.extend_from_slice(&[0x00, 0x00, 0x00]),
            }
            Bytes::from(out)
        }
    }
}

/// The header a health probe sends: no client behind it (`PROXY UNKNOWN` in version 1, the
/// `LOCAL` command in version 2).
pub fn probe_header(version: ProxyProtocol) -> Vec<u8> {
    match version {
        ProxyProtocol::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        ProxyProtocol::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
            out
        }
    }
}

fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v) => match v.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(v) => v.octets(),
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn version_1_names_both_ends() {
        let h = header(
            ProxyProtocol::V1,
            sa("10.1.2.3:40000"),
            Some(sa("192.0.2.1:443")),
        );
        assert_eq!(&h[..], b"PROXY TCP4 10.1.2.3 192.0.2.1 40000 443\r\n");
        let h = header(
            ProxyProtocol::V1,
            sa("[2001:db8::1]:5"),
            Some(sa("[::1]:80")),
        );
        assert_eq!(&h[..], b"PROXY TCP6 2001:db8::1 ::1 5 80\r\n");
        let mapped = header(
            ProxyProtocol::V1,
            sa("[::ffff:10.0.0.9]:7"),
            Some(sa("[::ffff:10.0.0.1]:80")),
        );
        assert_eq!(&mapped[..], b"PROXY TCP4 10.0.0.9 10.0.0.1 7 80\r\n");
        assert_eq!(
            &header(ProxyProtocol::V1, sa("10.0.0.9:7"), None)[..],
            b"PROXY UNKNOWN\r\n"
        );
        // The spec's longest line is 107 bytes.
        let longest = header(
            ProxyProtocol::V1,
            sa("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
            Some(sa("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")),
        );
        assert_eq!(longest.len(), 104);
    }

    #[test]
    fn version_2_is_binary_with_its_length() {
        let h = header(
            ProxyProtocol::V2,
            sa("10.1.2.3:40000"),
            Some(sa("192.0.2.1:443")),
        );
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0, 12, 10, 1, 2, 3, 192, 0, 2, 1]);
        want.extend_from_slice(&40000u16.to_be_bytes());
        want.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(&h[..], &want[..]);
        let h = header(
            ProxyProtocol::V2,
            sa("[2001:db8::1]:5"),
            Some(sa("[::1]:80")),
        );
        assert_eq!(
            (h[12], h[13], u16::from_be_bytes([h[14], h[15]])),
            (0x21, 0x21, 36)
        );
        assert_eq!(h.len(), 16 + 36);
        let mut addrs = "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
            .to_vec();
        addrs.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        addrs.extend_from_slice(&[0, 5, 0, 80]);
        assert_eq!(&h[16..], &addrs[..], "source, destination, ports");
        let unknown = header(ProxyProtocol::V2, sa("10.0.0.9:7"), None);
        assert_eq!(&unknown[12..], &[0x21, 0x00, 0, 0]);
        assert_eq!(&probe_header(ProxyProtocol::V2)[12..], &[0x20, 0x00, 0, 0]);
        assert_eq!(probe_header(ProxyProtocol::V1), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn ends_of_different_families_are_unknown() {
        // An IPv4 client (not mapped) of an IPv6 local address, and the other way round: a
        // version 1 line may not mix TCP4 and TCP6 addresses, so the header names neither.
        for (client, local) in [
            ("10.0.0.9:7", "[2001:db8::1]:80"),
            ("[2001:db8::9]:7", "192.0.2.1:80"),
        ] {
            let v1 = header(ProxyProtocol::V1, sa(client), Some(sa(local)));
            assert_eq!(&v1[..], b"PROXY UNKNOWN\r\n", "{client} to {local}");
            let v2 = header(ProxyProtocol::V2, sa(client), Some(sa(local)));
            assert_eq!(&v2[12..], &[0x21, 0x00, 0, 0], "{client} to {local}");
        }
    }
}
