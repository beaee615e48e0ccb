//! Checks on the header block of an incoming message: its size, and the number of
//! `Received:` trace headers, which grows by one per hop and so detects mail loops
//! (RFC 5321 §6.3: a server SHOULD refuse a message with too many of them).
//!
//! Reads only the header block (up to the first empty line); pure.

/// The header block's problems.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderProblem {
    /// The header block is larger than allowed.
    TooLarge,
    /// More `Received:` headers than allowed: a mail loop.
    TooManyHops,
}

/// Checks `message` against the limits.
pub fn check(message: &[u8], max_header_size: usize, max_hops: usize) -> Result<(), HeaderProblem> {
    let end = find_header_end(message);
    if end > max_header_size {
        return Err(HeaderProblem::TooLarge);
    }
    let mut hops = 0;
    let mut at_line_start = true;
    for (i, &b) in message[..end].iter().enumerate() {
        if at_line_start && (b == b'R' || b == b'r') && is_received(&message[i..end]) {
            hops += 1;
            if hops > max_hops {
                return Err(HeaderProblem::TooManyHops);
            }
        }
        at_line_start = b == b'\n';
    }
    Ok(())
}

/// The `Message-ID:` field's value of the header block (unfolded, trimmed, at most 998
/// octets), for the log line of an accepted message.
pub fn message_id(message: &[u8]) -> Option<String> {
    let block = &message[..find_header_end(message)];
    let mut lines = block.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if line.len() < 11 || !line[..11].eq_ignore_ascii_case(b"message-id:") {
            continue;
        }
        let mut value = line[11..].to_vec();
        while let Some(next) = lines.next_if(|l| l.starts_with(b" ") || l.starts_with(b"\t")) {
            value.extend_from_slice(next);
        }
        value.truncate(998);
        let text = String::from_utf8_lossy(&value);
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
        return (!text.is_empty()).then(|| text.to_string());
    }
    None
}

fn is_received(line: &[u8]) -> bool {
    line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:")
}

/// Length of the header block: up to and including the CRLF (or LF) before the first empty
/// line, or the whole message when there is none.
pub fn find_header_end(message: &[u8]) -> usize {
    if message.starts_with(b"\r\n") || message.starts_with(b"\n") {
        return 0;
    }
    let mut i = 0;
    while let Some(pos) = message[i..].iter().position(|&b| b == b'\n') {
        let next = i + pos + 1;
        if message[next..].starts_with(b"\r\n") || message[next..].starts_with(b"\n") {
            return next;
        }
        i = next;
    }
    message.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_received_headers_only_in_the_header_block() {
        let mut m = Vec::new();
        for _ in 0..3 {
            m.extend_from_slice(b"Received: from x by y; date\r\n\tcontinued\r\n");
        }
        m.extend_from_slice(
            b"Subject: hi\r\nX-Received: not counted\r\n\r\nReceived: in the body\r\n",
        );
        assert_eq!(check(&m, 10_000, 3), Ok(()));
        assert_eq!(check(&m, 10_000, 2), Err(HeaderProblem::TooManyHops));
        assert_eq!(check(&m, 50, 3), Err(HeaderProblem::TooLarge));
    }

    #[test]
    fn finds_the_message_id_of_the_header_block() {
        let m = b"Subject: x\r\nmessage-id:\r\n <a.b@c>\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(message_id(m).as_deref(), Some("<a.b@c>"));
        assert_eq!(message_id(b"Subject: x\r\n\r\nMessage-ID: <b@x>\r\n"), None);
        assert_eq!(message_id(b"Message-ID:   \r\n\r\n"), None);
    }

    #[test]
    fn no_body_and_empty_messages() {
        assert_eq!(check(b"", 10, 1), Ok(()));
        assert_eq!(check(b"\r\nbody", 10, 1), Ok(()));
        assert_eq!(
            check(b"received: a\r\nRECEIVED: b", 100, 1),
            Err(HeaderProblem::TooManyHops)
        );
    }
}
