//! [`ActiveBlocks`]: blocks kept durable in the store and indexed in memory for the gate.
//!
//! Every change goes to the store first, then to the index, so a crash never leaves the gate
//! enforcing something the store forgot (or the reverse after restart: the index is rebuilt
//! from the store on start). Clearing and expiry end a block; the delivery stage announces it.

use super::gate::{BlockIndex, Verdict};
use super::objects::Objects;
use super::{Block, BlockStatus};
use crate::sessions::model::CommandRecord;
use crate::store::{BlockStore, StoreError};
use std::sync::{Arc, RwLock};
use time::OffsetDateTime;
use uuid::Uuid;

pub struct ActiveBlocks {
    store: Arc<dyn BlockStore>,
    /// Readers are gate checks (hot path); writers are block changes (rare).
    index: RwLock<BlockIndex>,
    /// Blocks ever created per session (any status), so the policy input `agent.blocks` costs
    /// a map lookup instead of reading every stored block per event.
    per_session: RwLock<std::collections::HashMap<Uuid, u32>>,
}

/// Which blocks to list.
#[derive(Debug, Default, Clone)]
pub struct BlockFilter {
    pub session: Option<Uuid>,
    pub status: Option<BlockStatus>,
}

impl ActiveBlocks {
    /// Loads every stored block and indexes the active ones.
    pub fn load(store: Arc<dyn BlockStore>) -> Result<ActiveBlocks, StoreError> {
        let mut index = BlockIndex::default();
        let mut per_session = std::collections::HashMap::new();
        for block in store.blocks()? {
            *per_session.entry(block.session_id).or_insert(0u32) += 1;
            index.insert(block);
        }
        Ok(ActiveBlocks { store, index: RwLock::new(index), per_session: RwLock::new(per_session) })
    }

    /// Stores and starts enforcing a new block.
    pub fn create(&self, block: Block) -> Result<Block, StoreError> {
        self.store.put_block(&block)?;
        self.write().insert(block.clone());
        let mut counts = self.per_session.write().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(block.session_id).or_insert(0);
        *count = count.saturating_add(1);
        drop(counts);
        metrics::counter!("haltwire_blocks_created_total", "scope" => scope_label(&block)).increment(1);
        Ok(block)
    }

    /// Ends a block on a SOC analyst's word. `None` if there is no such block; an already
    /// ended block is returned unchanged.
    pub fn clear(&self, id: Uuid, by: &str, now: OffsetDateTime) -> Result<Option<Block>, StoreError> {
        let Some(mut block) = self.store.block(id)? else { return Ok(None) };
        if block.status == BlockStatus::Active {
            block.status = BlockStatus::Cleared;
            block.ended_at = Some(now);
            block.cleared_by = Some(by.to_string());
            self.store.put_block(&block)?;
            self.write().remove(block.session_id, block.block_id);
        }
        Ok(Some(block))
    }

    /// Marks blocks whose time ran out as expired; returns them.
    pub fn expire_lapsed(&self, now: OffsetDateTime) -> Result<Vec<Block>, StoreError> {
        let lapsed = self.read().lapsed(now);
        let mut ended = Vec::new();
        for block in lapsed {
            let mut block = (*block).clone();
            block.status = BlockStatus::Expired;
            block.ended_at = Some(now);
            self.store.put_block(&block)?;
            self.write().remove(block.session_id, block.block_id);
            ended.push(block);
        }
        Ok(ended)
    }

    /// The gate: may `session` make this tool call now?
    pub fn check(&self, session: Uuid, call: &CommandRecord, cwd: &str, now: OffsetDateTime) -> Verdict {
        let objects = Objects::of_call(call, cwd);
        let verdict = self.read().check(session, &call.tool, &objects, now);
        let label = if matches!(verdict, Verdict::Deny(_)) { "deny" } else { "allow" };
        metrics::counter!("haltwire_gate_decisions_total", "decision" => label).increment(1);
        verdict
    }

    pub fn get(&self, id: Uuid) -> Result<Option<Block>, StoreError> {
        self.store.block(id)
    }

    pub fn list(&self, filter: &BlockFilter) -> Result<Vec<Block>, StoreError> {
        let mut blocks: Vec<Block> = self
            .store
            .blocks()?
            .into_iter()
            .filter(|b| filter.session.is_none_or(|s| b.session_id == s))
            .filter(|b| filter.status.is_none_or(|s| b.status == s))
            .collect();
        blocks.sort_by_key(|b| b.created_at);
        Ok(blocks)
    }

    /// How many blocks `session` has had (active or ended).
    pub fn count_for_session(&self, session: Uuid) -> u32 {
        self.per_session.read().unwrap_or_else(|e| e.into_inner()).get(&session).copied().unwrap_or(0)
    }

    pub fn block_of_event(&self, event: Uuid) -> Result<Option<Uuid>, StoreError> {
        self.store.block_of_event(event)
    }

    /// Blocks currently enforced.
    pub fn active_count(&self) -> usize {
        self.read().len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BlockIndex> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BlockIndex> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn scope_label(block: &Block) -> &'static str {
    use super::{BlockKind, ScopeKind};
    match (block.kind, block.scope) {
        (BlockKind::HaltSession, _) => "halt_session",
        (_, ScopeKind::Command) => "command",
        (_, ScopeKind::Similar) => "similar",
        (_, ScopeKind::Path) => "path",
        (_, ScopeKind::Host) => "host",
        (_, ScopeKind::Binary) => "binary",
        (_, ScopeKind::Session) => "session",
    }
}
