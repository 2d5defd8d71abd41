//! The distinct node sizes per OS, for "could any joined node ever hold this group?" (a group none
//! could is refused at once rather than left Pending for ever). Nodes are never forgotten here: one
//! that is NotReady may come back.

use std::collections::HashMap;
use std::sync::Mutex;

use super::lock;
use crate::model::{OsType, Size};

#[derive(Debug, Default)]
pub(super) struct Capacities {
    sizes: Mutex<HashMap<OsType, Vec<Size>>>,
}

impl Capacities {
    /// A node of `size` running `os` has joined (or was in the store at start).
    pub(super) fn remember(&self, os: OsType, size: Size) {
        let mut sizes = lock(&self.sizes);
        let list = sizes.entry(os).or_default();
        if !list.contains(&size) {
            list.push(size);
        }
    }

    /// Whether some joined node (Ready or not) is large enough for `request` at all.
    pub(super) fn could_ever_fit(&self, os: OsType, request: &Size) -> bool {
        lock(&self.sizes)
            .get(&os)
            .is_some_and(|sizes| sizes.iter().any(|s| request.fits_in(s)))
    }

    #[cfg(test)]
    fn distinct(&self, os: OsType) -> usize {
        lock(&self.sizes).get(&os).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(cpu_millis: u64, memory_mib: u64, gpu: u32) -> Size {
        Size {
            cpu_millis,
            memory_mib,
            gpu,
        }
    }

    #[test]
    fn nothing_fits_before_a_node_joins() {
        let caps = Capacities::default();
        assert!(!caps.could_ever_fit(OsType::Linux, &size(1, 1, 0)));
    }

    #[test]
    fn a_request_must_fit_one_node_in_every_dimension() {
        let caps = Capacities::default();
        caps.remember(OsType::Linux, size(4000, 2048, 0));
        caps.remember(OsType::Linux, size(1000, 16384, 0));
        assert!(
            caps.could_ever_fit(OsType::Linux, &size(4000, 2048, 0)),
            "exactly one node"
        );
        assert!(caps.could_ever_fit(OsType::Linux, &size(1000, 16384, 0)));
        assert!(
            !caps.could_ever_fit(OsType::Linux, &size(4000, 16384, 0)),
            "CPU of one node and memory of the other is no node"
        );
        assert!(
            !caps.could_ever_fit(OsType::Linux, &size(1000, 1024, 1)),
            "no GPU anywhere"
        );
    }

    #[test]
    fn the_os_must_match() {
        let caps = Capacities::default();
        caps.remember(OsType::Windows, size(8000, 8192, 0));
        assert!(!caps.could_ever_fit(OsType::Linux, &size(1000, 1024, 0)));
        assert!(caps.could_ever_fit(OsType::Windows, &size(1000, 1024, 0)));
    }

    #[test]
    fn a_size_is_kept_once() {
        let caps = Capacities::default();
        for _ in 0..3 {
            caps.remember(OsType::Linux, size(2000, 4096, 0));
        }
        caps.remember(OsType::Linux, size(2000, 4096, 1));
        assert_eq!(caps.distinct(OsType::Linux), 2);
    }
}
