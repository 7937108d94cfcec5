//! Cutting a file's bytes into payloads: complete lines (`jsonl`), or audit events (`audit`):
//! the lines sharing `msg=audit(TIME:SERIAL)`, joined by `\n`.
//!
//! The [`Assembler`] is fed bytes in file order and hands back [`Record`]s, each saying where
//! reading may resume once it and every record before it are stored. A partial last line is
//! never a record: it waits for its newline. Lines over [`MAX_RECORD_BYTES`] are skipped without
//! being buffered (the R14 size cap, applied per line because logs only grow).
//!
//! Pure: no I/O and no clocks (the caller says when a file went idle or ended), so every rule is
//! unit tested. Deliberately not here: reading files, decoding, checkpoints, metrics.

use std::collections::VecDeque;

use crate::config::WatchFormat;

/// Largest line (and largest audit event) passed to a decoder: 1 MiB. Longer ones are skipped.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Audit events kept open at once; one more closes the oldest. auditd writes an event's records
/// together, so only a few events interleave.
const MAX_OPEN_GROUPS: usize = 16;

/// An open audit event closes when a record stamped this much later arrives (log time, so the
/// grouping does not depend on how fast the file is read).
const GROUP_SPAN_MS: u64 = 2_000;

/// A place in the file: a byte offset and how many lines lie before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Byte offset from the start of the file.
    pub offset: u64,
    /// Complete lines before `offset` (so the line starting there is number `line + 1`).
    pub line: u64,
}

/// One payload, or one span that was skipped, with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where the record's first line starts: its identity for dedup and its place in logs.
    pub start: Position,
    /// How many lines it covers (an audit event has several), for the line metrics.
    pub lines: u64,
    /// The payload, or why there is none.
    pub kind: RecordKind,
    /// Where reading may resume once this record and all records before it are stored: no
    /// byte before it belongs to a record still to come.
    pub resume: Position,
}

/// What a record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKind {
    /// Bytes for the decoder: a line without its `\n` (and `\r`), or an audit event's lines
    /// joined by `\n`.
    Payload(Vec<u8>),
    /// Nothing to decode, for this reason.
    Skipped(SkipReason),
}

/// Why a span of the file produced no payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A line (or audit event) longer than [`MAX_RECORD_BYTES`].
    TooLong,
    /// An empty or whitespace-only line.
    Blank,
    /// A last line without a newline in a file that will not grow any more.
    Partial,
}

impl SkipReason {
    /// Metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::TooLong => "too_long",
            SkipReason::Blank => "blank",
            SkipReason::Partial => "partial",
        }
    }
}

/// Turns a stream of bytes into records. One per file being read; reset when reading restarts.
#[derive(Debug)]
pub struct Assembler {
    /// Lines or audit events.
    format: WatchFormat,
    /// Cap on a payload's size; [`MAX_RECORD_BYTES`] except in tests.
    max_record: usize,
    /// Position of the next byte to be pushed.
    next: Position,
    /// Where the incomplete current line starts.
    line_start: Position,
    /// The incomplete current line (empty when it is over the cap: its bytes are dropped).
    partial: Vec<u8>,
    /// The current line passed the cap; its remaining bytes are dropped up to its newline.
    overlong: bool,
    /// `audit`: events still collecting lines, oldest first.
    groups: VecDeque<Group>,
}

/// An audit event still collecting lines.
#[derive(Debug)]
struct Group {
    /// `node` prefix (if any) and `TIME:SERIAL`: which lines belong here.
    key: Vec<u8>,
    /// Log time in milliseconds, from `TIME`, for [`GROUP_SPAN_MS`].
    time_ms: Option<u64>,
    /// Where its first line starts.
    start: Position,
    /// Lines collected so far.
    lines: u64,
    /// The lines joined by `\n` (emptied once the event is over the cap).
    bytes: Vec<u8>,
    /// The event passed the cap; it will be skipped as too long.
    overlong: bool,
}

impl Assembler {
    /// An assembler whose first pushed byte sits at `from`.
    pub fn new(format: WatchFormat, from: Position) -> Assembler {
        Assembler::with_cap(format, from, MAX_RECORD_BYTES)
    }

