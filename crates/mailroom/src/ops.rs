//! The binary under other names, as a mail system's binary is installed: `sendmail` (a
//! symlink, or the Debian `sendmail` alternative) runs `mailroom sendmail`, `mailq` runs
//! `mailroom queue list`, `newaliases` does nothing (aliases live in the directory). Those
//! names take no `--config`: the file is `$MAILROOM_CONFIG` (read in `main`), else the
//! default path.

use std::ffi::OsString;
use std::path::Path;

use crate::{Cli, Command};

/// The command implied by the program name, when it is one of the compatibility names.
pub(crate) fn program_name_command() -> Option<Cli> {
    let mut args = std::env::args_os();
    let argv0 = args.next()?;
    let name = Path::new(&argv0).file_name()?.to_str()?.to_string();
    let rest: Vec<OsString> = args.collect();
    let command = match name.as_str() {
        "sendmail" => Command::Sendmail { args: rest },
        "newaliases" => Command::Sendmail {
            args: vec!["-bi".into()],
        },
        "mailq" => Command::Queue(crate::admin::QueueCommand::List { json: false }),
        _ => return None,
    };
    Some(Cli {
        config: None,
        command,
    })
}

/// What `mailroom generate` prints, for packaging (`scripts/package-deb`).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Generated {
    /// The man page, mailroom(8), as roff.
    Man,
    Bash,
    Zsh,
    Fish,
}

/// Writes the man page or a shell's completions, from the same clap definition the binary
/// parses with, to standard output.
pub(crate) fn generate(what: Generated) -> Result<(), crate::Failure> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    let shell = match what {
        Generated::Man => {
            let page = clap_mangen::Man::new(cmd).section("8");
            return page
                .render(&mut out)
                .map_err(|e| crate::Failure::failed(format!("cannot write the man page: {e}")));
        }
        Generated::Bash => clap_complete::Shell::Bash,
        Generated::Zsh => clap_complete::Shell::Zsh,
        Generated::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "mailroom", &mut out);
    Ok(())
}
