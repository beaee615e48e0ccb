//! The relay client: delivers queued mail to remote MTAs over SMTP (RFC 5321).
//!
//! [`Relay::deliver`] takes one message and the recipients of one domain, finds where the mail
//! goes ([`mx`]: MX in preference order, implicit MX, null MX, loops back to us; or the
//! smarthost), and tries the addresses in order until one takes the transaction ([`conn`]:
//! opportunistic STARTTLS with a plaintext retry when the handshake fails, PIPELINING, SIZE,
//! CHUNKING). The message is read in blocks ([`MessageBody`]) and streamed: dot-stuffed on
//! the fly for DATA, or as `BDAT` chunks; its size never decides the memory used.
//! Connections are reused from an idle pool and limited per destination ([`pool`]). Every
//! recipient gets an outcome: delivered, deferred (try later) or failed (bounce now).
//!
//! It does not queue, retry later or write bounces: the queue runner decides what to do with
//! each outcome. What to say to a server and what its replies mean (including when to move on
//! to the next host, [`TxEnd`]) is [`proto::smtp::client::Session`]; [`conn`] only moves bytes.

mod body;
mod conn;
pub mod dane;
pub mod mx;
mod pool;
mod tls;
pub mod tls_policy;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dns::Dns;
use proto::smtp::client::{MessageTraits, Outcome, TxEnd};
use tokio_rustls::TlsConnector;

pub use body::{MessageBody, BLOCK};
use conn::{Conn, OpenError, Setup};
use dane::DaneState;
use pool::Pool;
use tls_policy::{Demand, Policies, Problem, Verified};

pub use tls_policy::TlsPolicyConfig;

use crate::queue::schedule::Feedback;

/// Settings of the relay client.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Our EHLO name.
    pub hostname: String,
    /// All remote mail goes there instead of by MX.
    pub smarthost: Option<(String, u16)>,
    /// User and password for AUTH PLAIN at the smarthost; STARTTLS is then required.
    pub smarthost_auth: Option<(String, String)>,
    /// How the smarthost's TLS is treated.
    pub smarthost_tls: SmarthostTls,
    /// CA certificates trusted besides the system's (`[relay] ca_file`), for the smarthost.
    pub ca_certificates: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// Port of remote MTAs (25; tests use another).
    pub remote_port: u16,
    /// DNS servers for [`Relay::new`]; empty: the system resolver (/etc/resolv.conf).
    /// [`Relay::with_dns`] shares the server's one resolver instead.
    pub dns_servers: Vec<SocketAddr>,
    /// Concurrent connections per destination address.
    pub per_destination_limit: usize,
    /// Our own listening addresses: an MX pointing at one of them is a loop.
    pub local_addresses: Vec<IpAddr>,
    pub timeouts: Timeouts,
    /// MTA-STS (and later DANE) settings.
    pub tls_policy: TlsPolicyConfig,
}

/// `[relay] smarthost_tls`: how the connection to the smarthost is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SmarthostTls {
    /// STARTTLS required and the certificate verified for the smarthost's name; otherwise
    /// the mail is deferred and no credentials are sent.
    #[default]
    Verify,
    /// STARTTLS when offered, certificate not checked; AUTH only over TLS.
    Opportunistic,
    /// No TLS at all; AUTH in plaintext (the admin's explicit choice).
    None,
}

/// How long the relay waits on a remote server. The defaults are RFC 5321 §4.5.3.2's
/// minimums, which a client should not go below.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// The TCP connection.
    pub connect: Duration,
    /// The `220` greeting (§4.5.3.2.1), and the replies to EHLO/HELO, STARTTLS and AUTH.
    pub greeting: Duration,
    /// The reply to MAIL (§4.5.3.2.2).
    pub mail: Duration,
    /// Each reply to RCPT (§4.5.3.2.3).
    pub rcpt: Duration,
    /// The `354` to DATA (§4.5.3.2.4).
    pub data_init: Duration,
    /// Each block of message data written (§4.5.3.2.5).
    pub data_block: Duration,
    /// The reply to the final dot (§4.5.3.2.6).
    pub data_end: Duration,
    /// A whole [`Relay::deliver`] call (all hosts, DNS and waiting for a connection slot
    /// included): past it every recipient still waiting is deferred.
    pub attempt: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        const MIN: u64 = 60;
        Timeouts {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(5 * MIN),
            mail: Duration::from_secs(5 * MIN),
            rcpt: Duration::from_secs(5 * MIN),
            data_init: Duration::from_secs(2 * MIN),
            data_block: Duration::from_secs(3 * MIN),
            data_end: Duration::from_secs(10 * MIN),
            attempt: Duration::from_secs(30 * MIN),
        }
    }
}