    /// Same, with a different cap (tests).
    pub fn with_cap(format: WatchFormat, from: Position, max_record: usize) -> Assembler {
        Assembler {
            format,
            max_record,
            next: from,
            line_start: from,
            partial: Vec::new(),
            overlong: false,
            groups: VecDeque::new(),
        }
    }

    /// Lines or audit events.
    pub fn format(&self) -> WatchFormat {
        self.format
    }

    /// Position of the next byte to push: everything before it has been seen.
    pub fn next_position(&self) -> Position {
        self.next
    }

    /// True when bytes are held that no record covers yet (a partial line or open events).
    pub fn is_holding(&self) -> bool {
        self.line_start != self.next || !self.groups.is_empty()
    }

    /// Feeds the next bytes of the file; complete records are appended to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<Record>) {
        while !bytes.is_empty() {
            let (chunk, complete) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..=i], true),
                None => (bytes, false),
            };
            bytes = &bytes[chunk.len()..];
            self.next.offset += chunk.len() as u64;
            if !self.overlong {
                if self.partial.len() + chunk.len() > self.max_record + 1 {
                    // +1: the newline does not count towards the cap.
                    self.overlong = true;
                    self.partial = Vec::new();
                } else {
                    self.partial.extend_from_slice(chunk);
                }
            }
            if complete {
                self.next.line += 1;
                self.end_line(out);
            }
        }
    }

    /// The file has not grown for a while: open audit events will get no more lines.
    /// Closes them all (a partial line keeps waiting).
    pub fn idle(&mut self, out: &mut Vec<Record>) {
        while !self.groups.is_empty() {
            self.close_group(0, out);
        }
    }

    /// The file will not grow again (renamed away or deleted, and quiet): closes open events
    /// and skips a partial last line, so the checkpoint reaches the end of the file.
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        self.idle(out);
        if self.line_start != self.next {
            let start = self.line_start;
            let reason = if self.overlong { SkipReason::TooLong } else { SkipReason::Partial };
            self.partial.clear();
            self.overlong = false;
            self.line_start = self.next;
            out.push(Record { start, lines: 1, kind: RecordKind::Skipped(reason), resume: self.resume() });
        }
    }

    /// Where a checkpoint may point right now: the start of the oldest open event or of the
    /// partial line, whichever is first.
    fn resume(&self) -> Position {
        self.groups
            .iter()
            .map(|g| g.start)
            .fold(self.line_start, |a, b| if b.offset < a.offset { b } else { a })
    }

    /// A full line (with its `\n`) is in `partial`, or it was over the cap.
    fn end_line(&mut self, out: &mut Vec<Record>) {
        let start = self.line_start;
        let overlong = std::mem::take(&mut self.overlong);
        let mut line = std::mem::take(&mut self.partial);
        self.line_start = self.next;
        line.pop(); // the '\n'
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if overlong {
            self.emit(start, 1, RecordKind::Skipped(SkipReason::TooLong), out);
        } else if line.iter().all(u8::is_ascii_whitespace) {
            self.emit(start, 1, RecordKind::Skipped(SkipReason::Blank), out);
        } else {
            match self.format {
                WatchFormat::Jsonl => self.emit(start, 1, RecordKind::Payload(line), out),
                WatchFormat::Audit => self.audit_line(start, line, out),
            }
        }
    }

    fn emit(&mut self, start: Position, lines: u64, kind: RecordKind, out: &mut Vec<Record>) {
        out.push(Record { start, lines, kind, resume: self.resume() });
    }

    fn audit_line(&mut self, start: Position, line: Vec<u8>, out: &mut Vec<Record>) {
        let Some((key, time_ms)) = audit_key(&line) else {
            // Not an audit record: its own payload; the decoder decides what it is worth.
            self.emit(start, 1, RecordKind::Payload(line), out);
            return;
        };
        if let Some(now) = time_ms {
            while let Some(i) = self
                .groups
                .iter()
                .position(|g| g.time_ms.is_some_and(|t| t.saturating_add(GROUP_SPAN_MS) < now))
            {
                self.close_group(i, out);
            }
        }
        let end_of_event = line.starts_with(b"type=EOE ") || contains(&line, b" type=EOE ");
        let index = match self.groups.iter().position(|g| g.key == key) {
            Some(i) => i,
            None => {
                if self.groups.len() >= MAX_OPEN_GROUPS {
                    self.close_group(0, out);
                }
                self.groups.push_back(Group {
                    key,
                    time_ms,
                    start,
                    lines: 0,
                    bytes: Vec::new(),
                    overlong: false,
                });
                self.groups.len() - 1
            }
        };
        let max = self.max_record;
        if let Some(group) = self.groups.get_mut(index) {
            group.lines += 1;
            let extra = line.len() + usize::from(!group.bytes.is_empty());
            if group.overlong || group.bytes.len() + extra > max {
                group.overlong = true;
                group.bytes = Vec::new();
            } else {
                if !group.bytes.is_empty() {
                    group.bytes.push(b'\n');
                }
                group.bytes.extend_from_slice(&line);
            }
        }
        if end_of_event {
            self.close_group(index, out);
        }
    }

    fn close_group(&mut self, index: usize, out: &mut Vec<Record>) {
        if let Some(group) = self.groups.remove(index) {
            let kind = if group.overlong {
                RecordKind::Skipped(SkipReason::TooLong)
            } else {
                RecordKind::Payload(group.bytes)
            };
            self.emit(group.start, group.lines, kind, out);
        }
    }
}

