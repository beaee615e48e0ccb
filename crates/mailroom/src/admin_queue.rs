//! The admin commands for the queue: list (text or `--json`), show (envelope, headers, and
//! with `--body` the whole message), flush (one message, a domain's, or all), remove (one or
//! `ALL`) and bounce. They open the spool under `data_dir` directly; the running server picks
//! up flush and bounce requests through `store::spool`. Everything that came from the network
//! is escaped before it reaches the terminal (`terminal`); JSON is escaped by serde_json.

use std::io::{BufRead, Write};

use clap::Subcommand;
use store::outcome::Outcome;
use store::queue_status::{MessageStatus, RcptState};
use store::spool::{Envelope, Spool};

use crate::config::Config;
use crate::terminal::safe;
use crate::Failure;

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// List queued messages: id, age, size, sender, and each recipient's state, attempts and
    /// last error.
    List {
        /// One JSON object per message, one per line (times as unix seconds).
        #[arg(long)]
        json: bool,
    },
    /// Show one message's envelope and headers.
    Show {
        id: String,
        /// Print the whole message, not only its headers.
        #[arg(long)]
        body: bool,
    },
    /// Retry now: one message, the messages waiting for one domain, or every message.
    Flush {
        id: Option<String>,
        /// Only the messages with a recipient at DOMAIN still to deliver.
        #[arg(long, conflicts_with = "id", value_name = "DOMAIN")]
        domain: Option<String>,
    },
    /// Delete a message from the queue without delivering or bouncing it (`ALL`: every
    /// message).
    Remove { id: String },
    /// Give up on a message: its pending recipients are bounced to the sender.
    Bounce { id: String },
}

pub fn unix_now() -> u64 {
    use store::clock::Clock as _;
    store::clock::SystemClock.unix()
}

pub fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A unix time as an RFC 5322 date (UTC), as admins read them in headers.
fn date(unix: u64) -> String {
    proto::smtp::received::rfc5322_date(i64::try_from(unix).unwrap_or(i64::MAX))
}

fn no_such_message(id: &str, e: std::io::Error) -> Failure {
    if matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput
    ) {
        Failure::failed(format!("no such message in the queue: {id}"))
    } else {
        Failure::failed(format!("{id}: {e}"))
    }
}

/// Octets of a message `queue show` reads for its header block.
const SHOW_HEADERS: usize = 1 << 20;

/// Each queued message with its envelope, size and recipients' status (messages that vanish
/// or cannot be read meanwhile are skipped).
pub fn queued(spool: &Spool) -> Result<Vec<(Envelope, u64, MessageStatus)>, Failure> {
    let mut out = Vec::new();
    for id in spool.list().map_err(Failure::failed)? {
        let Ok((env, body)) = spool.open_message(&id) else {
            continue;
        };
        let log = spool.log(&id).unwrap_or_default();
        let status = MessageStatus::from_log(env.recipients.len(), &log);
        out.push((env, body.len(), status));
    }
    Ok(out)
}

/// Postsuper's `removed` line, in the server's `log_file` (when it has one).
fn log_removed(id: &str, by: &str) {
    tracing::info!(by, "queue: {}: removed", safe(id));
}

/// `queue flush [ID | --domain DOMAIN]`: asks the runner to retry those messages now.
pub fn flush(spool: &Spool, id: Option<String>, domain: Option<String>) -> Result<(), Failure> {
    let ids = match (id, domain) {
        (Some(id), _) => {
            spool
                .open_message(&id)
                .map_err(|e| no_such_message(&id, e))?;
            vec![id]
        }
        (None, Some(domain)) => {
            let ids = waiting_for(spool, &domain)?;
            if ids.is_empty() {
                return Err(Failure::failed(format!(
                    "no queued message waits for {}",
                    safe(&domain)
                )));
            }
            ids
        }
        // Empty: every message.
        (None, None) => Vec::new(),
    };
    spool.request_flush(&ids).map_err(Failure::failed)
}

/// `queue remove ID`: the message deleted, logged as removed `by` (who asked).
pub fn remove(spool: &Spool, id: &str, by: &str) -> Result<(), Failure> {
    spool.remove(id).map_err(|e| no_such_message(id, e))?;
    log_removed(id, by);
    Ok(())
}

/// `queue bounce ID`: its pending recipients bounced by the runner.
pub fn bounce(spool: &Spool, id: &str) -> Result<(), Failure> {
    spool
        .record(
            id,
            &store::outcome::Entry::Mark(store::outcome::Mark::BounceRequested),
        )
        .map_err(|e| no_such_message(id, e))?;
    spool
        .request_flush(std::slice::from_ref(&id.to_string()))
        .map_err(Failure::failed)
}

/// What `queue show ID` prints without `--body`: the envelope and the header block, network
/// text escaped for a terminal.
pub fn show_head(spool: &Spool, id: &str) -> Result<String, Failure> {
    use std::fmt::Write as _;
    let (env, body) = spool.open_message(id).map_err(|e| no_such_message(id, e))?;
    let mut out = envelope_text(&env);
    // The header block only: a large message is not loaded to show it.
    let message = body
        .head(SHOW_HEADERS)
        .map_err(|e| no_such_message(id, e))?;
    // Header bytes are a stranger's: escaped so they cannot drive the terminal.
    let _ = write!(out, "{}", crate::terminal::header_block(&message));
    Ok(out)
}

