//! One group's worker: a task that owns everything the node does for the group and takes commands
//! (start, stop, remove), container exits and probe verdicts one at a time, so no two actions on a
//! group ever race.
//!
//! A run goes: pull every image (event `Pulling`, billing starts) → sandbox (network namespace, IP,
//! hosts/resolv.conf/hostname) → volumes (a gitRepo clone once the network is attached, in it) →
//! init containers, in order, each to completion → every app container (`Created`, `Started`)
//! ([`bring_up`]). Exits come from a waiter per task (containerd's `Tasks.Wait`, itself fed by
//! containerd's task-exit events) and go through the restart policy with exponential back-off
//! (`BackOff`, [`crate::runtime::restart`]; [`exits`]). Each running app container has its liveness
//! and readiness probers ([`probes`]). The bring-up runs on a task of its own: a stop or removal that
//! arrives mid-way cancels it, waits until the step in flight has finished, and tears down whatever
//! it had made ([`halt`]), which every step allows (all idempotent). [`adopt`] takes over what a
//! previous agent ran.
//!
//! - `status`: the shared, saved status and the container runs it is made of.
//! - `readiness`: the ready bits and `not_ready` (pure).
//! - `etc`: the group's `/etc/hosts`, `/etc/resolv.conf` and hostname.

mod adopt;
mod bring_up;
mod exits;
mod halt;
mod probes;
mod readiness;
mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::clock::now_ms;
use berth_proto::node::{Container, ContainerState, ContainerStatus, GroupAssignment, GroupPhase};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::bring_up::{BringUp, StartFailure};
pub(super) use self::status::{StatusHandle, container_id};
use self::status::{waiting, write_atomic};
use super::Inner;
use super::probe::{ProbeKind, Verdict};
use crate::runtime::RestartPolicy;
use crate::runtime::restart::{BackOff, Schedule};

const NORMAL: &str = "Normal";
const WARNING: &str = "Warning";

/// What a worker is asked to do.
#[derive(Debug)]
pub(super) enum Command {
    Start(GroupAssignment),
    Stop(GroupAssignment),
    Remove,
    /// The task of container `id` (with process `pid`) exited.
    Exited {
        id: String,
        pid: u32,
        exit_status: u32,
        at_ms: i64,
    },
    /// A prober of container `id`'s task `pid` reports a change (see [`super::probe`]).
    Probed {
        id: String,
        pid: u32,
        kind: ProbeKind,
        verdict: Verdict,
    },
}

/// One container of the group as the worker tracks it.
#[derive(Debug)]
struct Slot {
    id: String,
    spec: Container,
    init: bool,
    /// The pid of the task whose exit counts; 0 when none runs.
    pid: u32,
    backoff: BackOff,
    /// Its task's failed liveness probe got it killed: its exit is that, whatever the exit code.
    unhealthy: bool,
    /// What watches the current task (its waiter, probers, a liveness kill in progress); aborted
    /// when the task is forgotten.
    watchers: Vec<AbortHandle>,
}

impl Slot {
    fn forget_task(&mut self) {
        self.pid = 0;
        self.unhealthy = false;
        for watcher in self.watchers.drain(..) {
            watcher.abort();
        }
    }
}

/// A bring-up in progress, on a task of its own.
struct Running {
    task: JoinHandle<Result<BringUp, StartFailure>>,
    /// Asks it to stop at its next safe point (between steps, or while it only waits).
    cancel: CancellationToken,
}

/// What woke the worker up (short-lived, on the stack: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Wake {
    BroughtUp(Result<BringUp, StartFailure>),
    Due,
    Command(Option<Command>),
}

pub(super) struct Worker {
    inner: Arc<Inner>,
    handle: StatusHandle,
    rx: mpsc::UnboundedReceiver<Command>,
    tx: mpsc::UnboundedSender<Command>,
    assignment: Option<GroupAssignment>,
    policy: RestartPolicy,
    slots: Vec<Slot>,
    bring_up: Option<Running>,
    /// The back-off of a failed init sequence (its restart: the next bring-up).
    init_backoff: BackOff,
}

