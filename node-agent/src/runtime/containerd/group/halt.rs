//! Ending a run: halting (every task stopped and deleted), stopping and removing a group.

use std::time::Duration;

use berth_proto::clock::now_ms;
use berth_proto::node::{ContainerState, GroupAssignment, GroupPhase};

use super::status::terminated;
use super::{NORMAL, Worker};
use crate::runtime::containerd::LABEL_GROUP;
use crate::runtime::containerd::client::Containerd;

/// Stops task `id` gracefully: SIGTERM, `grace` to exit, then SIGKILL (and up to 10 s more).
pub(super) async fn terminate(cd: &Containerd, id: &str, grace: Duration) {
    let _ = cd.kill(id, 15).await;
    if tokio::time::timeout(grace, cd.wait(id)).await.is_err() {
        let _ = cd.kill(id, 9).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), cd.wait(id)).await;
    }
}

impl Worker {
    /// Stops every task gracefully (SIGTERM, grace period, SIGKILL) and deletes the tasks; containers,
    /// sandbox and volumes stay.
    ///
    /// A bring-up in progress is cancelled first and waited for: the step it was in (a netns being
    /// pinned, a CNI ADD, a container or task being created) finishes, so what it makes is there to
    /// be stopped and torn down rather than appearing after the teardown.
    pub(super) async fn halt(&mut self) {
        if let Some(running) = self.bring_up.take() {
            running.cancel.cancel();
            // Its result is discarded: whatever it started is stopped below.
            let _ = running.task.await;
        }
        self.init_backoff.cancel();
        let group_id = self.group_id();
        let containers = self
            .inner
            .cd
            .containers_labelled(LABEL_GROUP, Some(&group_id))
            .await
            .unwrap_or_default();
        let mut running = Vec::new();
        for slot in &mut self.slots {
            slot.forget_task();
            slot.backoff.cancel();
        }
        for container in &containers {
            if let Ok(Some(task)) = self.inner.cd.task(&container.id).await
                && task.running
            {
                running.push(container.id.clone());
            }
        }
        let now = now_ms();
        if !running.is_empty() {
            let grace = self.inner.config.stop_grace;
            let stops = running
                .iter()
                .map(|id| terminate(&self.inner.cd, id, grace));
            for (i, slot) in self.slots.iter().enumerate() {
                if running.contains(&slot.id) {
                    self.handle.event(
                        Some(i),
                        NORMAL,
                        "Killing",
                        format!("Stopping container {}", slot.spec.name),
                    );
                }
            }
            futures::future::join_all(stops).await;
        }
        for container in &containers {
            let _ = self.inner.cd.delete_task(&container.id).await;
        }
        let ids: Vec<String> = running;
        let done = now_ms().max(now);
        self.handle.update(|s| {
            for (c, slot) in s.containers.iter_mut().zip(&self.slots) {
                let was_running = c
                    .current
                    .as_ref()
                    .is_some_and(|r| r.state == ContainerState::Running as i32);
                if was_running || ids.contains(&slot.id) {
                    let start = c.current.as_ref().map_or(0, |r| r.start_time_unix_ms);
                    c.current = Some(terminated(start, done, 143, "Killed"));
                }
            }
        });
    }

    pub(super) async fn stop(&mut self, assignment: Option<GroupAssignment>) {
        self.halt().await;
        let epochs = assignment.map(|a| (a.generation, a.placement));
        let now = now_ms();
        self.handle.update(|s| {
            if let Some((generation, placement)) = epochs {
                s.generation = generation;
                s.placement = placement;
            }
            s.phase = GroupPhase::Stopped as i32;
            if s.run_finished_unix_ms == 0 {
                s.run_finished_unix_ms = now;
            }
        });
    }

    /// Tears everything of the group down and forgets it.
    pub(super) async fn remove(&mut self) {
        self.halt().await;
        let group_id = self.group_id();
        self.inner.teardown(&group_id).await;
        self.inner.forget(&group_id);
    }
}
