//! The zone model: fully-qualified names under one origin, each with its A and AAAA addresses.
//!
//! Writers (the apiserver, or a standalone server following it) change records; readers (the DNS
//! server) take a snapshot, an `Arc` of an immutable map, so a query never waits on a writer and a
//! writer never waits on queries. Every change that changes something bumps the serial (the SOA
//! serial) and wakes [`Zone::changes`] watchers.
//!
//! Each change publishes a new [`Published`] state: the records, the names that exist only because
//! names below them have records (empty non-terminals, which answer NODATA rather than NXDOMAIN,
//! RFC 8020), the serial, and a version number. The DNS server's threads keep the state they last
//! read and compare only the version, one atomic load per query, so readers take the lock only once
//! per change and the next query after a change already sees it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
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
    published: Arc<RwLock<Arc<Published>>>,
    /// The version of `published`, readable without the lock (see [`Zone::version`]).
    version: Arc<AtomicU64>,
    serial: Arc<watch::Sender<u32>>,
}

/// One immutable state of the zone, as the DNS server answers from it.
#[derive(Debug, Default)]
pub(crate) struct Published {
    pub(crate) records: Snapshot,
    /// Every name strictly between the origin and a record's name, with the number of record names
    /// below it: these names exist even without records of their own.
    pub(crate) interior: Arc<HashMap<String, usize>>,
    pub(crate) serial: u32,
    /// Increases by one with every published change.
    pub(crate) version: u64,
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
        let serial = u32::try_from(now).unwrap_or(u32::MAX);
        let published = Published {
            serial,
            ..Published::default()
        };
        let (serial, _) = watch::channel(serial);
        Self {
            origin: normalize(origin).into(),
            published: Arc::new(RwLock::new(Arc::new(published))),
            version: Arc::default(),
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
        self.published().records.clone()
    }

