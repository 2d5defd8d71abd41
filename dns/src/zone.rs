//! The zone model: fully-qualified names under one origin, each with its A and AAAA addresses.
//!
//! Writers (the apiserver, or a standalone server following it) change records; readers (the DNS
//! server) take a snapshot, an `Arc` of an immutable map, so a query never waits on a writer and a
//! writer never waits on queries. Every change that changes something bumps the serial (the SOA
//! serial) and wakes [`Zone::changes`] watchers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

/// The addresses of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Lower-case FQDN without the trailing dot, e.g. `web.local.berth.internal`.
    pub name: String,
    /// A records (IPv4) and AAAA records (IPv6), in the order given.
    pub addresses: Vec<IpAddr>,
}

/// Errors of zone changes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZoneError {
    /// The name is not inside this zone's origin.
    #[error("name '{name}' is outside the zone '{origin}'")]
    OutOfZone { name: String, origin: String },
}

/// An immutable view of the zone's records, lower-case name -> addresses.
pub type Snapshot = Arc<HashMap<String, Arc<[IpAddr]>>>;

/// The records of one zone; cheap to clone, shared by every reader and writer.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Arc<str>,
    records: Arc<RwLock<Snapshot>>,
    serial: Arc<watch::Sender<u32>>,
}

/// Lower case, no trailing dot.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Zone {
    /// An empty zone under `origin` (e.g. `berth.internal`). The serial starts at the current Unix
    /// time in seconds, so a zone rebuilt after a restart never goes back.
    pub fn new(origin: &str) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs());
        let (serial, _) = watch::channel(u32::try_from(now).unwrap_or(u32::MAX));
        Self {
            origin: normalize(origin).into(),
            records: Arc::default(),
            serial: Arc::new(serial),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The SOA serial: it increases with every change.
    pub fn serial(&self) -> u32 {
        *self.serial.borrow()
    }

    /// The serial after each change, for followers.
    pub fn changes(&self) -> watch::Receiver<u32> {
        self.serial.subscribe()
    }

    /// The records as they are now.
    pub fn snapshot(&self) -> Snapshot {
        self.records
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Applies `change` to a copy of the records and publishes it if anything changed.
    fn change(&self, change: impl FnOnce(&mut HashMap<String, Arc<[IpAddr]>>) -> bool) {
        let mut records = self
            .records
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = HashMap::clone(&records);
        if change(&mut next) {
            *records = Arc::new(next);
            self.serial
                .send_modify(|serial| *serial = serial.wrapping_add(1));
        }
    }

    /// Sets the addresses of `name` (no addresses: removes it).
    pub fn upsert(&self, name: &str, addresses: Vec<IpAddr>) -> Result<(), ZoneError> {
        let name = self.check(name)?;
        if addresses.is_empty() {
            self.remove(&name);
            return Ok(());
        }
        self.change(|records| {
            if records.get(&name).is_some_and(|a| **a == *addresses) {
                return false;
            }
            records.insert(name, addresses.into());
            true
        });
        Ok(())
    }

    /// Removes the records of `name`, if any.
    pub fn remove(&self, name: &str) {
        let name = normalize(name);
        self.change(|records| records.remove(&name).is_some());
    }

    /// Replaces the whole zone with `records` (a follower's full resync). Records outside the
    /// origin are refused, and then nothing changes.
    pub fn replace_all(&self, records: Vec<Record>) -> Result<(), ZoneError> {
        let mut next = HashMap::with_capacity(records.len());
        for record in records {
            let name = self.check(&record.name)?;
            if !record.addresses.is_empty() {
                next.insert(name, Arc::from(record.addresses));
            }
        }
        self.change(|records| {
            if *records == next {
                return false;
            }
            *records = next;
            true
        });
        Ok(())
    }

    /// The addresses of `name`, if it has records.
    pub fn lookup(&self, name: &str) -> Option<Arc<[IpAddr]>> {
        self.snapshot().get(&normalize(name)).cloned()
    }

    /// Every record, sorted by name.
    pub fn records(&self) -> Vec<Record> {
        let mut records: Vec<Record> = self
            .snapshot()
            .iter()
            .map(|(name, addresses)| Record {
                name: name.clone(),
                addresses: addresses.to_vec(),
            })
            .collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        records
    }

    /// Whether `name` is the origin or under it.
    pub fn contains(&self, name: &str) -> bool {
        let name = normalize(name);
        name == *self.origin || name.ends_with(&format!(".{}", self.origin))
    }

    fn check(&self, name: &str) -> Result<String, ZoneError> {
        let name = normalize(name);
        if self.contains(&name) {
            Ok(name)
        } else {
            Err(ZoneError::OutOfZone {
                name,
                origin: self.origin.to_string(),
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn records_round_trip_case_insensitively() {
        let zone = Zone::new("Berth.Internal.");
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
        zone.upsert("Web.local.berth.internal", vec![ip]).unwrap();
        assert_eq!(
            zone.lookup("web.LOCAL.berth.internal.").unwrap().to_vec(),
            [ip]
        );
        zone.remove("web.local.berth.internal");
        assert_eq!(zone.lookup("web.local.berth.internal"), None);
    }

    #[test]
    fn names_outside_the_origin_are_refused() {
        let zone = Zone::new("berth.internal");
        let err = zone
            .upsert("web.example.com", vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .unwrap_err();
        assert!(matches!(err, ZoneError::OutOfZone { .. }));
        assert!(zone.records().is_empty());
        assert!(!zone.contains("xberth.internal"));
        assert!(zone.contains("BERTH.internal."));
    }

    #[test]
    fn only_real_changes_bump_the_serial() {
        let zone = Zone::new("berth.internal");
        let changes = zone.changes();
        let start = zone.serial();
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        zone.upsert("a.berth.internal", vec![v4, v6]).unwrap();
        assert_eq!(zone.serial(), start + 1);
        zone.upsert("a.berth.internal", vec![v4, v6]).unwrap();
        zone.remove("nothing.berth.internal");
        assert_eq!(zone.serial(), start + 1);
        assert!(changes.has_changed().unwrap());
        zone.replace_all(vec![Record {
            name: "b.berth.internal".into(),
            addresses: vec![v4],
        }])
        .unwrap();
        assert_eq!(zone.serial(), start + 2);
        assert_eq!(zone.records().len(), 1);
        zone.upsert("b.berth.internal", vec![]).unwrap();
        assert!(zone.records().is_empty());
    }
}
