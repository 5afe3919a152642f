//! The REST API v1 (docs/architecture.md §4): one module per resource, the shared extractors
//! (who is calling: `extract`), and the router with its generated OpenAPI document. Handlers
//! parse, call one domain function and shape its answer; the store is the domain's business.

mod auth;
mod events;
mod extract;
mod health;
mod idempotent;
mod media_auth;
mod medias;
pub(crate) mod metrics;
mod node;
mod overview;
mod profiles;
mod publisher_tasks;
mod responses;
mod task_lists;
mod transform_tasks;
pub(crate) mod ui;
mod units;
mod users;
mod webhooks;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use serde::de::DeserializeOwned;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::models::ListOptions;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "OSCIED orchestra", description = "Media transcoding orchestrator: users, medias, transform profiles and tasks, publication."),
    modifiers(&SecuritySchemes),
    security(("basic" = []), ("bearer" = [])),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The whole application: `/api/v1/...`, the web UI's files at `/...`, `/metrics`, JSON
/// errors for unknown routes and methods.
pub fn router(state: AppState) -> Router {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", api_routes())
        .split_for_parts()
        .0
        .merge(ui::routes())
        .merge(metrics::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(utoipa_axum::routes!(openapi_json))
        .merge(health::routes())
        .merge(auth::routes())
        .merge(users::routes())
        .merge(medias::routes())
        .merge(profiles::routes())
        .merge(transform_tasks::routes())
        .merge(publisher_tasks::routes())
        .merge(units::routes())
        .merge(node::routes())
        .merge(overview::routes())
        .merge(events::routes())
        .merge(webhooks::routes())
}

/// The OpenAPI document, generated from the routes and types above.
pub fn openapi() -> utoipa::openapi::OpenApi {
    OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", api_routes())
        .into_openapi()
}

static OPENAPI: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();

/// This document: every route and schema of the API, OpenAPI 3.
#[utoipa::path(get, path = "/openapi.json", tag = "health", security(()),
    responses((status = 200, description = "the OpenAPI 3 document", content_type = "application/json")))]
async fn openapi_json() -> Json<serde_json::Value> {
    Json(
        OPENAPI
            .get_or_init(|| serde_json::to_value(openapi()).unwrap_or_default())
            .clone(),
    )
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {} {}", request.method(), request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// A browser answers a 401 that challenges `Basic` with its own password dialog, for a page's
/// `fetch` and its `<img>` and `<video>` as well as for a link typed in; the web UI asks for
/// the secret itself and shows the API's message. So the 401 of a request a page made
/// (`Sec-Fetch-Mode` present and not `navigate`) challenges `Bearer`, which opens no dialog;
/// curl and other clients, which send no such header, still get `Basic`.
pub(crate) async fn browser_challenge(
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let from_a_page = request
        .headers()
        .get("sec-fetch-mode")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|mode| !mode.eq_ignore_ascii_case("navigate"));
    let mut response = next.run(request).await;
    if from_a_page && response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static(BEARER_CHALLENGE),
        );
    }
    response
}

const BEARER_CHALLENGE: &str = "Bearer realm=\"OSCIED\"";

/// A JSON body whose rejections speak our error format: bad syntax is 400, missing or
/// unknown fields and wrong types are 422.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

pub fn json_rejection(rejection: JsonRejection) -> ApiError {
    if let Some(stalled) = ApiError::stalled_body(&rejection) {
        return stalled;
    }
    let text = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => {
            let invalid = ApiError::invalid(strip_axum_prefix(&text));
            match serde_field(&text) {
                Some(field) => invalid.on(field),
                None => invalid,
            }
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request("malformed_json", strip_axum_prefix(&text))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::too_large("request body too large")
        }
        _ => ApiError::bad_request("bad_request", text),
    }
}

/// axum says "Failed to deserialize the JSON body into the target type: missing field ..."
fn strip_axum_prefix(text: &str) -> String {
    let trimmed = text
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("Failed to"))
        .map_or(text, |(_, rest)| rest);
    format!("invalid JSON body: {trimmed}")
}

/// The field a serde data error is about: serde names a missing or unknown one in backticks,
/// and axum's message puts the path of a mistyped one first (`priority: invalid value...`).
fn serde_field(text: &str) -> Option<String> {
    let detail = text.split_once(": ").map_or(text, |(_, rest)| rest);
    for marker in ["missing field `", "unknown field `"] {
        if let Some((_, rest)) = detail.split_once(marker) {
            return rest.split_once('`').map(|(name, _)| name.to_owned());
        }
    }
    let (path, _) = detail.split_once(": ")?;
    let is_path = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'));
    is_path.then(|| path.to_owned())
}

/// Query parameters, with unknown or mistyped ones answered 422.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let detail = text
        .split_once(": ")
        .map_or(text.as_str(), |(_, rest)| rest);
    ApiError::invalid(format!("invalid query parameter: {detail}"))
}

/// A path parameter by name, for extractors that run before the handler's `Path`.
pub(crate) async fn path_param(parts: &mut Parts, name: &str) -> Option<String> {
    let params = axum::extract::RawPathParams::from_request_parts(parts, &())
        .await
        .ok()?;
    params
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
}

/// A path id; a malformed one names no object, so it is a 404 like an unknown one.
pub fn parse_id(what: &str, raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(what, raw))
}

