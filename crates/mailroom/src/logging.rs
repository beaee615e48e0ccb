//! Where the server's log goes and how each line looks: `log_format = "text"` writes the
//! event's message, then its fields as `key=value` (a value with a space, a quote, a backslash
//! or a control character is quoted, `"` and `\` escaped with `\`, control characters as
//! `\xNN`; control characters in the message are escaped the same way, so no client text can
//! start a line of its own); `log_format = "json"` writes one JSON object per line with the
//! message and every field at the top level (tracing-subscriber's `json`).
//!
//! `log_file = ""` writes to stderr (the journal picks it up); a path is opened for appending
//! and reopened by [`reopen`] (SIGHUP), so logrotate can rename the file and the next lines go
//! to a new one. This module formats and writes; what is logged is decided at each call site.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// The open log file, shared by the writer and [`reopen`].
struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

/// Directives added to `log_level`: crates whose warnings are not the admin's business.
const QUIET: &str = "rustls=error";

static LOG_FILE: OnceLock<Arc<LogFile>> = OnceLock::new();

fn open(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// One event's bytes, written to the file under its lock (the formatter writes a whole line
/// at once).
struct Locked<'a>(std::sync::MutexGuard<'a, File>);

impl Write for Locked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[derive(Clone)]
struct FileWriter(Arc<LogFile>);

impl<'a> MakeWriter<'a> for FileWriter {
    type Writer = Locked<'a>;
    fn make_writer(&'a self) -> Locked<'a> {
        Locked(self.0.file.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Installs the global subscriber from `log_level` (or `RUST_LOG`), `log_format` and
/// `log_file`. An error names the key (the file could not be opened).
pub fn init(config: &Config) -> Result<(), String> {
    // rustls logs a client's protocol slips at `warn` (an IP address sent as SNI, which many
    // clients connecting by address do: "Illegal SNI extension"); handshakes that fail are
    // logged by the listeners themselves, so only its errors are kept.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},{QUIET}", config.log_level.as_str())));
    let (writer, ansi) = if config.log_file.is_empty() {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        (BoxMakeWriter::new(std::io::stderr), ansi)
    } else {
        let path = PathBuf::from(&config.log_file);
        let file = open(&path).map_err(|e| format!("log_file: {}: {e}", path.display()))?;
        let shared = Arc::new(LogFile {
            path,
            file: Mutex::new(file),
        });
        let _ = LOG_FILE.set(shared.clone());
        (BoxMakeWriter::new(FileWriter(shared)), false)
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let result = match config.log_format {
        LogFormat::Text => builder.with_ansi(ansi).fmt_fields(KeyValue).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    // Already installed (a second `run` in one process): keep the first.
    let _ = result;
    Ok(())
}

/// For an admin command that changes what the server holds (`queue remove`): its lines go to
/// the server's `log_file`, when there is one and it can be opened; else nowhere (stderr is
/// the admin's terminal, which gets the command's own output).
pub fn init_for_admin(config: &Config) {
    if !config.log_file.is_empty() {
        let _ = init(config);
    }
}

/// Reopens `log_file` (after logrotate renamed it); `None` when logging goes to stderr.
pub fn reopen() -> Option<Result<String, String>> {
    let shared = LOG_FILE.get()?;
    Some(match open(&shared.path) {
        Ok(file) => {
            *shared.file.lock().unwrap_or_else(|e| e.into_inner()) = file;
            Ok(shared.path.display().to_string())
        }
        Err(e) => Err(format!("{}: {e}", shared.path.display())),
    })
}

/// The text form's fields: the message, then ` key=value` for each field.
struct KeyValue;

impl<'writer> FormatFields<'writer> for KeyValue {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = Line { out: String::new() };
        fields.record(&mut visitor);
        writer.write_str(&visitor.out)
    }
}

struct Line {
    out: String,
}

impl Line {
    fn put(&mut self, name: &str, value: &str) {
        // Where a `log` crate record came from (tracing-log): not the admin's business.
        if name.starts_with("log.") {
            return;
        }
        if !self.out.is_empty() {
            self.out.push(' ');
        }
        if name == "message" {
            escape_message(value, &mut self.out);
        } else {
            self.out.push_str(name);
            self.out.push('=');
            escape_value(value, &mut self.out);
        }
    }
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field.name(), &format!("{value:?}"));
    }
}

fn push_hex(c: char, out: &mut String) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        let _ = write!(out, "\\x{b:02x}");
    }
}

/// The message as it is, but with control characters as `\xNN`.
fn escape_message(text: &str, out: &mut String) {
    for c in text.chars() {
        if c.is_control() {
            push_hex(c, out);
        } else {
            out.push(c);
        }
    }
}

/// A field value: as it is when it has no space, quote, backslash or control character (and
/// is not empty), else quoted with those escaped.
pub fn escape_value(value: &str, out: &mut String) {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '"' && c != '\\');
    if plain {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' ' => out.push(' '),
            c if c.is_control() || c.is_whitespace() => push_hex(c, out),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: &str) -> String {
        let mut out = String::new();
        escape_value(v, &mut out);
        out
    }

    #[test]
    fn values_without_spaces_stay_as_they_are() {
        assert_eq!(value("<alice@example.test>"), "<alice@example.test>");
        assert_eq!(value("unknown[127.0.0.1]"), "unknown[127.0.0.1]");
        assert_eq!(value("用户@例子.测试"), "用户@例子.测试");
    }

    #[test]
    fn values_with_spaces_quotes_or_controls_are_quoted() {
        assert_eq!(value(""), "\"\"");
        assert_eq!(
            value("550 5.1.1 User unknown"),
            "\"550 5.1.1 User unknown\""
        );
        assert_eq!(value("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(value("x\r\ny=1\tz"), "\"x\\x0d\\x0ay=1\\x09z\"");
        assert_eq!(value("nb\u{a0}sp"), "\"nb\\xc2\\xa0sp\"");
    }

    #[test]
    fn messages_keep_spaces_but_not_line_breaks() {
        let mut out = String::new();
        escape_message("relay: mx: 250 ok\r\nforged line", &mut out);
        assert_eq!(out, "relay: mx: 250 ok\\x0d\\x0aforged line");
    }
}
