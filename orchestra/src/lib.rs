//! The OSCIED orchestra: the REST service that keeps users, medias, profiles and tasks and
//! hands work to units (docs/architecture.md). `main.rs` only parses flags and calls [`startup::run`].
//!
//! Where to look: a route in `http/<resource>.rs`, the rules it applies in `<resource>.rs`
//! (a task kind's in `tasks/<kind>.rs`, the life every task shares in `tasks/mod.rs`), the
//! store call in `store/`. Layers, each using only those below it: `http` → `loops` (only
//! start-up spawns them) → `units`, `overview` → `tasks` → `medias`, `queues`, `outbox`,
//! `lifecycle` → `state` and the components it holds → `store`, `models`. Who is calling
//! (`auth`) and `tokens` sit just above `state`, `users`, `profiles` and `health` beside
//! `medias`; `secrets` is a component under `state`. `http` reads the request (its extractors call `auth`) and calls
//! one domain function per route, never the store. The test in `module_graph.rs` fails on
//! any import cycle.

pub mod auth;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod lifecycle;
pub mod logins;
pub mod loops;
pub mod medias;
pub mod models;
#[cfg(test)]
mod module_graph;
pub mod outbox;
pub mod overview;
pub mod profiles;
pub mod queues;
pub mod secrets;
pub mod startup;
pub mod state;
pub mod storage;
pub mod store;
pub mod tasks;
pub mod thumbnails;
pub mod tokens;
pub mod units;
pub mod users;
