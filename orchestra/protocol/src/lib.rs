//! The contract between the OSCIED orchestra and its units.
//!
//! Both sides depend on this crate and never on each other: the encoder rules and the exact
//! ffmpeg command line (so a profile validated by the orchestra runs as validated on a unit),
//! the probe of a media file, and the built-in profiles.

pub mod builtins;
pub mod encoder;
pub mod probe;

pub use encoder::{EncoderError, EncoderName};
pub use probe::{Probe, ProbeError};
