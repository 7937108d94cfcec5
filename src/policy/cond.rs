//! Compiled conditions and their evaluation, fast (for `evaluate`) and explained (for
//! `explain` and `policy test --explain`).
//!
//! Conditions use three-valued logic: a test on a field the event does not have is *unknown*,
//! never true, and so is its negation (`not` of unknown is unknown). A policy matches only when
//! its condition is *true*. This is the "a missing field never matches" rule, and it is what
//! makes absence visible instead of silently turning a `not` into a match. `exists` is the one
//! test that is decided on absence.
//!
//! The fast path evaluates the parts of an `all` cheapest first (enum and number checks before
//! substring searches before regexes); the explained path goes in written order so that the
//! reason it gives is the first one the author wrote. Both compute the same truth value because
//! every test is a pure function of the facts.
//!
//! This module does not parse YAML (that is `compile`).

use super::diag::Pos;
use super::fields::{name_of, Facts, Field, FieldType, Val};
use memchr::memmem::Finder;
use regex::Regex;
use std::fmt::Write as _;

/// Where something was written: a file of the set and a position in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Loc {
    pub file: usize,
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tri {
    True,
    False,
    Unknown,
}

impl Tri {
    fn not(self) -> Tri {
        match self {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            Tri::Unknown => Tri::Unknown,
        }
    }

    fn from_bool(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Cond {
    /// True when every item is; `order` is the fast evaluation order (cheapest first).
    All {
        items: Vec<Cond>,
        order: Box<[u32]>,
    },
    /// True when some item is.
    Any {
        items: Vec<Cond>,
        order: Box<[u32]>,
        at: Loc,
    },
    Not {
        inner: Box<Cond>,
        at: Loc,
    },
    /// A macro's condition, kept named for explanations.
    Macro {
        name: String,
        inner: Box<Cond>,
        at: Loc,
    },
    Test(Box<Test>),
}

/// One field test, as written (`process.cmd_line|contains: curl`).
#[derive(Debug, Clone)]
pub(crate) struct Test {
    pub field: Field,
    pub ty: FieldType,
    /// The key as written, for explanations.
    pub key: String,
    /// The expected value(s) as written, capped, for explanations.
    pub shown: String,
    pub at: Loc,
    pub op: Op,
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Exists(bool),
    /// Exact text (equals / in / enum words).
    TextEq(Vec<String>),
    Contains {
        finders: Vec<Finder<'static>>,
        all: bool,
    },
    StartsWith {
        values: Vec<String>,
        all: bool,
    },
    EndsWith {
        values: Vec<String>,
        all: bool,
    },
    /// `re`, `glob` and every `nocase` text test; `sources` says how each was written (the
    /// prefilter derives its literals from them).
    Regex {
        regexes: Vec<Regex>,
        sources: Vec<RegexSource>,
        all: bool,
    },
    Cmp(CmpOp, f64),
    NumIn(Vec<f64>),
    RankIn(Vec<usize>),
    Bool(bool),
}

/// What a compiled regex was made from.
#[derive(Debug, Clone)]
pub(crate) enum RegexSource {
    /// `re`: the pattern as written.
    Pattern(String),
    Glob {
        glob: String,
        nocase: bool,
    },
    /// A `nocase` equals/contains/startswith/endswith value.
    NocaseText(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CmpOp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Gt => a > b,
            CmpOp::Gte => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Lte => a <= b,
        }
    }
}

/// Why a condition is not true, and where the deciding part was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Why {
    pub at: Loc,
    pub message: String,
}

impl Cond {
    /// An `all` over `items`, with its fast order computed; a single item stays itself.
    pub fn all(mut items: Vec<Cond>) -> Cond {
        if items.len() == 1 {
            if let Some(only) = items.pop() {
                return only;
            }
        }
        let order = fast_order(&items);
        Cond::All { items, order }
    }

    pub fn any(items: Vec<Cond>, at: Loc) -> Cond {
        let order = fast_order(&items);
        Cond::Any { items, order, at }
    }

    /// Always true (an `all` of nothing), e.g. `agent.session: any`.
    pub fn always() -> Cond {
        Cond::All { items: Vec::new(), order: Box::new([]) }
    }

