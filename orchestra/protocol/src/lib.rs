//! The contract between the OSCIED orchestra and its units.
//!
//! Both sides depend on this crate and never on each other: the encoder rules and the exact
//! ffmpeg command line (so a profile validated by the orchestra runs as validated on a unit),
//! the probe of a media file, the built-in profiles, the broker, the job messages, the node
//! API's payloads and the client units call it with, and the plumbing all units share
//! ([`mod@unit`]).

pub mod broker;
pub mod builtins;
pub mod client;
pub mod encoder;
pub mod filename;
pub mod http;
pub mod job;
pub mod node;
pub mod probe;
pub mod queue;
pub mod sandbox;
pub mod task;
pub mod unit;

pub use broker::{Broker, BrokerError, Consumer, Delivery};
pub use encoder::{EncoderError, EncoderName};
pub use job::{PublishAction, PublishJob, TransformJob};
pub use probe::{Probe, ProbeError};
pub use task::{ProgressReport, TaskStatus};
