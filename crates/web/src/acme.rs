//! Certificates from an ACME CA (RFC 8555) through instant-acme: one order for all our names,
//! HTTP-01 answered by port 80 ([`crate::Challenges`]) or TLS-ALPN-01 (RFC 8737) by port 443
//! ([`crate::tls_alpn`]), the account and the certificate kept
//! through a [`CertStore`] (`store::private_files` in `serve`), the certificate installed into
//! every TLS listener by [`CertStore::install`], renewal at two thirds of its lifetime, and
//! failures retried with a doubling back-off (1 min .. 6 h).
//!
//! [`renew_at`] and [`backoff`] are pure; [`run`] is the loop. It does not choose the names
//! (`serve` does) nor parse any configuration file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use crate::Challenges;

/// Where and for what to order.
#[derive(Clone, Debug)]
pub struct Settings {
    pub directory_url: String,
    /// `mailto:` URL; empty: none.
    pub contact: String,
    /// Extra trust for the ACME server itself (its root, PEM).
    pub ca_file: Option<PathBuf>,
    pub names: Vec<String>,
    pub challenge: Challenge,
}

/// How the CA checks that the names are ours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Challenge {
    /// A token fetched from port 80.
    #[default]
    Http01,
    /// A challenge certificate fetched from port 443 with ALPN `acme-tls/1`.
    TlsAlpn01,
}

/// Where the account and the certificate live, and how a certificate goes live.
pub trait CertStore: Send + Sync {
    fn load_account(&self) -> Option<String>;
    fn save_account(&self, json: &str) -> Result<(), String>;
    /// The stored chain and key (PEM).
    fn load_certificate(&self) -> Option<(String, String)>;
    fn save_certificate(&self, chain: &str, key: &str) -> Result<(), String>;
    /// Swaps the certificate into every TLS listener (running sessions keep theirs).
    fn install(&self, chain: &str, key: &str) -> Result<(), String>;
}

/// When a certificate valid from `not_before` to `not_after` (unix seconds) is renewed.
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before).max(0) * 2 / 3
}

/// The pause after `failures` failed orders in a row.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs((60u64 << failures.min(9)).min(6 * 3600))
}

/// The validity of the first certificate of a PEM chain, unix seconds.
pub fn validity(chain: &str) -> Option<(i64, i64)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Keeps a current certificate installed until the task is aborted.
pub async fn run(settings: Settings, store: Arc<dyn CertStore>, challenges: Challenges) {
    let mut failures = 0u32;
    // A stored certificate still valid serves at once; the self-signed one otherwise.
    let mut due = match store.load_certificate() {
        Some((chain, key)) => match (validity(&chain), store.install(&chain, &key)) {
            (Some((from, until)), Ok(())) if until > now() => {
                tracing::info!("acme: stored certificate installed, valid until {until}");
                renew_at(from, until)
            }
            _ => 0,
        },
        None => 0,
    };
    loop {
        let wait = (due - now()).max(0) as u64;
        if wait > 0 {
            tracing::info!("acme: next order in {wait}s");
        }
        tokio::time::sleep(Duration::from_secs(wait)).await;
        match order(&settings, store.as_ref(), &challenges).await {
            Ok((chain, key)) => {
                failures = 0;
                let saved = store.save_certificate(&chain, &key);
                let installed = store.install(&chain, &key);
                match (saved, installed, validity(&chain)) {
                    (Ok(()), Ok(()), Some((from, until))) => {
                        tracing::info!(
                            "acme: certificate for {} installed, valid until {until}",
                            settings.names.join(", ")
                        );
                        due = renew_at(from, until);
                    }
                    (s, i, _) => {
                        tracing::error!("acme: new certificate not in use: {s:?} {i:?}");
                        due = now() + backoff(0).as_secs() as i64;
                    }
                }
            }
            Err(e) => {
                let pause = backoff(failures);
                failures += 1;
                tracing::warn!("acme: order failed (retry in {pause:?}): {e}");
                due = now() + pause.as_secs() as i64;
            }
        }
    }
}

async fn account(settings: &Settings, store: &dyn CertStore) -> Result<Account, String> {
    let builder = || match &settings.ca_file {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    };
    let e = |e: instant_acme::Error| e.to_string();
    if let Some(json) = store.load_account() {
        if let Ok(credentials) = serde_json::from_str::<AccountCredentials>(&json) {
            return builder()
                .map_err(e)?
                .from_credentials(credentials)
                .await
                .map_err(e);
        }
    }
    let contact: Vec<&str> = [settings.contact.as_str()]
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect();
    let (account, credentials) = builder()
        .map_err(e)?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory_url.clone(),
            None,
        )
        .await
        .map_err(e)?;
    let json = serde_json::to_string(&credentials).map_err(|e| e.to_string())?;
    store.save_account(&json)?;
    tracing::info!("acme: account created at {}", settings.directory_url);
    Ok(account)
}

/// One order: the chain and the new key (PEM).
async fn order(
    settings: &Settings,
    store: &dyn CertStore,
    challenges: &Challenges,
) -> Result<(String, String), String> {
    let e = |e: instant_acme::Error| e.to_string();
    let account = account(settings, store).await?;
    let identifiers: Vec<Identifier> = settings
        .names
        .iter()
        .cloned()
        .map(Identifier::Dns)
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(e)?;
    let kind = match settings.challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let (mut tokens, mut names) = (Vec::new(), Vec::new());
    let mut authorizations = order.authorizations();
    let mut result = Ok(());
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(e)?;
        if authz.status == AuthorizationStatus::Valid {
            continue;
        }
        let Some(mut challenge) = authz.challenge(kind.clone()) else {
            result = Err(format!("no {kind:?} challenge offered"));
            break;
        };
        let key_authorization = challenge.key_authorization();
        match settings.challenge {
            Challenge::Http01 => {
                challenges.insert(&challenge.token, key_authorization.as_str());
                tokens.push(challenge.token.clone());
            }
            Challenge::TlsAlpn01 => {
                let Identifier::Dns(name) = challenge.identifier().identifier.clone() else {
                    result = Err("tls-alpn-01 for an identifier that is not a name".into());
                    break;
                };
                if let Err(err) = challenges
                    .alpn()
                    .insert(&name, key_authorization.digest().as_ref())
                {
                    result = Err(err);
                    break;
                }
                names.push(name);
            }
        }
        if let Err(err) = challenge.set_ready().await {
            result = Err(err.to_string());
            break;
        }
    }
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(120));
    let outcome = async {
        result?;
        let status = order.poll_ready(&retries).await.map_err(e)?;
        if status != OrderStatus::Ready {
            return Err(format!("order {status:?}"));
        }
        let key = order.finalize().await.map_err(e)?;
        let chain = order.poll_certificate(&retries).await.map_err(e)?;
        Ok((chain, key))
    }
    .await;
    for t in tokens {
        challenges.remove(&t);
    }
    for n in names {
        challenges.alpn().remove(&n);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_two_thirds_and_failures_back_off() {
        assert_eq!(renew_at(0, 90 * 86_400), 60 * 86_400);
        assert_eq!(renew_at(1000, 1300), 1200);
        assert_eq!(renew_at(1000, 900), 1000);
        assert_eq!(backoff(0), Duration::from_secs(60));
        assert_eq!(backoff(1), Duration::from_secs(120));
        assert_eq!(backoff(30), Duration::from_secs(6 * 3600));
    }
}
