//! Taking over a group a previous agent ran.

use berth_proto::clock::now_ms;
use berth_proto::node::{ContainerState, GroupAssignment, GroupPhase};
use tokio::time::Instant;

use super::Worker;
use crate::runtime::RunEnd;

impl Worker {
    /// Takes over a group a previous agent ran: tasks that still run are watched again (not
    /// restarted), tasks that ended meanwhile go through the restart policy.
    pub(super) async fn adopt(&mut self, assignment: GroupAssignment) {
        self.plan(&assignment);
        self.assignment = Some(assignment.clone());
        let status = self.handle.get();
        let phase = GroupPhase::try_from(status.phase).unwrap_or(GroupPhase::Pending);
        match phase {
            GroupPhase::Pending => {
                // Died mid bring-up: do it again (every step is idempotent).
                self.start(assignment).await;
                return;
            }
            GroupPhase::Stopped | GroupPhase::Removed | GroupPhase::Unspecified => return,
            GroupPhase::Running | GroupPhase::Succeeded | GroupPhase::Failed => {}
        }
        for i in 0..self.slots.len() {
            if self.slots[i].init {
                continue;
            }
            let id = self.slots[i].id.clone();
            let current = status.containers.get(i).and_then(|c| c.current.clone());
            let state = current.as_ref().map_or(0, |r| r.state);
            match self.inner.cd.task(&id).await {
                Ok(Some(task)) if task.running => self.watch(i, task.pid),
                Ok(Some(task)) if state == ContainerState::Running as i32 => {
                    let code = i32::try_from(task.exit_status).unwrap_or(i32::MAX);
                    let at = if task.exited_at_ms > 0 {
                        task.exited_at_ms
                    } else {
                        now_ms()
                    };
                    self.after_exit(i, RunEnd::Exited(code), at);
                }
                Ok(None) if state == ContainerState::Running as i32 => {
                    self.after_exit(i, RunEnd::Exited(137), now_ms());
                }
                _ if state == ContainerState::Waiting as i32 && phase == GroupPhase::Running => {
                    // It was in back-off: restart it after the back-off its count implies.
                    let restarts = status.containers.get(i).map_or(0, |c| c.restart_count);
                    let schedule = self.schedule();
                    self.slots[i]
                        .backoff
                        .resume(restarts, Instant::now(), schedule);
                }
                _ => {}
            }
        }
        self.settle_phase();
    }
}
