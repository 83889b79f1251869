//! The addresses a webhook may not reach: loopback, private, link-local
//! and the other special ranges, in IPv4, in IPv6, and IPv4 carried inside
//! IPv6 (mapped, and the NAT64, 6to4 and Teredo transition prefixes, which
//! a host's routes may deliver to the IPv4 address they embed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses a webhook must never reach unless explicitly allowed.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden(IpAddr::V4(v4));
            }
            // Transition prefixes reach the IPv4 address they embed.
            if embedded_v4(v6)
                .into_iter()
                .any(|v4| is_forbidden(IpAddr::V4(v4)))
            {
                return true;
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
        }
    }
}

/// The IPv4 addresses an IPv6 address of a transition prefix carries:
/// NAT64 (`64:ff9b::/96`, and the local-use `64:ff9b:1::/48`, RFC 8215,
/// in each form RFC 6052 allows inside it: /48, /56, /64 and /96, since
/// which one a translator uses is its operator's choice), 6to4
/// (`2002::/16`) and Teredo (`2001::/32`: its server, and its client,
/// stored inverted).
fn embedded_v4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let o = v6.octets();
    let s = v6.segments();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match (s[0], s[1], s[2]) {
        (0x0064, 0xff9b, 0) if s[3..6] == [0, 0, 0] => vec![last],
        (0x0064, 0xff9b, 1) => vec![
            Ipv4Addr::new(o[6], o[7], o[9], o[10]),
            Ipv4Addr::new(o[7], o[9], o[10], o[11]),
            Ipv4Addr::new(o[9], o[10], o[11], o[12]),
            last,
        ],
        (0x2002, ..) => vec![Ipv4Addr::new(o[2], o[3], o[4], o[5])],
        (0x2001, 0, _) => vec![
            Ipv4Addr::new(o[4], o[5], o[6], o[7]),
            Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15]),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_forbidden() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
            // IPv4 inside transition prefixes: NAT64, 6to4, Teredo.
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b::c0a8:101",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1:7f00:1::",
            "64:ff9b:1:7f:0:1::",
            "64:ff9b:1:0:a:1:200::",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
            "2002:a9fe:a9fe::1",
            "64:ff9b::6440:1",
            "64:ff9b::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001:0:a00:1::1",
        ] {
            assert!(is_forbidden(bad.parse().unwrap()), "{bad}");
        }
        for ok in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert!(!is_forbidden(ok.parse().unwrap()), "{ok}");
        }
    }
}
