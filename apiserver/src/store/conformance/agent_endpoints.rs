//! Agent endpoints: the latest one said wins, none forgets, and an unknown node changes nothing.

use std::sync::Arc;

use super::fixtures;
use crate::store::Store;

pub(crate) async fn the_latest_endpoint_wins_and_none_forgets(store: Arc<dyn Store>) {
    fixtures::join(&*store, "n1", 1000).await;
    fixtures::join(&*store, "n2", 1000).await;
    assert_eq!(
        store.agent_endpoint("n1").await.unwrap(),
        None,
        "none said yet"
    );
    store
        .set_agent_endpoint("n1", Some("https://10.0.0.1:8445"))
        .await
        .unwrap();
    store
        .set_agent_endpoint("n1", Some("https://10.0.0.2:8445"))
        .await
        .unwrap();
    store
        .set_agent_endpoint("n2", Some("https://10.0.0.3:8445"))
        .await
        .unwrap();
    assert_eq!(
        store.agent_endpoint("n1").await.unwrap().as_deref(),
        Some("https://10.0.0.2:8445")
    );
    store.set_agent_endpoint("n1", None).await.unwrap();
    assert_eq!(store.agent_endpoint("n1").await.unwrap(), None);
    assert_eq!(
        store.agent_endpoint("n2").await.unwrap().as_deref(),
        Some("https://10.0.0.3:8445")
    );
    store
        .set_agent_endpoint("ghost", Some("https://10.0.0.9:8445"))
        .await
        .unwrap();
    assert_eq!(store.agent_endpoint("ghost").await.unwrap(), None);
    assert_eq!(store.nodes().await.unwrap().len(), 2, "nodes still read");
}
