//! `GET /events`: the live event stream (Server-Sent Events).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::ApiQuery;
use super::responses::{Authed, BadQuery, NotFound};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::events::{EventFilter, EventType, Live};
use crate::live::{self, Watcher};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream_events))
}

/// A resumed stream's last event id is at most this long (longer ones are unknown anyway).
const MAX_EVENT_ID: usize = 128;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Event types, separated by commas: `task.created`, `task.status`, `task.progress`,
    /// `task.finished`, `media.status`, `media.published`, `media.unpublished`,
    /// `unit.online`, `unit.offline`, or a subject for all of its types (`task`, `media`,
    /// `unit`). Default: all.
    types: Option<String>,
    /// Only the events of this task (transform or publisher).
    task_id: Option<String>,
    /// Only the events about this media: its own, and those of the tasks that make it, use
    /// it as input or publish it.
    media_id: Option<String>,
    /// Resume after this event, for clients that cannot send the `Last-Event-ID` header
    /// (the header wins).
    last_event_id: Option<String>,
}

impl EventsQuery {
    fn filter(&self) -> ApiResult<EventFilter> {
        let mut types = Vec::new();
        for word in self.types.iter().flat_map(|t| t.split(',')).map(str::trim) {
            let named = EventType::named(word).ok_or_else(|| {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                ApiError::invalid_field(
                    "types",
                    format!(
                        "types: unknown event type {word:?}; known: {}, or task, media, unit",
                        known.join(", ")
                    ),
                )
            })?;
            for t in named {
                if !types.contains(&t) {
                    types.push(t);
                }
            }
        }
        Ok(EventFilter {
            types,
            task_id: id_field("task_id", self.task_id.as_deref())?,
            media_id: id_field("media_id", self.media_id.as_deref())?,
        })
    }
}

fn id_field(field: &str, raw: Option<&str>) -> ApiResult<Option<Uuid>> {
    raw.map(|raw| {
        Uuid::parse_str(raw)
            .map_err(|_| ApiError::invalid_field(field, format!("{field}: not a UUID: {raw:?}")))
    })
    .transpose()
}

/// The live events the caller may see (its own tasks' and medias', everyone's for admins,
/// and every unit's), as Server-Sent Events: `id`, `event` (the type) and `data` (the event
/// JSON). A client reconnecting with `Last-Event-ID` is sent what it missed in the last 10
/// minutes first, or a `reset` event (reload what you show, then carry on) when that is
/// unknown here. Also `reset` when events may have been lost on the way. A comment line
/// every `OSCIED_EVENTS_KEEPALIVE_SECS` keeps idle connections open.
#[utoipa::path(get, path = "/events", tag = "events", operation_id = "stream_events", params(EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id.")),
    responses(Authed, BadQuery, NotFound,
        (status = 200, description = "the event stream", content_type = "text/event-stream", body = crate::events::Event),
        (status = 429, description = "too many streams open for this account", body = ErrorBody)))]
async fn stream_events(
    State(state): State<AppState>,
    watcher: Watcher,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<Response> {
    let filter = query.filter()?;
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id)
        .filter(|id| !id.is_empty())
        .map(|id| id.chars().take(MAX_EVENT_ID).collect::<String>());
    let events = live::open(&state, watcher, filter, last_id.as_deref()).await?;
    let opening = SseEvent::default()
        .comment("OSCIED events")
        .retry(Duration::from_secs(3));
    let stream = futures_util::stream::once(async move { opening })
        .chain(events.map(sse_event))
        .map(Ok::<_, Infallible>);
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_secs(state.config.events_keepalive_secs))
        .text("keep-alive");
    let mut response = Sse::new(stream).keep_alive(keep_alive).into_response();
    // Nginx and the like would otherwise buffer the stream.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(response)
}

fn sse_event(item: Live) -> SseEvent {
    match item {
        Live::Event(event) => {
            let data = serde_json::to_string(event.as_ref()).unwrap_or_default();
            SseEvent::default()
                .id(event.id.as_str())
                .event(event.kind.as_str())
                .data(data)
        }
        Live::Reset(reason) => SseEvent::default()
            .event("reset")
            .data(serde_json::json!({ "reason": reason }).to_string()),
    }
}