/// A `sort` parameter's schema for the document: each name of `sorts`, also with `-`
/// (descending). Built from the same table `list_options` checks, so the two cannot drift.
pub(crate) fn sort_schema(
    sorts: &[(&str, &str)],
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let names: Vec<String> = sorts
        .iter()
        .flat_map(|(name, _)| [(*name).to_owned(), format!("-{name}")])
        .collect();
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(names))
        .into()
}

/// A doc-only type whose schema is the `sort` enum of a sort table.
macro_rules! sort_param {
    ($name:ident, $sorts:expr) => {
        pub(crate) struct $name;
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                super::sort_schema($sorts)
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}
pub(crate) use sort_param;

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 1000;

/// Turn `limit`, `skip` and `sort` into store options. `allowed` maps the API's sort names to
/// document paths; `-name` sorts descending.
pub fn list_options(
    limit: Option<u64>,
    skip: Option<u64>,
    sort: Option<&str>,
    allowed: &[(&str, &'static str)],
    default: &str,
) -> ApiResult<ListOptions> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(ApiError::invalid(format!(
            "limit must be at most {MAX_LIMIT} (got {limit})"
        )));
    }
    // The stores count in i64 (the document's int64): a larger skip names no item anyway.
    let skip = skip.unwrap_or(0);
    if i64::try_from(skip).is_err() {
        return Err(ApiError::invalid(format!(
            "skip must be at most {} (got {skip})",
            i64::MAX
        )));
    }
    let sort = sort.unwrap_or(default);
    let (name, descending) = match sort.strip_prefix('-') {
        Some(name) => (name, true),
        None => (sort, false),
    };
    let path = allowed
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, path)| *path)
        .ok_or_else(|| {
            let names: Vec<_> = allowed.iter().map(|(n, _)| *n).collect();
            ApiError::invalid(format!(
                "cannot sort by {name:?}; sort by one of {} (prefix - for descending)",
                names.join(", ")
            ))
        })?;
    Ok(ListOptions {
        limit,
        skip,
        sort: path,
        descending,
        uncounted: false,
    })
}

/// The owner a list is restricted to: admins list whom they ask for (everyone by default);
/// others only themselves. None: a non-admin asked for someone else's, which lists nothing.
pub fn list_owner(caller: &Caller, asked: Option<Uuid>) -> Option<Option<Uuid>> {
    if caller.is_admin() {
        return Some(asked);
    }
    let me = caller.user_id();
    match asked {
        Some(asked) if Some(asked) != me => None,
        _ => Some(me),
    }
}

/// 201 Created with the object.
pub fn created<T: serde::Serialize>(value: T) -> impl IntoResponse {
    (StatusCode::CREATED, Json(value))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    /// Every operation of the document: a unique operationId, a description on each response,
    /// the error body on each error, and the errors its shape implies (see `responses.rs`): a
    /// route added without them fails here.
    #[test]
    fn every_operation_documents_its_errors() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids = HashSet::new();
        let mut problems = vec![];
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                operations += 1;
                let at = format!("{} {path}", method.to_uppercase());
                match op["operationId"].as_str() {
                    Some(id) if !ids.insert(id.to_owned()) => {
                        problems.push(format!("{at}: operationId {id} is used twice"))
                    }
                    Some(_) => {}
                    None => problems.push(format!("{at}: no operationId")),
                }
                let responses = op["responses"].as_object().unwrap();
                for (status, response) in responses {
                    if response["description"].as_str().is_none_or(str::is_empty) {
                        problems.push(format!("{at} {status}: no description"));
                    }
                    // /health answers its own body when degraded.
                    let own_body = at == "GET /api/v1/health";
                    if status.as_str() >= "400" && !own_body {
                        let schema = &response["content"]["application/json"]["schema"]["$ref"];
                        if schema != "#/components/schemas/ErrorBody" {
                            problems.push(format!("{at} {status}: not the error body"));
                        }
                    }
                }
                let security = op.get("security").unwrap_or(&doc["security"]);
                let authenticated = security.as_array().is_some_and(|s| {
                    s.iter()
                        .any(|r| r.as_object().is_some_and(|r| !r.is_empty()))
                });
                let mut needed = vec![];
                if authenticated {
                    needed.extend(["401", "403", "429", "503"]);
                }
                if op["requestBody"]["content"]
                    .get("application/json")
                    .is_some()
                {
                    needed.extend(["400", "408", "413", "415", "422"]);
                }
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                if params.iter().any(|p| p["in"] == "query") {
                    needed.push("422");
                }
                if params
                    .iter()
                    .any(|p| p["in"] == "path" && p["name"] == "id")
                {
                    needed.push("404");
                }
                for status in needed {
                    if !responses.contains_key(status) {
                        problems.push(format!("{at}: {status} is not documented"));
                    }
                }
                for p in &params {
                    if p["in"] == "query"
                        && p["name"] == "limit"
                        && p["schema"]["maximum"].as_u64() != Some(super::MAX_LIMIT)
                    {
                        problems.push(format!(
                            "{at}: limit has no maximum of {}",
                            super::MAX_LIMIT
                        ));
                    }
                    if p["in"] == "query" && p["name"] == "sort" && !p["schema"]["enum"].is_array()
                    {
                        problems.push(format!("{at}: sort has no enum"));
                    }
                }
            }
        }
        assert!(operations > 30, "only {operations} operations");
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
