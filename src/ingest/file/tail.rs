//! One watch's files: finding them, following rotation and truncation, reading complete
//! records, and storing them together with each file's checkpoint.
//!
//! Everything here is blocking (directory listings, `pread`, sled transactions) and runs on the
//! blocking pool; the async loop in `super` decides when. A [`Watch`] is plain state moved into
//! and out of `spawn_blocking`, so no lock is held across I/O.
//!
//! How files are followed:
//! - Identity is `(device, inode)`, so a renamed file is the same file. A file renamed away from
//!   the watched name(s) is read until it has been quiet for `rotate_wait_ms`, then closed; the
//!   new file at the watched name is read from its start. While the broker was down, a rotated
//!   file is found again by inode anywhere in the watched directory.
//! - Each checkpoint carries a fingerprint of the bytes just before its offset. A file that is
//!   shorter than its checkpoint, or whose fingerprint no longer matches, was truncated
//!   (copytruncate) or its inode reused: it is read again from the start. The lines written
//!   between the last read and the truncation are recovered from the copy, found in the same
//!   directory because its bytes match the fingerprint at the checkpoint.
//! - A file that is not being read yet (new, or held) is compared with every open file being
//!   read ([`Watch::judge`]), by the bytes before a line boundary only, so the decision never
//!   depends on a partly written line and never falls inside one:
//!   - with no complete line yet it is *undecided* and held at 0 (an empty file, or one whose
//!     first line is still being written, is not compared with anything: an empty prefix
//!     matches every file);
//!   - if its complete lines are a prefix of a file being read (a copy taken before the original
//!     is truncated, possibly still being written), it is *held*: not read, since the original
//!     holds the same lines. Its checkpoint stays at the end of the lines the original has
//!     *stored* (and at a line boundary), so releasing it never skips an unstored line. When the
//!     original is truncated the copy is moved to the original's checkpoint and read from there;
//!     if it diverges it is read from where it stops;
//!   - otherwise it is read, from the start, or after the lines an open file has already stored
//!     if it begins with exactly those bytes (a copy of an original that was truncated between
//!     two looks).
//!
//!   A file is never compared with itself, nor with a held file (two held copies of one another
//!   would wait for each other forever).
//! - Reading checks, after each `pread`, that the bytes before it are still the ones read: a
//!   file truncated and written again past the read position between two scans is not read on
//!   from the middle of its new contents.
//! - Every line is stored with a dedup key `(watch, device, inode, offset, sha256(line))`, a
//!   second guard: re-reading a span whose events are already stored (a rewind, a crash between
//!   write and checkpoint that cannot happen but costs nothing to guard) stores nothing twice.
//!
//! Deliberately not here: timers, notifications and shutdown (`super`), what a line means
//! (`decode`), how lines are cut (`assemble`), and R13/R14 themselves (`safety`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::assemble::{Assembler, Position, Record, RecordKind, SkipReason, MAX_RECORD_BYTES};
use super::safety;
use super::WatchSpec;
use crate::config::WatchFormat;
use crate::event::{SecurityEvent, Trust};
use crate::store::{DedupRecord, FileBatch, FileCheckpoint, FileId, PutOutcome, Store, StoreError};
use crate::telemetry;

/// Records stored per transaction at most: big enough that a backlog moves at thousands of
/// lines per flush, small enough that one transaction stays short.
const MAX_BATCH_RECORDS: usize = 1000;
/// Payload bytes per transaction at most (one record may be up to 1 MiB on its own).
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Bytes read per `pread`.
const READ_CHUNK: usize = 64 * 1024;
/// The fingerprint covers at most this many bytes before the checkpoint.
const FINGERPRINT_WINDOW: u64 = 4096;
/// Open audit events are closed once the file has not grown for this long.
const AUDIT_IDLE: Duration = Duration::from_millis(500);
/// Files read at once per watch; more are refused (and counted) until some close.
pub const MAX_OPEN_FILES: usize = 256;
/// How long a line's dedup key is kept: the window in which re-reading it stores nothing.
pub const LINE_DEDUP_TTL_SECS: i64 = 86_400;
/// Undecodable-line warnings per watch per second; the rest are only counted.
const WARNINGS_PER_SECOND: u32 = 10;

/// A digest of the bytes just before an offset (see [`FileCheckpoint::fingerprint`]).
type Fingerprint = [u8; 16];

/// What one call of [`Watch::write_next_batch`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// A batch was written (not yet durable): the caller waits for its commit slot, then
    /// rings the pipeline with the events it stored (at most one batch's worth).
    Wrote(Vec<Uuid>),
    /// No file had anything to store.
    Idle,
}

/// One `[[watch]]`'s state: checkpoints, open files and what was already reported.
pub struct Watch {
    /// Configuration, decoder and names; shared with the async loop.
    spec: Arc<WatchSpec>,
    /// Where batches and checkpoints go.
    store: Arc<dyn Store>,
    /// Every checkpoint this watch has stored, by file, including files not open now: how a
    /// rotated file is recognised after a restart, and what is removed once a file is gone.
    known: HashMap<FileId, FileCheckpoint>,
    /// Files being read, in a stable order so batches rotate fairly between them.
    open: BTreeMap<FileId, Tracked>,
    /// The file after which the next batch looks for work (round robin).
    cursor: Option<FileId>,
    /// `(name, inode)` pairs already refused, so each refusal is logged once, not every scan.
    refused: HashSet<(OsString, u64)>,
    /// Result of the last R13 check, so a change is logged once.
    directory_ok: bool,
    /// The device of the directory: a directory entry's inode is looked up on it.
    dir_dev: u64,
    /// Rate limit for undecodable-line warnings.
    warnings: WarnBudget,
}

/// One open file.
struct Tracked {
    /// Read with `pread`, so there is no seek position to keep right.
    file: File,
    /// The file's last known name (for logs and checkpoints).
    path: PathBuf,
    /// At a name the watch matches. False once renamed away or deleted: then it is drained and
    /// closed after `rotate_wait`.
    matched: bool,
    /// Deleted (no name left); it can still be read through the descriptor.
    unlinked: bool,
    /// The stored checkpoint: every record before it is stored.
    committed: Position,
    /// Fingerprint of `committed`, as stored.
    fingerprint: Fingerprint,
    /// Cuts bytes from `committed` onward into records.
    assembler: Assembler,
    /// Records cut but not yet stored, oldest first.
    ready: VecDeque<Record>,
    /// File size at the last look; more than the assembler has seen means there is work.
    size: u64,
    /// When new bytes last arrived (or the file was opened): drives audit idle flushing and
    /// closing of rotated files.
    last_growth: Instant,
    /// The checkpoint must be written even without records (restart at 0, rewind, new file).
    dirty: bool,
    /// The last read reached the end of the file.
    at_eof: bool,
    /// A copy of another open file, not read while it stays one (see the module doc).
    held: bool,
    /// The (up to [`FINGERPRINT_WINDOW`]) bytes just before what the assembler has seen, as
    /// they were read: what the file must still hold there for reading to go on (see
    /// [`Tracked::fill`]). Bounded, however long the lines or the backlog.
    tail: Vec<u8>,
    /// Truncated at this time, and waiting for the copy of its unread lines (see
    /// `Watch::check_open_file`).
    truncated_since: Option<Instant>,
    /// `tail` was read back and matched the checkpoint's fingerprint when reading (re)started
    /// at the checkpoint; false if the file no longer held those bytes (then nothing is read
    /// until a scan sees the truncation).
    tail_ok: bool,
}

/// One directory entry from a listing.
struct Entry {
    /// File name inside the watched directory.
    name: OsString,
    /// Inode from `readdir` (no `stat` needed to recognise a known file).
    ino: u64,
    /// Whether the watch's pattern matches the name.
    matched: bool,
}

/// A few warnings per second, then silence until the next second.
struct WarnBudget {
    /// Start of the current one-second window.
    window: Instant,
    /// Warnings logged in it.
    used: u32,
}

impl WarnBudget {
    fn allow(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.used = 0;
        }
        self.used += 1;
        self.used <= WARNINGS_PER_SECOND
    }
}

