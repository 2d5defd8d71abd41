//! What both backends' [`UsageReader`](super::UsageReader)s share, whatever their driver: who a
//! subject is and which subjects an export keeps, the accrued pieces of open runs, and how those
//! pieces merge into the ledger's order. The readers only fetch rows.

use std::collections::HashMap;
use std::rc::Rc;

use crate::billing::{Period, Rates, split};
use crate::store::{Result, StoreError, UsageFilter, UsageGroup, UsageRow};

/// Subjects kept at once; past this the cache starts over (exports over more subjects stay bounded).
pub(crate) const SUBJECTS_CACHED: usize = 15_000;

/// The columns of [`Subject`], in its order, from `usage_subjects s JOIN usage_groups g` (the same SQL
/// in both dialects).
pub(crate) const SUBJECT_SELECT: &str = "s.group_id, s.node_id, g.subscription, g.resource_group, g.name, g.location, g.tags, g.os_type";

/// Who a subject is: group id, node id, subscription, resource group, name, location, tags, OS
/// (the columns of [`SUBJECT_SELECT`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Subject(pub(crate) [String; 8]);

impl Subject {
    pub(crate) fn group(&self) -> UsageGroup<'_> {
        let s = &self.0;
        UsageGroup {
            id: &s[0],
            node_id: &s[1],
            subscription: &s[2],
            resource_group: &s[3],
            name: &s[4],
            location: &s[5],
            tags: &s[6],
            os_type: &s[7],
        }
    }

    fn in_subscription(&self, subscription: Option<&str>) -> bool {
        subscription.is_none_or(|s| self.0[2].eq_ignore_ascii_case(s))
    }
}

/// The subjects an export has looked up: `None` for one it leaves out (another subscription's, or
/// gone).
pub(crate) struct Subjects<'f> {
    subscription: Option<&'f str>,
    known: HashMap<i64, Option<Rc<Subject>>>,
}

impl<'f> Subjects<'f> {
    pub(crate) fn new(filter: &'f UsageFilter) -> Self {
        Self {
            subscription: filter.subscription.as_deref(),
            known: HashMap::new(),
        }
    }

    /// `Some` once looked up: the subject, or `None` if the export leaves it out.
    pub(crate) fn get(&self, key: i64) -> Option<Option<Rc<Subject>>> {
        self.known.get(&key).cloned()
    }

    pub(crate) fn contains(&self, key: i64) -> bool {
        self.known.contains_key(&key)
    }

    /// Makes room for `more` lookups, forgetting every subject if they would pass the bound.
    pub(crate) fn make_room(&mut self, more: usize) {
        if self.known.len() + more > SUBJECTS_CACHED {
            self.known.clear();
        }
    }

    /// Keeps what the lookup of `key` found (`None`: no such subject).
    pub(crate) fn insert(&mut self, key: i64, found: Option<Subject>) -> Option<Rc<Subject>> {
        let kept = found
            .filter(|s| s.in_subscription(self.subscription))
            .map(Rc::new);
        self.known.insert(key, kept.clone());
        kept
    }
}

/// An open run as a reader found it: the ledger holds it up to `billed_until_ms`.
pub(crate) struct OpenRun {
    pub(crate) run_id: i64,
    pub(crate) billed_until_ms: i64,
    pub(crate) cpu_millis: i64,
    pub(crate) memory_mib: i64,
    pub(crate) gpu: i64,
    pub(crate) gpu_sku: Option<String>,
    pub(crate) subject_key: i64,
    pub(crate) subject: Subject,
}

/// An open run's accrued piece, owned (the open runs are few: those running now).
struct Accrued {
    meter: String,
    start_ms: i64,
    end_ms: i64,
    quantity: i64,
    run_id: i64,
    subject_key: i64,
    subject: Rc<Subject>,
}

impl Accrued {
    fn row(&self) -> UsageRow<'_> {
        UsageRow {
            ledger_id: 0,
            subject: self.subject_key,
            meter: &self.meter,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            quantity: self.quantity,
            accrued: true,
            group: self.subject.group(),
        }
    }
}

/// The open runs' pieces from where the ledger stops to now, one per meter and UTC day, in the
/// export's order, handed out between the ledger's rows.
pub(crate) struct Accruals {
    pieces: std::iter::Peekable<std::vec::IntoIter<Accrued>>,
}

