//! RFC 9457 problem details: every error the HTTP API returns.
//!
//! Each [`ProblemType`] has a stable `type` URI, a fixed title and a status; clients branch on
//! `type`. The `detail` text is written by haltwire, never copied from the request, so an error
//! cannot echo a secret, a signature or attacker-chosen text back (R12).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The closed set of problems. Adding one is fine; renaming one breaks clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// Any authentication failure, uniform on purpose (unknown source, bad signature, stale
    /// timestamp, wrong key, missing header all look the same to the caller).
    Unauthorized,
    /// Authenticated, but the token's role may not use this route.
    Forbidden,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// The body is not JSON at all.
    MalformedJson,
    /// JSON that does not fit the source's integration.
    InvalidEvent,
    /// A query parameter or path segment is malformed.
    InvalidRequest,
    /// The route exists, the thing it names does not (event, session, call, directive).
    NotFound,
    /// No route matches the path at all: a client built for another broker version, or a
    /// typo. Separate from [`ProblemType::NotFound`] so a client can tell "this broker has no
    /// such route" from "no such session".
    NoSuchRoute,
    /// The session has ended; register again.
    SessionEnded,
    /// The policy folder has errors; the previous set stays in service.
    InvalidPolicies,
    /// The commit queue is full; retry after the `Retry-After` seconds.
    Overloaded,
    /// The store could not commit; nothing was acknowledged.
    StorageUnavailable,
    /// The broker is shutting down.
    ShuttingDown,
    /// The route exists, the method does not (the `Allow` header lists the ones that do).
    MethodNotAllowed,
    /// The request took longer than the server's per-request limit.
    RequestTimeout,
    /// A bug: the broker failed in a way it has no specific answer for.
    Internal,
}

impl ProblemType {
    /// The stable `type` URI.
    pub fn uri(self) -> &'static str {
        match self {
            ProblemType::Unauthorized => "urn:haltwire:problem:unauthorized",
            ProblemType::Forbidden => "urn:haltwire:problem:forbidden",
            ProblemType::PayloadTooLarge => "urn:haltwire:problem:payload-too-large",
            ProblemType::UnsupportedMediaType => "urn:haltwire:problem:unsupported-media-type",
            ProblemType::MalformedJson => "urn:haltwire:problem:malformed-json",
            ProblemType::InvalidEvent => "urn:haltwire:problem:invalid-event",
            ProblemType::InvalidRequest => "urn:haltwire:problem:invalid-request",
            ProblemType::NotFound => "urn:haltwire:problem:not-found",
            ProblemType::NoSuchRoute => "urn:haltwire:problem:no-such-route",
            ProblemType::SessionEnded => "urn:haltwire:problem:session-ended",
            ProblemType::InvalidPolicies => "urn:haltwire:problem:invalid-policies",
            ProblemType::Overloaded => "urn:haltwire:problem:overloaded",
            ProblemType::StorageUnavailable => "urn:haltwire:problem:storage-unavailable",
            ProblemType::ShuttingDown => "urn:haltwire:problem:shutting-down",
            ProblemType::MethodNotAllowed => "urn:haltwire:problem:method-not-allowed",
            ProblemType::RequestTimeout => "urn:haltwire:problem:request-timeout",
            ProblemType::Internal => "urn:haltwire:problem:internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ProblemType::Unauthorized => StatusCode::UNAUTHORIZED,
            ProblemType::Forbidden => StatusCode::FORBIDDEN,
            ProblemType::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemType::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemType::MalformedJson | ProblemType::InvalidRequest => StatusCode::BAD_REQUEST,
            ProblemType::InvalidEvent => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::NotFound | ProblemType::NoSuchRoute => StatusCode::NOT_FOUND,
            ProblemType::SessionEnded => StatusCode::CONFLICT,
            ProblemType::InvalidPolicies => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ProblemType::StorageUnavailable | ProblemType::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProblemType::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ProblemType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ProblemType::Unauthorized => "Authentication failed",
            ProblemType::Forbidden => "Not allowed for this token",
            ProblemType::PayloadTooLarge => "Request body too large",
            ProblemType::UnsupportedMediaType => "Content-Type must be JSON",
            ProblemType::MalformedJson => "Body is not valid JSON",
            ProblemType::InvalidEvent => "Event does not match the integration",
            ProblemType::InvalidRequest => "Invalid request",
            ProblemType::NotFound => "Not found",
            ProblemType::NoSuchRoute => "No such route",
            ProblemType::SessionEnded => "The session has ended",
            ProblemType::InvalidPolicies => "The policy folder has errors",
            ProblemType::Overloaded => "Too many requests waiting to commit",
            ProblemType::StorageUnavailable => "Storage unavailable",
            ProblemType::ShuttingDown => "Shutting down",
            ProblemType::MethodNotAllowed => "Method not allowed on this route",
            ProblemType::RequestTimeout => "Request took too long",
            ProblemType::Internal => "Internal error",
        }
    }

    /// Seconds a client should wait before retrying, for the types where retrying helps.
    fn retry_after(self) -> Option<u32> {
        match self {
            ProblemType::Overloaded => Some(1),
            ProblemType::StorageUnavailable | ProblemType::ShuttingDown => Some(5),
            _ => None,
        }
    }
}