/// What [`Relay::attempt`] returns: every recipient's outcome, and what the attempt says about
/// the destination's health, for [`crate::queue::schedule::Scheduler::finished`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub outcomes: Vec<RcptOutcome>,
    pub feedback: Feedback,
}

/// The result for one recipient of [`Relay::deliver`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcptOutcome {
    pub recipient: String,
    pub result: RcptResult,
    /// The host that gave the result, or the last one tried: `host[ip]:port`.
    pub mx: Option<String>,
    /// Whether the result came over TLS.
    pub tls: bool,
    /// `TLSv1.3`, `TLSv1.2` (when `tls`).
    pub tls_version: Option<&'static str>,
    /// How that TLS was verified.
    pub verified: Verified,
}

impl RcptOutcome {
    /// The log's `tls=`: the version, or `none`.
    pub fn tls_label(&self) -> &'static str {
        match (self.tls, self.tls_version) {
            (true, Some(v)) => v,
            (true, None) => "TLS",
            (false, _) => "none",
        }
    }
}

/// A recipient's result: the one [`store::outcome::Outcome`] (delivered, deferred, failed)
/// that the runner records and the bounce builder reads. The relay leaves `remote_mta` and
/// `next_attempt` empty; the runner fills them in.
pub use store::outcome::Outcome as RcptResult;

/// The outcome of the protocol layer (`proto::smtp::client`) in the one vocabulary.
pub fn outcome_of(outcome: Outcome) -> RcptResult {
    match outcome {
        Outcome::Delivered { reply } => RcptResult::Delivered { detail: reply },
        Outcome::Deferred { reply } => RcptResult::deferred(reply),
        Outcome::Failed { status, reply } => RcptResult::failed(status, reply),
    }
}

/// One address to try: the host name (for logs and SNI) and where to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub host: String,
    pub addr: SocketAddr,
}

/// The relay client, shared by all deliveries.
pub struct Relay {
    config: RelayConfig,
    dns: Arc<Dns>,
    tls: TlsConnector,
    /// For a smarthost with `SmarthostTls::Verify`.
    verified: Option<TlsConnector>,
    /// The WebPKI check run after every opportunistic handshake.
    check: tls::CertCheck,
    /// MTA-STS policies of destination domains.
    policies: Policies,
    /// DANE states of MX hosts, for a minute.
    dane_cache: dane::DaneCache,
    pool: Arc<Pool>,
}

impl Relay {
    /// A relay with its own resolver over `config.dns_servers` (tests, tools).
    pub fn new(config: RelayConfig) -> Result<Relay, String> {
        let dns = Dns::new(&dns::DnsConfig {
            servers: config.dns_servers.clone(),
            ..dns::DnsConfig::default()
        })?;
        Relay::with_dns(config, Arc::new(dns))
    }

    /// A relay whose lookups go through `dns`, the server's one resolver.
    pub fn with_dns(config: RelayConfig, dns: Arc<Dns>) -> Result<Relay, String> {
        let tls = conn::connector(tls::opportunistic_config()?);
        let verified = match (&config.smarthost, config.smarthost_tls) {
            (Some(_), SmarthostTls::Verify) => Some(conn::connector(tls::verified_config(
                &config.ca_certificates,
            )?)),
            _ => None,
        };
        let check = tls::CertCheck::new(&config.ca_certificates)?;
        let policies = Policies::new(
            config.tls_policy.clone(),
            dns.clone(),
            conn::connector(tls::verified_config(&config.ca_certificates)?),
            Arc::new(store::clock::SystemClock),
        );
        Ok(Relay {
            config,
            dns,
            tls,
            verified,
            check,
            policies,
            dane_cache: dane::DaneCache::default(),
            pool: Arc::new(Pool::default()),
        })
    }