    /// A rough relative cost, used only to order the parts of `all` and `any`.
    fn cost(&self) -> u32 {
        match self {
            Cond::All { items, .. } | Cond::Any { items, .. } => {
                items.iter().map(Cond::cost).fold(0u32, u32::saturating_add)
            }
            Cond::Not { inner, .. } | Cond::Macro { inner, .. } => inner.cost(),
            Cond::Test(t) => match &t.op {
                Op::Exists(_) | Op::Bool(_) | Op::Cmp(..) | Op::RankIn(_) | Op::NumIn(_) => 1,
                Op::TextEq(v) => 2 + v.len() as u32 / 4,
                Op::StartsWith { values, .. } | Op::EndsWith { values, .. } => 3 + values.len() as u32 / 2,
                Op::Contains { finders, .. } => 6 * finders.len() as u32,
                Op::Regex { regexes, .. } => 25 * regexes.len() as u32,
            },
        }
    }

    /// Whether the condition is true (the fast path: only "true" matters at the top).
    pub fn holds(&self, facts: &Facts<'_>) -> bool {
        match self {
            Cond::All { items, order } => order.iter().all(|&i| items[i as usize].holds(facts)),
            Cond::Any { items, order, .. } => order.iter().any(|&i| items[i as usize].holds(facts)),
            Cond::Not { inner, .. } => inner.tri(facts) == Tri::False,
            Cond::Macro { inner, .. } => inner.holds(facts),
            Cond::Test(t) => t.tri(facts) == Tri::True,
        }
    }

    /// The three-valued result (needed under `not`).
    fn tri(&self, facts: &Facts<'_>) -> Tri {
        match self {
            Cond::All { items, order } => {
                let mut out = Tri::True;
                for &i in order.iter() {
                    match items[i as usize].tri(facts) {
                        Tri::False => return Tri::False,
                        Tri::Unknown => out = Tri::Unknown,
                        Tri::True => {}
                    }
                }
                out
            }
            Cond::Any { items, order, .. } => {
                let mut out = Tri::False;
                for &i in order.iter() {
                    match items[i as usize].tri(facts) {
                        Tri::True => return Tri::True,
                        Tri::Unknown => out = Tri::Unknown,
                        Tri::False => {}
                    }
                }
                out
            }
            Cond::Not { inner, .. } => inner.tri(facts).not(),
            Cond::Macro { inner, .. } => inner.tri(facts),
            Cond::Test(t) => t.tri(facts),
        }
    }

    /// The result in written order, with the first reason it is not true.
    pub fn explain(&self, facts: &Facts<'_>) -> (Tri, Option<Why>) {
        match self {
            Cond::All { items, .. } => {
                let mut out = (Tri::True, None);
                for item in items {
                    let (t, why) = item.explain(facts);
                    match t {
                        Tri::False => return (Tri::False, why),
                        Tri::Unknown if out.0 == Tri::True => out = (Tri::Unknown, why),
                        _ => {}
                    }
                }
                out
            }
            Cond::Any { items, at, .. } => {
                let mut result = Tri::False;
                let mut reasons = Vec::new();
                for item in items {
                    let (t, why) = item.explain(facts);
                    match t {
                        Tri::True => return (Tri::True, None),
                        Tri::Unknown => result = Tri::Unknown,
                        Tri::False => {}
                    }
                    if let Some(why) = why {
                        reasons.push(why.message);
                    }
                }
                let message = format!("no alternative of `any` matched: {}", reasons.join("; "));
                (result, Some(Why { at: *at, message }))
            }
            Cond::Not { inner, at } => match inner.explain(facts) {
                (Tri::True, _) => {
                    (Tri::False, Some(Why { at: *at, message: "the condition under `not` holds".into() }))
                }
                (Tri::False, _) => (Tri::True, None),
                (Tri::Unknown, why) => {
                    let detail = why.map(|w| w.message).unwrap_or_default();
                    let message = format!("the condition under `not` cannot be decided: {detail}");
                    (Tri::Unknown, Some(Why { at: *at, message }))
                }
            },
            Cond::Macro { name, inner, at } => {
                let (t, why) = inner.explain(facts);
                let why = why.map(|w| Why { at: *at, message: format!("macro `{name}`: {}", w.message) });
                (t, why)
            }
            Cond::Test(t) => {
                let result = t.tri(facts);
                let why = match result {
                    Tri::True => None,
                    Tri::Unknown => {
                        Some(Why { at: t.at, message: format!("field {} is absent", name_of(t.field)) })
                    }
                    Tri::False => Some(Why { at: t.at, message: t.refusal(facts) }),
                };
                (result, why)
            }
        }
    }
}

/// Indices of `items`, cheapest first (stable, so equal costs keep written order).
fn fast_order(items: &[Cond]) -> Box<[u32]> {
    let mut order: Vec<u32> = (0..items.len() as u32).collect();
    order.sort_by_key(|&i| items[i as usize].cost());
    order.into_boxed_slice()
}

