//! Connections open per client IP address, shared by all SMTP listeners: a slot is taken
//! when a connection is accepted and given back when it ends, so one address cannot hold
//! more than `smtp.max_connections_per_ip` (the listener answers the rest with `421 4.7.0`).
//! It counts; it does not refuse, log or time anything.

/// Connections open per client IP address, shared by all SMTP listeners.
#[derive(Debug, Default)]
pub struct PerIp {
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One counted connection; uncounted when dropped.
pub(crate) struct IpSlot<'a> {
    per_ip: &'a PerIp,
    ip: std::net::IpAddr,
}

impl PerIp {
    pub(crate) fn enter(&self, ip: std::net::IpAddr, max: usize) -> Option<IpSlot<'_>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot { per_ip: self, ip })
    }
}

impl Drop for IpSlot<'_> {
    fn drop(&mut self) {
        let mut open = self.per_ip.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}
