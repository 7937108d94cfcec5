//! Storage for active and past blocks, and which block an event caused.
//!
//! Separate from the session storage so the gate's side of the broker depends only on this.
//! Like the rest of the store, methods may block on sled.

use super::{SledStore, StoreError};
use crate::block::Block;
use sled::IVec;
use uuid::Uuid;

pub trait BlockStore: Send + Sync + 'static {
    /// Inserts or replaces a block, and records it as the block of its event.
    fn put_block(&self, block: &Block) -> Result<(), StoreError>;
    fn block(&self, id: Uuid) -> Result<Option<Block>, StoreError>;
    /// Every stored block, oldest first.
    fn blocks(&self) -> Result<Vec<Block>, StoreError>;
    /// The block an event caused, if a policy acted on it.
    fn block_of_event(&self, event: Uuid) -> Result<Option<Uuid>, StoreError>;
}

impl BlockStore for SledStore {
    fn put_block(&self, block: &Block) -> Result<(), StoreError> {
        let value = serde_json::to_vec(block).map(IVec::from).map_err(|e| StoreError::Corrupt {
            tree: "blocks",
            key: block.block_id.to_string(),
            reason: e.to_string(),
        })?;
        self.blocks.insert(block.block_id.as_bytes(), value)?;
        self.event_blocks.insert(block.event_id.as_bytes(), block.block_id.as_bytes())?;
        Ok(())
    }

    fn block(&self, id: Uuid) -> Result<Option<Block>, StoreError> {
        self.blocks.get(id.as_bytes())?.map(|v| decode(id.as_bytes(), &v)).transpose()
    }

    fn blocks(&self) -> Result<Vec<Block>, StoreError> {
        self.blocks
            .iter()
            .map(|item| {
                let (k, v) = item?;
                decode(&k, &v)
            })
            .collect()
    }

    fn block_of_event(&self, event: Uuid) -> Result<Option<Uuid>, StoreError> {
        Ok(self.event_blocks.get(event.as_bytes())?.and_then(|v| Uuid::from_slice(&v).ok()))
    }
}

fn decode(key: &[u8], value: &[u8]) -> Result<Block, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        tree: "blocks",
        key: Uuid::from_slice(key).map(|u| u.to_string()).unwrap_or_default(),
        reason: e.to_string(),
    })
}