impl Watch {
    /// Loads the watch's checkpoints from the store.
    pub fn load(spec: Arc<WatchSpec>, store: Arc<dyn Store>) -> Result<Watch, StoreError> {
        let known = store.file_checkpoints(&spec.name)?.into_iter().collect();
        Ok(Watch {
            spec,
            store,
            known,
            open: BTreeMap::new(),
            cursor: None,
            refused: HashSet::new(),
            directory_ok: true,
            dir_dev: 0,
            warnings: WarnBudget { window: Instant::now(), used: 0 },
        })
    }

    /// Looks at the directory and every open file: rotation, truncation, new files, and
    /// checkpoints of files that are gone. Never fails; problems are logged and counted.
    pub fn scan(&mut self, now: Instant) {
        let listing = self.list_directory();
        // 1. Open files first: a truncation found here may claim a copy that step 3 would
        //    otherwise take for a new file.
        //    Held copies last: their originals' truncations are found first.
        let mut ids: Vec<(FileId, bool)> = self.open.iter().map(|(id, t)| (*id, t.held)).collect();
        ids.sort_by_key(|(_, held)| *held);
        for (id, _) in ids {
            self.check_open_file(id, listing.as_deref(), now);
            self.check_held_copy(id, now);
        }
        let Some(listing) = listing else { return };
        // 2. Entries with a checkpoint: resume them (known files before unknown ones, for the
        //    same reason).
        for entry in &listing {
            if self.is_open_ino(entry.ino) {
                continue;
            }
            if let Some((id, checkpoint)) = self.known_by_ino(entry.ino) {
                self.resume_known(entry, id, checkpoint, &listing, now);
            }
        }
        // 3. New files at matched names.
        for entry in listing.iter().filter(|e| e.matched) {
            if !self.is_open_ino(entry.ino) && self.known_by_ino(entry.ino).is_none() {
                self.start_new(entry, now);
            }
        }
        // 4. Forget what is gone.
        let present: HashSet<u64> = listing.iter().map(|e| e.ino).collect();
        let gone: Vec<FileId> = self
            .known
            .keys()
            .filter(|id| {
                let listed = id.dev == self.dir_dev && present.contains(&id.ino);
                !self.open.contains_key(id) && !listed
            })
            .copied()
            .collect();
        for id in gone {
            match self.store.remove_file_checkpoint(&self.spec.name, id) {
                Ok(()) => {
                    self.known.remove(&id);
                }
                Err(err) => self.store_error("remove_checkpoint", &err),
            }
        }
        self.refused.retain(|(name, ino)| listing.iter().any(|e| e.ino == *ino && e.name == *name));
        self.report_gauges();
    }

    /// Stores the next batch of one file that has work. Decoding happens here; the checkpoint
    /// and the events go in one transaction. Each file with work is tried at most once.
    pub fn write_next_batch(&mut self, now: Instant) -> Result<Progress, StoreError> {
        for id in self.files_with_work(now) {
            self.cursor = Some(id);
            if let Progress::Wrote(stored) = self.write_file(id, now)? {
                return Ok(Progress::Wrote(stored));
            }
        }
        Ok(Progress::Idle)
    }

    fn write_file(&mut self, id: FileId, now: Instant) -> Result<Progress, StoreError> {
        let rotate_wait = self.spec.rotate_wait;
        let format = self.spec.format;
        let Some(tracked) = self.open.get_mut(&id) else { return Ok(Progress::Idle) };
        if tracked.held {
            // Only its checkpoint moves.
            return self.store_records(id, Vec::new()).map(Progress::Wrote);
        }
        if let Err(err) = tracked.fill(now) {
            telemetry::FileError { watch: &self.spec.name, op: "read", path: &tracked.path, error: &err }
                .emit();
        }
        let quiet = now.duration_since(tracked.last_growth);
        let finishing = tracked.at_eof && (!tracked.matched || tracked.unlinked) && quiet >= rotate_wait;
        if tracked.at_eof && tracked.ready.is_empty() {
            let mut out = Vec::new();
            if finishing {
                tracked.assembler.finish(&mut out);
            } else if format == WatchFormat::Audit && quiet >= AUDIT_IDLE {
                tracked.assembler.idle(&mut out);
            }
            tracked.ready.extend(out);
        }
        let records = tracked.take_batch();
        if records.is_empty() && !tracked.dirty {
            if finishing && !tracked.assembler.is_holding() {
                self.close(id, "drained", now);
            }
            return Ok(Progress::Idle);
        }
        let result = self.store_records(id, records);
        if result.is_err() {
            if let Some(tracked) = self.open.get_mut(&id) {
                tracked.rewind();
            }
        }
        result.map(Progress::Wrote)
    }

    /// Sum of unread bytes over open files being read, for the lag gauge (a held file's lines
    /// are another file's).
    fn lag_bytes(&self) -> u64 {
        self.open.values().filter(|t| !t.held).map(|t| t.size.saturating_sub(t.committed.offset)).sum()
    }

    fn report_gauges(&self) {
        telemetry::FileGauges {
            watch: &self.spec.name,
            open_files: self.open.len(),
            lag_bytes: self.lag_bytes(),
        }
        .emit();
    }

    /// The watched directory's entries, after the R13 check. `None` when the directory is
    /// unusable: open files are still read (their descriptors are safe), nothing new is opened.
    fn list_directory(&mut self) -> Option<Vec<Entry>> {
        let dir = &self.spec.dir;
        let checked = safety::check_directory(dir).and_then(|()| {
            std::fs::metadata(dir).map_err(|source| safety::DirectoryError::Io { path: dir.clone(), source })
        });
        let meta = match checked {
            Ok(meta) => meta,
            Err(err) => {
                if self.directory_ok {
                    telemetry::FileDirectoryRefused { watch: &self.spec.name, error: &err }.emit();
                }
                self.directory_ok = false;
                return None;
            }
        };
        if !self.directory_ok {
            tracing::info!(watch = %self.spec.name, dir = ?dir, "watched directory is acceptable again");
        }
        self.directory_ok = true;
        self.dir_dev = meta.dev();
        let read = match std::fs::read_dir(dir) {
            Ok(read) => read,
            Err(err) => {
                telemetry::FileError { watch: &self.spec.name, op: "list", path: dir, error: &err }.emit();
                return None;
            }
        };
        let mut entries = Vec::new();
        for entry in read.flatten() {
            let name = entry.file_name();
            let matched = name.to_str().is_some_and(|n| self.spec.pattern.matches(n));
            entries.push(Entry { ino: entry.ino(), name, matched });
        }
        // Deterministic order: tests and logs read the same way every time.
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Some(entries)
    }

    fn is_open_ino(&self, ino: u64) -> bool {
        self.open.keys().any(|id| id.ino == ino && id.dev == self.dir_dev)
    }

    fn known_by_ino(&self, ino: u64) -> Option<(FileId, FileCheckpoint)> {
        let id = FileId { dev: self.dir_dev, ino };
        self.known.get(&id).map(|c| (id, c.clone()))
    }

    /// Step 1 of a scan for one open file: new name, rename away, deletion, growth, truncation.
    fn check_open_file(&mut self, id: FileId, listing: Option<&[Entry]>, now: Instant) {
        let Some(tracked) = self.open.get_mut(&id) else { return };
        let meta = match tracked.file.metadata() {
            Ok(meta) => meta,
            Err(err) => {
                telemetry::FileError { watch: &self.spec.name, op: "stat", path: &tracked.path, error: &err }
                    .emit();
                return;
            }
        };
        if let Some(listing) = listing {
            let here = (id.dev == self.dir_dev).then(|| listing.iter().find(|e| e.ino == id.ino)).flatten();
            let matched = here.is_some_and(|e| e.matched);
            if tracked.matched && !matched {
                let kind = if here.is_some() { "rename" } else { "moved_or_deleted" };
                telemetry::FileRotated { watch: &self.spec.name, path: &tracked.path, kind }.emit();
                // The writer may append until it reopens: wait `rotate_wait` from now.
                tracked.last_growth = now;
            }
            if let Some(entry) = here {
                tracked.path = self.spec.dir.join(&entry.name);
            }
            tracked.matched = matched;
        }
        tracked.unlinked = meta.nlink() == 0;
        tracked.size = meta.len();
        let read_to = tracked.assembler.next_position().offset;
        let truncated = meta.len() < read_to
            || (tracked.committed.offset > 0
                && fingerprint(&tracked.file, tracked.committed.offset).ok() != Some(tracked.fingerprint));
        if !truncated {
            tracked.truncated_since = None;
            return;
        }
        let lost = Lost { position: tracked.committed, fingerprint: tracked.fingerprint, file: id };
        let path = tracked.path.clone();
        let held = tracked.held;
        if tracked.truncated_since.is_none() {
            telemetry::FileRotated { watch: &self.spec.name, path: &path, kind: "truncate" }.emit();
        }
        let since = *tracked.truncated_since.get_or_insert(now);
        // A held file's lines are another file's: nothing to recover.
        let found = !held && listing.is_some_and(|listing| self.recover_from_copy(&lost, listing, now));
        let gave_up = now.duration_since(since) >= self.spec.rotate_wait;
        if found || held || lost.position.offset == 0 || gave_up {
            if gave_up && !found && !held && lost.position.offset > 0 {
                telemetry::FileRotated { watch: &self.spec.name, path: &path, kind: "copy_missing" }.emit();
                tracing::warn!(watch = %self.spec.name, path = ?path, offset = lost.position.offset, "truncated, and no copy holds the lines after its checkpoint; reading it from the start");
            }
            if let Some(tracked) = self.open.get_mut(&id) {
                tracked.restart_at(Position::default(), fingerprint_of(&[]), now);
                tracked.truncated_since = None;
            }
        }
        // Else it waits for its copy (copytruncate copies, then truncates; a listing taken
        // between the two misses the copy): its stored checkpoint is kept, so a crash meanwhile
        // loses nothing, and nothing is read from it (its bytes no longer match, see
        // `Tracked::fill`). The next scans look again, for up to `rotate_wait`.
    }

