//! The OSCIED orchestra: the REST service that keeps users, medias, profiles and tasks and
//! hands work to units (docs/architecture.md). `main.rs` only parses flags and calls [`startup::run`].
//!
//! Where to look: a route in `http/<resource>.rs`, the rules it applies in `<resource>.rs`
//! (a task kind's in `tasks/<kind>.rs`, the life every task shares in `tasks/mod.rs`), the
//! store call in `store/`. Layers, each using only those below it: `startup` and `diagram` (the
//! state machines drawn for schematics/) → `http` and
//! `loops` (the background work; only start-up spawns it) → `units`, `overview`, `live` →
//! `tasks` →
//! `medias`, `users`, `profiles`, `health`, `queues`, `outbox`, `lifecycle`, `idempotency` → `auth`,
//! `tokens` → `state` and the components it holds (`secrets`, `logins`, `storage`,
//! `thumbnails`, `events`, `metrics`) → `store`, `models`. `http` reads the request (its extractors call `auth`)
//! and calls one domain function per route, never the store. The test in `module_graph.rs`
//! fails on any import cycle.

pub mod auth;
pub mod config;
pub mod diagram;
pub mod error;
pub mod events;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod lifecycle;
pub mod live;
pub mod locks;
pub mod logins;
pub mod loops;
pub mod medias;
pub mod metrics;
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
pub mod totals;
pub mod units;
pub mod users;
pub mod webhook_client;
pub mod webhooks;