impl Accruals {
    /// The pieces of `open` (from the same snapshot as the ledger rows) that `filter` selects.
    pub(crate) fn new(open: Vec<OpenRun>, filter: &UsageFilter, now_ms: i64) -> Self {
        let from = Period::Day.floor(filter.from_ms);
        let mut pieces = Vec::new();
        for run in open {
            if !run.subject.in_subscription(filter.subscription.as_deref()) {
                continue;
            }
            let rates = Rates {
                os_type: crate::model::OsType::parse(&run.subject.0[7])
                    .unwrap_or(crate::model::OsType::Linux),
                cpu_millis: run.cpu_millis,
                memory_mib: run.memory_mib,
                gpu: run.gpu,
                gpu_sku: run.gpu_sku,
            };
            let subject = Rc::new(run.subject);
            for (meter, rate) in rates.meters() {
                if rate == 0 {
                    continue;
                }
                for (start, end) in split(run.billed_until_ms, now_ms, Period::Day) {
                    if start >= from && start < filter.to_ms {
                        pieces.push(Accrued {
                            meter: meter.clone(),
                            start_ms: start,
                            end_ms: end,
                            quantity: rate * (end - start),
                            run_id: run.run_id,
                            subject_key: run.subject_key,
                            subject: Rc::clone(&subject),
                        });
                    }
                }
            }
        }
        pieces.sort_by(|a, b| {
            (a.start_ms, a.run_id, &a.meter).cmp(&(b.start_ms, b.run_id, &b.meter))
        });
        Self {
            pieces: pieces.into_iter().peekable(),
        }
    }

    /// Hands `each` the pieces that start before a ledger row starting at `start_ms`.
    pub(crate) fn before(
        &mut self,
        start_ms: i64,
        each: &mut dyn FnMut(&UsageRow<'_>) -> std::io::Result<()>,
    ) -> Result<()> {
        while let Some(piece) = self.pieces.next_if(|a| a.start_ms < start_ms) {
            each(&piece.row()).map_err(StoreError::Sink)?;
        }
        Ok(())
    }

    /// Hands `each` the pieces after the ledger's last row.
    pub(crate) fn rest(
        self,
        each: &mut dyn FnMut(&UsageRow<'_>) -> std::io::Result<()>,
    ) -> Result<()> {
        for piece in self.pieces {
            each(&piece.row()).map_err(StoreError::Sink)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(subscription: &str) -> Subject {
        let mut s = Subject::default();
        s.0[2] = subscription.to_owned();
        s.0[7] = "Linux".to_owned();
        s
    }

    #[test]
    fn accrued_pieces_go_before_the_ledger_rows_they_precede() {
        const DAY: i64 = 86_400_000;
        let filter = UsageFilter {
            from_ms: DAY + 5,
            to_ms: 3 * DAY,
            subscription: Some("SUB".to_owned()),
        };
        let open = |run_id, sub: &str| OpenRun {
            run_id,
            billed_until_ms: DAY - 1_000,
            cpu_millis: 1_000,
            memory_mib: 0,
            gpu: 0,
            gpu_sku: None,
            subject_key: run_id,
            subject: subject(sub),
        };
        let mut accruals = Accruals::new(
            vec![open(2, "sub"), open(1, "other")],
            &filter,
            DAY + 60_000,
        );
        let seen = std::cell::RefCell::new(Vec::new());
        let mut each = |row: &UsageRow<'_>| {
            seen.borrow_mut()
                .push((row.start_ms, row.end_ms, row.quantity, row.subject));
            Ok(())
        };
        accruals.before(DAY, &mut each).unwrap();
        assert!(
            seen.borrow().is_empty(),
            "the piece before the day of `from` is left out"
        );
        accruals.before(DAY + 1, &mut each).unwrap();
        assert_eq!(*seen.borrow(), vec![(DAY, DAY + 60_000, 60_000_000, 2)]);
        accruals.rest(&mut each).unwrap();
        assert_eq!(
            seen.borrow().len(),
            1,
            "another subscription's run is not accrued"
        );
    }

    #[test]
    fn subjects_of_another_subscription_are_left_out_and_the_cache_stays_bounded() {
        let filter = UsageFilter {
            from_ms: 0,
            to_ms: 1,
            subscription: Some("sub".to_owned()),
        };
        let mut subjects = Subjects::new(&filter);
        assert!(subjects.insert(1, Some(subject("SUB"))).is_some());
        assert!(subjects.insert(2, Some(subject("other"))).is_none());
        assert!(subjects.insert(3, None).is_none());
        assert!(
            subjects.get(2).is_some_and(|s| s.is_none()),
            "known, left out"
        );
        assert!(subjects.get(4).is_none(), "not looked up yet");
        subjects.make_room(SUBJECTS_CACHED - 3);
        assert!(subjects.contains(1));
        subjects.make_room(SUBJECTS_CACHED - 2);
        assert!(!subjects.contains(1), "forgotten to stay bounded");
    }
}