    /// Step 1, for a held file: judged again ([`Watch::judge`]). It stays held while it is
    /// undecided or a prefix of a file being read (its checkpoint following what that file has
    /// stored); otherwise it is released and read on from its checkpoint, or from further on if
    /// an open file has stored more of its lines. A held file that is deleted is closed: its
    /// lines, if any, are another file's.
    fn check_held_copy(&mut self, id: FileId, now: Instant) {
        let Some(copy) = self.open.get(&id) else { return };
        if !copy.held {
            return;
        }
        if copy.unlinked {
            self.close(id, "deleted while held", now);
            return;
        }
        let verdict = self.judge(id, &copy.file, copy.size, copy.committed);
        let Some(copy) = self.open.get_mut(&id) else { return };
        match verdict {
            Verdict::Undecided => {}
            Verdict::Copy { hold, print, .. } => {
                if hold != copy.committed {
                    copy.restart_at(hold, print, now);
                }
            }
            Verdict::Read { start, print, stored_by } => {
                copy.held = false;
                copy.dirty = true;
                if start.offset > copy.committed.offset {
                    copy.restart_at(start, print, now);
                }
                tracing::info!(watch = %self.spec.name, path = ?copy.path, offset = copy.committed.offset, "not a copy (any more); reading it");
                self.drop_read_ahead(stored_by);
            }
        }
    }

