//! RabbitMQ through lapin (placeholder, being written).
pub struct AmqpBroker;
