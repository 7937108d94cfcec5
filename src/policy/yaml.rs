//! YAML text to a located tree, and typed accessors over it that report mistakes instead of
//! stopping at them.
//!
//! serde-saphyr parses the text (YAML 1.2, strict booleans, alias and size budgets) into a
//! [`Node`] tree where every node carries its `Spanned` position. The policy compiler then reads
//! the tree with [`Reader`], which records a diagnostic for every unknown key, wrong type or
//! duplicate and carries on, so one run reports every problem in a file. Deserializing straight
//! into `#[serde(deny_unknown_fields)]` structs would stop at the first one.
//!
//! This module knows YAML shapes, not policy meaning.

use super::diag::{codes, did_you_mean, Pos, Sink, SourceFile};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// One YAML node and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    pub pos: Pos,
    /// Byte range of the node's own text, used to recover a plain scalar's spelling (`1.10`
    /// stays `1.10` when a string is expected, not the float `1.1`).
    raw: Option<(usize, usize)>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar as text: a string as is, a number or boolean as it was spelled.
    pub fn scalar_text(&self, source: &str) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Bool(_) | Kind::Int(_) | Kind::Float(_) => {
                let spelled = self.raw.and_then(|(start, end)| source.get(start..end)).map(str::trim);
                Some(match (spelled, &self.kind) {
                    (Some(s), _) if !s.is_empty() && !s.starts_with('*') => s.to_string(),
                    (_, Kind::Bool(b)) => b.to_string(),
                    (_, Kind::Int(i)) => i.to_string(),
                    (_, Kind::Float(f)) => f.to_string(),
                    _ => return None,
                })
            }
            _ => None,
        }
    }

    /// How the node reads in a message ("a list", "text", …).
    pub fn describe(&self) -> &'static str {
        match self.kind {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "true/false",
            Kind::Int(_) | Kind::Float(_) => "a number",
            Kind::Str(_) => "text",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a map",
        }
    }

    /// The position of part of a plain scalar (bytes `start..start+len` of its text), when the
    /// node is written unquoted on one line; otherwise the whole node.
    pub fn sub_pos(&self, source: &str, text: &str, start: usize, len: usize) -> Pos {
        let spelled = self.raw.and_then(|(s, e)| source.get(s..e));
        match (spelled, text.get(..start), text.get(start..start + len)) {
            (Some(sp), Some(before), Some(part)) if sp == text => Pos {
                line: self.pos.line,
                col: self.pos.col + before.chars().count(),
                width: part.chars().count().max(1),
            },
            _ => self.pos,
        }
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        Ok(i128::try_from(v).map(Kind::Int).unwrap_or(Kind::Float(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Kind, E> {
        Ok(Kind::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(KindVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Node, Node>()? {
            entries.push((k, v));
        }
        Ok(Kind::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let spanned = Spanned::<Kind>::deserialize(d)?;
        let at = spanned.referenced;
        let span = spanned.defined.span();
        let raw = span.byte_offset().zip(span.byte_len()).and_then(|(start, len)| {
            let start = usize::try_from(start).ok()?;
            Some((start, start.checked_add(usize::try_from(len).ok()?)?))
        });
        let pos = Pos {
            line: usize::try_from(at.line()).unwrap_or(1).max(1),
            col: usize::try_from(at.column()).unwrap_or(1).max(1),
            width: usize::try_from(at.span().len()).unwrap_or(1).max(1),
        };
        Ok(Node { kind: spanned.value, pos, raw })
    }
}

/// Most nodes one file may have (10 000 policies of ~20 nodes fit with room to spare).
const MAX_NODES: usize = 1_000_000;

/// Parses one file. An empty file is `Null`.
pub(crate) fn parse(text: &str) -> Result<Node, (Pos, String)> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = MAX_NODES;
    let options = serde_saphyr::options! {
        budget: Some(budget),
        // `no`, `on`, `yes` stay text (the "Norway problem"); only true/false are booleans.
        strict_booleans: true,
        // File modes and ids with leading zeros (`0755`) stay text.
        leading_zero_numbers_as_strings: true,
        // Duplicates are reported by `Reader`, with both positions, without losing the file.
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        // Our own diagnostics carry the snippet.
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|err| {
        let loc = err.location();
        let pos = loc
            .map(|l| Pos {
                line: usize::try_from(l.line()).unwrap_or(1).max(1),
                col: usize::try_from(l.column()).unwrap_or(1).max(1),
                width: 1,
            })
            .unwrap_or(Pos { line: 1, col: 1, width: 1 });
        let mut message = err.without_snippet().to_string();
        // The position is in the diagnostic already; drop serde-saphyr's " at line L, column C".
        if let Some(l) = loc {
            let suffix = format!(" at line {}, column {}", l.line(), l.column());
            if let Some(cut) = message.strip_suffix(&suffix) {
                message = cut.to_string();
            }
        }
        (pos, message)
    })
}

/// Reads nodes of one file, recording every problem into the sink.
pub(crate) struct Reader<'a> {
    pub file: &'a SourceFile,
    pub sink: &'a mut Sink,
}

/// The entries of one map, checked against the keys it may have.
pub(crate) struct Entries<'n> {
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Entries<'n> {
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|(_, _, v)| *v)
    }

    /// The key node (for positions).
    pub fn key(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|(_, k, _)| *k)
    }

    /// Every entry in file order: (key text, key node, value node).
    pub fn iter(&self) -> impl Iterator<Item = &(&'n str, &'n Node, &'n Node)> {
        self.entries.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Reader<'_> {
    pub fn error(&mut self, pos: Pos, code: &'static str, message: impl Into<String>) {
        self.sink.push(self.file, pos, code, message);
    }

    pub fn source(&self) -> &str {
        &self.file.text
    }

    /// The node as a map's entries, or a type error.
    pub fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &node.kind {
            Kind::Map(entries) => Some(entries),
            _ => {
                self.error(node.pos, codes::TYPE, format!("{what} must be a map, found {}", node.describe()));
                None
            }
        }
    }

    /// The node as a list, or a type error.
    pub fn seq<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.kind {
            Kind::Seq(items) => Some(items),
            _ => {
                self.error(
                    node.pos,
                    codes::TYPE,
                    format!("{what} must be a list, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// A single item or a list of items, as a slice of nodes.
    pub fn one_or_many<'n>(&mut self, node: &'n Node) -> &'n [Node] {
        match &node.kind {
            Kind::Seq(items) => items,
            _ => std::slice::from_ref(node),
        }
    }

    /// A map's entries with text keys, checked against `allowed`. Unknown keys (with the
    /// closest known key suggested), non-text keys and repeated keys are reported and skipped.
    pub fn entries<'n>(&mut self, node: &'n Node, allowed: &[&str], what: &str) -> Option<Entries<'n>> {
        let raw = self.map(node, what)?;
        Some(self.check_keys(raw, allowed, what))
    }

    /// Like [`Reader::entries`] for an already unwrapped map; `allowed` empty means any key.
    pub fn check_keys<'n>(&mut self, raw: &'n [(Node, Node)], allowed: &[&str], what: &str) -> Entries<'n> {
        let mut entries: Vec<(&'n str, &'n Node, &'n Node)> = Vec::with_capacity(raw.len());
        for (k, v) in raw {
            let Some(name) = k.as_str() else {
                self.error(
                    k.pos,
                    codes::TYPE,
                    format!("keys in {what} must be text, found {}", k.describe()),
                );
                continue;
            };
            if let Some((_, first, _)) = entries.iter().find(|(n, _, _)| *n == name) {
                let first = first.pos;
                self.error(
                    k.pos,
                    codes::DUPLICATE,
                    format!("`{name}` is given twice in {what} (first at {first})"),
                );
                continue;
            }
            if !allowed.is_empty() && !allowed.contains(&name) {
                let hint = did_you_mean(name, allowed.iter().copied());
                let known =
                    if hint.is_empty() { format!(" (known keys: {})", allowed.join(", ")) } else { hint };
                self.error(k.pos, codes::UNKNOWN_KEY, format!("unknown key `{name}` in {what}{known}"));
                continue;
            }
            entries.push((name, k, v));
        }
        Entries { entries }
    }

    /// Text, or a type error. Numbers are not silently accepted here.
    pub fn str<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n str> {
        match &node.kind {
            Kind::Str(s) => Some(s),
            _ => {
                self.error(node.pos, codes::TYPE, format!("{what} must be text, found {}", node.describe()));
                None
            }
        }
    }

    /// Any scalar as text (numbers as spelled), or a type error.
    pub fn scalar_text(&mut self, node: &Node, what: &str) -> Option<String> {
        let text = node.scalar_text(self.source());
        if text.is_none() {
            self.error(
                node.pos,
                codes::TYPE,
                format!("{what} must be a single value, found {}", node.describe()),
            );
        }
        text
    }

    /// `true`/`false`, or a type error.
    pub fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.error(
                    node.pos,
                    codes::TYPE,
                    format!("{what} must be true or false, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// Text from a closed set, or a `BAD_VALUE` error listing the choices.
    pub fn choice<'n>(&mut self, node: &'n Node, what: &str, choices: &[&str]) -> Option<&'n str> {
        let s = self.str(node, what)?;
        if choices.contains(&s) {
            Some(s)
        } else {
            let hint = did_you_mean(s, choices.iter().copied());
            self.error(
                node.pos,
                codes::BAD_VALUE,
                format!("{what} must be one of {}, found {s:?}{hint}", choices.join(", ")),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Node {
        match parse(text) {
            Ok(n) => n,
            Err((pos, msg)) => panic!("{pos}: {msg}"),
        }
    }

    #[test]
    fn positions_are_one_based_and_keys_are_located() {
        let node = parse_ok("- list: shells\n  items: [sh, bash]\n");
        let Kind::Seq(items) = &node.kind else { panic!("not a seq") };
        let Kind::Map(entries) = &items[0].kind else { panic!("not a map") };
        assert_eq!((entries[1].0.pos.line, entries[1].0.pos.col), (2, 3));
        let Kind::Seq(values) = &entries[1].1.kind else { panic!("not a seq") };
        assert_eq!((values[1].pos.line, values[1].pos.col, values[1].pos.width), (2, 15, 4));
    }

    #[test]
    fn numbers_keep_their_spelling_and_no_is_text() {
        let text = "[1.10, 0755, no, true]";
        let node = parse_ok(text);
        let Kind::Seq(items) = &node.kind else { panic!("not a seq") };
        let spelled: Vec<String> = items.iter().filter_map(|n| n.scalar_text(text)).collect();
        assert_eq!(spelled, ["1.10", "0755", "no", "true"]);
        assert!(matches!(items[2].kind, Kind::Str(_)));
        assert!(matches!(items[3].kind, Kind::Bool(true)));
    }

    #[test]
    fn syntax_errors_are_located_without_a_repeated_position() {
        let (pos, msg) = parse("- a: [1, 2}\n").err().unwrap_or_default();
        assert_eq!((pos.line, pos.col), (1, 6), "the unclosed `[`");
        assert!(!msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn duplicate_keys_reach_the_reader() {
        let text = "a: 1\na: 2\n";
        let node = parse_ok(text);
        let file = SourceFile { shown: "x.yaml".into(), relative: "x.yaml".into(), text: text.into() };
        let mut sink = Sink::default();
        let mut r = Reader { file: &file, sink: &mut sink };
        let _ = r.entries(&node, &["a"], "the item");
        let diags = sink.finish().map(|d| d.0).unwrap_or_default();
        assert_eq!(diags.len(), 1);
        assert_eq!((diags[0].line, diags[0].code), (2, codes::DUPLICATE));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert!(parse(&text).is_err());
    }
}