/// An RFC 9457 body plus the status it is sent with.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: &'static str,
    pub title: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip)]
    kind: Option<ProblemType>,
}

impl Problem {
    pub fn new(kind: ProblemType) -> Problem {
        Problem {
            type_uri: kind.uri(),
            title: kind.title(),
            status: kind.status().as_u16(),
            detail: None,
            kind: Some(kind),
        }
    }

    /// Adds haltwire-written detail text. Never pass request bytes or secrets here.
    pub fn detail(mut self, detail: impl Into<String>) -> Problem {
        self.detail = Some(detail.into());
        self
    }
}

impl From<ProblemType> for Problem {
    fn from(kind: ProblemType) -> Problem {
        Problem::new(kind)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.kind.and_then(ProblemType::retry_after);
        let mut response = (status, axum::Json(&self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The problem type for a bare error status produced outside our handlers (routing, timeouts,
/// body limits): what [`problem_for_bare_errors`] answers with.
fn type_for_status(status: StatusCode) -> ProblemType {
    match status {
        // Handlers answer their own 404s as problems; a bare one is the router's miss.
        StatusCode::NOT_FOUND => ProblemType::NoSuchRoute,
        StatusCode::METHOD_NOT_ALLOWED => ProblemType::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ProblemType::RequestTimeout,
        StatusCode::PAYLOAD_TOO_LARGE => ProblemType::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ProblemType::UnsupportedMediaType,
        StatusCode::UNAUTHORIZED => ProblemType::Unauthorized,
        StatusCode::FORBIDDEN => ProblemType::Forbidden,
        StatusCode::UNPROCESSABLE_ENTITY => ProblemType::InvalidEvent,
        StatusCode::TOO_MANY_REQUESTS => ProblemType::Overloaded,
        StatusCode::SERVICE_UNAVAILABLE => ProblemType::StorageUnavailable,
        s if s.is_client_error() => ProblemType::InvalidRequest,
        _ => ProblemType::Internal,
    }
}

/// Middleware: every error answer is problem+json. Routing misses (404, 405), the request
/// timeout (408) and other framework answers come with no body or plain text; they are
/// replaced by the matching problem, keeping `Allow` so clients still learn the methods.
pub async fn problem_for_bare_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut problem = Problem::new(type_for_status(status));
    problem.status = status.as_u16();
    let mut replaced = problem.into_response();
    if let Some(allow) = allow {
        replaced.headers_mut().insert(header::ALLOW, allow);
    }
    replaced
}
