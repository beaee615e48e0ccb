//! `mailroom tls reload`: for a certificate whose key only root may read (certbot's layout,
//! 0700 directories), run as root (a certbot deploy hook): checks the configured pair, copies
//! it into `data_dir/tls/` for the service user (0600; the originals are left as they are),
//! then sends SIGHUP to the running server, which loads the copy. With the self-signed
//! certificate it only signals.

use clap::Subcommand;

use crate::config::Config;
use crate::Failure;

#[derive(Subcommand, Debug)]
pub enum TlsCommand {
    /// Check the configured certificate and key, give the server a copy it can read, and make
    /// the running server load it (run as root, e.g. from certbot's deploy hook).
    Reload,
}

pub fn run(config: &Config, cmd: TlsCommand) -> Result<(), Failure> {
    let TlsCommand::Reload = cmd;
    let source = crate::tls::cert_source(
        &config.tls.certificate,
        &config.tls.private_key,
        &config.hostname,
        &config.data_dir,
    )
    .map_err(Failure::failed)?;
    // Read as the caller (root), before switching to the service user.
    crate::tls::install_copy(&source).map_err(Failure::failed)?;
    crate::privilege::become_service_user(config)?;
    match store::instance_lock::holder(&config.data_dir) {
        Some(pid) => {
            // SAFETY: kill has no memory-safety preconditions; pid holds the data_dir lock.
            if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
                return Err(Failure::failed(format!(
                    "cannot signal the server (pid {pid}): {}",
                    std::io::Error::last_os_error()
                )));
            }
            println!("certificate checked; the server (pid {pid}) reloads it now");
        }
        None => println!("certificate checked; no server is running (it loads it at start)"),
    }
    Ok(())
}
