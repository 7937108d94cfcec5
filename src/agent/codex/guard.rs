//! What the Codex drivers ask of haltwire while a thread runs: register it, record tool calls,
//! judge approvals, and hand over verified notices to steer in.
//!
//! The drivers ([`super::run`], [`super::proxy`]) only know this trait; the broker-backed
//! implementation lives in [`super::adapter`]. [`Unguarded`] does nothing and approves
//! everything, for running Codex through haltwire without a broker.

use super::protocol::{ApprovalDecision, ToolItem};

/// A notice ready for the model: the rendered text of one verified directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The directive's `jti`, acknowledged once the notice reached Codex.
    pub jti: String,
    /// Text from `directive::render::notice` — nothing else ever reaches the model.
    pub text: String,
    /// False for a `cleared` notice: it only says a restriction ended, so it is never steered
    /// into a turn or allowed to start one (that would make the model work for no task); it
    /// rides along with the next turn the user starts.
    pub restricts: bool,
}

/// The haltwire side of a driven Codex thread.
pub trait Guard: Send {
    /// A thread exists (after `thread/start` or `thread/resume` answered). An error means the
    /// thread is not protected (it could not be registered); the driver must not run it
    /// silently.
    fn thread_started(&mut self, thread_id: &str, cwd: Option<&str>) -> Result<(), String>;
    /// Codex started a tool call (`item/started` for a command or file change).
    fn call_started(&mut self, thread_id: &str, call: &ToolItem);
    /// A tool call finished (`item/completed`), with the item as the server reported it.
    fn call_completed(&mut self, thread_id: &str, call: &ToolItem, item: &serde_json::Value);
    /// Codex asks whether it may run this call.
    fn approve(&mut self, thread_id: &str, call: &ToolItem) -> ApprovalDecision;
    /// Verified notices for this thread that the model has not seen yet.
    fn pending_notices(&mut self, thread_id: &str) -> Vec<Notice>;
    /// A notice reached Codex (steered or carried into a turn): acknowledge it.
    fn delivered(&mut self, thread_id: &str, notice: &Notice);
    /// The thread is over (the driver is exiting).
    fn thread_ended(&mut self, thread_id: &str);
}

/// No broker: nothing is recorded, every call is approved, no notices.
pub struct Unguarded;

impl Guard for Unguarded {
    fn thread_started(&mut self, _: &str, _: Option<&str>) -> Result<(), String> {
        Ok(())
    }
    fn call_started(&mut self, _: &str, _: &ToolItem) {}
    fn call_completed(&mut self, _: &str, _: &ToolItem, _: &serde_json::Value) {}
    fn approve(&mut self, _: &str, _: &ToolItem) -> ApprovalDecision {
        ApprovalDecision::Accept
    }
    fn pending_notices(&mut self, _: &str) -> Vec<Notice> {
        Vec::new()
    }
    fn delivered(&mut self, _: &str, _: &Notice) {}
    fn thread_ended(&mut self, _: &str) {}
}
