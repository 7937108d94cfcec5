//! Decoders: turn one authenticated payload into normalized [`EventBody`]s.
//!
//! A decoder sees bytes that have already been authenticated and returns facts; it never sees
//! HTTP, never stores anything and never sets trust or ids (the ingest stage does). Vendor
//! integrations plug in here as data-driven mappings in a later stage of the project; today the
//! only integration is `generic`, haltwire's native event JSON (DESIGN §4).

use crate::event::EventBody;
use serde_json::value::RawValue;

/// The integration names this build understands.
pub const BUILT_IN: &[&str] = &[GENERIC];
/// haltwire's own normalized event format.
pub const GENERIC: &str = "generic";

/// One event found in a payload: its normalized facts and its original JSON, verbatim.
#[derive(Debug)]
pub struct Decoded {
    pub body: EventBody,
    pub raw: Box<RawValue>,
}

/// Why a payload could not be decoded. `Syntax` means the bytes are not JSON at all (HTTP 400);
/// `Schema` means JSON that does not fit the integration (HTTP 422).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not valid JSON: {0}")]
    Syntax(String),
    #[error("does not match the {integration} format: {message}")]
    Schema { integration: String, message: String },
    #[error("unknown integration {0:?}")]
    UnknownIntegration(String),
}

/// Looks up a decoder by integration name; `None` if this build does not have it.
pub fn decoder_for(integration: &str) -> Option<Decoder> {
    match integration {
        GENERIC => Some(Decoder::Generic),
        _ => None,
    }
}

/// A resolved integration. Cheap to copy; chosen once per source at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Generic,
}

impl Decoder {
    /// The integration's name as used in config and on the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Decoder::Generic => GENERIC,
        }
    }

    /// Decodes one payload (one HTTP body or one file line).
    pub fn decode(self, payload: &[u8]) -> Result<Vec<Decoded>, DecodeError> {
        match self {
            Decoder::Generic => decode_generic(payload).map(|d| vec![d]),
        }
    }
}

fn decode_generic(payload: &[u8]) -> Result<Decoded, DecodeError> {
    // Two passes over the same bytes: one keeps the original verbatim (`raw`), the other checks
    // the schema strictly. Syntax errors are told apart from schema errors for the HTTP status.
    let raw: Box<RawValue> =
        serde_json::from_slice(payload).map_err(|e| DecodeError::Syntax(e.to_string()))?;
    if !raw.get().trim_start().starts_with('{') {
        return Err(schema_error("expected a JSON object"));
    }
    let body: EventBody = serde_json::from_str(raw.get()).map_err(|e| schema_error(&e.to_string()))?;
    check_limits(&body)?;
    Ok(Decoded { body, raw })
}

/// Longest string accepted in any field: command lines can be long, but not unbounded.
const MAX_FIELD_CHARS: usize = 32 * 1024;
/// Most ancestors and attack ids accepted per event.
const MAX_LIST_LEN: usize = 64;

fn check_limits(body: &EventBody) -> Result<(), DecodeError> {
    let too_long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > MAX_FIELD_CHARS);
    let process = body.process.as_ref();
    let long_field = too_long(&body.host)
        || too_long(&body.vendor_id)
        || process.is_some_and(|p| too_long(&p.cmd_line) || too_long(&p.exe) || too_long(&p.cwd));
    if long_field {
        return Err(schema_error("a field is longer than 32768 bytes"));
    }
    let long_list =
        body.attacks.len() > MAX_LIST_LEN || process.is_some_and(|p| p.ancestors.len() > MAX_LIST_LEN);
    if long_list {
        return Err(schema_error("a list has more than 64 entries"));
    }
    if process.and_then(|p| p.pid) == Some(0) {
        return Err(schema_error("process.pid must be a positive OS process id"));
    }
    Ok(())
}

fn schema_error(message: &str) -> DecodeError {
    DecodeError::Schema { integration: GENERIC.to_string(), message: message.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Disposition;

    #[test]
    fn generic_keeps_raw_bytes_verbatim() {
        let body = br#"{ "disposition":"blocked",  "process": {"pid": 42, "cmd_line": "curl x | sh"} }"#;
        let decoded = Decoder::Generic.decode(body).unwrap();
        assert_eq!(decoded[0].raw.get().as_bytes(), &body[..]);
        assert_eq!(decoded[0].body.disposition, Disposition::Blocked);
        assert_eq!(decoded[0].body.process.as_ref().unwrap().pid, Some(42));
    }

    #[test]
    fn generic_refuses_broker_owned_fields() {
        for field in [r#"{"trust":"signed"}"#, r#"{"id":"x"}"#, r#"{"integration":"falco"}"#] {
            let err = Decoder::Generic.decode(field.as_bytes()).unwrap_err();
            assert!(matches!(err, DecodeError::Schema { .. }), "{field}: {err}");
        }
    }

    #[test]
    fn syntax_and_schema_errors_are_told_apart() {
        assert!(matches!(Decoder::Generic.decode(b"{"), Err(DecodeError::Syntax(_))));
        assert!(matches!(Decoder::Generic.decode(b"[1]"), Err(DecodeError::Schema { .. })));
        assert!(matches!(
            Decoder::Generic.decode(br#"{"disposition":"allowed"}"#),
            Err(DecodeError::Schema { .. })
        ));
    }

    #[test]
    fn duplicate_keys_and_trailing_bytes_are_rejected() {
        assert!(Decoder::Generic.decode(br#"{"host":"a","host":"b"}"#).is_err());
        assert!(Decoder::Generic.decode(br#"{"host":"a"} x"#).is_err());
    }

    #[test]
    fn pid_zero_is_not_a_process() {
        assert!(Decoder::Generic.decode(br#"{"process":{"pid":0}}"#).is_err());
    }
}
