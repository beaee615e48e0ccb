//! Admission of client connections: who gets one of a listener's slots, and who must give
//! one up, so that a flood of idle connections cannot take a server off the network.
//!
//! What it does: counts open sessions in total, per client address and per client network
//! (an IPv4 /24, an IPv6 /64; [`net_key`]) and refuses a newcomer over the per-address or
//! per-network limit (trusted clients are exempt from both). When every slot is taken it does
//! not refuse the newcomer: it picks the oldest session still open to eviction (one that has
//! not been [`Admission::protect`]ed: not trusted, not authenticated, no `MAIL` sent) and
//! hands its token back so the caller can close it (`421 4.7.0`); the newcomer takes its
//! place at once. Only when no session may be evicted is the newcomer refused. It also keeps
//! the stress state: entered when the open sessions reach `stress_at`, left when they fall
//! back to `calm_at` (half of it, so a server hovering at the line does not flap); the change
//! is returned for the caller to log.
//!
//! What it does not do: I/O, locking, clocks or logging. The listeners share one instance
//! behind a mutex ([`crate::admission_gate`]), close evicted sessions themselves and apply
//! the stress timeouts. `T` is whatever the caller needs to reach an evicted session.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The limits of one listener family (all SMTP ports together, or all POP3 ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Sessions open at once.
    pub max_connections: usize,
    /// Sessions open at once from one client address.
    pub max_per_ip: usize,
    /// Sessions open at once from one client network (IPv4 /24, IPv6 /64).
    pub max_per_net: usize,
    /// Stress mode begins when this many sessions are open.
    pub stress_at: usize,
}

impl AdmissionLimits {
    /// Limits with stress at `percent` of `max_connections` (at least one session).
    pub fn new(
        max_connections: usize,
        max_per_ip: usize,
        max_per_net: usize,
        percent: u8,
    ) -> AdmissionLimits {
        let stress_at = (max_connections * usize::from(percent.min(100))).div_ceil(100);
        AdmissionLimits {
            max_connections,
            max_per_ip,
            max_per_net,
            stress_at: stress_at.clamp(1, max_connections.max(1)),
        }
    }

    /// Stress mode ends when the open sessions fall to this many.
    pub fn calm_at(&self) -> usize {
        self.stress_at / 2
    }
}

/// The number of an admitted session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(u64);

/// Why a newcomer was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken by a session that may not be evicted.
    Full,
    /// Its address has `max_per_ip` sessions open.
    PerIp,
    /// Its network has `max_per_net` sessions open.
    PerNet,
}

/// A change of the stress state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StressChange {
    Entered,
    Left,
}

/// An admitted newcomer.
#[derive(Debug, PartialEq, Eq)]
pub struct Admitted<T> {
    pub id: SessionId,
    /// The session that gave up its slot for the newcomer: the caller closes it.
    pub evicted: Option<T>,
}

struct Entry<T> {
    ip: IpAddr,
    trusted: bool,
    token: T,
}

/// The open sessions of one listener family and its stress state.
pub struct Admission<T> {
    limits: AdmissionLimits,
    sessions: BTreeMap<SessionId, Entry<T>>,
    /// Sessions that may still be evicted, oldest first (ids grow with admission time).
    evictable: BTreeSet<SessionId>,
    per_ip: HashMap<IpAddr, usize>,
    per_net: HashMap<IpAddr, usize>,
    next: u64,
    stressed: bool,
}

/// The client network an address counts against: its IPv4 /24 or IPv6 /64. An IPv4-mapped
/// IPv6 address counts as its IPv4 address.
pub fn net_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

fn count_up(map: &mut HashMap<IpAddr, usize>, key: IpAddr) {
    *map.entry(key).or_insert(0) += 1;
}

fn count_down(map: &mut HashMap<IpAddr, usize>, key: IpAddr) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

impl<T> Admission<T> {
    pub fn new(limits: AdmissionLimits) -> Admission<T> {
        Admission {
            limits,
            sessions: BTreeMap::new(),
            evictable: BTreeSet::new(),
            per_ip: HashMap::new(),
            per_net: HashMap::new(),
            next: 0,
            stressed: false,
        }
    }

    pub fn limits(&self) -> &AdmissionLimits {
        &self.limits
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.sessions.len()
    }

    /// True in stress mode.
    pub fn stressed(&self) -> bool {
        self.stressed
    }

    /// Sessions open from `ip` (trusted ones included).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    /// Admits a newcomer from `ip`, evicting the oldest evictable session when every slot is
    /// taken. A trusted client is exempt from the per-address and per-network limits and is
    /// never evicted. Returns the stress change this caused, if any.
    pub fn admit(
        &mut self,
        ip: IpAddr,
        trusted: bool,
        token: T,
    ) -> (Result<Admitted<T>, Refusal>, Option<StressChange>) {
        let ip = ip.to_canonical();
        let net = net_key(ip);
        if !trusted {
            if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.max_per_ip {
                return (Err(Refusal::PerIp), None);
            }
            if self.per_net.get(&net).copied().unwrap_or(0) >= self.limits.max_per_net {
                return (Err(Refusal::PerNet), None);
            }
        }
        let mut evicted = None;
        if self.sessions.len() >= self.limits.max_connections {
            let Some(&oldest) = self.evictable.first() else {
                return (Err(Refusal::Full), None);
            };
            evicted = self.remove(oldest).map(|e| e.token);
        }
        let id = SessionId(self.next);
        self.next += 1;
        count_up(&mut self.per_ip, ip);
        count_up(&mut self.per_net, net);
        if !trusted {
            self.evictable.insert(id);
        }
        self.sessions.insert(id, Entry { ip, trusted, token });
        (Ok(Admitted { id, evicted }), self.update_stress())
    }

    /// The session sent `MAIL` or authenticated: it is never evicted from now on.
    pub fn protect(&mut self, id: SessionId) {
        self.evictable.remove(&id);
    }

    /// The session ended (a session already evicted is ignored). Returns the stress change.
    pub fn release(&mut self, id: SessionId) -> Option<StressChange> {
        self.remove(id)?;
        self.update_stress()
    }

    /// True if the session is open and trusted.
    pub fn is_trusted(&self, id: SessionId) -> bool {
        self.sessions.get(&id).is_some_and(|e| e.trusted)
    }

    fn remove(&mut self, id: SessionId) -> Option<Entry<T>> {
        let entry = self.sessions.remove(&id)?;
        self.evictable.remove(&id);
        count_down(&mut self.per_ip, entry.ip);
        count_down(&mut self.per_net, net_key(entry.ip));
        Some(entry)
    }

    fn update_stress(&mut self) -> Option<StressChange> {
        let open = self.sessions.len();
        if !self.stressed && open >= self.limits.stress_at {
            self.stressed = true;
            Some(StressChange::Entered)
        } else if self.stressed && open <= self.limits.calm_at() {
            self.stressed = false;
            Some(StressChange::Left)
        } else {
            None
        }
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
