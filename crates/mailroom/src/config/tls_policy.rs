//! The `[relay]` keys of the relay's TLS policy room (`mta::relay::tls_policy`): `mta_sts`,
//! `mta_sts_port`, `mta_sts_fetch_timeout`, `dane`, turned into the relay's typed settings
//! (`tls_reports` and `tls_report_period` are read by `serve` for the TLS-RPT task). The keys
//! themselves are fields of `super::relay::RelayConfig` (serde cannot flatten a struct into
//! one that refuses unknown keys).

use std::path::Path;

use super::RelayConfig;

impl RelayConfig {
    /// The relay's MTA-STS settings; policies are cached under `data_dir`.
    pub fn tls_policy(&self, data_dir: &Path) -> mta::relay::TlsPolicyConfig {
        mta::relay::TlsPolicyConfig {
            mta_sts: self.mta_sts,
            dane: self.dane,
            https_port: self.mta_sts_port,
            fetch_timeout: self.mta_sts_fetch_timeout.get(),
            data_dir: Some(data_dir.to_path_buf()),
            tls_reports: self.tls_reports,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_agree_with_the_relay() {
        let ours = RelayConfig::default().tls_policy(Path::new("/d"));
        let theirs = mta::relay::TlsPolicyConfig::default();
        assert_eq!(ours.mta_sts, theirs.mta_sts);
        assert_eq!(ours.dane, theirs.dane);
        assert_eq!(ours.https_port, theirs.https_port);
        assert_eq!(ours.fetch_timeout, theirs.fetch_timeout);
    }
}
