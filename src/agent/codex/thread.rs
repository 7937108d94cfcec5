//! One Codex thread as haltwire follows it: which turn is running, which tool calls started,
//! how approvals are answered, and how notices reach the model.
//!
//! A notice goes into the running turn with `turn/steer` (carrying `expectedTurnId`, so it can
//! never land in a turn we did not mean); when no turn runs, or the server refuses the steer
//! because the turn just ended, it is carried into the next `turn/start`. Both drivers (`codex
//! run`, `codex serve`) use this; neither decides anything itself — the [`Guard`] does.

use super::conn::{ConnError, Connection};
use super::guard::{Guard, Notice};
use super::protocol::{
    ApprovalDecision, CommandApprovalParams, FileChangeApprovalParams, ItemNotification, ToolItem,
    TurnNotification, TurnSteerParams, UserInput, COMMAND_APPROVAL, FILE_CHANGE_APPROVAL,
};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// How long a steer may take to be answered (the server answers in milliseconds).
const STEER_TIMEOUT: Duration = Duration::from_secs(10);

/// What haltwire knows about one thread.
#[derive(Debug, Default)]
pub struct ThreadState {
    /// The thread id.
    pub thread_id: String,
    /// The turn running now, if any.
    pub active_turn: Option<String>,
    /// Tool calls seen in `item/started`, by call id (file-change approvals name only the id).
    calls: HashMap<String, ToolItem>,
    /// Notices to put in front of the next `turn/start`.
    pub carry: Vec<Notice>,
    /// Status of the last completed turn.
    pub last_status: Option<String>,
}

/// What an observed notification meant for the thread.
#[derive(Debug, PartialEq, Eq)]
pub enum Observed {
    /// Nothing that matters here.
    Nothing,
    /// The thread's turn ended with this status.
    TurnCompleted(String),
}

impl ThreadState {
    pub fn new(thread_id: &str) -> ThreadState {
        ThreadState { thread_id: thread_id.to_string(), ..Default::default() }
    }

    fn mine(&self, params: &Value) -> bool {
        params["threadId"].as_str() == Some(self.thread_id.as_str())
    }

    /// Updates the state from a server notification and tells the guard about tool calls.
    pub fn observe(&mut self, guard: &mut dyn Guard, method: &str, params: &Value) -> Observed {
        if !self.mine(params) {
            return Observed::Nothing;
        }
        match method {
            "turn/started" => {
                if let Ok(n) = serde_json::from_value::<TurnNotification>(params.clone()) {
                    self.active_turn = Some(n.turn.id);
                }
            }
            "turn/completed" => {
                let n = serde_json::from_value::<TurnNotification>(params.clone()).ok();
                let status = n.and_then(|n| n.turn.status).unwrap_or_else(|| "unknown".into());
                self.active_turn = None;
                self.last_status = Some(status.clone());
                return Observed::TurnCompleted(status);
            }
            "item/started" | "item/completed" => {
                let Ok(n) = serde_json::from_value::<ItemNotification>(params.clone()) else {
                    return Observed::Nothing;
                };
                let Some(call) = ToolItem::from_item(&n.item) else { return Observed::Nothing };
                if method == "item/started" {
                    guard.call_started(&self.thread_id, &call);
                    self.calls.insert(call.call_id.clone(), call);
                } else {
                    guard.call_completed(&self.thread_id, &call, &n.item);
                    self.calls.remove(&call.call_id);
                }
            }
            _ => {}
        }
        Observed::Nothing
    }

    /// The answer to an approval request for this thread, or `None` when the request is not
    /// an approval of this thread. Anything the guard cannot judge is declined (fail closed).
    pub fn approval(&mut self, guard: &mut dyn Guard, method: &str, params: &Value) -> Option<Value> {
        if !self.mine(params) {
            return None;
        }
        let decision = match method {
            COMMAND_APPROVAL => match serde_json::from_value::<CommandApprovalParams>(params.clone()) {
                Ok(p) => match p.gate_command() {
                    Some(command) => {
                        let call = ToolItem {
                            call_id: p.item_id.clone(),
                            tool: "Bash",
                            input: serde_json::json!({ "command": command }),
                        };
                        guard.approve(&self.thread_id, &call)
                    }
                    None => ApprovalDecision::Decline,
                },
                Err(_) => ApprovalDecision::Decline,
            },
            FILE_CHANGE_APPROVAL => {
                match serde_json::from_value::<FileChangeApprovalParams>(params.clone()) {
                    Ok(p) => match self.calls.get(&p.item_id).cloned() {
                        Some(call) => guard.approve(&self.thread_id, &call),
                        // The paths are unknown without the item: do not let it through unseen.
                        None => ApprovalDecision::Decline,
                    },
                    Err(_) => ApprovalDecision::Decline,
                }
            }
            _ => return None,
        };
        Some(decision.to_result())
    }

    /// Takes the guard's new notices and steers them into the running turn; whatever cannot be
    /// steered waits in [`ThreadState::carry`].
    pub fn deliver(&mut self, conn: &Connection, guard: &mut dyn Guard) -> Result<(), ConnError> {
        for notice in guard.pending_notices(&self.thread_id) {
            let Some(turn) = self.active_turn.clone().filter(|_| notice.restricts) else {
                self.carry.push(notice);
                continue;
            };
            let params = TurnSteerParams {
                thread_id: self.thread_id.clone(),
                expected_turn_id: turn,
                input: vec![UserInput::text(notice.text.clone())],
            };
            match conn.request("turn/steer", serde_json::to_value(params).unwrap_or_default(), STEER_TIMEOUT)
            {
                Ok(_) => guard.delivered(&self.thread_id, &notice),
                // "no active turn to steer" / another turn: the next turn/start carries it.
                Err(ConnError::Rpc { .. }) => {
                    self.active_turn = None;
                    self.carry.push(notice);
                }
                Err(other) => {
                    self.carry.push(notice);
                    return Err(other);
                }
            }
        }
        Ok(())
    }

    /// Whether a carried notice is worth a turn of its own (a restriction the model must know).
    pub fn carries_a_restriction(&self) -> bool {
        self.carry.iter().any(|n| n.restricts)
    }

    /// Input items for the carried notices (to put in front of a `turn/start`'s input).
    pub fn carried_input(&self) -> Vec<UserInput> {
        self.carry.iter().map(|n| UserInput::text(n.text.clone())).collect()
    }

    /// The carried notices went out in a `turn/start` that the server accepted.
    pub fn carried_delivered(&mut self, guard: &mut dyn Guard) {
        for notice in std::mem::take(&mut self.carry) {
            guard.delivered(&self.thread_id, &notice);
        }
    }
}
