//! Operations: stored as given, cancelled with a stop.

use std::sync::Arc;

use super::fixtures::{create_placed, group, join, new_group, operation};
use crate::store::{OperationKind, OperationRecord, OperationStatus, Store};

pub(crate) async fn operations_round_trip_and_stop_cancels_pending_ones(store: Arc<dyn Store>) {
    join(&*store, "n1", 4000).await;
    let g = new_group("o", 100);
    create_placed(&*store, &g, "n1").await;
    let created = store.operation(&g.operation_id).await.unwrap().unwrap();
    assert_eq!(
        (
            created.kind,
            created.status,
            created.generation,
            created.group_id.as_str()
        ),
        (
            OperationKind::Create,
            OperationStatus::Pending,
            1,
            g.id.as_str()
        )
    );
    assert_eq!((created.started_ms, created.ended_ms), (1, None));

    let record = group(&*store, &g.id).await;
    let done = OperationRecord {
        status: OperationStatus::Failed,
        error_code: Some("Code".to_owned()),
        error_message: Some("message".to_owned()),
        ended_ms: Some(9),
        ..operation(&record, OperationKind::DeleteResourceGroup, 8)
    };
    store.insert_operation(&done).await.unwrap();
    assert_eq!(store.operation(&done.id).await.unwrap(), Some(done));
    assert_eq!(store.operation("nope").await.unwrap(), None);

    store.stop_group(&g.id, 10).await.unwrap();
    let cancelled = store.operation(&g.operation_id).await.unwrap().unwrap();
    assert_eq!(
        (cancelled.status, cancelled.ended_ms),
        (OperationStatus::Canceled, Some(10))
    );
}
