//! The delivery queue on a real sled store: ordering, acknowledgment, the bound, visibility,
//! enqueue-once, restart durability, inbox pushes with backoff, and envelopes re-signed when
//! served.

use super::inbox::{backoff_secs, pass, InboxSettings, REFRESH_AFTER_SECS};
use super::*;
use crate::block::ScopeKind;
use crate::directive::keys::BrokerKey;
use crate::directive::payload::{EventFacts, Retry, ScopeInfo};
use crate::directive::verify::{ReplayState, Verifier};
use crate::inbox_dir::{message_name, SessionDirs};
use crate::sessions::model::{AgentKind, Channel, Session, SessionStatus};
use crate::sessions::procfs::Procfs;
use crate::store::SledStore;
use std::path::Path;

const NOW: i64 = 1_900_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SledStore>,
    signer: Arc<DirectiveSigner>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = BrokerKey::load_or_create(dir.path()).unwrap();
        let signer = Arc::new(DirectiveSigner::new(key, None, "haltwire@test".into()));
        let store = Arc::new(SledStore::open(&dir.path().join("store"), 8 << 20).unwrap());
        Fixture { _dir: dir, store, signer }
    }

    fn deliver(&self, max_pending: usize) -> Arc<Deliver> {
        let settings = DeliverSettings { max_pending, max_streams: 2 };
        Arc::new(Deliver::new(self.store.clone(), self.signer.clone(), settings).unwrap())
    }

    fn reopen(self) -> Fixture {
        let Fixture { _dir, store, signer } = self;
        crate::store::Store::flush(&*store).unwrap();
        drop(store);
        let store = Arc::new(SledStore::open(&_dir.path().join("store"), 8 << 20).unwrap());
        Fixture { _dir, store, signer }
    }
}

pub(super) fn directive(kind: DirectiveType, block: u128) -> Directive {
    Directive {
        kind,
        block_id: Uuid::from_u128(block),
        event_id: None,
        scope: ScopeInfo { kind: ScopeKind::Command, paths: vec![], hosts: vec![], executables: vec![] },
        retry: Retry::Never,
        note: None,
        data: EventFacts::default(),
    }
}

/// Enqueues one directive per block id and publishes them.
fn put(deliver: &Deliver, session: Uuid, blocks: &[u128]) -> Vec<Enqueued> {
    let out: Vec<Enqueued> = blocks
        .iter()
        .filter_map(|b| deliver.enqueue(session, directive(DirectiveType::DoNotRetry, *b), NOW).unwrap())
        .collect();
    deliver.publish(&out);
    out
}

fn seqs(deliver: &Deliver, session: Uuid) -> Vec<u64> {
    deliver.pending(session, 0, 100).unwrap().iter().map(|e| e.seq).collect()
}

#[test]
fn entries_are_numbered_per_session_in_order_and_acknowledged_by_jti() {
    let f = Fixture::new();
    let deliver = f.deliver(16);
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    put(&deliver, a, &[1, 2, 3]);
    put(&deliver, b, &[4]);
    assert_eq!(seqs(&deliver, a), vec![1, 2, 3]);
    assert_eq!(seqs(&deliver, b), vec![1]);
    let pending = deliver.pending(a, 0, 100).unwrap();
    assert_ne!(pending[0].jti, pending[1].jti);
    assert!(!deliver.ack(b, &pending[1].jti, "api").unwrap(), "another session's jti is not acknowledged");
    assert!(deliver.ack(a, &pending[1].jti, "api").unwrap());
    assert!(!deliver.ack(a, &pending[1].jti, "api").unwrap(), "a second ack finds nothing");
    assert_eq!(seqs(&deliver, a), vec![1, 3]);
    assert_eq!(deliver.pending(a, 1, 100).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3]);
    put(&deliver, a, &[5]);
    assert_eq!(seqs(&deliver, a), vec![1, 3, 4], "a seq is never reused after an ack");
}

#[test]
fn nothing_is_visible_before_publish_and_an_origin_is_enqueued_once() {
    let f = Fixture::new();
    let deliver = f.deliver(16);
    let s = Uuid::now_v7();
    let first = deliver.enqueue(s, directive(DirectiveType::DoNotRetry, 9), NOW).unwrap().unwrap();
    assert!(deliver.pending(s, 0, 10).unwrap().is_empty(), "unpublished entries are invisible");
    assert_eq!(deliver.enqueue(s, directive(DirectiveType::DoNotRetry, 9), NOW).unwrap(), None);
    let second = deliver.enqueue(s, directive(DirectiveType::Cleared, 9), NOW).unwrap().unwrap();
    deliver.publish(&[first]);
    assert_eq!(seqs(&deliver, s), vec![1], "publishing seq 1 does not reveal seq 2");
    deliver.publish(&[second]);
    assert_eq!(seqs(&deliver, s), vec![1, 2]);
    assert!(deliver.has_origin(Origin::of(&directive(DirectiveType::Cleared, 9))).unwrap());
}

