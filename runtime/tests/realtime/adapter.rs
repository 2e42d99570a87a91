//! The PubSub adapter seam: the in-memory adapter passes the shared conformance suite, and a
//! broadcast on one node reaches WebSocket clients on another.

use std::sync::Arc;

use fawkes_runtime::testing::adapter_conformance;
use fawkes_runtime::{Adapter, MemoryBus, Runtime, RuntimeConfig};

#[tokio::test]
async fn the_memory_adapter_passes_the_conformance_suite() {
    let bus = MemoryBus::new();
    adapter_conformance(|node| Arc::new(bus.adapter(node)) as Arc<dyn Adapter>).await;
}

#[tokio::test]
async fn a_single_node_runtime_is_named_local() {
    let runtime = Runtime::start(RuntimeConfig::default())
        .await
        .expect("runtime");
    assert_eq!(runtime.pubsub().node_name(), "local");
}