    /// Step 2 of a scan: an entry whose inode has a checkpoint and is not open.
    fn resume_known(
        &mut self,
        entry: &Entry,
        id: FileId,
        checkpoint: FileCheckpoint,
        listing: &[Entry],
        now: Instant,
    ) {
        let path = self.spec.dir.join(&entry.name);
        if !entry.matched {
            // A rotated file: only worth opening if it grew past its checkpoint (a writer that
            // had not reopened yet, or the broker stopped before it finished reading).
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.len() > checkpoint.offset => {}
                _ => return,
            }
        }
        let Some((file, meta)) = self.open_file(entry, &path) else { return };
        let id_now = FileId { dev: meta.dev(), ino: meta.ino() };
        if id_now != id {
            return; // replaced between listing and open; the next scan sees the new one
        }
        let intact = meta.len() >= checkpoint.offset
            && fingerprint(&file, checkpoint.offset).ok() == Some(checkpoint.fingerprint);
        let position = Position { offset: checkpoint.offset, line: checkpoint.line };
        if intact {
            self.track(id, file, path, entry.matched, position, checkpoint.fingerprint, false, now);
            if let Some(tracked) = self.open.get_mut(&id) {
                tracked.held = checkpoint.held_copy;
            }
            return;
        }
        if !entry.matched {
            // Not ours any more (its inode was reused by an unrelated file): forget it.
            if self.store.remove_file_checkpoint(&self.spec.name, id).is_ok() {
                self.known.remove(&id);
            }
            return;
        }
        telemetry::FileRotated { watch: &self.spec.name, path: &path, kind: "truncate" }.emit();
        let lost = Lost { position, fingerprint: checkpoint.fingerprint, file: id };
        if checkpoint.held_copy || position.offset == 0 || self.recover_from_copy(&lost, listing, now) {
            self.track(id, file, path, true, Position::default(), fingerprint_of(&[]), true, now);
            if let Some(tracked) = self.open.get_mut(&id) {
                tracked.held = checkpoint.held_copy; // judged again at the next scan
            }
        } else {
            // Its copy may not be listed yet: kept at its checkpoint, waiting for it (see
            // `check_open_file`); nothing is read from it meanwhile.
            self.track(id, file, path, true, position, checkpoint.fingerprint, false, now);
            if let Some(tracked) = self.open.get_mut(&id) {
                tracked.truncated_since = Some(now);
            }
        }
    }

    /// Step 3 of a scan: a file at a matched name that was never read. Judged against the files
    /// being read ([`Watch::judge`]): held while undecided or a copy, else read.
    fn start_new(&mut self, entry: &Entry, now: Instant) {
        let path = self.spec.dir.join(&entry.name);
        let Some((file, meta)) = self.open_file(entry, &path) else { return };
        let id = FileId { dev: meta.dev(), ino: meta.ino() };
        if self.open.contains_key(&id) {
            return;
        }
        let (start, print, held) = match self.judge(id, &file, meta.len(), Position::default()) {
            Verdict::Undecided => (Position::default(), fingerprint_of(&[]), true),
            Verdict::Copy { hold, print, of } => {
                telemetry::FileRotated { watch: &self.spec.name, path: &path, kind: "copy_seen" }.emit();
                let of = self.open.get(&of).map(|t| t.path.clone());
                tracing::info!(watch = %self.spec.name, copy = ?path, of = ?of, "file is a copy of one being read; holding it");
                (hold, print, true)
            }
            Verdict::Read { start, print, stored_by } => {
                if let Some(of) = stored_by.and_then(|of| self.open.get(&of)) {
                    telemetry::FileRotated { watch: &self.spec.name, path: &path, kind: "copy" }.emit();
                    tracing::info!(watch = %self.spec.name, copy = ?path, of = ?of.path, offset = start.offset, "file begins with lines another file stored; reading it after them");
                }
                self.drop_read_ahead(stored_by);
                (start, print, false)
            }
        };
        tracing::info!(watch = %self.spec.name, path = ?path, offset = start.offset, held, "new file");
        self.track(id, file, path, true, start, print, true, now);
        if let Some(tracked) = self.open.get_mut(&id) {
            tracked.held = held;
        }
    }

    /// What a file that is not being read (`this`: new, or held) holds, compared with every
    /// open file being read other than itself. Only bytes before a line boundary of `file`
    /// are compared: the end of its complete lines, found from `from` (a line boundary, e.g.
    /// its checkpoint) onward.
    fn judge(&self, this: FileId, file: &File, size: u64, from: Position) -> Verdict {
        let from = if from.offset <= size { from } else { Position::default() };
        let Ok(end) = last_line_end(file, from.offset, size) else { return Verdict::Undecided };
        if end == 0 {
            return Verdict::Undecided;
        }
        let Ok(own) = fingerprint(file, end) else { return Verdict::Undecided };
        let mut copy: Option<(Position, Fingerprint, FileId)> = None;
        let mut stored: Option<(Position, Fingerprint, FileId)> = None;
        for (id, reader) in self.open.iter().filter(|(id, t)| **id != this && !t.held) {
            // The lines `reader` has stored are in `file`: the bytes before its checkpoint, as
            // it read them. Its checkpoint is then a line boundary of `file` too.
            let has_stored = reader.committed.offset > 0
                && reader.committed.offset <= size
                && fingerprint(file, reader.committed.offset).ok() == Some(reader.fingerprint);
            let further = |best: &Option<(Position, Fingerprint, FileId)>, at: Position| {
                best.as_ref().is_none_or(|(b, _, _)| at.offset > b.offset)
            };
            if fingerprint(&reader.file, end).ok() == Some(own) {
                // A prefix of `reader`: held, no further than `reader` has stored.
                let (hold, print) = if reader.committed.offset >= end {
                    // All of it: its own end, with its line count (the copy's lines are the
                    // reader's, but the reader's count at `end` is not at hand).
                    let Ok(at_end) = count_lines(file, from, end) else { continue };
                    (at_end, own)
                } else if has_stored {
                    (reader.committed, reader.fingerprint)
                } else {
                    (Position::default(), fingerprint_of(&[]))
                };
                if further(&copy, hold) {
                    copy = Some((hold, print, *id));
                }
            } else if has_stored && further(&stored, reader.committed) {
                stored = Some((reader.committed, reader.fingerprint, *id));
            }
        }
        match (copy, stored) {
            (Some((hold, print, of)), _) => Verdict::Copy { hold, print, of },
            (None, Some((start, print, of))) => Verdict::Read { start, print, stored_by: Some(of) },
            (None, None) => {
                Verdict::Read { start: Position::default(), print: fingerprint_of(&[]), stored_by: None }
            }
        }
    }

    /// Another file is now read from `reader`'s checkpoint on: `reader` forgets what it read
    /// past its checkpoint and not stored yet, or both would store it. If `reader` was
    /// truncated, reading it again stops at once (see [`Tracked::fill`]).
    fn drop_read_ahead(&mut self, reader: Option<FileId>) {
        if let Some(reader) = reader.and_then(|id| self.open.get_mut(&id)) {
            if reader.assembler.next_position() != reader.committed {
                reader.rewind();
            }
        }
    }

    /// After a truncation: finds the copy holding the bytes that were at `lost` and reads it
    /// from there. An open copy is rewound; an unopened one is opened at that position.
    fn recover_from_copy(&mut self, lost: &Lost, listing: &[Entry], now: Instant) -> bool {
        if lost.position.offset == 0 {
            return false;
        }
        for entry in listing {
            if entry.ino == lost.file.ino {
                continue;
            }
            let open_id = FileId { dev: self.dir_dev, ino: entry.ino };
            if let Some(copy) = self.open.get_mut(&open_id) {
                if fingerprint(&copy.file, lost.position.offset).ok() == Some(lost.fingerprint) {
                    if copy.committed.offset != lost.position.offset {
                        copy.restart_at(lost.position, lost.fingerprint, now);
                    }
                    copy.held = false;
                    copy.dirty = true;
                    telemetry::FileRotated { watch: &self.spec.name, path: &copy.path, kind: "copy" }.emit();
                    return true;
                }
                continue;
            }
            let path = self.spec.dir.join(&entry.name);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() && meta.len() >= lost.position.offset => {}
                _ => continue,
            }
            let Some((file, meta)) = self.open_file(entry, &path) else { continue };
            if fingerprint(&file, lost.position.offset).ok() != Some(lost.fingerprint) {
                continue;
            }
            let id = FileId { dev: meta.dev(), ino: meta.ino() };
            telemetry::FileRotated { watch: &self.spec.name, path: &path, kind: "copy" }.emit();
            self.track(id, file, path, entry.matched, lost.position, lost.fingerprint, true, now);
            return true;
        }
        false
    }

    /// Opens a directory entry with the R14 checks; a refusal is counted and logged once.
    fn open_file(&mut self, entry: &Entry, path: &std::path::Path) -> Option<(File, std::fs::Metadata)> {
        if self.open.len() >= MAX_OPEN_FILES {
            if self.refused.insert((entry.name.clone(), entry.ino)) {
                let detail = format!("more than {MAX_OPEN_FILES} files open");
                telemetry::FileRefused {
                    watch: &self.spec.name,
                    path,
                    reason: "too_many_files",
                    detail: &detail,
                }
                .emit();
            }
            return None;
        }
        match safety::open_checked(path) {
            Ok(opened) => Some(opened),
            Err(refusal) if refusal.is_missing() => None,
            Err(refusal) => {
                if self.refused.insert((entry.name.clone(), entry.ino)) {
                    telemetry::FileRefused {
                        watch: &self.spec.name,
                        path,
                        reason: refusal.reason(),
                        detail: &refusal,
                    }
                    .emit();
                }
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn track(
        &mut self,
        id: FileId,
        file: File,
        path: PathBuf,
        matched: bool,
        from: Position,
        fingerprint: Fingerprint,
        dirty: bool,
        now: Instant,
    ) {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let tracked = Tracked {
            file,
            path,
            matched,
            unlinked: false,
            committed: from,
            fingerprint,
            assembler: Assembler::new(self.spec.format, from),
            ready: VecDeque::new(),
            size,
            last_growth: now,
            dirty,
            at_eof: false,
            held: false,
            tail: Vec::new(),
            tail_ok: false,
            truncated_since: None,
        };
        let mut tracked = tracked;
        tracked.seed_tail();
        self.open.insert(id, tracked);
    }

    fn close(&mut self, id: FileId, why: &'static str, now: Instant) {
        // Files held as copies of this one follow what it stored up to now, while it can still
        // be compared: once it is gone they are released at their checkpoints.
        if self.open.get(&id).is_some_and(|t| !t.held) {
            let held: Vec<FileId> = self.open.iter().filter(|(_, t)| t.held).map(|(h, _)| *h).collect();
            for copy in held {
                self.check_held_copy(copy, now);
            }
        }
        if let Some(tracked) = self.open.remove(&id) {
            tracing::info!(watch = %self.spec.name, path = ?tracked.path, offset = tracked.committed.offset, why, "closed file");
        }
    }

    /// Open files with something to do: rotated files first (drain the old file before the
    /// new one), then the rest starting after the cursor (round robin).
    fn files_with_work(&self, now: Instant) -> Vec<FileId> {
        let format = self.spec.format;
        let rotate_wait = self.spec.rotate_wait;
        let has_work = |t: &Tracked| {
            if t.held {
                return t.dirty;
            }
            let quiet = now.duration_since(t.last_growth);
            !t.ready.is_empty()
                || t.dirty
                || !t.at_eof
                || t.size > t.assembler.next_position().offset
                || (format == WatchFormat::Audit && t.assembler.is_holding() && quiet >= AUDIT_IDLE)
                || ((!t.matched || t.unlinked) && quiet >= rotate_wait)
        };
        let after = |id: &FileId| self.cursor.is_none_or(|c| *id > c);
        let ordered = self
            .open
            .iter()
            .filter(|(id, _)| after(id))
            .chain(self.open.iter().filter(|(id, _)| !after(id)))
            .filter(|(_, t)| has_work(t));
        let (rotated, live): (Vec<_>, Vec<_>) = ordered.partition(|(_, t)| !t.matched);
        rotated.into_iter().chain(live).map(|(id, _)| *id).collect()
    }

    /// Decodes `records` and stores them with the file's new checkpoint in one transaction.
    /// Returns the ids of the events stored (not those found already stored).
    fn store_records(&mut self, id: FileId, records: Vec<Record>) -> Result<Vec<Uuid>, StoreError> {
        let Some(tracked) = self.open.get(&id) else { return Ok(Vec::new()) };
        let resume = records.last().map_or(tracked.committed, |r| r.resume);
        let Some(print) = tracked.fingerprint_at(resume) else {
            // The file changed under the records read: store none of them. The next scan finds
            // the truncation at the stored checkpoint and reads the rest from the copy.
            if let Some(tracked) = self.open.get_mut(&id) {
                tracked.rewind();
            }
            return Ok(Vec::new());
        };
        let path = tracked.path.clone();
        let held_copy = tracked.held;
        let received_at = OffsetDateTime::now_utc();
        let expires_at = received_at.unix_timestamp().saturating_add(LINE_DEDUP_TTL_SECS);
        let mut events = Vec::new();
        let mut tallies: Vec<(&'static str, u64, usize)> = Vec::with_capacity(records.len());
        let now = Instant::now();
        for record in &records {
            let payload = match &record.kind {
                RecordKind::Skipped(reason) => {
                    if *reason == SkipReason::TooLong {
                        self.warn_line(&path, record, "too_long", now);
                    }
                    tallies.push((reason.as_str(), record.lines, 0));
                    continue;
                }
                RecordKind::Payload(payload) => payload,
            };
            match self.spec.decoder.decode(payload) {
                Ok(decoded) if decoded.is_empty() => tallies.push(("no_event", record.lines, 0)),
                Ok(decoded) => {
                    let base = dedup_key(&self.spec.name, id, record.start.offset, payload);
                    let several = decoded.len() > 1;
                    tallies.push(("stored", record.lines, decoded.len()));
                    for (index, one) in decoded.into_iter().enumerate() {
                        let mut key = base.clone();
                        if several {
                            key.extend_from_slice(format!("#{index}").as_bytes());
                        }
                        let event = SecurityEvent {
                            id: Uuid::now_v7(),
                            source: self.spec.source.clone(),
                            integration: self.spec.decoder.name().to_string(),
                            trust: Trust::Local,
                            received_at,
                            body: one.body,
                            raw: one.raw,
                        };
                        events.push((DedupRecord { key, expires_at }, event));
                    }
                }
                Err(err) => {
                    let reason = match err {
                        crate::decode::DecodeError::Syntax(_) => "syntax",
                        crate::decode::DecodeError::Schema { .. } => "schema",
                    };
                    self.warn_line(&path, record, reason, now);
                    tallies.push(("undecodable", record.lines, 0));
                }
            }
        }
        let checkpoint =
            FileCheckpoint { offset: resume.offset, line: resume.line, fingerprint: print, held_copy, path };
        let batch = FileBatch { watch: self.spec.name.clone(), file: id, events, checkpoint };
        let outcomes = match self.store.put_file_batch(&batch) {
            Ok(outcomes) => outcomes,
            Err(err) => {
                self.store_error("put_file_batch", &err);
                return Err(err);
            }
        };
        let stored: Vec<Uuid> = outcomes
            .iter()
            .filter_map(|o| match o {
                PutOutcome::Stored(id) => Some(*id),
                PutOutcome::Duplicate(_) => None,
            })
            .collect();
        // Metrics by record: a record is "stored" if any of its events was new.
        let mut outcomes = outcomes.into_iter();
        for (outcome, lines, events) in tallies {
            let outcome = if outcome == "stored" {
                let new =
                    outcomes.by_ref().take(events).filter(|o| matches!(o, PutOutcome::Stored(_))).count();
                if new > 0 {
                    "stored"
                } else {
                    "duplicate"
                }
            } else {
                outcome
            };
            telemetry::FileLines { watch: &self.spec.name, outcome, lines }.emit();
        }
        self.known.insert(id, batch.checkpoint.clone());
        if let Some(tracked) = self.open.get_mut(&id) {
            tracked.committed = resume;
            tracked.fingerprint = print;
            tracked.dirty = false;
        }
        Ok(stored)
    }

    fn warn_line(&mut self, path: &std::path::Path, record: &Record, reason: &'static str, now: Instant) {
        if self.warnings.allow(now) {
            telemetry::FileLineSkipped { watch: &self.spec.name, path, line: record.start.line + 1, reason }
                .emit();
        }
    }

    fn store_error(&self, op: &'static str, err: &StoreError) {
        telemetry::FileError { watch: &self.spec.name, op, path: &self.spec.dir, error: err }.emit();
    }
}

/// What a file that is not being read holds, compared with the files being read
/// ([`Watch::judge`]).
enum Verdict {
    /// No complete line yet: nothing to compare. Held at 0.
    Undecided,
    /// Its complete lines are a prefix of `of`, which is being read: held at `hold`, the end
    /// of the lines `of` has stored that it shares (a line boundary of both), with `print`.
    Copy { hold: Position, print: Fingerprint, of: FileId },
    /// Its own lines: read from `start` (0, or the checkpoint of `stored_by`, whose stored
    /// lines it begins with), with `print`.
    Read { start: Position, print: Fingerprint, stored_by: Option<FileId> },
}

/// Where a truncated file's stored checkpoint stood: what its copy must match.
struct Lost {
    /// The checkpoint's position.
    position: Position,
    /// Its fingerprint.
    fingerprint: Fingerprint,
    /// The truncated file, which is not its own copy.
    file: FileId,
}

impl Tracked {
    /// Reads new bytes into the assembler until a batch is full or the end of the file.
    fn fill(&mut self, now: Instant) -> std::io::Result<()> {
        let mut buf = vec![0u8; READ_CHUNK];
        self.at_eof = false;
        loop {
            if self.ready.len() >= MAX_BATCH_RECORDS || ready_bytes(&self.ready) >= MAX_BATCH_BYTES {
                return Ok(());
            }
            let at = self.assembler.next_position().offset;
            let n = match self.file.read_at(&mut buf, at) {
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if n == 0 {
                self.at_eof = true;
                self.size = at;
                return Ok(());
            }
            if !self.unchanged_before(at) {
                // Truncated (and written again past `at`?) since these bytes were read: what
                // was just read is not their continuation. Stop; the next scan sees the
                // truncation at the checkpoint and recovers the rest from the copy.
                self.at_eof = true;
                return Ok(());
            }
            self.last_growth = now;
            self.remember(&buf[..n]);
            let mut out = Vec::new();
            self.assembler.push(&buf[..n], &mut out);
            self.ready.extend(out);
        }
    }

    /// The file still holds, just before `at`, the bytes that were read there. Checked after
    /// each `pread` at `at`: a truncation before the read shows here, so bytes read from a file
    /// written again after a truncation are never taken for the continuation of the old ones.
    fn unchanged_before(&self, at: u64) -> bool {
        self.tail_ok && fingerprint(&self.file, at).ok() == Some(fingerprint_of(&self.tail))
    }

    /// Keeps the last [`FINGERPRINT_WINDOW`] bytes of `tail` followed by `bytes`.
    fn remember(&mut self, bytes: &[u8]) {
        let window = FINGERPRINT_WINDOW as usize;
        if bytes.len() >= window {
            self.tail.clear();
            self.tail.extend_from_slice(&bytes[bytes.len() - window..]);
        } else {
            let keep = window - bytes.len();
            if self.tail.len() > keep {
                self.tail.drain(..self.tail.len() - keep);
            }
            self.tail.extend_from_slice(bytes);
        }
    }

    /// Up to one batch of ready records.
    fn take_batch(&mut self) -> Vec<Record> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(record) = self.ready.front() {
            let size = payload_len(record);
            if !batch.is_empty() && (batch.len() >= MAX_BATCH_RECORDS || bytes + size > MAX_BATCH_BYTES) {
                break;
            }
            bytes += size;
            if let Some(record) = self.ready.pop_front() {
                batch.push(record);
            }
        }
        batch
    }

    /// Forgets everything not stored, so reading resumes at the checkpoint (after a failed
    /// write, or when the file changed under what was read).
    fn rewind(&mut self) {
        self.assembler = Assembler::new(self.assembler.format(), self.committed);
        self.ready.clear();
        self.at_eof = false;
        self.seed_tail();
    }

    /// Reads the bytes just before the checkpoint again; reading on is only allowed if they
    /// still match the checkpoint's fingerprint.
    fn seed_tail(&mut self) {
        let offset = self.committed.offset;
        let len = offset.min(FINGERPRINT_WINDOW);
        let mut buf = vec![0u8; len as usize];
        self.tail_ok = self.file.read_exact_at(&mut buf, offset - len).is_ok()
            && fingerprint_of(&buf) == self.fingerprint;
        self.tail = buf;
    }

    /// The fingerprint for a checkpoint at `resume` (a resume point of a record read from this
    /// file): from the bytes as read where they are at hand, else read from the file and then
    /// checked, by `tail`, that the file still holds what was read (a fingerprint of bytes
    /// written after a truncation would hide it). `None` if it does not.
    fn fingerprint_at(&self, resume: Position) -> Option<Fingerprint> {
        if resume == self.committed {
            return Some(self.fingerprint);
        }
        if resume == self.assembler.next_position() {
            return Some(fingerprint_of(&self.tail));
        }
        let print = fingerprint(&self.file, resume.offset).ok()?;
        self.unchanged_before(self.assembler.next_position().offset).then_some(print)
    }

    /// Starts over at `from` (truncation: the start; a copy: the original's checkpoint).
    fn restart_at(&mut self, from: Position, fingerprint: Fingerprint, now: Instant) {
        self.committed = from;
        self.fingerprint = fingerprint;
        self.dirty = true;
        self.last_growth = now;
        self.rewind();
    }
}

fn payload_len(record: &Record) -> usize {
    match &record.kind {
        RecordKind::Payload(p) => p.len(),
        RecordKind::Skipped(_) => 0,
    }
}

fn ready_bytes(ready: &VecDeque<Record>) -> usize {
    ready.iter().map(payload_len).sum()
}

/// The line's dedup key: watch, file, offset and a digest of the first line (an audit event's
/// first line, so a re-read event is recognised even if more of its lines arrived since).
fn dedup_key(watch: &str, id: FileId, offset: u64, payload: &[u8]) -> Vec<u8> {
    let first_line = payload.split(|&b| b == b'\n').next().unwrap_or(payload);
    let digest = Sha256::digest(first_line);
    let mut key = Vec::with_capacity(watch.len() + 64);
    key.extend_from_slice(b"file\0");
    key.extend_from_slice(watch.as_bytes());
    key.push(0);
    key.extend_from_slice(&id.dev.to_be_bytes());
    key.extend_from_slice(&id.ino.to_be_bytes());
    key.extend_from_slice(&offset.to_be_bytes());
    key.extend_from_slice(&digest[..16]);
    key
}

/// Fingerprint of the (up to [`FINGERPRINT_WINDOW`]) bytes before `offset`. An error if the
/// file is shorter than `offset`.
pub fn fingerprint(file: &File, offset: u64) -> std::io::Result<Fingerprint> {
    let len = offset.min(FINGERPRINT_WINDOW);
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset - len)?;
    Ok(fingerprint_of(&buf))
}

/// The fingerprint of some bytes (length included, so a window of zeros is not "nothing").
pub fn fingerprint_of(bytes: &[u8]) -> Fingerprint {
    let mut hasher = Sha256::new();
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// The end of the last complete line in `from..upto` (just after its `\n`), or `from` if there
/// is none. Searched backwards: a large new file is not read whole to judge it. An error if
/// the last line is longer than any line that is read (then the file is judged later, when it
/// has a line end near its end), so one endless line is not read again at every scan.
fn last_line_end(file: &File, from: u64, upto: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut end = upto;
    while end > from {
        if upto - end > MAX_RECORD_BYTES as u64 {
            return Err(std::io::Error::other("last line longer than the line cap"));
        }
        let start = end.saturating_sub(READ_CHUNK as u64).max(from);
        let want = &mut buf[..usize::try_from(end - start).unwrap_or(READ_CHUNK).min(READ_CHUNK)];
        file.read_exact_at(want, start)?;
        if let Some(i) = want.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}

/// The position `upto` (a line boundary after `from`), with its line count, counting the
/// newlines from `from` (a line boundary with a known count).
fn count_lines(file: &File, from: Position, upto: u64) -> std::io::Result<Position> {
    let mut buf = vec![0u8; READ_CHUNK];
    let (mut at, mut line) = (from.offset, from.line);
    while at < upto {
        let want = &mut buf[..usize::try_from(upto - at).unwrap_or(READ_CHUNK).min(READ_CHUNK)];
        file.read_exact_at(want, at)?;
        line += want.iter().filter(|&&b| b == b'\n').count() as u64;
        at += want.len() as u64;
    }
    Ok(Position { offset: upto, line })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Decoder;
    use crate::store::{EventQuery, SledStore};
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    struct Fixture {
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        spec: Arc<WatchSpec>,
        /// A clock the test moves by hand.
        now: Instant,
    }

    impl Fixture {
        fn new(pattern: &str) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
            std::fs::create_dir(dir.path().join("logs")).unwrap();
            std::fs::set_permissions(dir.path().join("logs"), std::fs::Permissions::from_mode(0o700))
                .unwrap();
            let store: Arc<dyn Store> =
                Arc::new(SledStore::open(&dir.path().join("store"), 8 << 20).unwrap());
            let spec = Arc::new(WatchSpec {
                name: "w".into(),
                source: "watch:w".into(),
                dir: dir.path().join("logs"),
                pattern: glob::Pattern::new(pattern).unwrap(),
                format: WatchFormat::Jsonl,
                decoder: Decoder::Generic,
                rescan: Duration::from_millis(100),
                rotate_wait: Duration::from_secs(5),
            });
            Fixture { dir, store, spec, now: Instant::now() }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join("logs").join(name)
        }

        fn load(&self) -> Watch {
            Watch::load(self.spec.clone(), self.store.clone()).unwrap()
        }

        /// One scan and every batch, as the task does.
        fn run(&self, watch: &mut Watch) {
            watch.scan(self.now);
            while matches!(watch.write_next_batch(self.now).unwrap(), Progress::Wrote(_)) {}
        }

        fn append(&self, name: &str, text: &str) {
            self.append_bytes(name, text.as_bytes());
        }

        fn append_bytes(&self, name: &str, bytes: &[u8]) {
            let mut file =
                std::fs::OpenOptions::new().create(true).append(true).open(self.path(name)).unwrap();
            file.write_all(bytes).unwrap();
        }

        fn markers(&self) -> Vec<String> {
            let page = self.store.events(&EventQuery { limit: 10_000, ..EventQuery::default() }).unwrap();
            for event in &page {
                assert_eq!(event.trust, Trust::Local);
                assert_eq!(event.source, "watch:w");
            }
            page.into_iter().filter_map(|e| e.body.vendor_id).collect()
        }
    }

    fn lines(range: std::ops::Range<u32>) -> String {
        range.map(|i| format!("{{\"vendor_id\":\"L{i}\"}}\n")).collect()
    }

    fn expect(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| format!("L{i}")).collect()
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort_by_key(|m| m[1..].parse::<u32>().unwrap());
        v
    }

    #[test]
    fn appended_and_completed_lines_are_stored_once_across_reloads() {
        let fx = Fixture::new("a.log");
        let mut watch = fx.load();
        fx.run(&mut watch); // the file does not exist yet
        fx.append("a.log", &lines(0..3));
        fx.append("a.log", "{\"vendor_id\":\"L3\"");
        fx.run(&mut watch);
        assert_eq!(fx.markers(), expect(0..3), "the partial line waits");
        fx.append("a.log", "}\n");
        fx.run(&mut watch);
        assert_eq!(fx.markers(), expect(0..4));
        // A restart resumes at the checkpoint.
        drop(watch);
        let mut watch = fx.load();
        fx.append("a.log", &lines(4..6));
        fx.run(&mut watch);
        assert_eq!(fx.markers(), expect(0..6));
        assert_eq!(fx.store.file_checkpoints("w").unwrap()[0].1.line, 6);
    }

    #[test]
    fn undecodable_and_blank_lines_are_skipped_without_blocking_progress() {
        let fx = Fixture::new("a.log");
        let mut watch = fx.load();
        fx.append(
            "a.log",
            "not json\n\n{\"vendor_id\":\"L0\",\"trust\":\"signed\"}\n{\"vendor_id\":\"L1\"}\n",
        );
        fx.run(&mut watch);
        assert_eq!(fx.markers(), vec!["L1"]);
        let checkpoint = &fx.store.file_checkpoints("w").unwrap()[0].1;
        assert_eq!(checkpoint.line, 4);
    }

    #[test]
    fn rename_rotation_drains_the_old_file_then_closes_it() {
        let fx = Fixture::new("a.log");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..2));
        fx.run(&mut watch);
        std::fs::rename(fx.path("a.log"), fx.path("a.log.1")).unwrap();
        fx.append("a.log.1", &lines(2..4)); // the writer has not reopened yet
        fx.append("a.log", &lines(4..6));
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..6));
        assert_eq!(watch.open.len(), 2, "the old file stays open for rotate_wait");
        let mut fx = fx;
        fx.now += Duration::from_secs(6);
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(watch.open.len(), 1, "then it is closed");
        assert_eq!(sorted(fx.markers()), expect(0..6));
    }

    #[test]
    fn rename_rotation_while_stopped_finds_the_old_file_by_inode() {
        let fx = Fixture::new("a.log");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..2));
        fx.run(&mut watch);
        drop(watch);
        fx.append("a.log", &lines(2..4));
        std::fs::rename(fx.path("a.log"), fx.path("a.log.1")).unwrap();
        fx.append("a.log", &lines(4..6));
        let mut watch = fx.load();
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..6));
    }

    #[test]
    fn copytruncate_recovers_the_unread_tail_from_the_copy() {
        let fx = Fixture::new("a.log");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..2));
        fx.run(&mut watch);
        fx.append("a.log", &lines(2..4)); // written after the last read
        std::fs::copy(fx.path("a.log"), fx.path("a.log.1")).unwrap();
        std::fs::OpenOptions::new().write(true).open(fx.path("a.log")).unwrap().set_len(0).unwrap();
        fx.append("a.log", &lines(4..5));
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..5));
    }

    #[test]
    fn truncation_between_read_and_store_still_finds_the_copy() {
        let fx = Fixture::new("a.log");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..2));
        fx.run(&mut watch);
        fx.append("a.log", &lines(2..4));
        watch.scan(fx.now);
        for tracked in watch.open.values_mut() {
            tracked.fill(fx.now).unwrap(); // read L2, L3; not stored yet
        }
        fx.append("a.log", &lines(4..6));
        std::fs::copy(fx.path("a.log"), fx.path("a.log.1")).unwrap();
        std::fs::OpenOptions::new().write(true).open(fx.path("a.log")).unwrap().set_len(0).unwrap();
        fx.append("a.log", &lines(6..7));
        // Stored after the truncation: the checkpoint's fingerprint must describe what was read.
        while matches!(watch.write_next_batch(fx.now).unwrap(), Progress::Wrote(_)) {}
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..7));
    }

    #[test]
    fn copytruncate_while_stopped_and_regrown_past_the_checkpoint() {
        let fx = Fixture::new("a.log");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..2));
        fx.run(&mut watch);
        drop(watch);
        fx.append("a.log", &lines(2..3));
        std::fs::copy(fx.path("a.log"), fx.path("a.log.1")).unwrap();
        std::fs::OpenOptions::new().write(true).open(fx.path("a.log")).unwrap().set_len(0).unwrap();
        // Longer than the old checkpoint: only the fingerprint can tell.
        fx.append("a.log", &lines(100..110));
        let mut watch = fx.load();
        fx.run(&mut watch);
        let mut want = expect(0..3);
        want.extend(expect(100..110));
        assert_eq!(sorted(fx.markers()), want);
    }

    #[test]
    fn copies_matched_by_the_pattern_are_not_read_twice() {
        let fx = Fixture::new("a.log*");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..2));
        fx.run(&mut watch);
        fx.append("a.log", &lines(2..4));
        std::fs::copy(fx.path("a.log"), fx.path("a.log.1")).unwrap();
        fx.run(&mut watch); // sees the copy before the truncation
        std::fs::OpenOptions::new().write(true).open(fx.path("a.log")).unwrap().set_len(0).unwrap();
        fx.append("a.log", &lines(4..5));
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..5));
    }

    #[test]
    fn a_copy_seen_before_an_unread_truncation_is_rewound() {
        let fx = Fixture::new("a.log*");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..2));
        fx.run(&mut watch);
        drop(watch);
        // While stopped: more lines, the copy, then the broker sees the copy before the
        // truncation happens.
        fx.append("a.log", &lines(2..4));
        std::fs::copy(fx.path("a.log"), fx.path("a.log.1")).unwrap();
        let mut watch = fx.load();
        watch.scan(fx.now); // registers the copy at its end; a.log is not read yet
        std::fs::OpenOptions::new().write(true).open(fx.path("a.log")).unwrap().set_len(0).unwrap();
        fx.append("a.log", &lines(4..5));
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..5));
    }

    #[test]
    fn a_copy_written_in_pieces_is_held_until_the_truncation() {
        let fx = Fixture::new("a.log*");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..2));
        fx.run(&mut watch);
        fx.append("a.log", &lines(2..6));
        let full = std::fs::read(fx.path("a.log")).unwrap();
        let half = full.len() / 2 + 3; // mid-line
        fx.append_bytes("a.log.1", &full[..half]);
        fx.run(&mut watch); // the copy is seen half written and held; a.log is read to its end
        fx.append_bytes("a.log.1", &full[half..]);
        fx.run(&mut watch);
        std::fs::OpenOptions::new().write(true).open(fx.path("a.log")).unwrap().set_len(0).unwrap();
        fx.append("a.log", &lines(6..7));
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..7));
        // And after a restart nothing is read again.
        drop(watch);
        let mut watch = fx.load();
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..7));
    }

    #[test]
    fn a_copy_seen_while_still_empty_is_not_read_twice() {
        let fx = Fixture::new("a.log*");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..3));
        fx.run(&mut watch);
        fx.append("a.log.1", ""); // the copy is created...
        fx.run(&mut watch);
        let full = std::fs::read(fx.path("a.log")).unwrap();
        fx.append_bytes("a.log.1", &full[..12]); // ...partly written, inside its first line...
        fx.run(&mut watch);
        fx.append_bytes("a.log.1", &full[12..]); // ...then filled
        fx.run(&mut watch);
        std::fs::OpenOptions::new().write(true).open(fx.path("a.log")).unwrap().set_len(0).unwrap();
        fx.append("a.log", &lines(3..4));
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..4));
        // A new empty file that then gets its own lines is read from its start.
        fx.append("b.log.2", "");
        std::fs::rename(fx.path("b.log.2"), fx.path("a.log.2")).unwrap();
        fx.run(&mut watch);
        fx.append("a.log.2", &lines(4..6));
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..6));
    }

    #[test]
    fn a_held_copy_that_diverges_is_read_from_where_it_stopped_matching() {
        let fx = Fixture::new("a.log*");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..2));
        fx.run(&mut watch);
        fx.append("a.log.1", &lines(0..1));
        fx.run(&mut watch);
        fx.append("a.log.1", &lines(10..12)); // not what a.log holds
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), ["L0", "L1", "L10", "L11"]);
    }

    /// Lines as the acceptance test writes them: every one starts with the same 39 bytes.
    fn blocked(range: std::ops::Range<u32>) -> String {
        range.map(|i| format!("{{\"disposition\":\"blocked\",\"vendor_id\":\"L{i}\"}}\n")).collect()
    }

    /// Every stored checkpoint of an open file sits at the start of a line of that file.
    fn assert_checkpoints_at_line_starts(fx: &Fixture, watch: &Watch) {
        for (id, checkpoint) in fx.store.file_checkpoints("w").unwrap() {
            let Some(tracked) = watch.open.get(&id) else { continue };
            let mut before = [0u8];
            let at_start = checkpoint.offset == 0
                || (tracked.file.read_exact_at(&mut before, checkpoint.offset - 1).is_ok()
                    && before[0] == b'\n');
            assert!(at_start, "checkpoint of {:?} at {}, inside a line", tracked.path, checkpoint.offset);
        }
    }

    /// Regression (acceptance test, rename rotation): the new file first appeared holding only
    /// part of its first line, and those bytes equalled the start of the renamed file. It was
    /// taken for a copy and held at its end, mid-line; when it grew it was read from there, and
    /// the rest of that line was skipped as undecodable: one line lost.
    #[test]
    fn regression_new_file_whose_partial_first_line_matches_the_rotated_file_is_read_whole() {
        let fx = Fixture::new("a.log*");
        let mut watch = fx.load();
        fx.append("a.log", &blocked(0..3));
        fx.run(&mut watch);
        std::fs::rename(fx.path("a.log"), fx.path("a.log.1")).unwrap();
        let next = blocked(3..4);
        let cut = next.find('L').unwrap() + 1; // `{"disposition":"blocked","vendor_id":"L`
        fx.append("a.log", &next[..cut]);
        fx.run(&mut watch);
        assert_checkpoints_at_line_starts(&fx, &watch);
        fx.append("a.log", &next[cut..]);
        fx.append("a.log", &blocked(4..5));
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..5));
        assert_checkpoints_at_line_starts(&fx, &watch);
    }

    /// Regression (acceptance test, copytruncate): the copy was seen while the original had
    /// stored nothing yet (new after a rotation, or its first batch not durable before a
    /// SIGKILL), and was held at its end as if the original had stored those lines; the
    /// original was then truncated, so those lines were in neither.
    #[test]
    fn regression_copy_of_a_file_that_stored_nothing_yet_is_read_after_the_truncation() {
        let fx = Fixture::new("a.log*");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..3));
        watch.scan(fx.now); // a.log is new; nothing stored yet
        std::fs::copy(fx.path("a.log"), fx.path("a.log.1")).unwrap();
        watch.scan(fx.now); // the copy is seen: it must not claim lines a.log has not stored
        std::fs::OpenOptions::new().write(true).open(fx.path("a.log")).unwrap().set_len(0).unwrap();
        fx.append("a.log", &lines(3..4));
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..4));
    }

    /// Regression (acceptance test, copytruncate): a new, still empty file was held in case it
    /// was a copy, and stayed held while empty; a copy of it was then compared only with files
    /// not held, read as a fresh file, and the original's lines were read as well.
    #[test]
    fn regression_copy_of_a_file_first_seen_empty_is_not_read_twice() {
        let fx = Fixture::new("a.log*");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..2));
        fx.run(&mut watch);
        std::fs::rename(fx.path("a.log"), fx.path("a.log.1")).unwrap();
        fx.append("a.log", ""); // the writer reopens: a new empty file
        fx.run(&mut watch);
        fx.append("a.log", &lines(2..5));
        fx.run(&mut watch);
        std::fs::copy(fx.path("a.log"), fx.path("a.log.2")).unwrap(); // copytruncate
        fx.run(&mut watch);
        std::fs::OpenOptions::new().write(true).open(fx.path("a.log")).unwrap().set_len(0).unwrap();
        fx.append("a.log", &lines(5..6));
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..6));
        // The same with the copy taken before the broker saw the lines.
        std::fs::rename(fx.path("a.log"), fx.path("a.log.3")).unwrap();
        fx.append("a.log", "");
        fx.run(&mut watch);
        fx.append("a.log", &lines(6..9));
        std::fs::copy(fx.path("a.log"), fx.path("a.log.4")).unwrap();
        fx.run(&mut watch);
        std::fs::OpenOptions::new().write(true).open(fx.path("a.log")).unwrap().set_len(0).unwrap();
        fx.append("a.log", &lines(9..10));
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..10));
        assert_checkpoints_at_line_starts(&fx, &watch);
    }

    /// Regression (acceptance test, copytruncate): the scan listed the directory just before
    /// the copy was made and looked at the original just after the truncation, so the copy was
    /// not found; the original started over, and the copy, seen next scan, was read whole:
    /// the lines the original had stored were stored twice.
    #[test]
    fn regression_truncation_seen_before_its_copy_is_listed_waits_for_the_copy() {
        let fx = Fixture::new("a.log*");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..3));
        fx.run(&mut watch);
        fx.append("a.log", &lines(3..5)); // not read before the truncation
        let copy = std::fs::read(fx.path("a.log")).unwrap();
        std::fs::OpenOptions::new().write(true).open(fx.path("a.log")).unwrap().set_len(0).unwrap();
        fx.append("a.log", &lines(5..6));
        fx.run(&mut watch); // the truncation, and no copy listed: a.log waits, reads nothing
        assert_eq!(sorted(fx.markers()), expect(0..3));
        // A crash while it waits loses nothing: its checkpoint was kept.
        drop(watch);
        let mut watch = fx.load();
        fx.run(&mut watch);
        fx.append_bytes("a.log.1", &copy); // the copy shows up
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..6));
    }

    #[test]
    fn a_truncated_file_without_a_copy_starts_over_after_rotate_wait() {
        let mut fx = Fixture::new("a.log");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..3));
        fx.run(&mut watch);
        std::fs::OpenOptions::new().write(true).open(fx.path("a.log")).unwrap().set_len(0).unwrap();
        fx.append("a.log", &lines(3..5));
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..3), "waiting for a copy");
        fx.now += Duration::from_secs(6);
        fx.run(&mut watch);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..5));
    }

    #[test]
    fn new_file_in_place_of_a_deleted_one_is_read_from_the_start() {
        let fx = Fixture::new("a.log");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..3));
        fx.run(&mut watch);
        drop(watch);
        std::fs::remove_file(fx.path("a.log")).unwrap();
        fx.append("a.log", &lines(3..4)); // may even reuse the inode
        let mut watch = fx.load();
        fx.run(&mut watch);
        // If it did, it looks truncated: it waits up to rotate_wait for a copy, then starts over.
        let mut fx = fx;
        fx.now += Duration::from_secs(6);
        fx.run(&mut watch);
        assert_eq!(sorted(fx.markers()), expect(0..4));
        fx.run(&mut watch);
        assert_eq!(fx.store.file_checkpoints("w").unwrap().len(), 1, "the old checkpoint is gone");
    }

    #[test]
    fn refused_files_are_not_read() {
        let fx = Fixture::new("*.log");
        std::fs::write(fx.dir.path().join("outside.log"), lines(0..1)).unwrap();
        std::os::unix::fs::symlink(fx.dir.path().join("outside.log"), fx.path("link.log")).unwrap();
        fx.append("real.log", &lines(1..2));
        std::fs::hard_link(fx.path("real.log"), fx.path("hard.log")).unwrap();
        fx.append("ok.log", &lines(2..3));
        let mut watch = fx.load();
        fx.run(&mut watch);
        assert_eq!(fx.markers(), vec!["L2"]);
    }

    #[test]
    fn a_file_truncated_and_regrown_past_the_read_position_is_not_read_on_from_the_middle() {
        let fx = Fixture::new("a.log*");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..3));
        fx.run(&mut watch);
        fx.append("a.log", &lines(3..5));
        watch.scan(fx.now); // sees the growth
        std::fs::copy(fx.path("a.log"), fx.path("a.log.1")).unwrap();
        std::fs::OpenOptions::new().write(true).open(fx.path("a.log")).unwrap().set_len(0).unwrap();
        fx.append("a.log", &lines(100..120)); // longer than before
                                              // Batches before the next scan: the bytes at the old read position are not read on.
        while matches!(watch.write_next_batch(fx.now).unwrap(), Progress::Wrote(_)) {}
        assert_eq!(sorted(fx.markers()), expect(0..3));
        fx.run(&mut watch);
        fx.run(&mut watch);
        let mut want = expect(0..5);
        want.extend(expect(100..120));
        assert_eq!(sorted(fx.markers()), want);
    }

    #[test]
    fn a_huge_line_is_skipped_in_bounded_memory() {
        let fx = Fixture::new("a.log");
        let mut watch = fx.load();
        fx.append("a.log", &lines(0..1));
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..3 {
            fx.append_bytes("a.log", &chunk);
            fx.run(&mut watch);
            for tracked in watch.open.values() {
                assert!(tracked.tail.len() <= FINGERPRINT_WINDOW as usize);
                assert!(tracked.assembler.next_position().offset > tracked.committed.offset);
            }
        }
        fx.append("a.log", "\n");
        fx.append("a.log", &lines(1..2));
        fx.run(&mut watch);
        assert_eq!(fx.markers(), expect(0..2));
    }

    #[test]
    fn line_ends_are_found_backwards_and_counted_forwards() {
        let fx = Fixture::new("a.log");
        fx.append("a.log", "ab\ncd\nef");
        let file = File::open(fx.path("a.log")).unwrap();
        assert_eq!(last_line_end(&file, 0, 8).unwrap(), 6);
        assert_eq!(last_line_end(&file, 0, 5).unwrap(), 3);
        assert_eq!(last_line_end(&file, 0, 2).unwrap(), 0, "no complete line");
        assert_eq!(last_line_end(&file, 6, 8).unwrap(), 6);
        assert!(last_line_end(&file, 0, 100).is_err(), "shorter than thought");
        let long = vec![b'x'; MAX_RECORD_BYTES + 2 * READ_CHUNK];
        fx.append_bytes("a.log", &long);
        assert!(
            last_line_end(&file, 0, 8 + long.len() as u64).is_err(),
            "an endless last line is not searched whole"
        );
        assert_eq!(count_lines(&file, Position::default(), 6).unwrap(), Position { offset: 6, line: 2 });
        assert_eq!(
            count_lines(&file, Position { offset: 3, line: 1 }, 6).unwrap(),
            Position { offset: 6, line: 2 }
        );
    }

    #[test]
    fn fingerprint_detects_changed_bytes_and_short_files() {
        let fx = Fixture::new("a.log");
        fx.append("a.log", "abcdef");
        let file = File::open(fx.path("a.log")).unwrap();
        let print = fingerprint(&file, 4).unwrap();
        assert_eq!(print, fingerprint_of(b"abcd"));
        assert_ne!(print, fingerprint(&file, 5).unwrap());
        assert!(fingerprint(&file, 7).is_err());
        assert_eq!(fingerprint(&file, 0).unwrap(), fingerprint_of(&[]));
    }
}