    /// The MTA-STS policies and their TLS-RPT counts.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// [`Relay::attempt`] for a message in memory (tests, small callers).
    pub async fn deliver(
        &self,
        domain: &str,
        sender: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Vec<RcptOutcome> {
        self.attempt(domain, sender, recipients, &message.into())
            .await
            .outcomes
    }

    /// The next hop for mail to `domain`, as the scheduler names destinations: the smarthost
    /// (`[host]:port`) when one is configured, else the domain itself.
    pub fn next_hop(&self, domain: &str) -> String {
        match &self.config.smarthost {
            Some((host, port)) => format!("[{host}]:{port}"),
            None => domain.to_ascii_lowercase(),
        }
    }

    /// Delivers one message to recipients that all share `domain`, reading it in blocks (a
    /// queued message is never loaded whole), and says whether a host took a session (the
    /// scheduler's dead-destination count). Never panics; every recipient gets an outcome, in
    /// the order given. The whole call is under `timeouts.attempt`.
    pub async fn attempt(
        &self,
        domain: &str,
        sender: &str,
        recipients: &[String],
        message: &MessageBody,
    ) -> Attempt {
        self.attempt_tls(domain, sender, recipients, message, false)
            .await
    }

    /// [`Relay::attempt`] for a message sent with `REQUIRETLS` (RFC 8689) when `require_tls`:
    /// relayed only to MX hosts whose TLS an MTA-STS `enforce` policy verifies and that offer
    /// REQUIRETLS themselves (`MAIL FROM:<..> REQUIRETLS`); otherwise every recipient fails
    /// with `5.7.10` (no verified hop) or `5.7.30` (the hop does not offer REQUIRETLS). A
    /// message with `TLS-Required: No` (RFC 8689 §5) and no REQUIRETLS ignores the domain's
    /// MTA-STS policy and goes as without one.
    pub async fn attempt_tls(
        &self,
        domain: &str,
        sender: &str,
        recipients: &[String],
        message: &MessageBody,
        require_tls: bool,
    ) -> Attempt {
        let work = async {
            let route = match &self.config.smarthost {
                Some((host, port)) => mx::smarthost(&self.dns, host, *port).await,
                None => {
                    mx::route(
                        &self.dns,
                        domain,
                        self.config.remote_port,
                        &self.config.local_addresses,
                    )
                    .await
                }
            };
            match route {
                Ok(hosts) => {
                    let mut demand = match &self.config.smarthost {
                        Some(_) => Demand::Opportunistic,
                        None => self.policies.demand(domain).await,
                    };
                    // The header is read only when a policy would apply.
                    if !matches!(demand, Demand::Opportunistic)
                        && !require_tls
                        && tls_required_no(message).await
                    {
                        tracing::info!(
                            "relay: {domain}: TLS-Required: No: the MTA-STS policy is not applied"
                        );
                        demand = Demand::Opportunistic;
                    }
                    // DANE hosts known before the transaction (REQUIRETLS may use them).
                    let mut known = HashMap::new();
                    let enforce = matches!(demand, Demand::StsEnforce(_));
                    if require_tls && !enforce {
                        for h in &hosts {
                            if !known.contains_key(&h.host) {
                                let state = self.dane(&h.host, h.addr.port()).await;
                                known.insert(h.host.clone(), state);
                            }
                        }
                    }
                    let any_dane = known.values().any(|s| matches!(s, DaneState::Required(_)));
                    if require_tls && !enforce && !any_dane {
                        let result = RcptResult::failed(
                            "5.7.10",
                            format!("REQUIRETLS: no verified TLS to {domain} (no MTA-STS policy in enforce mode, no DANE)"),
                        );
                        let outcomes = all(recipients, result, None, false);
                        log(domain, sender, &outcomes);
                        return Attempt {
                            outcomes,
                            feedback: Feedback::Neutral,
                        };
                    }
                    let hosts = match policy_hosts(domain, hosts, &demand) {
                        Ok(hosts) => hosts,
                        Err(reason) => {
                            let outcomes =
                                all(recipients, RcptResult::deferred(reason), None, false);
                            log(domain, sender, &outcomes);
                            return Attempt {
                                outcomes,
                                feedback: Feedback::Neutral,
                            };
                        }
                    };
                    self.try_hosts(
                        domain,
                        &hosts,
                        sender,
                        recipients,
                        message,
                        &demand,
                        require_tls,
                        Some(known),
                    )
                    .await
                }
                Err(result) => {
                    let outcomes = all(recipients, result, None, false);
                    log(domain, sender, &outcomes);
                    Attempt {
                        outcomes,
                        feedback: Feedback::Neutral,
                    }
                }
            }
        };
        self.under_deadline(domain, sender, recipients, work).await
    }

    /// [`Relay::attempt_hosts`] for a message in memory (tests, small callers).
    pub async fn deliver_to_hosts(
        &self,
        domain: &str,
        hosts: &[Destination],
        sender: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Vec<RcptOutcome> {
        self.attempt_hosts(domain, hosts, sender, recipients, &message.into())
            .await
            .outcomes
    }

    /// Delivers to the first of `hosts` that takes the transaction (the lower half of
    /// [`attempt`](Self::attempt), without DNS, under the same deadline). A connection failure,
    /// a 4xx greeting, EHLO or MAIL, or a 421 moves on to the next host; after the last, every
    /// recipient is deferred with the last error.
    pub async fn attempt_hosts(
        &self,
        domain: &str,
        hosts: &[Destination],
        sender: &str,
        recipients: &[String],
        message: &MessageBody,
    ) -> Attempt {
        let work = self.try_hosts(
            domain,
            hosts,
            sender,
            recipients,
            message,
            &Demand::Opportunistic,
            false,
            None,
        );
        self.under_deadline(domain, sender, recipients, work).await
    }

    /// `work` (not even started without recipients), or every recipient deferred when it
    /// outlasts `timeouts.attempt`. Cancelling
    /// drops the connection (never pooled half-way); a message cut after its final dot may
    /// arrive twice, as after any lost reply to the dot (RFC 5321 §6.1).
    async fn under_deadline(
        &self,
        domain: &str,
        sender: &str,
        recipients: &[String],
        work: impl std::future::Future<Output = Attempt>,
    ) -> Attempt {
        if recipients.is_empty() {
            return Attempt {
                outcomes: Vec::new(),
                feedback: Feedback::Neutral,
            };
        }
        let limit = self.config.timeouts.attempt;
        match tokio::time::timeout(limit, work).await {
            Ok(attempt) => attempt,
            Err(_) => {
                let error = format!(
                    "4.4.2 delivery attempt to {domain} timed out after {}s (relay.attempt_timeout)",
                    limit.as_secs()
                );
                tracing::info!("relay: {domain}: {error}");
                let outcomes = all(recipients, RcptResult::deferred(error.clone()), None, false);
                log(domain, sender, &outcomes);
                Attempt {
                    outcomes,
                    feedback: Feedback::TimedOut(error),
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn try_hosts(
        &self,
        domain: &str,
        hosts: &[Destination],
        sender: &str,
        recipients: &[String],
        message: &MessageBody,
        demand: &Demand,
        require_tls: bool,
        dane_states: Option<HashMap<String, DaneState>>,
    ) -> Attempt {
        let enforce = matches!(demand, Demand::StsEnforce(_));
        // `None`: hosts given without DNS, no DANE.
        let use_dane = dane_states.is_some();
        let mut dane_states = dane_states.unwrap_or_default();
        let traits: MessageTraits = match message.traits(sender, recipients).await {
            Ok(traits) => MessageTraits {
                require_tls,
                ..traits
            },
            Err(e) => {
                let reply = format!("cannot read the queued message: {e}");
                let outcomes = all(recipients, RcptResult::deferred(reply), None, false);
                log(domain, sender, &outcomes);
                return Attempt {
                    outcomes,
                    feedback: Feedback::Neutral,
                };
            }
        };
        let mut last_error = format!("no host to deliver mail for {domain} to");
        // The last host tried, for the deferred lines.
        let mut last_host: Option<String> = None;
        // Whether any host took a session: then the destination is alive, whatever it said.
        let mut connected = false;
        let mut timed_out = false;
        for dest in hosts {
            if use_dane && !dane_states.contains_key(&dest.host) {
                let state = self.dane(&dest.host, dest.addr.port()).await;
                dane_states.insert(dest.host.clone(), state);
            }
            let records = match dane_states.get(&dest.host) {
                Some(DaneState::Required(records)) => Some(records.clone()),
                Some(DaneState::Defer(reason)) => {
                    let ip = dest.addr.ip().to_string();
                    self.policies
                        .record_dane(&dest.host, &[], Err(("dnssec-invalid", &ip)));
                    last_host = Some(conn::label(dest));
                    last_error = format!("4.7.5 DANE: {reason}");
                    tracing::info!("relay: {domain}: {last_error}");
                    continue;
                }
                Some(DaneState::None) | None => None,
            };
            if require_tls && !enforce && records.is_none() {
                // REQUIRETLS through DANE: only the hosts DANE binds.
                continue;
            }
            // DANE takes precedence over MTA-STS for the hosts it binds (RFC 8461 §2).
            let enforce = enforce && records.is_none();
            let Some(_slot) = self
                .pool
                .slot(dest.addr, self.config.per_destination_limit)
                .await
            else {
                continue;
            };
            last_host = Some(conn::label(dest));
            // A pooled connection first; a dead one is not an error, and neither is a pooled
            // one that breaks mid-transaction: both get one more try on a fresh connection.
            let mut fresh = false;
            loop {
                let mut conn = match self.pool.take(dest.addr) {
                    Some(conn) if records.is_some() && !dane_for(&conn, &dest.host) => {
                        // Opened without this host's TLSA check: not reused.
                        conn.quit().await;
                        continue;
                    }
                    Some(conn) if enforce && !verified_for(&conn, &dest.host) => {
                        // Opened without the policy's check for this name: not reused.
                        conn.quit().await;
                        continue;
                    }
                    Some(mut conn) => {
                        if !conn.reset().await {
                            tracing::debug!("relay: {}: pooled connection is dead", conn.label);
                            continue;
                        }
                        conn
                    }
                    None => {
                        fresh = true;
                        match self.open(dest, enforce, records.as_ref()).await.map_err(
                            |(e, problem)| {
                                if let Some(p) = problem {
                                    let ip = dest.addr.ip().to_string();
                                    self.policies
                                        .record(domain, demand, Err((p, &dest.host, &ip)));
                                }
                                e
                            },
                        ) {
                            Ok(conn) => conn,
                            Err(e) => {
                                tracing::info!("relay: {domain}: {e}");
                                // Our own wording (conn.rs): "timed out" marks every wait.
                                timed_out = e.contains("timed out");
                                last_error = e;
                                break;
                            }
                        }
                    }
                };
                connected = true;
                match conn.transact(sender, recipients, message, &traits).await {
                    TxEnd::Done { outcomes, reusable } => {
                        let mx = Some(conn.label.clone());
                        let tls = conn.tls();
                        let tls_version = conn.tls_version;
                        let verified = match (&conn.certificate, enforce) {
                            _ if conn.dane => Verified::Dane,
                            (Some(Ok(())), true) => Verified::MtaSts,
                            (Some(Ok(())), false) => Verified::Ca,
                            _ => Verified::None,
                        };
                        let problem = match demand {
                            Demand::StsTesting(_) if conn.dane => None,
                            Demand::StsTesting(_) => testing_problem(&conn, demand),
                            _ => None,
                        };
                        if let Some(problem) = problem {
                            tracing::warn!(
                                "relay: {domain}: {}: MTA-STS testing: {} (delivered anyway)",
                                conn.label,
                                problem.describe()
                            );
                        }
                        let ip = conn.addr.ip().to_string();
                        match (conn.dane, &records) {
                            // DANE's session, not MTA-STS's (RFC 8461 §2).
                            (true, Some(records)) => {
                                self.policies.record_dane(&conn.host, records, Ok(()))
                            }
                            _ => self.policies.record(
                                domain,
                                demand,
                                problem
                                    .map_or(Ok(()), |p| Err((p, conn.host.as_str(), ip.as_str()))),
                            ),
                        }
                        if reusable {
                            self.pool.put(conn);
                        } else {
                            conn.quit().await;
                        }
                        let outcomes: Vec<RcptOutcome> = recipients
                            .iter()
                            .zip(outcomes)
                            .map(|(recipient, outcome)| RcptOutcome {
                                recipient: recipient.clone(),
                                result: outcome_of(outcome),
                                mx: mx.clone(),
                                tls,
                                tls_version,
                                verified,
                            })
                            .collect();
                        log(domain, sender, &outcomes);
                        return Attempt {
                            outcomes,
                            feedback: Feedback::Connected,
                        };
                    }
                    TxEnd::Abort { reason } => {
                        // Dropped without QUIT: the partial message must not be taken.
                        let label = conn.label.clone();
                        drop(conn);
                        tracing::warn!("relay: {domain}: {label}: {reason}");
                        let outcomes =
                            all(recipients, RcptResult::deferred(reason), Some(label), false);
                        log(domain, sender, &outcomes);
                        return Attempt {
                            outcomes,
                            feedback: Feedback::Connected,
                        };
                    }
                    TxEnd::TryNext { reason, io } => {
                        let label = conn.label.clone();
                        conn.quit().await;
                        tracing::info!("relay: {domain}: {label}: {reason}");
                        last_error = format!("{label}: {reason}");
                        if io && !fresh {
                            continue;
                        }
                        break;
                    }
                }
            }
        }
        let feedback = if connected {
            Feedback::Connected
        } else if timed_out {
            Feedback::TimedOut(last_error.clone())
        } else {
            Feedback::Failed(last_error.clone())
        };
        let outcomes = all(
            recipients,
            RcptResult::deferred(last_error),
            last_host,
            false,
        );
        log(domain, sender, &outcomes);
        Attempt { outcomes, feedback }
    }

    /// A new session to `dest`: STARTTLS when offered, and when its handshake fails, a second
    /// connection without it (unless the smarthost needs TLS for AUTH). A smarthost with
    /// `SmarthostTls::Verify` gets verified TLS or nothing; with `None`, no TLS at all.
    ///
    /// Under MTA-STS `enforce`, TLS is required and its certificate must verify for the MX
    /// name; otherwise the error is `4.7.5 MTA-STS: <problem> (<host>)` and nothing is sent.
    async fn open(
        &self,
        dest: &Destination,
        enforce: bool,
        dane: Option<&Arc<Vec<dns::secure::Tlsa>>>,
    ) -> Result<Conn, (String, Option<Problem>)> {
        if let Some(records) = dane {
            return self
                .open_dane(dest, records)
                .await
                .map_err(|(e, result_type)| {
                    if let Some(ty) = result_type {
                        let ip = dest.addr.ip().to_string();
                        self.policies
                            .record_dane(&dest.host, records, Err((ty, &ip)));
                    }
                    (e, None)
                });
        }
        self.open_conn(dest, enforce).await.map_err(|e| {
            let problem = enforce.then(|| problem_of(&e)).flatten();
            (e, problem)
        })
    }

    /// What DANE asks of `host` reached on `port` (RFC 7672 §2.2): nothing unless its
    /// address answer is authenticated (AD); then its TLSA records, or a deferral when their
    /// lookup fails. Not for a smarthost or an address literal, or with `[relay] dane = false`.
    async fn dane(&self, host: &str, port: u16) -> DaneState {
        if !self.config.tls_policy.dane
            || self.config.smarthost.is_some()
            || mx::address_literal(host).is_some()
            || host.parse::<IpAddr>().is_ok()
        {
            return DaneState::None;
        }
        if let Some(state) = self.dane_cache.get(host, port) {
            return state;
        }
        let state = self.dane_lookup(host, port).await;
        self.dane_cache.put(host, port, &state);
        state
    }

    async fn dane_lookup(&self, host: &str, port: u16) -> DaneState {
        match self.dns.address_authentic(host).await {
            Ok(true) => {}
            Ok(false) => return DaneState::None,
            Err(e) => {
                // The addresses themselves were found: only their security is unknown.
                tracing::warn!(
                    "relay: {host}: DNSSEC status of the address unknown ({e}): no DANE"
                );
                return DaneState::None;
            }
        }
        let name = format!("_{port}._tcp.{}", host.trim_end_matches('.'));
        let state = dane::state_of(host, self.dns.tlsa(&name).await);
        match &state {
            DaneState::Required(records) => {
                tracing::info!(
                    "relay: {host}: DANE: {} usable TLSA record(s)",
                    records.len()
                )
            }
            DaneState::Defer(e) => tracing::warn!("relay: {host}: DANE: {e}"),
            DaneState::None => {}
        }
        state
    }

    /// A session to a host with usable TLSA records: STARTTLS required, the chain checked by
    /// [`dane::DaneVerifier`] during the handshake; no plaintext retry, no AUTH.
    async fn open_dane(
        &self,
        dest: &Destination,
        records: &Arc<Vec<dns::secure::Tlsa>>,
    ) -> Result<Conn, (String, Option<&'static str>)> {
        let (config, failure) = dane::config(records.clone(), &dest.host).map_err(|e| (e, None))?;
        let connector = conn::connector(config);
        let setup = Setup {
            helo_name: &self.config.hostname,
            timeouts: &self.config.timeouts,
            tls: Some(&connector),
            require_tls: true,
            plaintext_auth: false,
            auth: None,
            check: None,
        };
        match Conn::open(dest, &setup).await {
            Ok(mut conn) => {
                conn.dane = true;
                Ok(conn)
            }
            Err(OpenError::NoStartTls(e)) => Err((
                format!("4.7.5 DANE: STARTTLS required by TLSA records, not offered ({e})"),
                Some("starttls-not-supported"),
            )),
            Err(OpenError::Tls(e)) => {
                let reason = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
                Err(match reason {
                    Some(reason) => (
                        format!("4.7.5 DANE: {reason} ({})", conn::label(dest)),
                        Some("validation-failure"),
                    ),
                    // The handshake failed before any certificate was seen.
                    None => (format!("4.7.5 DANE: {e}"), None),
                })
            }
            Err(OpenError::Failed(e)) => Err((e, None)),
        }
    }

    async fn open_conn(&self, dest: &Destination, enforce: bool) -> Result<Conn, String> {
        let smarthost = self.config.smarthost.is_some();
        let auth = self
            .config
            .smarthost
            .as_ref()
            .and(self.config.smarthost_auth.as_ref());
        let mode = if smarthost {
            self.config.smarthost_tls
        } else {
            SmarthostTls::Opportunistic
        };
        let mut setup = Setup {
            helo_name: &self.config.hostname,
            timeouts: &self.config.timeouts,
            tls: match mode {
                SmarthostTls::Verify => self.verified.as_ref(),
                SmarthostTls::Opportunistic => Some(&self.tls),
                SmarthostTls::None => None,
            },
            require_tls: mode == SmarthostTls::Verify || enforce,
            plaintext_auth: mode == SmarthostTls::None,
            auth,
            check: Some(&self.check),
        };
        let sts = |problem: Problem, detail: &str| {
            format!("4.7.5 MTA-STS: {} ({detail})", problem.describe())
        };
        match Conn::open(dest, &setup).await {
            Ok(conn) if enforce => match conn.certificate {
                Some(Ok(())) => Ok(conn),
                verdict => {
                    let problem = verdict
                        .and_then(Result::err)
                        .unwrap_or(Problem::ValidationFailure);
                    let label = conn.label.clone();
                    conn.quit().await;
                    Err(sts(problem, &label))
                }
            },
            Ok(conn) => Ok(conn),
            Err(OpenError::NoStartTls(e)) if enforce => Err(sts(Problem::StarttlsNotSupported, &e)),
            Err(OpenError::Tls(e)) if enforce => Err(sts(Problem::ValidationFailure, &e)),
            Err(OpenError::Failed(e) | OpenError::NoStartTls(e)) => Err(e),
            Err(OpenError::Tls(e)) if auth.is_some() || setup.require_tls => Err(e),
            Err(OpenError::Tls(e)) => {
                tracing::warn!("relay: {e}; retrying without STARTTLS");
                setup.tls = None;
                match Conn::open(dest, &setup).await {
                    Ok(conn) => Ok(conn),
                    Err(OpenError::Failed(e) | OpenError::Tls(e) | OpenError::NoStartTls(e)) => {
                        Err(e)
                    }
                }
            }
        }
    }
}

fn all(
    recipients: &[String],
    result: RcptResult,
    mx: Option<String>,
    tls: bool,
) -> Vec<RcptOutcome> {
    recipients
        .iter()
        .map(|recipient| RcptOutcome {
            recipient: recipient.clone(),
            result: result.clone(),
            mx: mx.clone(),
            tls,
            tls_version: None,
            verified: Verified::None,
        })
        .collect()
}

/// The MX hosts a policy lets mail go to: under `enforce` only those it names (none left:
/// every recipient is deferred with `4.7.5`); under `testing` all, the others logged.
fn policy_hosts(
    domain: &str,
    hosts: Vec<Destination>,
    demand: &Demand,
) -> Result<Vec<Destination>, String> {
    match demand {
        Demand::Opportunistic => Ok(hosts),
        Demand::StsTesting(_) => {
            for h in hosts.iter().filter(|h| !demand.allows(&h.host)) {
                tracing::warn!(
                    "relay: {domain}: MTA-STS testing: MX host {} not in the policy",
                    h.host
                );
            }
            Ok(hosts)
        }
        Demand::StsEnforce(c) => {
            let (kept, dropped): (Vec<_>, Vec<_>) =
                hosts.into_iter().partition(|h| demand.allows(&h.host));
            for h in &dropped {
                tracing::info!(
                    "relay: {domain}: MTA-STS: MX host {} not in the policy, skipped",
                    h.host
                );
            }
            if kept.is_empty() {
                return Err(format!(
                    "4.7.5 MTA-STS: {} ({domain} allows only {})",
                    Problem::MxNotInPolicy.describe(),
                    c.policy.mx.join(", ")
                ));
            }
            Ok(kept)
        }
    }
}

/// The problem named in an `open` error under `enforce` (`4.7.5 MTA-STS: <problem> (...)`).
fn problem_of(error: &str) -> Option<Problem> {
    let rest = error.strip_prefix("4.7.5 MTA-STS: ")?;
    [
        Problem::StarttlsNotSupported,
        Problem::CertificateHostMismatch,
        Problem::CertificateExpired,
        Problem::CertificateNotTrusted,
        Problem::ValidationFailure,
    ]
    .into_iter()
    .find(|p| rest.starts_with(p.describe()))
}

/// RFC 8689 §5: the message's header section has `TLS-Required: No`.
async fn tls_required_no(message: &MessageBody) -> bool {
    match message.read_block(0, Vec::new()).await {
        Ok(block) => tls_policy::tls_required_no(&block),
        Err(_) => false,
    }
}

/// Whether a pooled connection passed the TLSA check for `host`.
fn dane_for(conn: &Conn, host: &str) -> bool {
    conn.dane && conn.host.eq_ignore_ascii_case(host)
}

/// Whether a pooled connection passed the certificate check for `host`.
fn verified_for(conn: &Conn, host: &str) -> bool {
    matches!(conn.certificate, Some(Ok(()))) && conn.host.eq_ignore_ascii_case(host)
}

/// What `enforce` would have refused on a connection used under `testing`.
fn testing_problem(conn: &Conn, demand: &Demand) -> Option<Problem> {
    if !demand.allows(&conn.host) {
        return Some(Problem::MxNotInPolicy);
    }
    match &conn.certificate {
        _ if !conn.tls() => Some(Problem::StarttlsNotSupported),
        Some(Ok(())) => None,
        Some(Err(p)) => Some(*p),
        None => Some(Problem::ValidationFailure),
    }
}

/// The relay's own view of each result (debug): the runner logs the delivery line.
fn log(domain: &str, sender: &str, outcomes: &[RcptOutcome]) {
    for o in outcomes {
        let (status, reply) = match &o.result {
            RcptResult::Delivered { detail } => ("sent", detail),
            RcptResult::Deferred { reply, .. } => ("deferred", reply),
            RcptResult::Failed { reply, .. } => ("bounced", reply),
        };
        tracing::debug!(
            from = %format!("<{sender}>"),
            to = %format!("<{}>", o.recipient),
            relay = o.mx.as_deref().unwrap_or("none"),
            tls = o.tls_label(),
            verified = %o.verified,
            status,
            reply = %reply,
            "relay: {domain}:"
        );
    }
}
