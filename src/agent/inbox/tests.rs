//! Inbox hardening (R41–R45): every hostile file is refused without rendering anything or
//! panicking, and lands in `rejected/` (0600) — or, for a symlinked directory, nothing is
//! opened at all. A genuine directive verifies once, in `seq` order, and moves to `done/`.

use super::*;
use crate::block::ScopeKind;
use crate::directive::keys::BrokerKey;
use crate::directive::payload::{Directive, DirectiveType, EventFacts, Retry, ScopeInfo};
use crate::directive::render::notice;
use crate::directive::signer::DirectiveSigner;
use crate::inbox_dir::message_name;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use uuid::Uuid;

struct Setup {
    _keys: tempfile::TempDir,
    base: tempfile::TempDir,
    signer: DirectiveSigner,
    session: String,
}

impl Setup {
    fn new() -> Setup {
        let keys = tempfile::tempdir().unwrap();
        let (key, _) = BrokerKey::load_or_create(keys.path()).unwrap();
        let signer = DirectiveSigner::new(key, None, "haltwire@test".into());
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        Setup { _keys: keys, base, signer, session: Uuid::now_v7().to_string() }
    }

    fn inbox(&self) -> Inbox {
        Inbox::open_in(self.base.path(), &self.session).unwrap()
    }

    fn dir(&self, sub: &str) -> std::path::PathBuf {
        self.base.path().join("haltwire/sessions").join(&self.session).join(sub)
    }

    fn envelope(&self, audience: &str, seq: u64, jti: &str, now: i64) -> Vec<u8> {
        let directive = Directive {
            kind: DirectiveType::DoNotRetry,
            block_id: Uuid::from_u128(7),
            event_id: None,
            scope: ScopeInfo { kind: ScopeKind::Command, paths: vec![], hosts: vec![], executables: vec![] },
            retry: Retry::Never,
            note: Some("Piping downloads to a shell is forbidden.".into()),
            data: EventFacts::default(),
        };
        self.signer.sign(audience, jti, seq, &directive, now).to_json().into_bytes()
    }

    /// Writes a file into the inbox the way a well-behaved writer does (0600).
    fn put(&self, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = self.dir("inbox").join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn drain(&self, now: i64) -> Drained {
        let verifier = Verifier::new(self.signer.trust_store());
        self.inbox().drain_persisted(&verifier, now).unwrap()
    }

    fn names(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }
}

const NOW: i64 = 1_900_000_000;

fn reasons(d: &Drained) -> Vec<&'static str> {
    d.rejected.iter().map(|r| r.reason).collect()
}

