//! POP3 command-line parser (RFC 1939 §3, RFC 2449, RFC 5034).
//!
//! What it does: turns one client line (without its CRLF) into a [`Command`], with
//! case-insensitive keywords, a bounded line length, and strictly numeric arguments where the
//! RFC requires numbers (digits only: no sign, no whitespace, no overflow).
//!
//! What it does not do: decide whether a command is allowed in the current state (see
//! `session`), or read from the network.

use std::fmt;

/// Maximum length of a command line including its CRLF (RFC 2449 §4).
pub const MAX_COMMAND_LINE: usize = 255;

/// One parsed POP3 command. Message numbers are 1-based, as on the wire.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    // --- AUTHORIZATION state (RFC 1939 §4, §7; RFC 5034) ---
    /// `USER name` (RFC 1939 §7).
    User(String),
    /// `PASS string`; the argument is the rest of the line, spaces included (RFC 1939 §7).
    Pass(String),
    /// `APOP name digest` (RFC 1939 §7); always refused.
    Apop,
    /// `AUTH [mechanism [initial-response]]` (RFC 5034 §4).
    Auth {
        /// The SASL mechanism name, upper-cased; `None` asks for the list of mechanisms.
        mechanism: Option<String>,
        /// The base64 initial response; `=` stands for an empty one.
        initial: Option<String>,
    },
    /// `STLS` (RFC 2595 §4).
    Stls,
    // --- any state ---
    /// `CAPA` (RFC 2449 §5).
    Capa,
    /// `QUIT` (RFC 1939 §4, §6).
    Quit,
    // --- TRANSACTION state (RFC 1939 §5, §7) ---
    /// `STAT`.
    Stat,
    /// `LIST [msg]`.
    List(Option<usize>),
    /// `RETR msg`.
    Retr(usize),
    /// `DELE msg`.
    Dele(usize),
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `TOP msg n`.
    Top {
        /// Message number.
        msg: usize,
        /// Number of body lines to send after the header.
        lines: u64,
    },
    /// `UIDL [msg]`.
    Uidl(Option<usize>),
}

// Keep passwords out of logs.
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::User(u) => write!(f, "User({u:?})"),
            Command::Pass(_) => f.write_str("Pass(<redacted>)"),
            Command::Apop => f.write_str("Apop"),
            Command::Auth { mechanism, initial } => write!(
                f,
                "Auth({mechanism:?}, {})",
                if initial.is_some() { "<initial>" } else { "-" }
            ),
            Command::Stls => f.write_str("Stls"),
            Command::Capa => f.write_str("Capa"),
            Command::Quit => f.write_str("Quit"),
            Command::Stat => f.write_str("Stat"),
            Command::List(n) => write!(f, "List({n:?})"),
            Command::Retr(n) => write!(f, "Retr({n})"),
            Command::Dele(n) => write!(f, "Dele({n})"),
            Command::Noop => f.write_str("Noop"),
            Command::Rset => f.write_str("Rset"),
            Command::Top { msg, lines } => write!(f, "Top({msg}, {lines})"),
            Command::Uidl(n) => write!(f, "Uidl({n:?})"),
        }
    }
}

/// Why a line is not a valid command. The `Display` text is suitable after `-ERR `.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The line exceeds [`MAX_COMMAND_LINE`] octets including CRLF (RFC 2449 §4).
    TooLong,
    /// The line is empty or not UTF-8, or the keyword is unknown.
    Unknown,
    /// A required argument is missing, or there are too many.
    WrongArguments,
    /// A numeric argument is not a plain decimal number that fits.
    NotANumber,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::TooLong => "Command line too long",
            ParseError::Unknown => "Unknown command",
            ParseError::WrongArguments => "Wrong number of arguments",
            ParseError::NotANumber => "Invalid number",
        })
    }
}

impl std::error::Error for ParseError {}

/// Parses a decimal argument: ASCII digits only, no sign, no overflow.
pub fn parse_number(s: &str) -> Result<u64, ParseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::NotANumber);
    }
    s.parse::<u64>().map_err(|_| ParseError::NotANumber)
}

fn parse_msg(s: &str) -> Result<usize, ParseError> {
    usize::try_from(parse_number(s)?).map_err(|_| ParseError::NotANumber)
}

