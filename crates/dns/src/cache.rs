//! A bounded cache of parsed DNS answers kept until their TTL runs out: what mail-auth's
//! [`ResolverCache`] hook asks for (SPF, DKIM keys, DMARC records, MX and address sets).
//!
//! The raw answers are cached by hickory itself (also by TTL); this cache spares the parsing
//! and the trips through hickory for records read on every message of a busy sender. It
//! holds at most [`MAX_ENTRIES`] names: when full, expired entries go first, and if none has
//! expired the whole cache is emptied (a flood of unique names cannot grow it). It does no
//! I/O and never decides anything: a miss is only a slower answer.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mail_auth::{Parameters, RecordSet, ResolverCache, Txt, MX};

/// Names kept per record type.
pub const MAX_ENTRIES: usize = 10_000;
/// No answer is trusted longer than this, whatever its TTL says.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// Answers by name, each with the instant it stops being valid.
pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> TtlCache<K, V> {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries held (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.lock();
        match entries.get(name) {
            Some((value, until)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let now = Instant::now();
        let until = valid_until.min(now + MAX_TTL);
        if until <= now {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, u)| *u > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, until));
    }
}

/// One cache per record type mail-auth looks up.
pub struct Caches {
    pub txt: TtlCache<Box<str>, Txt>,
    pub mx: TtlCache<Box<str>, RecordSet<MX>>,
    pub ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    pub ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    pub ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
}

/// mail-auth's parameters with every cache of [`Caches`] attached.
pub type Cached<'x, P> = Parameters<
    'x,
    P,
    TtlCache<Box<str>, Txt>,
    TtlCache<Box<str>, RecordSet<MX>>,
    TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    TtlCache<IpAddr, RecordSet<Box<str>>>,
>;

impl Caches {
    pub fn new(capacity: usize) -> Caches {
        Caches {
            txt: TtlCache::new(capacity),
            mx: TtlCache::new(capacity),
            ipv4: TtlCache::new(capacity),
            ipv6: TtlCache::new(capacity),
            ptr: TtlCache::new(capacity),
        }
    }

    /// `params` for a mail-auth check, answered from these caches where they can.
    pub fn parameters<P>(&self, params: P) -> Cached<'_, P> {
        Parameters::new(params)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_and_stays_bounded() {
        let c: TtlCache<Box<str>, u32> = TtlCache::new(3);
        let later = Instant::now() + Duration::from_secs(60);
        c.insert("a".into(), 1, later);
        assert_eq!(c.get("a"), Some(1));
        // Already expired: not even stored.
        c.insert("b".into(), 2, Instant::now());
        assert_eq!(c.get("b"), None);
        c.insert("b".into(), 2, later);
        c.insert("c".into(), 3, later);
        assert_eq!(c.len(), 3);
        // Full and nothing expired: emptied, then the new one kept.
        c.insert("d".into(), 4, later);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get("d"), Some(4));
        assert_eq!(c.get("a"), None);
        // A TTL of days is cut to MAX_TTL (still there now).
        c.insert(
            "e".into(),
            5,
            Instant::now() + Duration::from_secs(86_400 * 7),
        );
        assert_eq!(c.get("e"), Some(5));
    }
}