impl Worker {
    pub(super) fn new(
        inner: Arc<Inner>,
        handle: StatusHandle,
        rx: mpsc::UnboundedReceiver<Command>,
        tx: mpsc::UnboundedSender<Command>,
    ) -> Self {
        Self {
            inner,
            handle,
            rx,
            tx,
            assignment: None,
            policy: RestartPolicy::Always,
            slots: Vec::new(),
            bring_up: None,
            init_backoff: BackOff::default(),
        }
    }

    fn group_id(&self) -> String {
        self.handle.group_id.clone()
    }

    /// How restarts wait on this node.
    fn schedule(&self) -> Schedule {
        Schedule {
            first: self.inner.config.restart_backoff,
            max: self.inner.config.restart_backoff_max,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| s.backoff.restart_at())
            .chain(self.init_backoff.restart_at())
            .min()
    }

    /// Runs until the group is removed.
    pub(super) async fn run(mut self, adopt: Option<GroupAssignment>) {
        if let Some(assignment) = adopt {
            self.adopt(assignment).await;
        }
        loop {
            let deadline = self.next_deadline();
            let wake = {
                let bring_up = &mut self.bring_up;
                let rx = &mut self.rx;
                tokio::select! {
                    result = async {
                        match bring_up.as_mut() {
                            Some(running) => (&mut running.task).await,
                            None => std::future::pending().await,
                        }
                    } => Wake::BroughtUp(result.unwrap_or_else(|error| {
                        Err(StartFailure::Group {
                            code: "Failed",
                            message: format!("the node's bring-up of the group failed: {error}"),
                        })
                    })),
                    () = async {
                        match deadline {
                            Some(deadline) => tokio::time::sleep_until(deadline).await,
                            None => std::future::pending().await,
                        }
                    } => Wake::Due,
                    command = rx.recv() => Wake::Command(command),
                }
            };
            match wake {
                Wake::BroughtUp(result) => {
                    self.bring_up = None;
                    self.finish_bring_up(result);
                }
                Wake::Due => self.due().await,
                Wake::Command(Some(Command::Start(assignment))) => self.start(assignment).await,
                Wake::Command(Some(Command::Stop(assignment))) => self.stop(Some(assignment)).await,
                Wake::Command(Some(Command::Exited {
                    id,
                    pid,
                    exit_status,
                    at_ms,
                })) => self.exited(&id, pid, exit_status, at_ms),
                Wake::Command(Some(Command::Probed {
                    id,
                    pid,
                    kind,
                    verdict,
                })) => self.probed(&id, pid, kind, verdict),
                Wake::Command(Some(Command::Remove) | None) => {
                    self.remove().await;
                    return;
                }
            }
        }
    }

