//! Decoders: turn one authenticated payload into normalized [`EventBody`]s.
//!
//! Two kinds exist. `generic` is haltwire's native event JSON, checked strictly by serde.
//! Every vendor integration is *data*: a `mapping.toml` (see [`mapping`]) built into the binary
//! from `integrations/<name>/` and overridable by a folder on disk. A decoder sees bytes that
//! were already authenticated and returns facts; it never sees HTTP, never stores anything and
//! never sets trust or ids (the ingest stage does).

use crate::event::EventBody;
use mapping::{ApplyError, Mapping, MappingError, ParserKind};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod audit;
pub mod mapping;

include!(concat!(env!("OUT_DIR"), "/builtin_integrations.rs"));

/// haltwire's own normalized event format.
pub const GENERIC: &str = "generic";

/// One event found in a payload: its normalized facts and its original JSON, verbatim.
#[derive(Debug)]
pub struct Decoded {
    pub body: EventBody,
    pub raw: Box<RawValue>,
}

/// Why a payload could not be decoded. `Syntax` means the bytes are not in the source's format
/// at all (HTTP 400); `Schema` means well-formed input that does not fit it (HTTP 422).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not valid JSON: {0}")]
    Syntax(String),
    #[error("does not match the {integration} format: {message}")]
    Schema { integration: String, message: String },
}

/// A resolved integration: cheap to clone, chosen once per source at start.
#[derive(Debug, Clone)]
pub enum Decoder {
    /// The native format.
    Generic,
    /// A vendor mapping.
    Mapped(Arc<Mapping>),
}

impl Decoder {
    /// The integration's name as used in config and on the CLI.
    pub fn name(&self) -> &str {
        match self {
            Decoder::Generic => GENERIC,
            Decoder::Mapped(m) => &m.name,
        }
    }

    /// What the payload's text looks like on disk: JSON (one per line) or audit records.
    pub fn parser(&self) -> ParserKind {
        match self {
            Decoder::Generic => ParserKind::Json,
            Decoder::Mapped(m) => m.parser,
        }
    }

    /// Decodes one payload (one HTTP body, one file line, or one audit record group).
    pub fn decode(&self, payload: &[u8]) -> Result<Vec<Decoded>, DecodeError> {
        match self {
            Decoder::Generic => decode_generic(payload).map(|d| vec![d]),
            Decoder::Mapped(m) => decode_mapped(m, payload),
        }
    }
}

fn decode_mapped(mapping: &Mapping, payload: &[u8]) -> Result<Vec<Decoded>, DecodeError> {
    let schema = |message: String| DecodeError::Schema { integration: mapping.name.clone(), message };
    let pairs = match mapping.parser {
        ParserKind::Json => mapping.apply_json(payload),
        ParserKind::Audit => decode_audit(mapping, payload),
    };
    match pairs {
        Ok(pairs) => Ok(pairs.into_iter().map(|(body, raw)| Decoded { body, raw }).collect()),
        Err(ApplyError::Syntax(m)) => Err(DecodeError::Syntax(m)),
        Err(ApplyError::Shape(m)) => Err(schema(m)),
    }
}

/// Audit text → events: grouped by stamp (a payload is normally one group already, but an
/// HTTP body or a hand-made file may hold several), each parsed to JSON and mapped. The raw of
/// an event is its record text, as a JSON string. A group that is not audit records fails the
/// whole payload, as malformed JSON would.
fn decode_audit(mapping: &Mapping, payload: &[u8]) -> Result<Vec<(EventBody, Box<RawValue>)>, ApplyError> {
    let text = String::from_utf8_lossy(payload);
    let mut out = Vec::new();
    for (_, group) in audit::group_lines(&text) {
        let doc = audit::to_json(&group).map_err(|e| ApplyError::Shape(e.to_string()))?;
        let raw = serde_json::value::to_raw_value(&group).map_err(|e| ApplyError::Shape(e.to_string()))?;
        out.extend(mapping.apply_value(&doc, &raw)?);
    }
    if out.is_empty() {
        return Err(ApplyError::Shape(audit::AuditError::Empty.to_string()));
    }
    Ok(out)
}

/// Where an integration's mapping came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into the binary (`generic`, or `integrations/<name>/` at build time).
    BuiltIn,
    /// Read from a folder on disk, replacing or adding to the built-ins.
    Disk(PathBuf),
}

