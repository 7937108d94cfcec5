//! A literal prefilter over all policies, so that an event is checked against only the policies
//! that could match it.
//!
//! Most policies require some text to appear in some field: `process.cmd_line|contains: curl`
//! needs `curl` in the command line; `target.file|glob: '/home/*/.ssh/id_*'` needs `/.ssh/id_`;
//! a regex needs one of the prefixes `regex-syntax` extracts from it. At load time each policy
//! gets such an *anchor* (a set of field/literal alternatives, one of which must occur), and one
//! Aho-Corasick automaton per field holds every anchor literal. Per event, each indexed field is
//! scanned once; the policies whose anchor occurred, plus those without an anchor, are the
//! candidates, and only they are evaluated, still in evaluation order.
//!
//! The prefilter only skips policies that cannot match, so results are identical to evaluating
//! every policy (a property test checks this). Anchors come only from tests that are *required*
//! for the match (parts of an `all`, every branch of an `any`), never from under a `not`.
//!
//! This module decides nothing itself; `PolicySet::evaluate` uses it.

use super::cond::{Cond, Op};
use super::fields::{Facts, Field, FieldType, Val};
use super::Policy;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use std::collections::HashMap;

/// One literal that must occur in a field (ASCII case-insensitively for `nocase` tests), or a
/// number a field must equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Lit {
    Text { field: FieldKey, nocase: bool, bytes: Vec<u8> },
    Number { field: FieldKey, bits: u64 },
}

impl Lit {
    /// How selective the literal is, roughly (a number equality is as good as a long text).
    fn weight(&self) -> usize {
        match self {
            Lit::Text { bytes, .. } => bytes.len(),
            Lit::Number { .. } => 8,
        }
    }
}

/// `Field` is not `Hash`; its position in the catalog is.
type FieldKey = u16;

/// Alternatives: the policy can only match if at least one occurs.
type Anchor = Vec<Lit>;

#[derive(Debug)]
pub(crate) struct Index {
    /// Bitset (by evaluation position) of policies without an anchor: always candidates.
    always: Vec<u64>,
    fields: Vec<FieldIndex>,
    /// Per number field: value (as normalized bits) → policies that require it.
    numbers: Vec<(Field, HashMap<u64, Vec<u32>>)>,
}

#[derive(Debug)]
struct FieldIndex {
    field: Field,
    automaton: AhoCorasick,
    /// Per pattern id, the policies (evaluation positions) anchored on it.
    owners: Vec<Vec<u32>>,
}

/// Anchor literals shorter than this are not worth indexing (`sh` occurs everywhere).
const MIN_LITERAL: usize = 3;

impl Index {
    pub fn build(policies: &[Policy]) -> Index {
        let words = policies.len().div_ceil(64);
        let mut always = vec![0u64; words];
        // (field, nocase) → literal → owners
        let mut groups: HashMap<(FieldKey, bool), HashMap<Vec<u8>, Vec<u32>>> = HashMap::new();
        let mut numbers: HashMap<FieldKey, HashMap<u64, Vec<u32>>> = HashMap::new();
        for (i, p) in policies.iter().enumerate() {
            let Some(alternatives) = anchor(&p.cond) else {
                always[i / 64] |= 1 << (i % 64);
                continue;
            };
            for lit in alternatives {
                let owners = match lit {
                    Lit::Text { field, nocase, bytes } => {
                        groups.entry((field, nocase)).or_default().entry(bytes).or_default()
                    }
                    Lit::Number { field, bits } => numbers.entry(field).or_default().entry(bits).or_default(),
                };
                if owners.last() != Some(&(i as u32)) {
                    owners.push(i as u32);
                }
            }
        }
        let mut fields = Vec::new();
        let mut keys: Vec<(FieldKey, bool)> = groups.keys().copied().collect();
        keys.sort();
        for key in keys {
            let Some(literals) = groups.remove(&key) else { continue };
            let mut literals: Vec<(Vec<u8>, Vec<u32>)> = literals.into_iter().collect();
            literals.sort();
            let built = field_from_key(key.0).map(|field| {
                let automaton = AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .ascii_case_insensitive(key.1)
                    .build(literals.iter().map(|(l, _)| l));
                (field, automaton)
            });
            match built {
                Some((field, Ok(automaton))) => fields.push(FieldIndex {
                    field,
                    automaton,
                    owners: literals.into_iter().map(|(_, o)| o).collect(),
                }),
                _ => {
                    // Too large to build: those policies are always evaluated instead.
                    for i in literals.into_iter().flat_map(|(_, owners)| owners) {
                        always[i as usize / 64] |= 1 << (i % 64);
                    }
                }
            }
        }
        let mut numbers: Vec<(Field, HashMap<u64, Vec<u32>>)> =
            numbers.into_iter().filter_map(|(k, m)| field_from_key(k).map(|f| (f, m))).collect();
        numbers.sort_by_key(|(f, _)| key_of(*f));
        Index { always, fields, numbers }
    }

