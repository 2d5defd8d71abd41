//! The worker's side of probes: a running app container's liveness and readiness probers, and what
//! their verdicts do (ready bits, `Unhealthy` and `Killing` events, a kill the restart policy then
//! judges as [`RunEnd::Unhealthy`]).

use std::sync::Arc;

use super::halt::terminate;
use super::{Command, NORMAL, WARNING, Worker};
use crate::runtime::RunEnd;
use crate::runtime::containerd::probe::{self, ProbeKind, Target, Verdict};

impl Worker {
    /// Starts the liveness and readiness probers of slot `i`'s task `pid` (app containers only);
    /// they go with the task (they are among its watchers). A container with a readiness probe is
    /// not ready until its prober says so.
    pub(super) fn spawn_probers(&mut self, i: usize, pid: u32) {
        let group_id = self.group_id();
        let ip = self.handle.get().ip.parse().ok();
        let netns = self.inner.network.netns_path(&group_id);
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        if slot.init {
            return;
        }
        if slot.spec.readiness_probe.is_some() {
            self.handle.set_ready(i, false);
        }
        let probes = [
            (ProbeKind::Liveness, slot.spec.liveness_probe.clone()),
            (ProbeKind::Readiness, slot.spec.readiness_probe.clone()),
        ];
        for (kind, probe) in probes {
            let Some(probe) = probe else {
                continue;
            };
            let target = Target {
                container_id: slot.id.clone(),
                pid,
                netns: netns.clone(),
                ip,
            };
            let (tx, id) = (self.tx.clone(), slot.id.clone());
            let report = move |verdict| {
                let _ = tx.send(Command::Probed {
                    id: id.clone(),
                    pid,
                    kind,
                    verdict,
                });
            };
            let prober = probe::spawn(Arc::clone(&self.inner), target, kind, probe, report);
            slot.watchers.push(prober);
        }
    }

    /// A prober of container `id`'s task `pid` reports `verdict` (stale ones, of an earlier task,
    /// are ignored).
    pub(super) fn probed(&mut self, id: &str, pid: u32, kind: ProbeKind, verdict: Verdict) {
        let Some(i) = self.slots.iter().position(|s| s.id == id) else {
            return;
        };
        if self.slots[i].pid != pid || pid == 0 {
            return;
        }
        tracing::debug!(container = %id, ?kind, ?verdict, "probe verdict");
        match verdict {
            Verdict::Ready { ready, output } => {
                // The event first: whoever sees the container not ready sees why.
                if !ready {
                    let message = format!("Readiness probe failed: {output}");
                    self.handle.event(Some(i), WARNING, "Unhealthy", message);
                }
                self.handle.set_ready(i, ready);
            }
            Verdict::Unhealthy { output } => self.kill_unhealthy(i, &output),
        }
    }

    /// Slot `i`'s liveness probe failed: `Unhealthy` and `Killing`, then SIGTERM and, after the
    /// stop grace, SIGKILL; its exit goes through the restart policy as [`RunEnd::Unhealthy`].
    fn kill_unhealthy(&mut self, i: usize, output: &str) {
        let restarts = self.policy.restarts(RunEnd::Unhealthy);
        let grace = self.inner.config.stop_grace;
        let cd = self.inner.cd.clone();
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        if slot.unhealthy {
            return; // Already being killed.
        }
        slot.unhealthy = true;
        let name = slot.spec.name.clone();
        let id = slot.id.clone();
        let killer = tokio::spawn(async move { terminate(&cd, &id, grace).await });
        slot.watchers.push(killer.abort_handle());
        let failed = format!("Liveness probe failed: {output}");
        self.handle.event(Some(i), WARNING, "Unhealthy", failed);
        let then = if restarts {
            "will be restarted"
        } else {
            "will be killed"
        };
        let killing = format!("Container {name} failed liveness probe, {then}");
        self.handle.event(Some(i), NORMAL, "Killing", killing);
    }
}
