//! The trace headers Mailroom prepends: `Received:` (RFC 5321 §4.4) at acceptance and
//! `Return-Path:` at final delivery, with RFC 5322 §3.3 dates. Pure string building; the
//! caller supplies the clock.

use super::address::escape;

/// What a `Received:` header records about one accepted message.
#[derive(Clone, Debug)]
pub struct Trace<'a> {
    /// The name the client gave in EHLO/HELO (escaped here).
    pub helo: &'a str,
    /// The client's IP address.
    pub client_ip: std::net::IpAddr,
    /// Our host name.
    pub hostname: &'a str,
    /// `ESMTP`, `SMTP`, `UTF8SMTP`, ... (RFC 3848 / RFC 6531 with-protocol types).
    pub protocol: &'a str,
    /// The queue id.
    pub id: &'a str,
    /// The single recipient, when there is exactly one.
    pub for_rcpt: Option<&'a str>,
    /// Seconds since the Unix epoch.
    pub unix_secs: i64,
    /// TLS version and cipher, when the session used TLS.
    pub tls: Option<&'a super::types::TlsInfo>,
    /// The client authenticated (the account name is not recorded, nor ever the password).
    pub authenticated: bool,
}

/// The `Received:` header, folded, ending in CRLF.
pub fn received_header(t: &Trace<'_>) -> String {
    let ip = match t.client_ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("IPv6:{v6}"),
    };
    let mut h = format!("Received: from {} ([{}])\r\n", escape(t.helo), ip);
    if let Some(tls) = t.tls {
        h.push_str(&format!(
            "\t(using {} with cipher {})\r\n",
            tls.version, tls.cipher
        ));
    }
    if t.authenticated {
        h.push_str("\t(authenticated sender)\r\n");
    }
    h.push_str(&format!(
        "\tby {} (Mailroom) with {} id {}",
        t.hostname, t.protocol, t.id
    ));
    if let Some(rcpt) = t.for_rcpt {
        h.push_str(&format!("\r\n\tfor <{}>", rcpt));
    }
    h.push_str(&format!("; {}\r\n", rfc5322_date(t.unix_secs)));
    h
}

/// `Return-Path: <sender>` (empty for the null sender), ending in CRLF.
pub fn return_path_header(sender: &str) -> String {
    format!("Return-Path: <{}>\r\n", super::address::quoted(sender))
}

/// An RFC 5322 date-time in UTC, e.g. `Fri, 27 Nov 2026 01:52:37 +0000`.
pub fn rfc5322_date(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_744_357),
            "Fri, 27 Nov 2026 01:52:37 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn received_escapes_helo() {
        let h = received_header(&Trace {
            helo: "evil\r\nX-Injected: yes",
            client_ip: "127.0.0.1".parse().unwrap(),
            hostname: "mx.example.test",
            protocol: "ESMTP",
            id: "ABC",
            for_rcpt: Some("a@example.test"),
            unix_secs: 0,
            tls: None,
            authenticated: false,
        });
        assert!(!h.contains("\r\nX-Injected"));
        assert!(h.starts_with("Received: from evil\\x0d\\x0aX-Injected:\\x20yes ([127.0.0.1])\r\n"));
        assert!(h.contains("id ABC\r\n\tfor <a@example.test>; Thu, 1 Jan 1970"));
        assert!(h.ends_with("\r\n"));
    }
}