    /// The positions of the policies that may match, as a bitset.
    pub fn candidates(&self, facts: &Facts<'_>) -> Vec<u64> {
        let mut out = self.always.clone();
        for fi in &self.fields {
            let mut scan = |text: &str| {
                for m in fi.automaton.find_overlapping_iter(text) {
                    for &i in &fi.owners[m.pattern().as_usize()] {
                        out[i as usize / 64] |= 1 << (i % 64);
                    }
                }
            };
            match facts.get(fi.field) {
                Val::Text(s) => scan(s),
                Val::Texts(items) => items.iter().for_each(|s| scan(s)),
                Val::AncestorExe(a) => a.iter().filter_map(|r| r.exe.as_deref()).for_each(&mut scan),
                Val::AncestorCmd(a) => a.iter().filter_map(|r| r.cmd_line.as_deref()).for_each(&mut scan),
                Val::Absent | Val::Num(_) | Val::Rank(_) | Val::Bool(_) => {}
            }
        }
        for (field, values) in &self.numbers {
            if let Val::Num(n) = facts.get(*field) {
                for &i in values.get(&number_bits(n)).map(Vec::as_slice).unwrap_or(&[]) {
                    out[i as usize / 64] |= 1 << (i % 64);
                }
            }
        }
        out
    }
}

/// Iterates the set bits of a bitset in increasing order.
pub(crate) fn bits(set: &[u64]) -> impl Iterator<Item = usize> + '_ {
    set.iter().enumerate().flat_map(|(w, &word)| {
        let mut word = word;
        std::iter::from_fn(move || {
            if word == 0 {
                return None;
            }
            let bit = word.trailing_zeros() as usize;
            word &= word - 1;
            Some(w * 64 + bit)
        })
    })
}

/// `0.0` and `-0.0` are equal numbers with different bits.
fn number_bits(n: f64) -> u64 {
    if n == 0.0 {
        0
    } else {
        n.to_bits()
    }
}

fn key_of(field: Field) -> FieldKey {
    super::fields::FIELDS.iter().position(|(_, f, _)| *f == field).unwrap_or(0) as FieldKey
}

fn field_from_key(key: FieldKey) -> Option<Field> {
    super::fields::FIELDS.get(key as usize).map(|(_, f, _)| *f)
}

/// A set of literals one of which must occur for `cond` to be true, if there is one.
fn anchor(cond: &Cond) -> Option<Anchor> {
    match cond {
        // Every part is required: the most selective part's anchor will do.
        Cond::All { items, .. } => items.iter().filter_map(anchor).max_by_key(selectivity),
        // One branch must hold: every branch needs an anchor, and any of them may occur.
        Cond::Any { items, .. } => {
            let mut out = Vec::new();
            for item in items {
                out.extend(anchor(item)?);
            }
            (!out.is_empty()).then_some(out)
        }
        Cond::Macro { inner, .. } => anchor(inner),
        Cond::Not { .. } => None,
        Cond::Test(t) => {
            let field = key_of(t.field);
            if let (FieldType::Number, Op::NumIn(values)) = (t.ty, &t.op) {
                let out: Anchor =
                    values.iter().map(|n| Lit::Number { field, bits: number_bits(*n) }).collect();
                return (!out.is_empty()).then_some(out);
            }
            if t.ty != FieldType::Text {
                return None;
            }
            let lits = |values: Vec<(Vec<u8>, bool)>| -> Option<Anchor> {
                let out: Anchor =
                    values.into_iter().map(|(bytes, nocase)| Lit::Text { field, nocase, bytes }).collect();
                (!out.is_empty() && out.iter().all(|l| l.weight() >= MIN_LITERAL)).then_some(out)
            };
            match &t.op {
                Op::TextEq(values) => lits(values.iter().map(|v| (v.as_bytes().to_vec(), false)).collect()),
                Op::StartsWith { values, all } | Op::EndsWith { values, all } => {
                    lits(required(values.iter().map(|v| v.as_bytes().to_vec()).collect(), *all, false))
                }
                Op::Contains { finders, all } => {
                    lits(required(finders.iter().map(|f| f.needle().to_vec()).collect(), *all, false))
                }
                Op::Regex { sources, all, .. } => {
                    // Each source's own alternatives; under `all` one source's set suffices.
                    let mut per_source = Vec::new();
                    for s in sources {
                        per_source.push(source_literals(s)?);
                    }
                    if *all {
                        per_source
                            .into_iter()
                            .max_by_key(|alts| alts.iter().map(|(b, _)| b.len()).min())
                            .and_then(lits)
                    } else {
                        lits(per_source.into_iter().flatten().collect())
                    }
                }
                Op::Exists(_) | Op::Cmp(..) | Op::NumIn(_) | Op::RankIn(_) | Op::Bool(_) => None,
            }
        }
    }
}