/// Every integration this broker can decode, by name.
#[derive(Debug, Clone)]
pub struct Integrations {
    by_name: BTreeMap<String, (Decoder, Origin, String)>,
}

/// A problem loading integrations; mapping errors carry `file:line:col`.
#[derive(Debug, thiserror::Error)]
pub enum IntegrationsError {
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: declares integration {declared:?} but lives in folder {folder:?}")]
    NameMismatch { path: PathBuf, declared: String, folder: String },
    #[error("{0}: `generic` is the native format and cannot be overridden")]
    GenericOverride(PathBuf),
}

impl Integrations {
    /// The built-in integrations only.
    pub fn built_in() -> Result<Integrations, IntegrationsError> {
        let mut by_name = BTreeMap::new();
        by_name.insert(
            GENERIC.to_string(),
            (Decoder::Generic, Origin::BuiltIn, "haltwire's native event JSON".to_string()),
        );
        for (name, text) in BUILT_IN_MAPPINGS {
            let mapping = Mapping::compile(text, &format!("integrations/{name}/mapping.toml"))?;
            let description = mapping.description.clone();
            by_name
                .insert(name.to_string(), (Decoder::Mapped(Arc::new(mapping)), Origin::BuiltIn, description));
        }
        Ok(Integrations { by_name })
    }

    /// Built-ins, then every `<dir>/<name>/mapping.toml` on top (a folder whose mapping is
    /// byte-identical to the built-in one still counts as built-in).
    pub fn load(dir: Option<&Path>) -> Result<Integrations, IntegrationsError> {
        let mut all = Self::built_in()?;
        let Some(dir) = dir else { return Ok(all) };
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IntegrationsError::Io { path, source }
        };
        let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("mapping.toml").is_file())
            .collect();
        folders.sort();
        for folder in folders {
            let file = folder.join("mapping.toml");
            let text = std::fs::read_to_string(&file).map_err(io(&file))?;
            let folder_name =
                folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if folder_name == GENERIC {
                return Err(IntegrationsError::GenericOverride(file));
            }
            if BUILT_IN_MAPPINGS.iter().any(|(n, t)| *n == folder_name && *t == text) {
                continue;
            }
            let mapping = Mapping::compile(&text, &file.display().to_string())?;
            if mapping.name != folder_name {
                return Err(IntegrationsError::NameMismatch {
                    path: file,
                    declared: mapping.name.clone(),
                    folder: folder_name,
                });
            }
            let description = mapping.description.clone();
            all.by_name
                .insert(folder_name, (Decoder::Mapped(Arc::new(mapping)), Origin::Disk(folder), description));
        }
        Ok(all)
    }

    /// The decoder for an integration name.
    pub fn get(&self, name: &str) -> Option<Decoder> {
        self.by_name.get(name).map(|(d, _, _)| d.clone())
    }

    /// (name, description, origin), sorted by name.
    pub fn list(&self) -> Vec<(&str, &str, &Origin)> {
        self.by_name.iter().map(|(n, (_, o, d))| (n.as_str(), d.as_str(), o)).collect()
    }

    /// Names, for error messages.
    pub fn names(&self) -> String {
        self.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Splits input text into payloads, each with the 1-based line it starts on: one JSON
/// document if the whole text is one, else one payload per non-empty line. Audit logs are
/// cut into events (the records sharing a stamp), see [`audit::group_lines`].
pub fn split_payloads(parser: ParserKind, text: &str) -> Vec<(usize, String)> {
    match parser {
        ParserKind::Json => {
            if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
                let first = text.lines().position(|l| !l.trim().is_empty()).unwrap_or(0) + 1;
                return vec![(first, text.trim().to_string())];
            }
            non_empty_lines(text)
        }
        ParserKind::Audit => audit::group_lines(text),
    }
}

fn non_empty_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect()
}

/// How `haltwire event decode` prints one decoded event: the normalized fields with the
/// integration's name and the original.
#[derive(serde::Serialize)]
pub struct DecodedView<'a> {
    pub integration: &'a str,
    #[serde(flatten)]
    pub body: &'a EventBody,
    pub raw: &'a RawValue,
}

impl<'a> DecodedView<'a> {
    pub fn new(integration: &'a str, decoded: &'a Decoded) -> DecodedView<'a> {
        DecodedView { integration, body: &decoded.body, raw: &decoded.raw }
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
    // The plain strict parse first; only a payload it refuses is parsed again, tracking the
    // path, for the error message (the path tracker costs as much as the parse itself).
    let body: EventBody = match serde_json::from_str(raw.get()) {
        Ok(body) => body,
        Err(_) => return Err(schema_error_with_path(raw.get())),
    };
    check_limits(&body)?;
    Ok(Decoded { body, raw })
}

