//! This server's own addresses, for the relay's loop check (RFC 5321 §5.1: an MX that is us
//! must not be tried; with nothing better, the mail bounces `5.4.6`). A specific listening
//! address is itself; an unspecified one (`0.0.0.0`, `[::]`) stands for every address of the
//! machine's interfaces (`getifaddrs`) and loopback.
//!
//! It does not decide anything: `mta::relay` compares MX addresses against this set.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Our addresses for the SMTP listeners `listen` (sorted, without duplicates).
pub fn local_addresses(listen: &[SocketAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let (mut any_v4, mut any_v6) = (false, false);
    for addr in listen {
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => any_v4 = true,
            // On Linux `[::]` also accepts IPv4 unless bindv6only is set: count both.
            IpAddr::V6(ip) if ip.is_unspecified() => (any_v4, any_v6) = (true, true),
            ip => out.push(ip),
        }
    }
    if any_v4 || any_v6 {
        out.extend(
            interface_addresses()
                .into_iter()
                .filter(|ip| (ip.is_ipv4() && any_v4) || (ip.is_ipv6() && any_v6)),
        );
        // The unspecified address itself makes every loopback address count as us
        // (`mta::relay::mx::is_local`); 127.0.0.1 and ::1 are named too.
        if any_v4 {
            out.extend([Ipv4Addr::UNSPECIFIED, Ipv4Addr::LOCALHOST].map(IpAddr::V4));
        }
        if any_v6 {
            out.extend([Ipv6Addr::UNSPECIFIED, Ipv6Addr::LOCALHOST].map(IpAddr::V6));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Every IPv4 and IPv6 address configured on the machine's interfaces (empty, with a warning,
/// if they cannot be read).
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills head with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        tracing::warn!(
            "cannot list the interface addresses (getifaddrs: {}); MX loop detection knows \
             only loopback",
            std::io::Error::last_os_error()
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut p = head;
    while !p.is_null() {
        // SAFETY: p is a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*p };
        let sa = ifa.ifa_addr;
        if !sa.is_null() {
            // SAFETY: sa points to a sockaddr whose family says which struct it really is.
            match i32::from(unsafe { (*sa).sa_family }) {
                libc::AF_INET => {
                    // SAFETY: an AF_INET address is a sockaddr_in.
                    let sin = unsafe { &*(sa as *const libc::sockaddr_in) };
                    out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))));
                }
                libc::AF_INET6 => {
                    // SAFETY: an AF_INET6 address is a sockaddr_in6.
                    let sin6 = unsafe { &*(sa as *const libc::sockaddr_in6) };
                    out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: head came from getifaddrs and is freed once; no reference into it remains.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(listen: &[&str]) -> Vec<IpAddr> {
        let listen: Vec<SocketAddr> = listen.iter().map(|a| a.parse().unwrap()).collect();
        local_addresses(&listen)
    }

    /// The address this machine would send from (found without getifaddrs), if it has a route.
    fn source_address() -> Option<IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        s.connect("192.0.2.1:9").ok()?;
        Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback())
    }

    #[test]
    fn unspecified_listener_means_every_interface_and_loopback() {
        let got = addrs(&["0.0.0.0:25"]);
        for ip in ["127.0.0.1", "0.0.0.0"] {
            assert!(got.contains(&ip.parse().unwrap()), "{ip} missing: {got:?}");
        }
        for ip in interface_addresses().into_iter().filter(IpAddr::is_ipv4) {
            assert!(got.contains(&ip), "{ip} missing: {got:?}");
        }
        if let Some(ip) = source_address() {
            assert!(got.contains(&ip), "{ip} missing: {got:?}");
        }
        assert!(got.iter().all(IpAddr::is_ipv4), "{got:?}");
        let v6 = addrs(&["[::]:25"]);
        assert!(v6.contains(&"::1".parse().unwrap()) && v6.contains(&"127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn specific_listeners_are_themselves() {
        assert_eq!(
            addrs(&["127.0.0.5:25", "127.0.0.5:2525", "[2001:db8::1]:25"]),
            vec![
                "127.0.0.5".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
    }
}