/// `node=… ` prefix (remote logging puts several hosts in one file) plus `TIME:SERIAL` from
/// `msg=audit(TIME:SERIAL)`, and TIME in milliseconds. `None` for a line that is not an audit
/// record.
fn audit_key(line: &[u8]) -> Option<(Vec<u8>, Option<u64>)> {
    const MARK: &[u8] = b"msg=audit(";
    let at = find(line, MARK)? + MARK.len();
    let len = line[at..].iter().position(|&b| b == b')')?;
    let id = &line[at..at + len];
    let mut key = Vec::with_capacity(len + 16);
    if line.starts_with(b"node=") {
        let node_len = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
        key.extend_from_slice(&line[..node_len]);
        key.push(b' ');
    }
    key.extend_from_slice(id);
    Some((key, audit_millis(id)))
}

/// `1795320857.092:60` → 1795320857092.
fn audit_millis(id: &[u8]) -> Option<u64> {
    let time = std::str::from_utf8(id).ok()?.split(':').next()?;
    let (secs, frac) = time.split_once('.').unwrap_or((time, "0"));
    let secs: u64 = secs.parse().ok()?;
    let frac = frac.get(..3.min(frac.len()))?;
    let millis = frac.parse::<u64>().ok()? * 10u64.pow(3 - frac.len() as u32);
    secs.checked_mul(1000)?.checked_add(millis)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(format: WatchFormat, chunks: &[&[u8]]) -> (Assembler, Vec<Record>) {
        let mut asm = Assembler::new(format, Position::default());
        let mut out = Vec::new();
        for chunk in chunks {
            asm.push(chunk, &mut out);
        }
        (asm, out)
    }

    fn payloads(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .filter_map(|r| match &r.kind {
                RecordKind::Payload(p) => Some(String::from_utf8_lossy(p).into_owned()),
                RecordKind::Skipped(_) => None,
            })
            .collect()
    }

    fn pos(offset: u64, line: u64) -> Position {
        Position { offset, line }
    }

    #[test]
    fn complete_lines_become_records_and_a_partial_line_waits() {
        let (asm, out) = run(WatchFormat::Jsonl, &[b"{\"a\":1}\n{\"b\"", b":2}\r\n{\"c\":"]);
        assert_eq!(payloads(&out), vec!["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(out[0].start, pos(0, 0));
        assert_eq!(out[0].resume, pos(8, 1));
        assert_eq!(out[1].start, pos(8, 1));
        assert_eq!(out[1].resume, pos(17, 2), "the partial third line is not covered");
        assert!(asm.is_holding());
        assert_eq!(asm.next_position(), pos(22, 2));
    }

    #[test]
    fn a_line_split_across_many_pushes_is_one_record() {
        let line = b"{\"vendor_id\":\"x\"}\n";
        let chunks: Vec<&[u8]> = line.chunks(1).collect();
        let (asm, out) = run(WatchFormat::Jsonl, &chunks);
        assert_eq!(payloads(&out), vec!["{\"vendor_id\":\"x\"}"]);
        assert!(!asm.is_holding());
    }

    #[test]
    fn blank_lines_are_skipped_but_move_the_resume_point() {
        let (_, out) = run(WatchFormat::Jsonl, &[b"\n  \n{}\n"]);
        let kinds: Vec<_> = out.iter().map(|r| r.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                RecordKind::Skipped(SkipReason::Blank),
                RecordKind::Skipped(SkipReason::Blank),
                RecordKind::Payload(b"{}".to_vec())
            ]
        );
        assert_eq!(out[1].resume, pos(4, 2));
    }

    #[test]
    fn overlong_lines_are_skipped_without_buffering_them() {
        let mut asm = Assembler::with_cap(WatchFormat::Jsonl, Position::default(), 8);
        let mut out = Vec::new();
        asm.push(b"12345678\n1234567890", &mut out);
        assert_eq!(payloads(&out), vec!["12345678"], "exactly the cap is accepted");
        assert!(asm.partial.is_empty(), "the long line is not held");
        asm.push(b"123456789\nok\n", &mut out);
        assert_eq!(out[1].kind, RecordKind::Skipped(SkipReason::TooLong));
        assert_eq!(out[1].start, pos(9, 1));
        assert_eq!(payloads(&out), vec!["12345678", "ok"]);
        assert_eq!(out[2].start, pos(29, 2));
    }

    #[test]
    fn finish_skips_a_partial_last_line_so_the_file_can_be_closed() {
        let (mut asm, mut out) = run(WatchFormat::Jsonl, &[b"{}\n{\"half"]);
        asm.finish(&mut out);
        assert_eq!(out.last().unwrap().kind, RecordKind::Skipped(SkipReason::Partial));
        assert_eq!(out.last().unwrap().resume, pos(9, 1));
        assert!(!asm.is_holding());
    }

    #[test]
    fn resuming_mid_file_counts_from_the_given_position() {
        let mut asm = Assembler::new(WatchFormat::Jsonl, pos(100, 7));
        let mut out = Vec::new();
        asm.push(b"{}\n", &mut out);
        assert_eq!(out[0].start, pos(100, 7));
        assert_eq!(out[0].resume, pos(103, 8));
    }

    const EVENT_60: &str =
        "type=SYSCALL msg=audit(1795320857.092:60): arch=c000003e syscall=257 success=no exit=-13\n\
         type=CWD msg=audit(1795320857.092:60): cwd=\"/tmp\"\n\
         type=PATH msg=audit(1795320857.092:60): item=0 name=\"/etc/shadow\"\n\
         type=PROCTITLE msg=audit(1795320857.092:60): proctitle=636174002F6574632F736861646F77\n";

    #[test]
    fn audit_lines_of_one_event_are_one_payload() {
        let text = format!("{EVENT_60}type=EOE msg=audit(1795320857.092:60): \n");
        let (asm, out) = run(WatchFormat::Audit, &[text.as_bytes()]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].lines, 5);
        assert_eq!(payloads(&out)[0], text.trim_end_matches('\n'));
        assert_eq!(out[0].resume, pos(text.len() as u64, 5));
        assert!(!asm.is_holding());
    }

    #[test]
    fn an_audit_event_without_eoe_closes_on_idle_and_holds_the_checkpoint_until_then() {
        let (mut asm, mut out) = run(WatchFormat::Audit, &[EVENT_60.as_bytes()]);
        assert!(out.is_empty());
        assert!(asm.is_holding());
        asm.idle(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].lines, 4);
        assert_eq!(out[0].resume, pos(EVENT_60.len() as u64, 4));
    }

    #[test]
    fn interleaved_audit_events_are_regrouped_and_resume_waits_for_the_oldest() {
        let text = "type=SYSCALL msg=audit(100.000:1): a\n\
                    type=SYSCALL msg=audit(100.001:2): b\n\
                    type=CWD msg=audit(100.000:1): cwd=\"/\"\n\
                    type=EOE msg=audit(100.001:2): \n\
                    type=EOE msg=audit(100.000:1): \n";
        let (_, out) = run(WatchFormat::Audit, &[text.as_bytes()]);
        assert_eq!(
            payloads(&out),
            vec![
                "type=SYSCALL msg=audit(100.001:2): b\ntype=EOE msg=audit(100.001:2): ",
                "type=SYSCALL msg=audit(100.000:1): a\ntype=CWD msg=audit(100.000:1): cwd=\"/\"\ntype=EOE msg=audit(100.000:1): "
            ]
        );
        assert_eq!(out[0].start.line, 1);
        assert_eq!(out[0].resume, pos(0, 0), "event 1 is still open");
        assert_eq!(out[1].resume, pos(text.len() as u64, 5));
    }

    #[test]
    fn audit_events_close_when_log_time_moves_on_or_too_many_are_open() {
        let (_, out) = run(
            WatchFormat::Audit,
            &[b"type=USER_LOGIN msg=audit(100.000:1): x\ntype=USER_LOGIN msg=audit(102.001:2): y\n"],
        );
        assert_eq!(payloads(&out), vec!["type=USER_LOGIN msg=audit(100.000:1): x"]);

        let many: String =
            (0..=MAX_OPEN_GROUPS).map(|i| format!("type=AVC msg=audit(100.000:{i}): z\n")).collect();
        let (asm, out) = run(WatchFormat::Audit, &[many.as_bytes()]);
        assert_eq!(out.len(), 1, "the oldest closes when one too many are open");
        assert_eq!(asm.groups.len(), MAX_OPEN_GROUPS);
    }

    #[test]
    fn audit_node_prefix_keeps_hosts_apart_and_non_audit_lines_pass_through() {
        let text = "node=a type=AVC msg=audit(1.0:5): x\nnode=b type=AVC msg=audit(1.0:5): y\nhello\n";
        let (mut asm, mut out) = run(WatchFormat::Audit, &[text.as_bytes()]);
        assert_eq!(payloads(&out), vec!["hello"]);
        assert_eq!(out[0].resume, pos(0, 0));
        asm.idle(&mut out);
        assert_eq!(
            payloads(&out)[1..],
            ["node=a type=AVC msg=audit(1.0:5): x", "node=b type=AVC msg=audit(1.0:5): y"]
        );
    }

    #[test]
    fn oversized_audit_event_is_skipped() {
        // Every line fits the cap; the event as a whole does not.
        let mut asm = Assembler::with_cap(WatchFormat::Audit, Position::default(), 150);
        let mut out = Vec::new();
        asm.push(EVENT_60.as_bytes(), &mut out);
        asm.push(b"type=EOE msg=audit(1795320857.092:60): \n", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, RecordKind::Skipped(SkipReason::TooLong));
        assert_eq!(out[0].lines, 5);
    }

    #[test]
    fn audit_time_parsing() {
        assert_eq!(audit_millis(b"1795320857.092:60"), Some(1_795_320_857_092));
        assert_eq!(audit_millis(b"10.5:1"), Some(10_500));
        assert_eq!(audit_millis(b"x:1"), None);
        assert_eq!(audit_millis(b"99999999999999999999.0:1"), None);
    }

    #[test]
    fn no_input_panics_and_records_tile_the_input() {
        // Deterministic pseudo-random bytes, cut at random points: every byte before the last
        // resume point belongs to exactly one record, in order, and nothing panics.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for format in [WatchFormat::Jsonl, WatchFormat::Audit] {
            for _ in 0..200 {
                let len = (next() % 300) as usize;
                let alphabet = b"ab \n\r{}:=()msg=audit(1.2:3)type=EOE node=x";
                let bytes: Vec<u8> =
                    (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
                let mut asm = Assembler::with_cap(format, Position::default(), 20);
                let mut out = Vec::new();
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let take = 1 + (next() as usize % rest.len());
                    asm.push(&rest[..take], &mut out);
                    rest = &rest[take..];
                }
                asm.finish(&mut out);
                let lines: u64 = out.iter().map(|r| r.lines).sum();
                let newlines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
                let partial = u64::from(bytes.last().is_some_and(|&b| b != b'\n'));
                assert_eq!(lines, newlines + partial, "every line is in exactly one record");
                let mut last = 0;
                for r in &out {
                    assert!(r.resume.offset >= last, "resume points never go back");
                    last = r.resume.offset;
                }
                assert_eq!(last, bytes.len() as u64);
            }
        }
    }
}
