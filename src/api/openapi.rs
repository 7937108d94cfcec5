//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' annotations so
//! it cannot drift from the routes. It describes; it does not route.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "haltwire", description = "Security-signal broker for AI coding agents"),
    paths(
        crate::ingest::http::ingest,
        crate::api::list_events,
        crate::api::get_event,
        crate::api::healthz,
        crate::api::readyz,
        crate::api::metrics,
        crate::api::sessions::register,
        crate::api::sessions::list,
        crate::api::sessions::show,
        crate::api::sessions::record_command,
        crate::api::sessions::list_commands,
        crate::api::sessions::record_outcome,
        crate::api::sessions::end,
        crate::api::blocks::list,
        crate::api::blocks::show,
        crate::api::blocks::clear,
        crate::api::blocks::check,
        crate::api::directives::list,
        crate::api::directives::stream,
        crate::api::directives::ack,
        crate::api::policies,
        crate::api::reload_policies,
    ),
    components(schemas(
        crate::ingest::http::IngestAccepted,
        crate::api::problem::Problem,
        crate::api::EventPage,
        crate::event::EventBody,
        crate::event::Correlation,
        crate::sessions::model::Session,
        crate::sessions::model::CommandRecord,
        crate::sessions::model::Outcome,
        crate::sessions::registry::Registration,
        crate::sessions::registry::CommandPost,
        crate::api::sessions::Registered,
        crate::api::sessions::Recorded,
        crate::block::Block,
        crate::api::blocks::BlockList,
        crate::api::blocks::CheckRequest,
        crate::api::blocks::CheckAnswer,
        crate::api::directives::PendingList,
        crate::api::directives::PendingDirective,
        crate::api::directives::Acked,
        crate::api::PolicyStatus,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