    /// The state as it is now, records and serial together.
    pub(crate) fn published(&self) -> Arc<Published> {
        self.published
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The version of [`Zone::published`]: a reader that kept a state of this version still has
    /// the current one. Stored after the state itself, so a reader that sees a new version and then
    /// takes the state gets that version or a newer one.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Applies `change` to a copy of the records and publishes it if anything changed. `change`
    /// returns what happened to the set of names, so the interior names follow.
    fn change(&self, change: impl FnOnce(&mut HashMap<String, Arc<[IpAddr]>>) -> Option<Names>) {
        let mut published = self
            .published
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut records = HashMap::clone(&published.records);
        let Some(names) = change(&mut records) else {
            return;
        };
        let interior = match names {
            Names::Same => published.interior.clone(),
            Names::Added(name) => {
                let mut interior = HashMap::clone(&published.interior);
                for above in self.interior_of(&name) {
                    *interior.entry(above.to_owned()).or_default() += 1;
                }
                Arc::new(interior)
            }
            Names::Removed(name) => {
                let mut interior = HashMap::clone(&published.interior);
                for above in self.interior_of(&name) {
                    if let Some(count) = interior.get_mut(above) {
                        *count -= 1;
                        if *count == 0 {
                            interior.remove(above);
                        }
                    }
                }
                Arc::new(interior)
            }
            Names::All => {
                let mut interior = HashMap::new();
                for name in records.keys() {
                    for above in self.interior_of(name) {
                        *interior.entry(above.to_owned()).or_default() += 1;
                    }
                }
                Arc::new(interior)
            }
        };
        let serial = published.serial.wrapping_add(1);
        let version = published.version + 1;
        *published = Arc::new(Published {
            records: Arc::new(records),
            interior,
            serial,
            version,
        });
        self.version.store(version, Ordering::Release);
        self.serial.send_replace(serial);
    }

    /// The names strictly between `name` and the origin: `a.b.c.<origin>` -> `b.c.<origin>`,
    /// `c.<origin>`.
    fn interior_of<'n>(&self, name: &'n str) -> impl Iterator<Item = &'n str> {
        let origin_len = self.origin.len();
        let below_origin = name.len().saturating_sub(origin_len + 1);
        name.char_indices()
            .filter(move |&(i, c)| c == '.' && i < below_origin)
            .map(move |(i, _)| &name[i + 1..])
    }

    /// Sets the addresses of `name` (no addresses: removes it). Repeated addresses are kept once.
    pub fn upsert(&self, name: &str, addresses: Vec<IpAddr>) -> Result<(), ZoneError> {
        let name = self.check(name)?;
        if addresses.is_empty() {
            self.remove(&name);
            return Ok(());
        }
        let addresses = distinct(addresses);
        self.change(|records| {
            if records.get(&name).is_some_and(|a| **a == *addresses) {
                return None;
            }
            match records.insert(name.clone(), addresses.into()) {
                Some(_) => Some(Names::Same),
                None => Some(Names::Added(name)),
            }
        });
        Ok(())
    }

    /// Removes the records of `name`, if any.
    pub fn remove(&self, name: &str) {
        let name = normalize(name);
        self.change(|records| records.remove(&name).map(|_| Names::Removed(name)));
    }

    /// Replaces the whole zone with `records` (a follower's full resync). Records outside the
    /// origin are refused, and then nothing changes.
    pub fn replace_all(&self, records: Vec<Record>) -> Result<(), ZoneError> {
        let mut next = HashMap::with_capacity(records.len());
        for record in records {
            let name = self.check(&record.name)?;
            if !record.addresses.is_empty() {
                next.insert(name, Arc::from(distinct(record.addresses)));
            }
        }
        self.change(|records| {
            if *records == next {
                return None;
            }
            *records = next;
            Some(Names::All)
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

/// What a change did to the set of names with records.
enum Names {
    /// The same names, some with other addresses.
    Same,
    Added(String),
    Removed(String),
    /// Anything: recount the interior names.
    All,
}

/// `addresses` without repeats, in their first order: an RRset holds each record once.
fn distinct(addresses: Vec<IpAddr>) -> Vec<IpAddr> {
    let mut seen = Vec::with_capacity(addresses.len());
    for address in addresses {
        if !seen.contains(&address) {
            seen.push(address);
        }
    }
    seen
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

    #[test]
    fn interior_names_follow_the_records() {
        let zone = Zone::new("berth.internal");
        let ip = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
        let interior = |zone: &Zone| {
            let mut names: Vec<(String, usize)> = zone
                .published()
                .interior
                .iter()
                .map(|(name, count)| (name.clone(), *count))
                .collect();
            names.sort();
            names
        };
        let version = zone.version();
        zone.upsert("a.local.berth.internal", ip.clone()).unwrap();
        zone.upsert("b.local.berth.internal", ip.clone()).unwrap();
        zone.upsert("c.x.y.berth.internal", ip.clone()).unwrap();
        zone.upsert("berth.internal", ip.clone()).unwrap();
        assert_eq!(
            interior(&zone),
            [
                ("local.berth.internal".to_owned(), 2),
                ("x.y.berth.internal".to_owned(), 1),
                ("y.berth.internal".to_owned(), 1),
            ]
        );
        // Other addresses for a name do not change the names.
        zone.upsert(
            "a.local.berth.internal",
            vec![IpAddr::V6(Ipv6Addr::LOCALHOST)],
        )
        .unwrap();
        zone.remove("a.local.berth.internal");
        zone.remove("c.x.y.berth.internal");
        assert_eq!(interior(&zone), [("local.berth.internal".to_owned(), 1)]);
        zone.replace_all(vec![Record {
            name: "d.e.berth.internal".into(),
            addresses: ip,
        }])
        .unwrap();
        assert_eq!(interior(&zone), [("e.berth.internal".to_owned(), 1)]);
        // Every change published a version, with the serial the watchers see.
        let published = zone.published();
        assert_eq!(published.version, version + 8);
        assert_eq!(zone.version(), published.version);
        assert_eq!(published.serial, zone.serial());
    }

    #[test]
    fn repeated_addresses_are_kept_once() {
        let zone = Zone::new("berth.internal");
        let (a, b) = (
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        );
        zone.upsert("x.berth.internal", vec![b, a, b, a]).unwrap();
        assert_eq!(zone.lookup("x.berth.internal").unwrap().to_vec(), [b, a]);
    }
}
