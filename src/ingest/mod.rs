//! HTTP ingest: the `POST /v1/ingest/{source}` route and the webhook authentication it runs first.
pub mod auth;
