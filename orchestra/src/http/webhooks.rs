//! `/webhooks`: a user's subscriptions to the events, and what was delivered to each.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::responses::{Authed, BadQuery, JsonBody, NotFound};
use super::{ApiJson, ApiQuery, list_options, list_owner, parse_id};
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::models::{Delivery, DeliveryStatus, Page, Webhook};
use crate::state::AppState;
use crate::webhooks::{self, NewWebhook, WebhookPatch};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, patch_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(replay_delivery))
}

super::sort_param!(WebhookSort, SORTS);
super::sort_param!(DeliverySort, DELIVERY_SORTS);

const SORTS: &[(&str, &str)] = &[("created_at", "created_at")];
const DELIVERY_SORTS: &[(&str, &str)] = &[("created_at", "created_at"), ("next_at", "next_at")];

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct WebhookListQuery {
    /// Admins: one user's webhooks (default: everyone's). Others see only their own.
    user_id: Option<Uuid>,
    /// The callback of this task (its `callback_url`).
    task_id: Option<Uuid>,
    /// Default 50, at most 1000.
    #[param(maximum = 1000)]
    limit: Option<u64>,
    skip: Option<u64>,
    /// `-` for descending. Default: created_at.
    #[param(value_type = Option<WebhookSort>, inline)]
    sort: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeliveryListQuery {
    #[param(value_type = Option<DeliveryStatus>, inline)]
    status: Option<DeliveryStatus>,
    /// Default 50, at most 1000.
    #[param(maximum = 1000)]
    limit: Option<u64>,
    skip: Option<u64>,
    /// `-` for descending. Default: -created_at (newest first).
    #[param(value_type = Option<DeliverySort>, inline)]
    sort: Option<String>,
}

/// Subscribe a URL to events. The answer carries the signing secret, this once.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = NewWebhook,
    responses(Authed, JsonBody, (status = 201, description = "the webhook, with its secret", body = Webhook),
        (status = 403, description = "root owns no webhooks: subscribe as a user", body = ErrorBody),
        (status = 422, description = "an invalid or refused URL, an unknown event type, a bad secret, too many webhooks", body = ErrorBody)))]
async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewWebhook>,
) -> ApiResult<(StatusCode, Json<Webhook>)> {
    let hook = webhooks::create(&state, &caller, new).await?;
    Ok((StatusCode::CREATED, Json(hook)))
}

/// List webhooks: one's own, or everyone's for admins.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", params(WebhookListQuery),
    responses(Authed, BadQuery, (status = 200, description = "a page of webhooks", body = Page<Webhook>)))]
async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<WebhookListQuery>,
) -> ApiResult<Json<Page<Webhook>>> {
    let opts = list_options(
        query.limit,
        query.skip,
        query.sort.as_deref(),
        SORTS,
        "created_at",
    )?;
    let owner = list_owner(&caller, query.user_id);
    Ok(Json(
        webhooks::list(&state, owner, query.task_id, &opts).await?,
    ))
}

/// Get a webhook (without its secret).
#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses(Authed, NotFound, (status = 200, description = "the webhook", body = Webhook)))]
async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Webhook>> {
    let id = parse_id("webhook", &id)?;
    Ok(Json(webhooks::get(&state, &caller, id).await?))
}

/// Change a webhook's URL or events, or enable (`"enabled": true`, which also clears its
/// failure count) or disable it.
#[utoipa::path(patch, path = "/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)), request_body = WebhookPatch,
    responses(Authed, JsonBody, NotFound, (status = 200, description = "the webhook as changed", body = Webhook),
        (status = 422, description = "an invalid or refused URL, an unknown event type", body = ErrorBody)))]
async fn patch_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<WebhookPatch>,
) -> ApiResult<Json<Webhook>> {
    let id = parse_id("webhook", &id)?;
    Ok(Json(webhooks::update(&state, &caller, id, patch).await?))
}

/// Delete a webhook and its deliveries; nothing more is sent to it.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses(Authed, NotFound, (status = 204, description = "deleted")))]
async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id("webhook", &id)?;
    webhooks::delete(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A webhook's deliveries, each with every attempt (status, latency, error); newest first.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path), DeliveryListQuery),
    responses(Authed, BadQuery, NotFound, (status = 200, description = "a page of deliveries", body = Page<Delivery>)))]
async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DeliveryListQuery>,
) -> ApiResult<Json<Page<Delivery>>> {
    let id = parse_id("webhook", &id)?;
    let opts = list_options(
        query.limit,
        query.skip,
        query.sort.as_deref(),
        DELIVERY_SORTS,
        "-created_at",
    )?;
    Ok(Json(
        webhooks::deliveries(&state, &caller, id, query.status, &opts).await?,
    ))
}

/// One delivery of a webhook.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries/{delivery_id}", tag = "webhooks", params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses(Authed, NotFound, (status = 200, description = "the delivery", body = Delivery)))]
async fn get_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<Json<Delivery>> {
    let id = parse_id("webhook", &id)?;
    let delivery_id = parse_id("delivery", &delivery_id)?;
    Ok(Json(
        webhooks::delivery(&state, &caller, id, delivery_id).await?,
    ))
}

/// Send a delivery's event again: a new delivery (`replay_of` names the first), sent now.
#[utoipa::path(post, path = "/webhooks/{id}/deliveries/{delivery_id}/replay", tag = "webhooks", params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses(Authed, NotFound, (status = 202, description = "the new delivery, being sent", body = Delivery),
        (status = 409, description = "the webhook is disabled", body = ErrorBody)))]
async fn replay_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Delivery>)> {
    let id = parse_id("webhook", &id)?;
    let delivery_id = parse_id("delivery", &delivery_id)?;
    let again = webhooks::replay(&state, &caller, id, delivery_id).await?;
    Ok((StatusCode::ACCEPTED, Json(again)))
}
