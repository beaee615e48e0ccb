//! Everything Mailroom keeps on disk under `data_dir`: the directory of domains, accounts and
//! aliases (SQLite), the spool (the durable queue of accepted messages), Maildir delivery, and the
//! reading side of a Maildir used by POP3; and the limits the SMTP and POP3 listeners share in
//! memory (`login_guard`, `admission`). It knows nothing of SMTP or POP3.

pub mod account_limits;
pub mod account_retention;
pub mod admission;
pub mod admission_gate;
pub mod at;
pub mod backup;
pub mod clock;
pub mod directory;
pub mod dkim_keys;
pub mod dmarc_reports;
pub mod durable;
pub mod forward_failures;
pub mod greylist;
pub mod instance_lock;
pub mod login_guard;
pub mod login_limits;
pub mod mailbox;
pub mod maildir;
pub mod maildrop;
pub mod outcome;
pub mod ownership;
pub mod password_check;
pub mod password_hash;
pub mod private_files;
pub mod queue_status;
pub mod quota;
pub mod retention;
pub mod sending_limits;
pub mod spool;
pub mod srs_secret;
pub mod tls_policies;
pub mod tls_report_counts;
