//! The OSCIED orchestra: the REST service that keeps users, medias, profiles and tasks and
//! hands work to units (docs/architecture.md). `main.rs` only parses flags and calls [`startup::run`].
//!
//! Where to look: a route in `http/<resource>.rs`, the rules it applies in `<resource>.rs`,
//! the store call in `store/`.

pub mod auth;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod http;
pub mod lifecycle;
pub mod logins;
pub mod medias;
pub mod models;
pub mod overview;
pub mod profiles;
pub mod publications;
pub mod startup;
pub mod state;
pub mod storage;
pub mod store;
pub mod task_records;
pub mod thumbnails;
pub mod tokens;
pub mod transforms;
pub mod units;
pub mod users;