#[test]
fn genuine_directives_verify_in_seq_order_once_and_move_to_done() {
    let s = Setup::new();
    let _ = s.inbox();
    s.put(&message_name(10), &s.envelope(&s.session, 10, "j10", NOW));
    s.put(&message_name(9), &s.envelope(&s.session, 9, "j9", NOW));
    s.put(".tmp-abc", b"half written");
    let drained = s.drain(NOW + 1);
    let seqs: Vec<u64> = drained.accepted.iter().map(|v| v.payload.seq).collect();
    assert_eq!(seqs, vec![9, 10]);
    assert!(notice(&drained.accepted[0]).contains("Piping downloads to a shell is forbidden."));
    assert!(drained.rejected.is_empty());
    assert_eq!(s.names("done"), vec![message_name(10), message_name(9)]);
    assert_eq!(s.names("inbox"), vec![".tmp-abc".to_string()], "temp files are left alone");
    // The replay state persisted: the same bytes again are a replay.
    s.put(&message_name(10), &s.envelope(&s.session, 10, "j10", NOW));
    let again = s.drain(NOW + 2);
    assert!(again.accepted.is_empty());
    assert_eq!(reasons(&again), vec!["replayed"]);
    let replay = s.dir("replay.json");
    assert_eq!(std::fs::metadata(replay).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn hostile_files_render_nothing_and_land_in_rejected() {
    let s = Setup::new();
    let _ = s.inbox();
    let other_key = tempfile::tempdir().unwrap();
    let (key, _) = BrokerKey::load_or_create(other_key.path()).unwrap();
    let forger = DirectiveSigner::new(key, None, "haltwire@evil".into());
    let forged = {
        let mut f = Setup::new();
        f.signer = forger;
        f.session = s.session.clone();
        f.envelope(&s.session, 1, "f1", NOW)
    };
    s.put(&message_name(1), &forged);
    s.put(&message_name(2), &s.envelope("0190e5c2-0000-7000-8000-00000000dead", 2, "o2", NOW));
    s.put(&message_name(3), &s.envelope(&s.session, 3, "e3", NOW - 3600));
    s.put(&message_name(4), &s.envelope(&s.session, 5, "m4", NOW)); // name says 4, payload 5
    let loose = s.put(&message_name(6), &s.envelope(&s.session, 6, "w6", NOW));
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    s.put(&message_name(7), &vec![b' '; 70 * 1024]);
    // A symlink to a secret, a FIFO (which must not hang the reader) and a hard link.
    let secret = s.base.path().join("secret.txt");
    std::fs::write(&secret, s.envelope(&s.session, 8, "l8", NOW)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&secret, s.dir("inbox").join(message_name(8))).unwrap();
    let fifo = std::ffi::CString::new(s.dir("inbox").join(message_name(11)).to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::hard_link(&secret, s.dir("inbox").join(message_name(12))).unwrap();
    s.put(&message_name(13), b"{not json");

    let drained = s.drain(NOW + 1);
    assert!(drained.accepted.is_empty(), "{:?}", drained.accepted);
    let mut got = reasons(&drained);
    got.sort_unstable();
    let mut want = vec![
        "bad_signature",
        "wrong_audience",
        "expired",
        "name_mismatch",
        "wrong_mode",
        "oversize",
        "symlink",
        "not_regular",
        "hard_link",
        "malformed",
    ];
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(s.names("inbox").is_empty(), "{:?}", s.names("inbox"));
    assert!(s.names("done").is_empty());
    assert_eq!(s.names("rejected").len(), 10);
    let moved = s.dir("rejected").join(message_name(6));
    assert_eq!(std::fs::metadata(moved).unwrap().mode() & 0o777, 0o600, "rejected files are made private");
    assert!(!std::fs::read(&secret).unwrap().is_empty(), "the symlink target is untouched");
}

#[test]
fn a_replayed_directive_with_a_new_name_is_refused() {
    let s = Setup::new();
    let _ = s.inbox();
    let bytes = s.envelope(&s.session, 1, "j1", NOW);
    s.put(&message_name(1), &bytes);
    assert_eq!(s.drain(NOW).accepted.len(), 1);
    // Same envelope copied back; and an older seq signed freshly.
    s.put(&message_name(1), &bytes);
    let d = s.drain(NOW + 1);
    assert!(d.accepted.is_empty());
    assert_eq!(reasons(&d), vec!["replayed"]);
}

#[test]
fn inbox_directories_that_are_not_private_or_are_symlinks_are_refused() {
    let s = Setup::new();
    let _ = s.inbox();
    std::fs::set_permissions(s.dir("inbox"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(
        Inbox::open_in(s.base.path(), &s.session),
        Err(InboxError::Dir(crate::inbox_dir::InboxDirError::Permissions { .. }))
    ));

    let t = Setup::new();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.base.path().join("haltwire/sessions")).unwrap();
    for p in [t.base.path().join("haltwire"), t.base.path().join("haltwire/sessions")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::os::unix::fs::symlink(elsewhere.path(), t.base.path().join("haltwire/sessions").join(&t.session))
        .unwrap();
    assert!(matches!(
        Inbox::open_in(t.base.path(), &t.session),
        Err(InboxError::Dir(crate::inbox_dir::InboxDirError::NotDirectory(_)))
    ));
    assert!(matches!(
        Inbox::open_in(t.base.path(), "../../etc"),
        Err(InboxError::Dir(crate::inbox_dir::InboxDirError::BadSession))
    ));
}

#[test]
fn a_tampered_replay_state_fails_closed() {
    let s = Setup::new();
    let _ = s.inbox();
    let replay = s.dir("replay.json");
    std::fs::write(&replay, b"{\"last_seq\": \"oops\"}").unwrap();
    std::fs::set_permissions(&replay, std::fs::Permissions::from_mode(0o600)).unwrap();
    s.put(&message_name(1), &s.envelope(&s.session, 1, "j1", NOW));
    let verifier = Verifier::new(s.signer.trust_store());
    assert!(matches!(s.inbox().drain_persisted(&verifier, NOW), Err(InboxError::ReplayState { .. })));
    assert_eq!(s.names("inbox"), vec![message_name(1)], "nothing was taken");
}