fn envelope_text(env: &Envelope) -> String {
    let mut out = format!(
        "id: {}\nreceived: {} ({} ago)\nsender: <{}>\nclient: {}\n",
        env.id,
        date(env.received),
        age(unix_now().saturating_sub(env.received)),
        safe(&env.sender),
        safe(&env.client)
    );
    for r in &env.recipients {
        out.push_str(&format!("recipient: <{}>\n", safe(r)));
    }
    out.push('\n');
    out
}

pub fn queue(config: &Config, cmd: QueueCommand) -> Result<(), Failure> {
    let spool = Spool::open(&config.data_dir).map_err(Failure::failed)?;
    match cmd {
        QueueCommand::List { json: false } => list_text(&spool),
        QueueCommand::List { json: true } => list_json(&spool),
        QueueCommand::Show { id, body } => show(&spool, &id, body),
        QueueCommand::Flush { id, domain } => flush(&spool, id, domain),
        QueueCommand::Remove { id } if id == "ALL" => {
            crate::logging::init_for_admin(config);
            let ids = spool.list().map_err(Failure::failed)?;
            for id in &ids {
                match spool.remove(id) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(no_such_message(id, e))
                    }
                    Err(_) => {}
                    Ok(()) => log_removed(id, "queue remove"),
                }
            }
            println!("removed {} message(s)", ids.len());
            Ok(())
        }
        QueueCommand::Remove { id } => {
            crate::logging::init_for_admin(config);
            remove(&spool, &id, "queue remove")
        }
        QueueCommand::Bounce { id } => bounce(&spool, &id),
    }
}

/// Ids of the messages with a recipient at `domain` (case-insensitive) not yet delivered or
/// failed.
fn waiting_for(spool: &Spool, domain: &str) -> Result<Vec<String>, Failure> {
    let domain = domain.trim_start_matches('@').to_lowercase();
    Ok(queued(spool)?
        .into_iter()
        .filter(|(env, _, status)| {
            status.pending().into_iter().any(|i| {
                env.recipients[i]
                    .rsplit_once('@')
                    .is_some_and(|(_, d)| d.to_lowercase() == domain)
            })
        })
        .map(|(env, _, _)| env.id)
        .collect())
}

fn list_text(spool: &Spool) -> Result<(), Failure> {
    let now = unix_now();
    let messages = queued(spool)?;
    for (env, size, status) in &messages {
        println!(
            "{}  age={}  size={size}  from=<{}>",
            env.id,
            age(now.saturating_sub(env.received)),
            safe(&env.sender)
        );
        for (r, st) in env.recipients.iter().zip(&status.recipients) {
            let next = match &st.last {
                Some(Outcome::Deferred {
                    next_attempt: Some(t),
                    ..
                }) => format!("  next: in {}", age(t.saturating_sub(now))),
                _ => String::new(),
            };
            let last = match &st.last {
                None => String::new(),
                Some(_) => format!("  last: {}{next}", safe(&st.last_text())),
            };
            println!(
                "    to=<{}>  {}  attempts={}{last}",
                safe(r),
                st.state.as_str(),
                st.attempts
            );
        }
    }
    println!("-- {} message(s) in the queue", messages.len());
    Ok(())
}

fn list_json(spool: &Spool) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    for (env, size, status) in queued(spool)? {
        let recipients: Vec<_> = env
            .recipients
            .iter()
            .zip(&status.recipients)
            .map(|(r, st)| {
                let next_attempt = match &st.last {
                    Some(Outcome::Deferred { next_attempt, .. }) => *next_attempt,
                    _ => None,
                };
                serde_json::json!({
                    "address": r,
                    "state": st.state.as_str(),
                    "attempts": st.attempts,
                    "last": st.last.as_ref().map(|_| st.last_text()),
                    "next_attempt": next_attempt,
                    "pending": st.state == RcptState::Pending,
                })
            })
            .collect();
        let line = serde_json::json!({
            "id": env.id,
            "received": env.received,
            "size": size,
            "sender": env.sender,
            "client": env.client,
            "recipients": recipients,
        });
        writeln!(out, "{line}").map_err(|e| Failure::failed(format!("stdout: {e}")))?;
    }
    Ok(())
}

fn show(spool: &Spool, id: &str, with_body: bool) -> Result<(), Failure> {
    if !with_body {
        print!("{}", show_head(spool, id)?);
        return Ok(());
    }
    let (env, body) = spool.open_message(id).map_err(|e| no_such_message(id, e))?;
    print!("{}", envelope_text(&env));
    // The whole message, a line at a time, escaped the same way.
    let mut reader = std::io::BufReader::new(body.reader());
    let mut out = std::io::stdout().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| no_such_message(id, e))?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(crate::terminal::lines(&line).as_bytes())
            .map_err(|e| Failure::failed(format!("stdout: {e}")))?;
    }
}
