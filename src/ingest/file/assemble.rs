//! Cutting a file's bytes into payloads: complete lines (`jsonl`), or audit events (`audit`):
//! the lines sharing `msg=audit(TIME:SERIAL)`, grouped by [`crate::decode::audit::AuditGrouper`]
//! (the one grouping the audit decoder and the sample tests use too) and joined by `\n`.
//!
//! The [`Assembler`] is fed bytes in file order and hands back [`Record`]s, each saying where
//! reading may resume once it and every record before it are stored. A resume point is always
//! the start of a line: the start of the oldest audit event still open, or of the partial last
//! line, whichever comes first (the one exception is [`Assembler::finish`], for a file that will
//! not grow again). A partial last line is never a record: it waits for its newline. Lines over
//! [`MAX_RECORD_BYTES`] are skipped without being buffered (the R14 size cap, applied per line
//! because logs only grow).
//!
//! Pure: no I/O and no clocks (the caller says when a file went idle or ended), so every rule is
//! unit tested. Deliberately not here: reading files, decoding, checkpoints, metrics.

use std::collections::BTreeMap;

use crate::config::WatchFormat;
use crate::decode::audit::AuditGrouper;

/// Largest line passed to a decoder: 1 MiB. Longer ones are skipped. (An audit event is capped
/// lower by the grouper, see [`crate::decode::audit::MAX_EVENT_BYTES`].)
pub const MAX_RECORD_BYTES: usize = 1 << 20;

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
    /// A line longer than [`MAX_RECORD_BYTES`].
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
    /// Cap on a line's size; [`MAX_RECORD_BYTES`] except in tests.
    max_record: usize,
    /// Position of the next byte to be pushed.
    next: Position,
    /// Where the incomplete current line starts.
    line_start: Position,
    /// The incomplete current line (empty when it is over the cap: its bytes are dropped).
    partial: Vec<u8>,
    /// The current line passed the cap; its remaining bytes are dropped up to its newline.
    overlong: bool,
    /// `audit`: the events still collecting lines.
    grouper: AuditGrouper,
    /// `audit`: a number for each line given to the grouper (its `at`), in file order.
    next_at: usize,
    /// `audit`: where the first line of each open event starts, by its `at`. Only open events
    /// are kept, so this holds at most [`crate::decode::audit::REORDER_WINDOW`] entries.
    starts: BTreeMap<usize, Position>,
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
            grouper: AuditGrouper::new(),
            next_at: 0,
            starts: BTreeMap::new(),
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
        self.line_start != self.next || self.grouper.pending() > 0
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

    /// The file has not grown for a while: open audit events will get no more lines (auditd
    /// writes no `EOE` after many events, e.g. a lone `AVC`). Closes them all; a partial line
    /// keeps waiting.
    pub fn idle(&mut self, out: &mut Vec<Record>) {
        let done = self.grouper.finish();
        self.emit_events(done, None, out);
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
        match self.starts.values().next() {
            Some(oldest) if oldest.offset < self.line_start.offset => *oldest,
            _ => self.line_start,
        }
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
        let kind = if overlong {
            RecordKind::Skipped(SkipReason::TooLong)
        } else if line.iter().all(u8::is_ascii_whitespace) {
            RecordKind::Skipped(SkipReason::Blank)
        } else if self.format == WatchFormat::Audit {
            return self.audit_line(start, &line, out);
        } else {
            RecordKind::Payload(line)
        };
        out.push(Record { start, lines: 1, kind, resume: self.resume() });
    }

    /// Gives one audit line to the grouper and emits the events it completed.
    fn audit_line(&mut self, start: Position, line: &[u8], out: &mut Vec<Record>) {
        let at = self.next_at;
        self.next_at = self.next_at.wrapping_add(1);
        let done = self.grouper.push_line(at, &String::from_utf8_lossy(line));
        if self.grouper.pending_positions().any(|p| p == at) {
            self.starts.insert(at, start);
        }
        self.emit_events(done, Some((at, start)), out);
    }

    /// Emits completed events in the grouper's order. `current` is the line just pushed (a
    /// line that is not an audit record comes back at once as its own group). Each record's
    /// resume point also waits for the events emitted after it in this same call, so a batch
    /// cut between them cannot checkpoint past an event that is not stored yet.
    fn emit_events(
        &mut self,
        done: Vec<(usize, String)>,
        current: Option<(usize, Position)>,
        out: &mut Vec<Record>,
    ) {
        let events: Vec<(Position, String)> = done
            .into_iter()
            .map(|(at, text)| {
                let start = match current {
                    Some((now, start)) if now == at => start,
                    _ => self.starts.remove(&at).unwrap_or(self.line_start),
                };
                (start, text)
            })
            .collect();
        let mut resume = self.resume();
        let mut resumes = Vec::with_capacity(events.len());
        for (start, _) in events.iter().rev() {
            resumes.push(resume);
            if start.offset < resume.offset {
                resume = *start;
            }
        }
        for ((start, text), resume) in events.into_iter().zip(resumes.into_iter().rev()) {
            let lines = text.bytes().filter(|&b| b == b'\n').count() as u64 + 1;
            out.push(Record { start, lines, kind: RecordKind::Payload(text.into_bytes()), resume });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::audit::REORDER_WINDOW;

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
        assert_eq!(out[0].lines, 4, "the EOE record carries nothing");
        assert_eq!(payloads(&out)[0], EVENT_60.trim_end_matches('\n'));
        assert_eq!(out[0].start, pos(0, 0));
        assert_eq!(out[0].resume, pos(text.len() as u64, 5), "after the EOE line");
        assert!(!asm.is_holding());
    }

    #[test]
    fn an_audit_event_without_eoe_closes_on_idle_and_holds_the_checkpoint_until_then() {
        let (mut asm, mut out) = run(WatchFormat::Audit, &[EVENT_60.as_bytes()]);
        assert!(out.is_empty());
        assert!(asm.is_holding());
        assert_eq!(asm.resume(), pos(0, 0));
        asm.idle(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].lines, 4);
        assert_eq!(out[0].resume, pos(EVENT_60.len() as u64, 4));
        assert!(!asm.is_holding());
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
                "type=SYSCALL msg=audit(100.001:2): b",
                "type=SYSCALL msg=audit(100.000:1): a\ntype=CWD msg=audit(100.000:1): cwd=\"/\""
            ]
        );
        assert_eq!(out[0].start, pos(37, 1));
        assert_eq!(out[0].resume, pos(0, 0), "event 1 is still open");
        assert_eq!(out[1].start, pos(0, 0));
        assert_eq!(out[1].resume, pos(text.len() as u64, 5));
    }

    #[test]
    fn events_completed_together_each_wait_for_the_ones_after_them() {
        let text = "type=AVC msg=audit(100.000:1): a\nx\ntype=AVC msg=audit(100.000:2): b\n";
        let (mut asm, mut out) = run(WatchFormat::Audit, &[text.as_bytes()]);
        assert_eq!(payloads(&out), ["x"], "a line that is not an audit record is its own payload");
        assert_eq!(out[0].resume, pos(0, 0));
        asm.idle(&mut out);
        assert_eq!(
            payloads(&out)[1..],
            ["type=AVC msg=audit(100.000:1): a", "type=AVC msg=audit(100.000:2): b"]
        );
        // A batch may end after the first: its checkpoint must not pass the second's start.
        assert_eq!(out[1].resume, pos(35, 2));
        assert_eq!(out[2].resume, pos(text.len() as u64, 3));
    }

    #[test]
    fn an_audit_event_closes_once_enough_newer_events_have_started() {
        let many: String =
            (0..=REORDER_WINDOW).map(|i| format!("type=AVC msg=audit(100.000:{i}): z\n")).collect();
        let (asm, out) = run(WatchFormat::Audit, &[many.as_bytes()]);
        assert_eq!(payloads(&out), ["type=AVC msg=audit(100.000:0): z"]);
        assert_eq!(out[0].resume, pos(33, 1), "the next open event starts on line 2");
        assert_eq!(asm.starts.len(), REORDER_WINDOW, "only open events' starts are kept");
    }

    #[test]
    fn audit_node_prefix_keeps_hosts_apart() {
        let text = "node=a type=AVC msg=audit(1.0:5): x\nnode=b type=AVC msg=audit(1.0:5): y\n";
        let (mut asm, mut out) = run(WatchFormat::Audit, &[text.as_bytes()]);
        assert!(out.is_empty());
        asm.idle(&mut out);
        assert_eq!(
            payloads(&out),
            ["node=a type=AVC msg=audit(1.0:5): x", "node=b type=AVC msg=audit(1.0:5): y"]
        );
    }

    #[test]
    fn an_overlong_audit_line_is_skipped_and_the_open_event_still_holds_the_checkpoint() {
        let mut asm = Assembler::with_cap(WatchFormat::Audit, Position::default(), 60);
        let mut out = Vec::new();
        asm.push(b"type=AVC msg=audit(1.0:5): x\n", &mut out);
        asm.push(format!("type=AVC msg=audit(1.0:6): {}\n", "y".repeat(60)).as_bytes(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, RecordKind::Skipped(SkipReason::TooLong));
        assert_eq!(out[0].resume, pos(0, 0));
        asm.idle(&mut out);
        assert_eq!(payloads(&out)[..], ["type=AVC msg=audit(1.0:5): x"]);
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
                if format == WatchFormat::Jsonl {
                    assert_eq!(lines, newlines + partial, "every line is in exactly one record");
                } else {
                    // EOE records and records over the grouper's caps are in no payload.
                    assert!(lines <= newlines + partial);
                }
                for r in &out[..out.len().saturating_sub(1)] {
                    let at_line_start = r.resume.offset == 0 || bytes[r.resume.offset as usize - 1] == b'\n';
                    assert!(at_line_start, "resume points are line starts: {r:?}");
                }
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
