//! Directives: the broker's signed "do not retry" messages to agent sessions.
//!
//! Today this stage holds the broker's signing key ([`keys`]); envelopes, templates and the
//! sanitizing renderer arrive with directive delivery. Architecture invariant: this is the only
//! module that reads the directive signing key; nothing else in the crate can name its type's
//! secret half.

pub mod keys;
