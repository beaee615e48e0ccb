//! Least privilege: started as root, Mailroom binds its ports, reads its TLS key, then runs as
//! the unprivileged `user` from the config (created with `useradd --system` when missing), and
//! `data_dir` is owned by that user. Admin commands run as root switch to the same user before
//! touching `data_dir`, so the files they create stay usable by the server.
//!
//! When not started as root, or with `user = ""`, nothing changes. Root never acts on a path
//! below `data_dir` (the user can write there): see [`store::ownership`].

use std::ffi::CString;
use std::path::Path;

use crate::config::Config;
use crate::Failure;

/// The account to run as, when we are root and one is configured.
pub use store::ownership::Owner as ServiceUser;

fn lookup(name: &str) -> Option<ServiceUser> {
    let c = CString::new(name).ok()?;
    // SAFETY: getpwnam returns NULL or a pointer to a static struct valid until the next call;
    // we copy the ids out at once (single-threaded at this point of start-up).
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: pw is non-null and points to a valid passwd struct.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Some(ServiceUser {
        name: name.to_string(),
        uid,
        gid,
    })
}

/// The configured user, created if missing; `None` when not root or disabled.
pub fn service_user(config: &Config) -> Result<Option<ServiceUser>, Failure> {
    // SAFETY: geteuid has no preconditions.
    if config.user.is_empty() || unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    if let Some(u) = lookup(&config.user) {
        return Ok(Some(u));
    }
    let status = std::process::Command::new("useradd")
        .args(["--system", "--no-create-home", "--home-dir"])
        .arg(&config.data_dir)
        .args(["--shell", "/usr/sbin/nologin", &config.user])
        .status();
    match (status, lookup(&config.user)) {
        (_, Some(u)) => {
            eprintln!("mailroom: created system user {}", config.user);
            Ok(Some(u))
        }
        (Ok(s), None) => Err(Failure::failed(format!(
            "user {:?} does not exist and useradd failed ({s}); create it or set user = \"\"",
            config.user
        ))),
        (Err(e), None) => Err(Failure::failed(format!(
            "user {:?} does not exist and useradd could not run ({e}); create it or set user = \"\"",
            config.user
        ))),
    }
}

/// Gives `data_dir` and everything under it to the user: [`store::ownership::give_tree`],
/// which never acts on a path below `data_dir`.
pub fn own_data_dir(data_dir: &Path, user: &ServiceUser) -> Result<(), Failure> {
    store::ownership::give_tree(data_dir, user).map_err(|e| {
        Failure::failed(format!(
            "cannot give data_dir {} to user {}: {e}",
            data_dir.display(),
            user.name
        ))
    })
}

/// Switches the process to the user for good (groups, gid, then uid).
pub fn drop_to(user: &ServiceUser) -> Result<(), Failure> {
    // SAFETY: plain system calls; called before any other thread is started.
    let ok = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setgid(user.gid) == 0
            && libc::setuid(user.uid) == 0
    };
    if !ok {
        return Err(Failure::failed(format!(
            "cannot switch to user {}: {}",
            user.name,
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: setuid has no memory-safety preconditions. Regaining root must be impossible now.
    if unsafe { libc::setuid(0) } == 0 {
        return Err(Failure::failed(
            "still able to regain root after dropping privileges",
        ));
    }
    Ok(())
}

/// For admin commands: if root with a service user, own data_dir and become that user.
pub fn become_service_user(config: &Config) -> Result<(), Failure> {
    if let Some(user) = service_user(config)? {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Failure::failed(format!(
                "cannot create data_dir {}: {e}",
                config.data_dir.display()
            ))
        })?;
        own_data_dir(&config.data_dir, &user)?;
        drop_to(&user)?;
    }
    Ok(())
}
