//! The error responses many routes share, declared once for the OpenAPI document: name the
//! sets that apply in a route's `responses(...)` before its own entries (a route's own entry
//! for the same status then wins, with its more precise description). The test at the end of
//! `http/mod.rs` walks the document and fails on an operation that forgets one.

use std::collections::BTreeMap;

use utoipa::IntoResponses;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{ContentBuilder, Object, RefOr, Type};

/// An `ErrorBody` JSON answer with this description.
fn error(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "ErrorBody",
            ))))
            .build(),
    )
}

fn map(
    entries: impl IntoIterator<Item = (u16, ResponseBuilder)>,
) -> BTreeMap<String, RefOr<Response>> {
    entries
        .into_iter()
        .map(|(status, builder)| (status.to_string(), RefOr::T(builder.build())))
        .collect()
}

/// Every authenticated route: credentials are checked (and failed logins limited) before
/// anything else, users' against the store.
pub struct Authed;

impl IntoResponses for Authed {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map([
            (
                401,
                error("missing, malformed or wrong credentials, or an unknown, expired or revoked token")
                    .header(
                        "WWW-Authenticate",
                        HeaderBuilder::new()
                            .schema(Some(Object::with_type(Type::String)))
                            .description(Some("`Basic realm=\"OSCIED\", charset=\"UTF-8\"`; `Bearer realm=\"OSCIED\"` to a browser page's request (`Sec-Fetch-Mode` other than `navigate`), which opens no password dialog"))
                            .build(),
                    ),
            ),
            (
                403,
                error("these credentials may not call this route (node credentials on a user route, user or root credentials on a node route)"),
            ),
            (
                429,
                error("too many failed logins for this account or address; retry after the `Retry-After` seconds")
                    .header(
                        "Retry-After",
                        HeaderBuilder::new()
                            .schema(Some(Object::with_type(Type::Integer)))
                            .description(Some("seconds to wait"))
                            .build(),
                    ),
            ),
            (
                503,
                error("the store (or the broker) is unavailable, or the orchestra is stopping"),
            ),
        ])
    }
}

/// Every route reading a JSON body (`ApiJson`).
pub struct JsonBody;

impl IntoResponses for JsonBody {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map([
            (400, error("malformed JSON")),
            (
                408,
                error("the request body stalled (nothing arrived within OSCIED_BODY_IDLE_SECS)"),
            ),
            (413, error("the request body is too large")),
            (415, error("the body is not sent as application/json")),
            (
                422,
                error("a field is missing, unknown, mistyped or out of its bounds"),
            ),
        ])
    }
}

/// Every route reading query parameters (`ApiQuery`).
pub struct BadQuery;

impl IntoResponses for BadQuery {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map([(
            422,
            error("a query parameter is unknown, mistyped or out of its bounds"),
        )])
    }
}

/// Every route naming an object in its path.
pub struct NotFound;

impl IntoResponses for NotFound {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map([(404, error("no such object, or not one the caller may see"))])
    }
}

/// Every route serving a stored file (`http/medias.rs` `serve_stored`): conditional requests
/// and Range, and a media that is not READY yet.
pub struct StoredFile;

impl IntoResponses for StoredFile {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut responses = map([
            (409, error("the media is not READY")),
            (
                412,
                error("an If-Match or If-Unmodified-Since precondition failed"),
            ),
            (
                416,
                error("no requested range overlaps the file; Content-Range: bytes */LEN"),
            ),
        ]);
        responses.insert(
            "304".to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description("If-None-Match or If-Modified-Since: not modified")
                    .build(),
            ),
        );
        responses
    }
}
