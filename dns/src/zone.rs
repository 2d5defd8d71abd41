//! The zone model: a map from fully-qualified names to A records.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

/// One A record of a container group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Lower-case FQDN without the trailing dot, e.g. `web.local.berth.internal`.
    pub name: String,
    pub ip: Ipv4Addr,
}

/// Errors of zone changes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZoneError {
    /// The name is not inside this zone's origin.
    #[error("name '{name}' is outside the zone '{origin}'")]
    OutOfZone { name: String, origin: String },
}

/// The records the apiserver publishes; cheap to clone, shared by every reader.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Arc<str>,
    records: Arc<RwLock<BTreeMap<String, Ipv4Addr>>>,
}

impl Zone {
    /// A zone under `origin` (e.g. `berth.internal`).
    pub fn new(origin: &str) -> Self {
        Self {
            origin: origin.trim_end_matches('.').to_ascii_lowercase().into(),
            records: Arc::default(),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Adds or replaces the record for `name`.
    pub fn upsert(&self, name: &str, ip: Ipv4Addr) -> Result<(), ZoneError> {
        let name = self.check(name)?;
        self.records
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name, ip);
        Ok(())
    }

    /// Removes the record for `name`, if any.
    pub fn remove(&self, name: &str) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.records
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&name);
    }

    /// The address for `name`, if a record exists.
    pub fn lookup(&self, name: &str) -> Option<Ipv4Addr> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.records
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&name)
            .copied()
    }

    /// Every record, sorted by name.
    pub fn records(&self) -> Vec<Record> {
        self.records
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(name, ip)| Record {
                name: name.clone(),
                ip: *ip,
            })
            .collect()
    }

    fn check(&self, name: &str) -> Result<String, ZoneError> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let inside = name == *self.origin || name.ends_with(&format!(".{}", self.origin));
        if inside {
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
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_case_insensitively() {
        let zone = Zone::new("Berth.Internal.");
        zone.upsert("Web.local.berth.internal", Ipv4Addr::new(10, 0, 0, 5))
            .unwrap();
        assert_eq!(
            zone.lookup("web.LOCAL.berth.internal."),
            Some(Ipv4Addr::new(10, 0, 0, 5))
        );
        zone.remove("web.local.berth.internal");
        assert_eq!(zone.lookup("web.local.berth.internal"), None);
    }

    #[test]
    fn names_outside_the_origin_are_refused() {
        let zone = Zone::new("berth.internal");
        let err = zone
            .upsert("web.example.com", Ipv4Addr::LOCALHOST)
            .unwrap_err();
        assert!(matches!(err, ZoneError::OutOfZone { .. }));
        assert!(zone.records().is_empty());
    }
}