#[test]
fn the_bound_drops_the_oldest_pending_entries() {
    let f = Fixture::new();
    let deliver = f.deliver(3);
    let s = Uuid::now_v7();
    put(&deliver, s, &[1, 2, 3, 4, 5]);
    assert_eq!(seqs(&deliver, s), vec![3, 4, 5]);
}

#[test]
fn pending_entries_survive_a_restart_and_acknowledged_ones_do_not() {
    let f = Fixture::new();
    let s = Uuid::now_v7();
    let jti = {
        let deliver = f.deliver(16);
        put(&deliver, s, &[1, 2]);
        let first = deliver.pending(s, 0, 10).unwrap()[0].jti.clone();
        assert!(deliver.ack(s, &first, "api").unwrap());
        first
    };
    let f = f.reopen();
    let deliver = f.deliver(16);
    assert_eq!(seqs(&deliver, s), vec![2], "everything on disk at start is visible");
    assert!(!deliver.ack(s, &jti, "api").unwrap());
    put(&deliver, s, &[3]);
    assert_eq!(seqs(&deliver, s), vec![2, 3], "numbering continues after a restart");
}

#[test]
fn an_entry_is_signed_when_served_with_a_fresh_window_and_its_own_jti_and_seq() {
    let f = Fixture::new();
    let deliver = f.deliver(16);
    let s = Uuid::now_v7();
    put(&deliver, s, &[1]);
    let entry = deliver.pending(s, 0, 10).unwrap().remove(0);
    let verifier = Verifier::new(f.signer.trust_store());
    // Served an hour after it was queued: still verifies, because it is signed now.
    let later = entry.created_at + 3600;
    let raw = deliver.sign(&entry, later).to_json();
    let verified =
        verifier.verify(raw.as_bytes(), &s.to_string(), later, &mut ReplayState::default()).unwrap();
    assert_eq!((verified.payload.seq, verified.payload.jti.as_str()), (entry.seq, entry.jti.as_str()));
    assert_eq!(verified.payload.iat, later);
}

#[test]
fn sse_stream_places_are_bounded_and_given_back() {
    let f = Fixture::new();
    let deliver = f.deliver(16);
    let s = Uuid::now_v7();
    let one = deliver.open_stream(s).unwrap();
    let _two = deliver.open_stream(s).unwrap();
    assert!(deliver.open_stream(s).is_none());
    drop(one);
    assert!(deliver.open_stream(s).is_some());
}

fn inbox_session(channels: Vec<Channel>) -> Session {
    let now = time::OffsetDateTime::now_utc();
    Session {
        session_id: Uuid::now_v7(),
        agent: AgentKind::Generic,
        agent_session_id: "x".into(),
        pid: 1,
        pid_start_time: None,
        host: "h".into(),
        user: None,
        cwd: "/".into(),
        channels,
        status: SessionStatus::Active,
        registered_at: now,
        last_seen: now,
        ended_at: None,
        end_reason: None,
    }
}

fn private_base() -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    base
}