/// Parses one command line given without its line terminator.
///
/// Keywords are case-insensitive (RFC 1939 §3). Arguments are separated by single spaces; for
/// `USER` and `PASS` the rest of the line is the argument (RFC 1939 §7 allows spaces in
/// passwords).
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    // RFC 2449 §4: 255 octets including the CRLF.
    if line.len() + 2 > MAX_COMMAND_LINE {
        return Err(ParseError::TooLong);
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::Unknown)?;
    if line.bytes().any(|b| b.is_ascii_control()) {
        return Err(ParseError::Unknown);
    }
    let (keyword, rest) = match line.split_once(' ') {
        Some((k, r)) => (k, Some(r)),
        None => (line, None),
    };
    // RFC 1939 §3: keywords are three or four characters long.
    if !(3..=4).contains(&keyword.len()) {
        return Err(ParseError::Unknown);
    }
    let args: Vec<&str> = match rest {
        Some(r) => r.split(' ').collect(),
        None => Vec::new(),
    };
    let no_args = |cmd: Command| {
        if args.is_empty() {
            Ok(cmd)
        } else {
            Err(ParseError::WrongArguments)
        }
    };
    let opt_msg = || match args.as_slice() {
        [] => Ok(None),
        [n] => parse_msg(n).map(Some),
        _ => Err(ParseError::WrongArguments),
    };
    let one_msg = || match args.as_slice() {
        [n] => parse_msg(n),
        _ => Err(ParseError::WrongArguments),
    };
    let rest_arg = || match rest {
        Some(r) if !r.is_empty() => Ok(r.to_owned()),
        _ => Err(ParseError::WrongArguments),
    };
    match keyword.to_ascii_uppercase().as_str() {
        "USER" => rest_arg().map(Command::User),
        "PASS" => rest_arg().map(Command::Pass),
        "APOP" => Ok(Command::Apop),
        "AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [m] if !m.is_empty() => Ok(Command::Auth {
                mechanism: Some(m.to_ascii_uppercase()),
                initial: None,
            }),
            [m, i] if !m.is_empty() && !i.is_empty() => Ok(Command::Auth {
                mechanism: Some(m.to_ascii_uppercase()),
                initial: Some((*i).to_owned()),
            }),
            _ => Err(ParseError::WrongArguments),
        },
        "STLS" => no_args(Command::Stls),
        "CAPA" => no_args(Command::Capa),
        "QUIT" => no_args(Command::Quit),
        "STAT" => no_args(Command::Stat),
        "LIST" => opt_msg().map(Command::List),
        "RETR" => one_msg().map(Command::Retr),
        "DELE" => one_msg().map(Command::Dele),
        "NOOP" => no_args(Command::Noop),
        "RSET" => no_args(Command::Rset),
        "TOP" => match args.as_slice() {
            [m, n] => Ok(Command::Top {
                msg: parse_msg(m)?,
                lines: parse_number(n)?,
            }),
            _ => Err(ParseError::WrongArguments),
        },
        "UIDL" => opt_msg().map(Command::Uidl),
        _ => Err(ParseError::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, ParseError> {
        parse_command(s.as_bytes())
    }

    #[test]
    fn keywords_case_insensitive() {
        assert_eq!(p("stat"), Ok(Command::Stat));
        assert_eq!(p("StAt"), Ok(Command::Stat));
        assert_eq!(p("top 1 0"), Ok(Command::Top { msg: 1, lines: 0 }));
        assert_eq!(
            p("auth plain"),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: None
            })
        );
    }

    #[test]
    fn numbers_are_strict() {
        assert_eq!(p("RETR 1"), Ok(Command::Retr(1)));
        assert_eq!(p("RETR +1"), Err(ParseError::NotANumber));
        assert_eq!(p("RETR -1"), Err(ParseError::NotANumber));
        assert_eq!(p("RETR 1x"), Err(ParseError::NotANumber));
        assert_eq!(
            p("RETR 99999999999999999999999"),
            Err(ParseError::NotANumber)
        );
        assert_eq!(p("RETR"), Err(ParseError::WrongArguments));
        assert_eq!(p("RETR  1"), Err(ParseError::WrongArguments));
        assert_eq!(p("RETR 1 2"), Err(ParseError::WrongArguments));
        assert_eq!(p("TOP 1 -1"), Err(ParseError::NotANumber));
        assert_eq!(p("LIST"), Ok(Command::List(None)));
        assert_eq!(p("UIDL 3"), Ok(Command::Uidl(Some(3))));
        assert_eq!(p("STAT 1"), Err(ParseError::WrongArguments));
    }

    #[test]
    fn pass_keeps_spaces() {
        assert_eq!(p("PASS a b  c"), Ok(Command::Pass("a b  c".into())));
        assert_eq!(p("PASS"), Err(ParseError::WrongArguments));
        assert_eq!(format!("{:?}", p("PASS secret")), "Ok(Pass(<redacted>))");
    }

    #[test]
    fn too_long_and_garbage() {
        let ok = format!("USER {}", "a".repeat(MAX_COMMAND_LINE - 2 - 5));
        assert!(p(&ok).is_ok());
        let long = format!("USER {}", "a".repeat(MAX_COMMAND_LINE - 2 - 4));
        assert_eq!(p(&long), Err(ParseError::TooLong));
        assert_eq!(p(""), Err(ParseError::Unknown));
        assert_eq!(p("XYZZY"), Err(ParseError::Unknown));
        assert_eq!(parse_command(b"STAT\xff"), Err(ParseError::Unknown));
        assert_eq!(p("STAT\0"), Err(ParseError::Unknown));
    }
}
