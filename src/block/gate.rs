//! The retry gate: given a session's active blocks and a proposed tool call, allow or deny.
//!
//! Blocks are indexed per session by every object they hold, so a check costs one lookup per
//! object of the *proposed* call plus a scope check for each block that shares one — not a scan
//! of all blocks. The decision depends only on the blocks (the broker's state), never on the
//! model's account of what it is doing.

use super::objects::Objects;
use super::{Block, BlockKind, ScopeKind};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use time::OffsetDateTime;
use uuid::Uuid;

/// Every in-memory block, indexed for the gate.
#[derive(Default)]
pub struct BlockIndex {
    sessions: HashMap<Uuid, SessionBlocks>,
}

/// One session's blocks and the inverted indexes over their objects.
#[derive(Default)]
struct SessionBlocks {
    blocks: HashMap<Uuid, Arc<Block>>,
    /// Blocks that deny without looking at objects (halt, scope `session`).
    wide: BTreeSet<Uuid>,
    by_object: HashMap<Key, Vec<Uuid>>,
}

/// An object in the index, tagged by kind so a host never matches a path of the same text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Command(String),
    Exe(String),
    Family(String),
    Path(String),
    Host(String),
    Url(String),
}

/// The keys a block is indexed under: only the kinds of object its scope can match on, so a
/// common object (the `fetch` family, say) does not make every block a candidate. A similar-
/// scope block always needs a shared command, file, host or URL (see [`denies`]).
fn index_keys(block: &Block) -> Vec<Key> {
    keys(&block.objects)
        .into_iter()
        .filter(|k| match block.scope {
            ScopeKind::Command => matches!(k, Key::Command(_)),
            ScopeKind::Similar => !matches!(k, Key::Exe(_) | Key::Family(_)),
            ScopeKind::Path => matches!(k, Key::Path(_)),
            ScopeKind::Host => matches!(k, Key::Host(_) | Key::Url(_)),
            ScopeKind::Binary => matches!(k, Key::Exe(_) | Key::Family(_)),
            ScopeKind::Session => false,
        })
        .collect()
}

fn keys(o: &Objects) -> Vec<Key> {
    let mut out = Vec::new();
    out.extend(o.commands.iter().cloned().map(Key::Command));
    out.extend(o.executables.iter().cloned().map(Key::Exe));
    out.extend(o.families.iter().cloned().map(Key::Family));
    out.extend(o.paths.iter().chain(&o.writes).cloned().map(Key::Path));
    out.extend(o.hosts.iter().cloned().map(Key::Host));
    out.extend(o.urls.iter().cloned().map(Key::Url));
    out
}

/// The gate's answer.
#[derive(Debug, Clone)]
pub enum Verdict {
    Allow,
    Deny(Arc<Block>),
}

impl BlockIndex {
    /// Adds (or replaces) a block. Blocks that are no longer active are not indexed.
    pub fn insert(&mut self, block: Block) {
        self.remove(block.session_id, block.block_id);
        if block.status != super::BlockStatus::Active {
            return;
        }
        let session = self.sessions.entry(block.session_id).or_default();
        let id = block.block_id;
        if block.kind == BlockKind::HaltSession || block.scope == ScopeKind::Session {
            session.wide.insert(id);
        } else {
            for key in index_keys(&block) {
                let ids = session.by_object.entry(key).or_default();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        session.blocks.insert(id, Arc::new(block));
    }

    /// Removes a block (cleared, expired).
    pub fn remove(&mut self, session_id: Uuid, block_id: Uuid) {
        let Some(session) = self.sessions.get_mut(&session_id) else { return };
        let Some(block) = session.blocks.remove(&block_id) else { return };
        session.wide.remove(&block_id);
        for key in index_keys(&block) {
            if let Some(ids) = session.by_object.get_mut(&key) {
                ids.retain(|b| *b != block_id);
                if ids.is_empty() {
                    session.by_object.remove(&key);
                }
            }
        }
        if session.blocks.is_empty() {
            self.sessions.remove(&session_id);
        }
    }

    /// Number of indexed blocks (all sessions).
    pub fn len(&self) -> usize {
        self.sessions.values().map(|s| s.blocks.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Blocks of every session that are indexed but no longer in force at `now`.
    pub fn lapsed(&self, now: OffsetDateTime) -> Vec<Arc<Block>> {
        self.sessions.values().flat_map(|s| s.blocks.values()).filter(|b| !b.in_force(now)).cloned().collect()
    }

    /// Decides a proposed tool call (`tool` is the agent's tool name; `proposed` its objects).
    pub fn check(&self, session_id: Uuid, tool: &str, proposed: &Objects, now: OffsetDateTime) -> Verdict {
        let Some(session) = self.sessions.get(&session_id) else { return Verdict::Allow };
        // The oldest block that denies wins, so the answer does not depend on hash order.
        let mut deny: Option<&Arc<Block>> = None;
        let wide = session.wide.iter();
        let mut seen = BTreeSet::new();
        let by_object = keys(proposed)
            .into_iter()
            .flat_map(|key| session.by_object.get(&key).cloned().unwrap_or_default())
            .filter(|id| seen.insert(*id));
        for id in wide.copied().chain(by_object) {
            let Some(block) = session.blocks.get(&id) else { continue };
            let earlier = deny.is_none_or(|d| block.created_at < d.created_at);
            if earlier && block.in_force(now) && denies(block, tool, proposed) {
                deny = Some(block);
            }
        }
        match deny {
            Some(block) => Verdict::Deny(block.clone()),
            None => Verdict::Allow,
        }
    }
}

/// Whether `block`'s scope covers a call with these objects.
fn denies(block: &Block, tool: &str, p: &Objects) -> bool {
    let b = &block.objects;
    if block.kind == BlockKind::HaltSession {
        return true;
    }
    let commands = overlaps(&b.commands, &p.commands);
    let programs = overlaps(&b.executables, &p.executables) || overlaps(&b.families, &p.families);
    let files = overlaps(&all_paths(b), &all_paths(p));
    let network = overlaps(&b.hosts, &p.hosts) || overlaps(&b.urls, &p.urls);
    match block.scope {
        ScopeKind::Session => p.is_mutating(tool),
        ScopeKind::Command => commands,
        ScopeKind::Path => files,
        ScopeKind::Host => network,
        ScopeKind::Binary => programs,
        ScopeKind::Similar => {
            let rewrites_a_blocked_file = overlaps(&b.writes, &p.writes);
            let same_fetch_and_run = b.runs_fetched_code && p.runs_fetched_code && network;
            commands || rewrites_a_blocked_file || same_fetch_and_run || (programs && (files || network))
        }
    }
}

fn all_paths(o: &Objects) -> Vec<String> {
    o.paths.iter().chain(&o.writes).cloned().collect()
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.iter().any(|x| b.contains(x))
}
