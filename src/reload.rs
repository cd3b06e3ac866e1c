//! Reloading the configuration file (SIGHUP or `POST /reload`): the new
//! file is validated first; an invalid one changes nothing. Tags apply at
//! once (through Raft); other changes need a restart and are named.

use std::path::PathBuf;
use std::sync::Mutex;

use raftgres_raft::RaftHandle;
use raftgres_storage::{Command, NodeId};

use crate::callbacks::VetoHold;
use crate::config::FileConfig;
use crate::ops::OpError;
use crate::watchdog::device::{Refusal, published_tags};

pub struct Reloader {
    path: Option<PathBuf>,
    node: NodeId,
    handle: RaftHandle,
    current: Mutex<Option<FileConfig>>,
    /// Folded into the tags while a `required` watchdog device is unusable.
    refusal: Refusal,
    /// Folded into the tags while a vetoed promotion keeps this node out
    /// of elections.
    veto: VetoHold,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        current: Option<FileConfig>,
        node: NodeId,
        handle: RaftHandle,
        refusal: Refusal,
        veto: VetoHold,
    ) -> Self {
        Self { path, node, handle, current: Mutex::new(current), refusal, veto }
    }

    /// Re-reads the file; applies what can change at runtime.
    pub async fn reload(&self) -> Result<String, OpError> {
        let Some(path) = &self.path else {
            return Err(OpError::Refused("this daemon was not started from a configuration file".into()));
        };
        let file = FileConfig::load(path).map_err(|e| OpError::Invalid(format!("not reloaded: {e}")))?;
        let resolved = file.validate().map_err(|e| OpError::Invalid(format!("not reloaded: {e}")))?;
        let old = self.current.lock().expect("reload lock poisoned").clone();
        let tags_changed = old.as_ref().is_none_or(|o| o.tags != file.tags);
        // Listen addresses, paths, identities, TLS and the token are read
        // once at start; `dynamic` only seeds a new cluster.
        let strip = |c: &FileConfig| FileConfig { tags: Default::default(), dynamic: Default::default(), ..c.clone() };
        let restart_needed = old.as_ref().is_some_and(|o| strip(o) != strip(&file));
        self.apply_tags(&self.veto.fold(published_tags(&resolved.tags, self.refusal.is_set()))).await?;
        if let Some(current) = self.current.lock().expect("reload lock poisoned").as_mut() {
            // Only what was applied: a later reload still reports the rest.
            current.tags = file.tags.clone();
        }
        let mut msg = Vec::new();
        if tags_changed {
            msg.push("tags applied");
        }
        if restart_needed {
            msg.push("other changes need a restart");
        }
        if msg.is_empty() {
            msg.push("nothing changed");
        }
        Ok(format!("reloaded: {}", msg.join("; ")))
    }

    async fn apply_tags(&self, tags: &raftgres_storage::Tags) -> Result<(), OpError> {
        let state = self.handle.cluster_state();
        if state.member(self.node).is_none_or(|m| &m.tags == tags) {
            return Ok(());
        }
        let p = self.handle.propose(Command::SetMemberTags { node: self.node, tags: tags.clone() }).await?;
        p.outcome.map_err(OpError::from)?;
        Ok(())
    }
}