/// The schema error for a payload that does not fit [`EventBody`], naming the offending field
/// ("process.pid: invalid type …") so the sender knows what to fix; serde's own message names
/// only line and column.
fn schema_error_with_path(json: &str) -> DecodeError {
    let mut de = serde_json::Deserializer::from_str(json);
    let parsed: Result<EventBody, _> = serde_path_to_error::deserialize(&mut de);
    match parsed {
        Err(e) => {
            let field = e.path().to_string();
            let inner = e.into_inner().to_string();
            schema_error(&if field == "." { inner } else { format!("{field}: {inner}") })
        }
        Ok(_) => match de.end() {
            Err(e) => schema_error(&e.to_string()),
            // Unreachable in practice: both parses apply the same rules.
            Ok(()) => schema_error("does not match the native event format"),
        },
    }
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
    fn every_built_in_mapping_compiles() {
        let all = Integrations::built_in().unwrap();
        assert!(all.get(GENERIC).is_some());
        for (name, _) in BUILT_IN_MAPPINGS {
            assert_eq!(all.get(name).unwrap().name(), *name);
        }
    }

    #[test]
    fn a_folder_on_disk_overrides_and_adds() {
        let dir = tempfile::tempdir().unwrap();
        let custom = dir.path().join("acme");
        std::fs::create_dir(&custom).unwrap();
        std::fs::write(
            custom.join("mapping.toml"),
            "integration = \"acme\"\ndescription = \"Acme EDR\"\n[fields]\nhost = \"/h\"\n",
        )
        .unwrap();
        let all = Integrations::load(Some(dir.path())).unwrap();
        let decoded = all.get("acme").unwrap().decode(br#"{"h":"box"}"#).unwrap();
        assert_eq!(decoded[0].body.host.as_deref(), Some("box"));
        assert!(all.list().iter().any(|(n, _, o)| *n == "acme" && matches!(o, Origin::Disk(_))));
    }

    #[test]
    fn a_mismatched_or_broken_override_is_refused_with_its_location() {
        let dir = tempfile::tempdir().unwrap();
        let custom = dir.path().join("acme");
        std::fs::create_dir(&custom).unwrap();
        std::fs::write(custom.join("mapping.toml"), "integration = \"other\"\ndescription = \"x\"\n")
            .unwrap();
        assert!(matches!(Integrations::load(Some(dir.path())), Err(IntegrationsError::NameMismatch { .. })));
        std::fs::write(
            custom.join("mapping.toml"),
            "integration = \"acme\"\ndescription = \"x\"\n[fields]\nhots = \"/h\"\n",
        )
        .unwrap();
        let err = Integrations::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("acme/mapping.toml:4:1: unknown field `hots`"), "{err}");
    }

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
    fn audit_payloads_decode_per_event_with_the_record_text_as_raw() {
        let auditd = Integrations::built_in().unwrap().get("auditd").unwrap();
        assert_eq!(auditd.parser(), ParserKind::Audit);
        let first = "type=SYSCALL msg=audit(1700000000.5:7): pid=42 success=no exit=-13\ntype=CWD msg=audit(1700000000.5:7): cwd=\"/\"";
        let text = format!("{first}\ntype=SYSCALL msg=audit(1700000000.6:8): pid=43 success=yes exit=0\n");
        assert_eq!(split_payloads(ParserKind::Audit, &text).len(), 2);
        let decoded = auditd.decode(text.as_bytes()).unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].body.disposition, Disposition::Denied);
        assert_eq!(decoded[0].body.process.as_ref().unwrap().pid, Some(42));
        let raw: String = serde_json::from_str(decoded[0].raw.get()).unwrap();
        assert_eq!(raw, first);
        assert_eq!(decoded[1].body.disposition, Disposition::Detected);
        for bad in [&b"not an audit record"[..], b"", b"\xff\xfe"] {
            assert!(matches!(auditd.decode(bad), Err(DecodeError::Schema { .. })), "{bad:?}");
        }
    }

    #[test]
    fn pid_zero_is_not_a_process() {
        assert!(Decoder::Generic.decode(br#"{"process":{"pid":0}}"#).is_err());
    }
}