fn inbox_files(base: &Path, session: Uuid, sub: &str) -> Vec<String> {
    let dir = base.join("haltwire/sessions").join(session.to_string()).join(sub);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn the_inbox_worker_writes_files_refreshes_them_and_treats_a_taken_file_as_delivered() {
    let f = Fixture::new();
    let deliver = f.deliver(16);
    let base = private_base();
    let session = inbox_session(vec![Channel::Inbox, Channel::Sse]);
    let s = session.session_id;
    put(&deliver, s, &[1, 2]);
    let settings = InboxSettings { base: base.path().to_path_buf(), doorbell: false };
    pass(&deliver, &session, &settings, &Procfs::default(), NOW);
    assert_eq!(inbox_files(base.path(), s, "inbox"), vec![message_name(1), message_name(2)]);
    let path = base.path().join("haltwire/sessions").join(s.to_string()).join("inbox").join(message_name(1));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    let verifier = Verifier::new(f.signer.trust_store());
    let first = std::fs::read(&path).unwrap();
    assert!(verifier.verify(&first, &s.to_string(), NOW, &mut ReplayState::default()).is_ok());

    // Unread for longer than the refresh interval: replaced by a freshly signed copy.
    let later = NOW + REFRESH_AFTER_SECS;
    pass(&deliver, &session, &settings, &Procfs::default(), later);
    let refreshed = std::fs::read(&path).unwrap();
    assert_ne!(first, refreshed);
    assert!(verifier.verify(&refreshed, &s.to_string(), later + 200, &mut ReplayState::default()).is_ok());

    // The reader takes file 1: it is not written again, and (with an SSE channel too) it stays
    // pending until acknowledged.
    std::fs::remove_file(&path).unwrap();
    pass(&deliver, &session, &settings, &Procfs::default(), later + 1);
    pass(&deliver, &session, &settings, &Procfs::default(), later + REFRESH_AFTER_SECS * 2);
    assert_eq!(inbox_files(base.path(), s, "inbox"), vec![message_name(2)]);
    assert_eq!(seqs(&deliver, s), vec![1, 2]);
    assert_eq!(deliver.pending(s, 0, 10).unwrap()[0].inbox, InboxState::Taken);
}

#[test]
fn for_an_inbox_only_session_a_taken_file_is_its_acknowledgment() {
    let f = Fixture::new();
    let deliver = f.deliver(16);
    let base = private_base();
    let session = inbox_session(vec![Channel::Inbox]);
    let s = session.session_id;
    put(&deliver, s, &[1]);
    let settings = InboxSettings { base: base.path().to_path_buf(), doorbell: false };
    pass(&deliver, &session, &settings, &Procfs::default(), NOW);
    let dirs = SessionDirs::open(base.path(), &s.to_string()).unwrap();
    dirs.inbox.move_to(&message_name(1), &dirs.done).unwrap();
    pass(&deliver, &session, &settings, &Procfs::default(), NOW + 1);
    assert!(seqs(&deliver, s).is_empty());
}

#[test]
fn a_refused_inbox_directory_is_retried_with_backoff() {
    let f = Fixture::new();
    let deliver = f.deliver(16);
    let base = private_base();
    let session = inbox_session(vec![Channel::Inbox]);
    let s = session.session_id;
    // Someone made the session directory group-writable: the broker refuses it (R41).
    let dir = base.path().join("haltwire/sessions").join(s.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [base.path().join("haltwire"), base.path().join("haltwire/sessions")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
    put(&deliver, s, &[1]);
    let settings = InboxSettings { base: base.path().to_path_buf(), doorbell: false };
    pass(&deliver, &session, &settings, &Procfs::default(), NOW);
    let entry = deliver.pending(s, 0, 10).unwrap().remove(0);
    assert_eq!((entry.attempts, entry.next_attempt_at), (1, NOW + backoff_secs(1)));
    pass(&deliver, &session, &settings, &Procfs::default(), NOW); // before the backoff: untouched
    assert_eq!(deliver.pending(s, 0, 10).unwrap()[0].attempts, 1);

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    pass(&deliver, &session, &settings, &Procfs::default(), NOW + backoff_secs(1));
    assert_eq!(inbox_files(base.path(), s, "inbox"), vec![message_name(1)]);
    assert_eq!(deliver.pending(s, 0, 10).unwrap()[0].attempts, 2);
}

#[test]
fn backoff_doubles_up_to_a_minute() {
    let waits: Vec<i64> = (1..=9).map(backoff_secs).collect();
    assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
}

#[test]
fn the_bound_counts_acknowledgments_in_between() {
    let f = Fixture::new();
    let deliver = f.deliver(3);
    let s = Uuid::now_v7();
    put(&deliver, s, &[1, 2, 3, 4]);
    assert_eq!(seqs(&deliver, s), vec![2, 3, 4]);
    let jti = deliver.pending(s, 0, 10).unwrap()[1].jti.clone();
    assert!(deliver.ack(s, &jti, "api").unwrap());
    put(&deliver, s, &[5]);
    assert_eq!(seqs(&deliver, s), vec![2, 4, 5], "room freed by an ack is used before dropping");
    put(&deliver, s, &[6]);
    assert_eq!(seqs(&deliver, s), vec![4, 5, 6]);
}

/// Announcements of one block each, for `enqueue_all`.
fn announcements(session: Uuid, blocks: &[u128]) -> Vec<Announcement> {
    blocks
        .iter()
        .map(|b| Announcement { session, directive: directive(DirectiveType::DoNotRetry, *b) })
        .collect()
}

#[test]
fn a_batch_enqueue_numbers_like_single_ones_and_skips_origins_seen_in_the_same_batch() {
    let f = Fixture::new();
    let deliver = f.deliver(16);
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    put(&deliver, a, &[1]);
    let mut batch = announcements(a, &[2, 3, 2]);
    batch.extend(announcements(b, &[4]));
    batch.extend(announcements(a, &[1]));
    let enqueued = deliver.enqueue_all(batch, NOW).unwrap();
    assert_eq!(
        enqueued,
        vec![
            Enqueued { session: a, seq: 2 },
            Enqueued { session: a, seq: 3 },
            Enqueued { session: b, seq: 1 }
        ],
        "a repeated origin, in the batch or from before, is not enqueued again"
    );
    deliver.publish(&enqueued);
    assert_eq!(seqs(&deliver, a), vec![1, 2, 3]);
    assert_eq!(seqs(&deliver, b), vec![1]);
    let pending = deliver.pending(a, 0, 10).unwrap();
    assert!(deliver.ack(a, &pending[2].jti, "api").unwrap(), "a batch entry is acknowledged by its jti");
}

#[test]
fn a_batch_over_the_bound_drops_exactly_the_oldest_and_counts_on_from_there() {
    let f = Fixture::new();
    let deliver = f.deliver(3);
    let s = Uuid::now_v7();
    put(&deliver, s, &[1, 2]);
    let enqueued = deliver.enqueue_all(announcements(s, &[3, 4, 5, 6]), NOW).unwrap();
    deliver.publish(&enqueued);
    assert_eq!(seqs(&deliver, s), vec![4, 5, 6]);
    put(&deliver, s, &[7]);
    assert_eq!(seqs(&deliver, s), vec![5, 6, 7], "the count after a batch drop is exact");
}

#[test]
fn the_in_memory_page_equals_the_store_page_through_acks_drops_and_a_restart() {
    let f = Fixture::new();
    let deliver = f.deliver(5);
    let s = Uuid::now_v7();
    let same_pages = |deliver: &Deliver, label: &str| {
        let last = deliver.visible_seq(s);
        for after in 0..=last {
            let from_store: Vec<u64> = deliver.pending(s, after, 3).unwrap().iter().map(|e| e.seq).collect();
            if let Some(page) = deliver.pending_recent(s, after, 3) {
                let held: Vec<u64> = page.iter().map(|e| e.seq).collect();
                assert_eq!(held, from_store, "{label}: after {after}");
            }
        }
    };
    put(&deliver, s, &[1, 2, 3]);
    assert!(deliver.pending_recent(s, 0, 3).is_some(), "entries enqueued since start are held");
    same_pages(&deliver, "after enqueue");
    let jti = deliver.pending(s, 0, 10).unwrap()[1].jti.clone();
    assert!(deliver.ack(s, &jti, "api").unwrap());
    same_pages(&deliver, "after an ack");
    put(&deliver, s, &[4, 5, 6, 7, 8]);
    same_pages(&deliver, "after the bound dropped the oldest");
    drop(deliver);
    let f = f.reopen();
    let deliver = f.deliver(5);
    assert!(deliver.pending_recent(s, 0, 3).is_none(), "nothing is held after a restart");
    put(&deliver, s, &[9]);
    same_pages(&deliver, "after a restart and one more");
}

#[test]
fn an_ended_sessions_queue_is_dropped_from_the_store_and_from_memory_and_numbering_goes_on() {
    let f = Fixture::new();
    let deliver = f.deliver(4);
    let (ended, other) = (Uuid::now_v7(), Uuid::now_v7());
    put(&deliver, ended, &[1, 2, 3]);
    put(&deliver, other, &[4]);
    assert_eq!(deliver.queued_sessions().unwrap().len(), 2);
    assert_eq!(deliver.drop_session(ended).unwrap(), 3);
    assert!(seqs(&deliver, ended).is_empty());
    let held = deliver.pending_recent(ended, 0, 10);
    assert!(held.as_ref().is_none_or(|page| page.is_empty()), "a live stream still sees {held:?}");
    assert_eq!(deliver.queued_sessions().unwrap(), [other]);
    assert_eq!(seqs(&deliver, other), vec![1]);
    // A late directive (a clear after the end) gets the next seq, and the bound counts afresh:
    // nothing of the dropped queue is counted against it.
    put(&deliver, ended, &[5, 6, 7, 8]);
    assert_eq!(seqs(&deliver, ended), vec![4, 5, 6, 7]);
    assert_eq!(deliver.drop_session(ended).unwrap(), 4);
    assert_eq!(deliver.drop_session(ended).unwrap(), 0);
}

#[test]
fn an_entry_a_crash_left_without_its_origin_is_repaired_not_enqueued_twice() {
    let f = Fixture::new();
    let deliver = f.deliver(16);
    let s = Uuid::now_v7();
    put(&deliver, s, &[7, 8]);
    let origin = Origin::of(&directive(DirectiveType::DoNotRetry, 7));
    f.store.forget_origins();
    assert!(!deliver.has_origin(origin).unwrap());
    assert_eq!(deliver.repair_origins().unwrap(), 2);
    assert!(deliver.has_origin(origin).unwrap());
    assert_eq!(deliver.enqueue(s, directive(DirectiveType::DoNotRetry, 7), NOW).unwrap(), None);
    assert_eq!(seqs(&deliver, s), vec![1, 2], "still one entry per block");
    assert_eq!(deliver.repair_origins().unwrap(), 0, "nothing left to repair");
}
