//! In-process queues for standalone mode (placeholder, being written).
pub struct MemoryBroker;
