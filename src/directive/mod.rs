//! Directives: the broker's signed "do not retry" messages to agent sessions, and the
//! agent-side code that checks them and turns them into the only model-visible text.
//!
//! - [`payload`]: what a directive says (a closed set of restricting types).
//! - [`envelope`]: DSSE sign/open over raw bytes, `verify_strict`, weak keys refused.
//! - [`keys`] and [`signer`]: the broker's signing key, rotation overlap, publishing the
//!   public keys.
//! - [`trust`]: the verifiers' key set, loaded with owner/mode/kid checks.
//! - [`verify`]: audience, time window and replay checks on top of the envelope.
//! - [`render`]: fixed templates and the sanitized data slot.
//!
//! Architecture invariant: this is the only module that reads directive secret key material;
//! nothing outside it can sign. It knows nothing about HTTP, sled or delivery channels.

pub mod envelope;
pub mod keys;
pub mod payload;
pub mod render;
pub mod signer;
pub mod trust;
pub mod verify;

#[cfg(test)]
mod tests;