impl Test {
    fn tri(&self, facts: &Facts<'_>) -> Tri {
        let val = facts.get(self.field);
        if let Op::Exists(want) = self.op {
            return Tri::from_bool(!matches!(val, Val::Absent) == want);
        }
        match val {
            Val::Absent => Tri::Unknown,
            Val::Text(s) => Tri::from_bool(self.text_holds(s)),
            Val::Texts(items) => Tri::from_bool(items.iter().any(|s| self.text_holds(s))),
            Val::AncestorExe(a) => {
                Tri::from_bool(a.iter().filter_map(|r| r.exe.as_deref()).any(|s| self.text_holds(s)))
            }
            Val::AncestorCmd(a) => {
                Tri::from_bool(a.iter().filter_map(|r| r.cmd_line.as_deref()).any(|s| self.text_holds(s)))
            }
            Val::Num(n) => Tri::from_bool(match &self.op {
                Op::Cmp(op, v) => op.holds(n, *v),
                Op::NumIn(values) => values.contains(&n),
                _ => false,
            }),
            Val::Rank(r) => Tri::from_bool(match &self.op {
                Op::Cmp(op, v) => op.holds(r as f64, *v),
                Op::RankIn(values) => values.contains(&r),
                _ => false,
            }),
            Val::Bool(b) => Tri::from_bool(matches!(self.op, Op::Bool(want) if want == b)),
        }
    }

    fn text_holds(&self, s: &str) -> bool {
        fn each<T>(items: &[T], all: bool, f: impl Fn(&T) -> bool) -> bool {
            if all {
                items.iter().all(f)
            } else {
                items.iter().any(f)
            }
        }
        match &self.op {
            Op::TextEq(values) => values.iter().any(|v| v == s),
            Op::Contains { finders, all } => each(finders, *all, |f| f.find(s.as_bytes()).is_some()),
            Op::StartsWith { values, all } => each(values, *all, |v| s.starts_with(v.as_str())),
            Op::EndsWith { values, all } => each(values, *all, |v| s.ends_with(v.as_str())),
            Op::Regex { regexes, all, .. } => each(regexes, *all, |r| r.is_match(s)),
            _ => false,
        }
    }

    /// Why a present value failed the test, quoting the value (capped; it is event data).
    fn refusal(&self, facts: &Facts<'_>) -> String {
        let val = facts.get(self.field);
        if self.field == Field::AgentSession {
            let is = if facts.session_present { "is" } else { "is not" };
            return format!("the event {is} tied to an agent session (`{}: {}`)", self.key, self.shown);
        }
        format!(
            "{} is {}, which does not satisfy `{}: {}`",
            name_of(self.field),
            show_val(val, self.ty),
            self.key,
            self.shown
        )
    }
}

/// How a value reads in an explanation: quoted and capped, since it may be attacker-chosen.
fn show_val(val: Val<'_>, ty: FieldType) -> String {
    const MAX_ITEMS: usize = 8;
    let list = |items: &mut dyn Iterator<Item = &str>| {
        let mut out = String::from("[");
        for (i, s) in items.enumerate() {
            if i == MAX_ITEMS {
                out.push_str(", …");
                break;
            }
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&quote(s));
        }
        out.push(']');
        out
    };
    match val {
        Val::Absent => "absent".into(),
        Val::Text(s) => quote(s),
        Val::Texts(items) => list(&mut items.iter().map(String::as_str)),
        Val::AncestorExe(a) => list(&mut a.iter().filter_map(|r| r.exe.as_deref())),
        Val::AncestorCmd(a) => list(&mut a.iter().filter_map(|r| r.cmd_line.as_deref())),
        Val::Num(n) => format_number(n),
        Val::Rank(r) => match ty {
            FieldType::Ordered(words) => words.get(r).copied().unwrap_or("?").to_string(),
            _ => r.to_string(),
        },
        Val::Bool(b) => b.to_string(),
    }
}

pub(crate) fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// `Debug`-quoted (escapes control characters, so a value cannot forge output lines) and cut
/// to a readable length at a character boundary.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        return format!("{s:?}");
    }
    let cut: String = s.chars().take(MAX).collect();
    let mut out = format!("{cut:?}");
    let _ = write!(out, "…");
    out
}

impl CmpOp {
    pub(crate) fn from_modifier(m: &str) -> Option<CmpOp> {
        match m {
            "gt" => Some(CmpOp::Gt),
            "gte" => Some(CmpOp::Gte),
            "lt" => Some(CmpOp::Lt),
            "lte" => Some(CmpOp::Lte),
            _ => None,
        }
    }
}
