//! The format of one recorded DMARC result, as `smtpd::verify` writes it into
//! `store::dmarc_reports` and `mta::dmarc_report` reads it back to build an aggregate report:
//! the policy published, where reports go (`rua=` URIs) and mail-auth's report row, as one
//! JSON line. Data only: it decides nothing.

use mail_auth::report::{PolicyPublished, Record};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultLine {
    pub policy: PolicyPublished,
    pub rua: Vec<String>,
    pub record: Record,
}

impl ResultLine {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(line: &[u8]) -> Option<ResultLine> {
        serde_json::from_slice(line).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::report::ActionDisposition;

    #[test]
    fn a_line_reads_back() {
        let line = ResultLine {
            policy: PolicyPublished::default(),
            rua: vec!["mailto:a@b.test".into()],
            record: Record::new()
                .with_source_ip("127.0.0.1".parse().unwrap())
                .with_count(1)
                .with_action_disposition(ActionDisposition::Reject)
                .with_header_from("b.test"),
        };
        let json = line.to_json();
        assert!(!json.is_empty());
        let back = ResultLine::from_json(&json);
        if back.is_none() {
            panic!(
                "{:?}: {}",
                serde_json::from_slice::<ResultLine>(&json).err(),
                String::from_utf8_lossy(&json)
            );
        }
        assert_eq!(back.unwrap(), line);
    }
}