    fn plan(&mut self, assignment: &GroupAssignment) {
        let spec = assignment.spec.clone().unwrap_or_default();
        self.policy = RestartPolicy::parse(&spec.restart_policy);
        let group_id = self.group_id();
        self.slots = spec
            .init_containers
            .iter()
            .enumerate()
            .map(|(i, c)| (container_id(&group_id, true, i), c.clone(), true))
            .chain(
                spec.containers
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (container_id(&group_id, false, i), c.clone(), false)),
            )
            .map(|(id, spec, init)| Slot {
                id,
                spec,
                init,
                pid: 0,
                backoff: BackOff::default(),
                unhealthy: false,
                watchers: Vec::new(),
            })
            .collect();
        // A container with a readiness probe is not ready until its probe passes.
        let probed = self
            .slots
            .iter()
            .map(|s| (!s.init && s.spec.readiness_probe.is_some()).then_some(false))
            .collect();
        self.handle.set_probed(probed);
    }

    /// Begins a new run of `assignment` (after stopping whatever runs).
    async fn start(&mut self, assignment: GroupAssignment) {
        self.halt().await;
        let path = self.inner.group_dir(&self.group_id()).join("assignment.pb");
        if let Err(error) = write_atomic(&path, &assignment.encode_to_vec()) {
            tracing::warn!(group = %self.group_id(), %error, "cannot save the assignment");
        }
        self.plan(&assignment);
        let now = now_ms();
        let names: Vec<(String, bool)> = self
            .slots
            .iter()
            .map(|s| (s.spec.name.clone(), s.init))
            .collect();
        let (generation, placement) = (assignment.generation, assignment.placement);
        self.handle.update(|s| {
            s.generation = generation;
            s.placement = placement;
            s.phase = GroupPhase::Pending as i32;
            s.run_started_unix_ms = now;
            s.run_finished_unix_ms = 0;
            // Containers keep their history (restart count, previous run, events) if they keep their name.
            let mut old: HashMap<String, ContainerStatus> = s
                .containers
                .drain(..)
                .map(|c| (c.name.clone(), c))
                .collect();
            for (name, init) in &names {
                let mut c = old.remove(name).unwrap_or_else(|| ContainerStatus {
                    name: name.clone(),
                    init: *init,
                    ..Default::default()
                });
                if let Some(current) = c.current.take()
                    && current.state != ContainerState::Waiting as i32
                {
                    c.previous = Some(current);
                }
                c.current = Some(waiting(if *init { "Waiting" } else { "PodInitializing" }));
                s.containers.push(c);
            }
        });
        self.assignment = Some(assignment.clone());
        self.begin_bring_up(assignment);
    }

    /// Starts bringing `assignment` up on a task of its own.
    fn begin_bring_up(&mut self, assignment: GroupAssignment) {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(bring_up::bring_up(
            Arc::clone(&self.inner),
            self.handle.clone(),
            assignment,
            cancel.clone(),
        ));
        self.bring_up = Some(Running { task, cancel });
    }

    /// Spawns the waiter of slot `i`'s task (whose process is `pid`), and its probers.
    fn watch(&mut self, i: usize, pid: u32) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        slot.forget_task();
        slot.pid = pid;
        slot.backoff.started(Instant::now());
        let cd = self.inner.cd.clone();
        let tx = self.tx.clone();
        let id = slot.id.clone();
        let waiter = tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match cd.wait(&id).await {
                    Ok((exit_status, at_ms)) => {
                        let _ = tx.send(Command::Exited {
                            id,
                            pid,
                            exit_status,
                            at_ms,
                        });
                        return;
                    }
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        // The task is gone (deleted behind our back): count it as killed.
                        let _ = tx.send(Command::Exited {
                            id,
                            pid,
                            exit_status: 137,
                            at_ms: now_ms(),
                        });
                        return;
                    }
                    Err(status) => {
                        // containerd restarting: its shims keep the task; wait again.
                        tracing::debug!(container = %id, %status, "waiting on the task again");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        slot.watchers.push(waiter.abort_handle());
        self.spawn_probers(i, pid);
    }

    /// Sets the group phase from its app containers once the bring-up is over.
    fn settle_phase(&mut self) {
        if self.bring_up.is_some() || self.init_backoff.restart_at().is_some() {
            return;
        }
        let apps: Vec<&Slot> = self.slots.iter().filter(|s| !s.init).collect();
        let live = apps
            .iter()
            .any(|s| s.pid != 0 || s.backoff.restart_at().is_some());
        let status = self.handle.get();
        if status.phase == GroupPhase::Failed as i32 && apps.iter().all(|s| s.pid == 0) {
            return;
        }
        let (phase, finished) = if live {
            (GroupPhase::Running, 0)
        } else {
            let containers = status.containers.iter().filter(|c| !c.init);
            let mut failed = false;
            let mut last = 0;
            for c in containers {
                if let Some(run) = &c.current {
                    failed |= run.exit_code != 0;
                    last = last.max(run.finish_time_unix_ms);
                }
            }
            let phase = if failed {
                GroupPhase::Failed
            } else {
                GroupPhase::Succeeded
            };
            (phase, if last == 0 { now_ms() } else { last })
        };
        if status.phase != phase as i32 || status.run_finished_unix_ms != finished {
            self.handle.update(|s| {
                s.phase = phase as i32;
                s.run_finished_unix_ms = finished;
            });
        }
    }
}