/// Values of a text test as literal alternatives: any of them, or (under `all`) the longest.
fn required(values: Vec<Vec<u8>>, all: bool, nocase: bool) -> Vec<(Vec<u8>, bool)> {
    if all {
        values.into_iter().max_by_key(Vec::len).map(|v| vec![(v, nocase)]).unwrap_or_default()
    } else {
        values.into_iter().map(|v| (v, nocase)).collect()
    }
}

/// The literals a compiled text test requires, by how it was written.
fn source_literals(source: &super::cond::RegexSource) -> Option<Vec<(Vec<u8>, bool)>> {
    use super::cond::RegexSource;
    match source {
        // `nocase` text tests fold ASCII letters only, exactly like an ASCII case-insensitive
        // automaton, so the value itself is the anchor.
        RegexSource::NocaseText(v) => Some(vec![(v.as_bytes().to_vec(), true)]),
        RegexSource::Glob { glob, nocase } => {
            let run = longest_glob_literal(glob);
            (!run.is_empty()).then(|| vec![(run.into_bytes(), *nocase)])
        }
        RegexSource::Pattern(p) => regex_prefixes(p),
    }
}

/// The longest run of literal characters of a glob: every match contains it.
fn longest_glob_literal(glob: &str) -> String {
    let mut best = String::new();
    let mut run = String::new();
    let mut chars = glob.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        if in_class {
            in_class = c != ']';
            continue;
        }
        match c {
            '*' | '?' => {
                if run.len() > best.len() {
                    best = std::mem::take(&mut run);
                }
                run.clear();
            }
            '[' => {
                if run.len() > best.len() {
                    best = std::mem::take(&mut run);
                }
                run.clear();
                in_class = true;
                // A `]` right after `[` (or `[!`) is part of the class.
                let rest = chars.as_str();
                let skip = if rest.starts_with("!]") || rest.starts_with("^]") {
                    2
                } else {
                    usize::from(rest.starts_with(']'))
                };
                for _ in 0..skip {
                    chars.next();
                }
            }
            '\\' => match chars.next() {
                Some(n) => run.push(n),
                None => break,
            },
            c => run.push(c),
        }
    }
    if run.len() > best.len() {
        best = run;
    }
    best
}

/// Literal prefixes every match of the regex starts with, if the set is finite and useful.
fn regex_prefixes(pattern: &str) -> Option<Vec<(Vec<u8>, bool)>> {
    let hir = regex_syntax::ParserBuilder::new().nest_limit(64).build().parse(pattern).ok()?;
    let mut extractor = Extractor::new();
    extractor.kind(ExtractKind::Prefix);
    let seq = extractor.extract(&hir);
    let lits = seq.literals()?;
    if lits.is_empty() || lits.len() > 64 || lits.iter().any(|l| l.as_bytes().len() < MIN_LITERAL) {
        return None;
    }
    Some(lits.iter().map(|l| (l.as_bytes().to_vec(), false)).collect())
}

/// Longer shortest literal = fewer false candidates.
fn selectivity(anchor: &Anchor) -> (usize, std::cmp::Reverse<usize>) {
    let shortest = anchor.iter().map(Lit::weight).min().unwrap_or(0);
    (shortest, std::cmp::Reverse(anchor.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_literals() {
        assert_eq!(longest_glob_literal("/home/*/.ssh/id_*"), "/.ssh/id_");
        assert_eq!(longest_glob_literal("**/.aws/credentials"), "/.aws/credentials");
        assert_eq!(longest_glob_literal("[!]x]abc*"), "abc");
        assert_eq!(longest_glob_literal("a\\*bcd"), "a*bcd");
        assert_eq!(longest_glob_literal("*"), "");
    }

    #[test]
    fn regex_prefixes_are_finite_sets_or_nothing() {
        let p = |s: &str| {
            regex_prefixes(s).map(|v| {
                v.into_iter().map(|(b, _)| String::from_utf8_lossy(&b).into_owned()).collect::<Vec<_>>()
            })
        };
        assert_eq!(p(r"\b(curl|wget)\b.*\|\s*sh"), Some(vec!["curl".into(), "wget".into()]));
        assert_eq!(p(r"\bcmd7\b.*--force"), Some(vec!["cmd7".into()]));
        assert_eq!(p(r".*x"), None);
        assert_eq!(p(r"(?i)secret"), None, "case variants are too many or too short");
        assert_eq!(p(r"a|bcd"), None, "a short alternative makes the set useless");
    }

    #[test]
    fn bits_iterate_in_order() {
        let set = [0b1010u64, 1u64 << 63];
        assert_eq!(bits(&set).collect::<Vec<_>>(), [1, 3, 127]);
    }
}
