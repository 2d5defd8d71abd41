//! How runs end: the result of a bring-up, a task's exit, and the restarts the policy asks for
//! when their back-off is due.

use berth_proto::clock::now_ms;
use berth_proto::node::{ContainerState, GroupPhase};
use tokio::time::Instant;

use super::bring_up::{BringUp, StartFailure};
use super::status::{exit_detail, mark_started, terminated, waiting};
use super::{WARNING, Worker};
use crate::runtime::containerd::logs;
use crate::runtime::restart::START_ERROR_EXIT;
use crate::runtime::{RunEnd, record};

impl Worker {
    pub(super) fn finish_bring_up(&mut self, result: Result<BringUp, StartFailure>) {
        match result {
            Ok(up) => {
                self.init_backoff.reset();
                for (i, started) in up.started {
                    match started {
                        Ok((pid, _)) => self.watch(i, pid),
                        Err(reason) => {
                            self.handle.start_failed(i, &reason);
                            self.after_exit(i, RunEnd::CouldNotStart, now_ms());
                        }
                    }
                }
                self.settle_phase();
            }
            // Only a halt cancels, and it discards the result: nothing to do.
            Err(StartFailure::Cancelled) => {}
            Err(StartFailure::Group { code, message }) => {
                let now = now_ms();
                self.handle.update(|s| {
                    record(&mut s.events, now, WARNING, code, message);
                    s.phase = GroupPhase::Failed as i32;
                    s.run_finished_unix_ms = now;
                    for c in &mut s.containers {
                        if c.current
                            .as_ref()
                            .is_some_and(|r| r.state == ContainerState::Waiting as i32)
                        {
                            c.current = Some(waiting(code));
                        }
                    }
                });
            }
            Err(StartFailure::Init { slot, exit_code }) => {
                let name = self
                    .slots
                    .get(slot)
                    .map(|s| s.spec.name.clone())
                    .unwrap_or_default();
                let (policy, schedule) = (self.policy, self.schedule());
                let end = RunEnd::Exited(exit_code);
                if self
                    .init_backoff
                    .ended(Instant::now(), policy, end, schedule)
                    .is_some()
                {
                    self.handle.event(
                        Some(slot),
                        WARNING,
                        "BackOff",
                        format!("Back-off restarting failed container {name}"),
                    );
                    self.handle.container(slot, |c| c.restart_count += 1);
                } else {
                    let now = now_ms();
                    self.handle.update(|s| {
                        record(
                            &mut s.events,
                            now,
                            WARNING,
                            "Failed",
                            format!("init container {name} exited with code {exit_code}"),
                        );
                        s.phase = GroupPhase::Failed as i32;
                        s.run_finished_unix_ms = now;
                    });
                }
            }
        }
    }

    pub(super) fn exited(&mut self, id: &str, pid: u32, exit_status: u32, at_ms: i64) {
        let Some(i) = self.slots.iter().position(|s| s.id == id) else {
            return;
        };
        if self.slots[i].pid != pid || pid == 0 {
            return; // An older task, or one we stopped on purpose.
        }
        let unhealthy = self.slots[i].unhealthy;
        self.slots[i].forget_task();
        let code = i32::try_from(exit_status).unwrap_or(i32::MAX);
        let end = if unhealthy {
            RunEnd::Unhealthy
        } else {
            RunEnd::Exited(code)
        };
        self.after_exit_with(i, end, code, at_ms, exit_detail(code));
        self.settle_phase();
    }

    /// Records the end of slot `i`'s run (`end`) and applies the restart policy.
    pub(super) fn after_exit(&mut self, i: usize, end: RunEnd, at_ms: i64) {
        let (code, detail) = match end {
            RunEnd::Exited(code) => (code, exit_detail(code)),
            RunEnd::CouldNotStart => (START_ERROR_EXIT, "StartError"),
            RunEnd::Unhealthy => (137, "Killed"),
        };
        self.after_exit_with(i, end, code, at_ms, detail);
    }

    fn after_exit_with(&mut self, i: usize, end: RunEnd, exit_code: i32, at_ms: i64, detail: &str) {
        let (policy, schedule) = (self.policy, self.schedule());
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let name = slot.spec.name.clone();
        let restart = slot
            .backoff
            .ended(Instant::now(), policy, end, schedule)
            .is_some();
        self.handle.update(|s| {
            let Some(c) = s.containers.get_mut(i) else {
                return;
            };
            let start = c.current.as_ref().map_or(0, |r| r.start_time_unix_ms);
            let run = terminated(start, at_ms, exit_code, detail);
            if exit_code != 0 {
                record(
                    &mut c.events,
                    at_ms,
                    WARNING,
                    "Failed",
                    format!("container {name} exited with code {exit_code}"),
                );
            }
            if restart {
                c.previous = Some(run);
                c.current = Some(waiting("CrashLoopBackOff"));
                record(
                    &mut c.events,
                    at_ms,
                    WARNING,
                    "BackOff",
                    format!("Back-off restarting failed container {name}"),
                );
            } else {
                c.current = Some(run);
            }
        });
    }

    /// Restarts what is due: back-off expired.
    pub(super) async fn due(&mut self) {
        let now = Instant::now();
        if self.init_backoff.take_due(now)
            && let Some(assignment) = self.assignment.clone()
        {
            self.begin_bring_up(assignment);
        }
        for i in 0..self.slots.len() {
            if !self.slots[i].backoff.take_due(now) {
                continue;
            }
            let id = self.slots[i].id.clone();
            let name = self.slots[i].spec.name.clone();
            let dir = self.inner.log_dir(&self.group_id(), &name);
            if let Err(error) = logs::begin_run(&dir) {
                tracing::warn!(%error, "cannot rotate the previous run's logs");
            }
            match self
                .inner
                .cd
                .start_task(&id, &self.inner.stdio_uri(&dir))
                .await
            {
                Ok(pid) => {
                    let now = now_ms();
                    self.handle.container(i, |c| {
                        c.restart_count += 1;
                        mark_started(c, now);
                    });
                    self.watch(i, pid);
                }
                Err(status) => {
                    self.handle.container(i, |c| c.restart_count += 1);
                    self.handle.start_failed(i, status.message());
                    self.after_exit(i, RunEnd::CouldNotStart, now_ms());
                }
            }
        }
        self.settle_phase();
    }
}
