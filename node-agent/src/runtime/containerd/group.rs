//! One group's worker: a task that owns everything the node does for the group and takes commands
//! (start, stop, remove) and container exits one at a time, so no two actions on a group ever race.
//!
//! A run goes: pull every image (event `Pulling`, billing starts) → sandbox (network namespace, IP,
//! hosts/resolv.conf/hostname) → volumes (a gitRepo clone once the network is attached, in it) →
//! init containers, in order, each to completion → every app container (`Created`, `Started`). Exits come from a waiter per task (containerd's `Tasks.Wait`,
//! itself fed by containerd's task-exit events) and go through the restart policy with exponential
//! back-off (`BackOff`). The bring-up is one cancellable future: a stop or removal that arrives
//! mid-way drops it and tears down whatever it had made, which every step allows (all idempotent).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_proto::clock::now_ms;
use berth_proto::node::{
    Container, ContainerRun, ContainerState, ContainerStatus, GroupAssignment, GroupPhase,
    GroupStatus,
};
use futures::future::Either;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::Inner;
use super::image::{ImageConfig, PulledImage};
use super::logs;
use super::network::{PortSpec, Protocol};
use super::resolv;
use super::spec::{self, SpecContext};
use super::volumes;
use crate::runtime::{RestartPolicy, record};

const NORMAL: &str = "Normal";
const WARNING: &str = "Warning";
/// The exit code reported for a container whose process could not be started (as Kubernetes does).
const START_ERROR_EXIT: i32 = 128;
/// A container that ran this long without exiting starts its back-off afresh.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

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
    // TODO(restart lane): act on it: ready bits and `not_ready`, `Unhealthy`/`Killing`, kill and
    // restart by the policy.
    #[allow(dead_code)]
    Probed {
        id: String,
        pid: u32,
        kind: super::probe::ProbeKind,
        verdict: super::probe::Verdict,
    },
}

/// The group's observed status, shared with [`super::ContainerdRuntime::status`]; every change is
/// saved to the group's directory (so a restarted agent knows it) and announced.
#[derive(Clone)]
pub(super) struct StatusHandle {
    pub status: Arc<Mutex<GroupStatus>>,
    inner: Arc<Inner>,
    group_id: String,
}

impl StatusHandle {
    pub(super) fn new(inner: Arc<Inner>, status: GroupStatus) -> Self {
        Self {
            group_id: status.group_id.clone(),
            status: Arc::new(Mutex::new(status)),
            inner,
        }
    }

    pub(super) fn get(&self) -> GroupStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn update(&self, change: impl FnOnce(&mut GroupStatus)) {
        let snapshot = {
            let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            change(&mut status);
            status.observed_unix_ms = now_ms();
            status.clone()
        };
        let path = self.inner.group_dir(&self.group_id).join("status.pb");
        if let Err(error) = write_atomic(&path, &snapshot.encode_to_vec()) {
            tracing::warn!(group = %self.group_id, %error, "cannot save the group's status");
        }
        self.inner.changes.mark(&self.group_id);
    }

    pub(super) fn event(&self, container: Option<usize>, kind: &str, name: &str, message: String) {
        let now = now_ms();
        self.update(|s| {
            let events = match container {
                Some(i) => match s.containers.get_mut(i) {
                    Some(c) => &mut c.events,
                    None => return,
                },
                None => &mut s.events,
            };
            record(events, now, kind, name, message);
        });
    }

    /// The `Failed` event of container `i` whose process could not be started.
    fn start_failed(&self, i: usize, reason: &str) {
        let message = format!("Error: failed to start container: {reason}");
        self.event(Some(i), WARNING, "Failed", message);
    }

    fn container(&self, i: usize, change: impl FnOnce(&mut ContainerStatus)) {
        self.update(|s| {
            if let Some(c) = s.containers.get_mut(i) {
                change(c);
            }
        });
    }
}

pub(super) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
    }
    std::fs::rename(tmp, path)
}

fn waiting(detail: &str) -> ContainerRun {
    ContainerRun {
        state: ContainerState::Waiting as i32,
        detail_status: detail.to_string(),
        ..Default::default()
    }
}

fn running(start_ms: i64) -> ContainerRun {
    ContainerRun {
        state: ContainerState::Running as i32,
        start_time_unix_ms: start_ms,
        ..Default::default()
    }
}

/// Container `c` runs from `now`, with its `Started` event.
fn mark_started(c: &mut ContainerStatus, now: i64) {
    c.current = Some(running(now));
    let message = format!("Started container {}", c.name);
    record(&mut c.events, now, NORMAL, "Started", message);
}

fn terminated(start_ms: i64, finish_ms: i64, exit_code: i32, detail: &str) -> ContainerRun {
    ContainerRun {
        state: ContainerState::Terminated as i32,
        start_time_unix_ms: start_ms,
        finish_time_unix_ms: finish_ms,
        exit_code,
        detail_status: detail.to_string(),
    }
}

fn exit_detail(exit_code: i32) -> &'static str {
    match exit_code {
        0 => "Completed",
        137 => "Killed",
        _ => "Error",
    }
}

/// The containerd id of container `index` of a group (`i` init, `c` app): short enough for
/// containerd's 76-character limit whatever the container's name.
pub(super) fn container_id(group_id: &str, init: bool, index: usize) -> String {
    format!("{group_id}-{}{index}", if init { 'i' } else { 'c' })
}

/// One container of the group as the worker tracks it.
#[derive(Debug)]
struct Slot {
    id: String,
    spec: Container,
    init: bool,
    /// The pid of the task whose exit counts; 0 when none runs.
    pid: u32,
    started: Option<Instant>,
    backoff_step: u32,
    restart_at: Option<Instant>,
    waiter: Option<AbortHandle>,
}

impl Slot {
    fn forget_task(&mut self) {
        self.pid = 0;
        if let Some(waiter) = self.waiter.take() {
            waiter.abort();
        }
    }
}

/// How starting one app container went: its pid and start time, or why it could not start.
type Started = Result<(u32, i64), String>;

/// What a bring-up made: how each app container (by slot) started.
struct BringUp {
    started: Vec<(usize, Started)>,
}

/// Why a bring-up failed.
enum StartFailure {
    /// Shown as a group event with this ACI code as its name, and the group fails.
    Group { code: &'static str, message: String },
    /// Init container `slot` exited with `exit_code`.
    Init { slot: usize, exit_code: i32 },
}

/// What woke the worker up (short-lived, on the stack: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Wake {
    BroughtUp(Box<Result<BringUp, StartFailure>>),
    Due,
    Command(Option<Command>),
}

type BringUpFuture = Pin<Box<dyn Future<Output = Result<BringUp, StartFailure>> + Send>>;

pub(super) struct Worker {
    inner: Arc<Inner>,
    handle: StatusHandle,
    rx: mpsc::UnboundedReceiver<Command>,
    tx: mpsc::UnboundedSender<Command>,
    assignment: Option<GroupAssignment>,
    policy: RestartPolicy,
    slots: Vec<Slot>,
    bring_up: Option<BringUpFuture>,
    /// When a failed init sequence runs again.
    init_retry_at: Option<Instant>,
    init_backoff_step: u32,
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
            init_retry_at: None,
            init_backoff_step: 0,
        }
    }

    fn group_id(&self) -> String {
        self.handle.group_id.clone()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| s.restart_at)
            .chain(self.init_retry_at)
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
                let building = bring_up.is_some();
                tokio::select! {
                    result = async { bring_up.as_mut().expect("guarded by `building`").await }, if building => {
                        Wake::BroughtUp(Box::new(result))
                    }
                    () = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                        Wake::Due
                    }
                    command = rx.recv() => Wake::Command(command),
                }
            };
            match wake {
                Wake::BroughtUp(result) => {
                    self.bring_up = None;
                    self.finish_bring_up(*result).await;
                }
                Wake::Due => self.due().await,
                Wake::Command(Some(Command::Start(assignment))) => self.start(assignment).await,
                Wake::Command(Some(Command::Stop(assignment))) => self.stop(Some(assignment)).await,
                Wake::Command(Some(Command::Exited {
                    id,
                    pid,
                    exit_status,
                    at_ms,
                })) => self.exited(&id, pid, exit_status, at_ms).await,
                Wake::Command(Some(Command::Probed { .. })) => {}
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
                started: None,
                backoff_step: 0,
                restart_at: None,
                waiter: None,
            })
            .collect();
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
        self.bring_up = Some(Box::pin(bring_up(
            Arc::clone(&self.inner),
            self.handle.clone(),
            assignment,
        )));
    }

    async fn finish_bring_up(&mut self, result: Result<BringUp, StartFailure>) {
        match result {
            Ok(up) => {
                self.init_backoff_step = 0;
                for (i, started) in up.started {
                    match started {
                        Ok((pid, _)) => self.watch(i, pid),
                        Err(reason) => {
                            self.handle.start_failed(i, &reason);
                            self.after_exit(i, START_ERROR_EXIT, now_ms(), "StartError")
                                .await;
                        }
                    }
                }
                self.settle_phase();
            }
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
                if self.policy == RestartPolicy::Never {
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
                } else {
                    let delay = self.inner.backoff(self.init_backoff_step);
                    self.init_backoff_step += 1;
                    self.init_retry_at = Some(Instant::now() + delay);
                    self.handle.event(
                        Some(slot),
                        WARNING,
                        "BackOff",
                        format!("Back-off restarting failed container {name}"),
                    );
                    self.handle.container(slot, |c| c.restart_count += 1);
                }
            }
        }
    }

    /// Spawns the waiter of slot `i`'s task (whose process is `pid`).
    fn watch(&mut self, i: usize, pid: u32) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        slot.forget_task();
        slot.pid = pid;
        slot.started = Some(Instant::now());
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
        slot.waiter = Some(waiter.abort_handle());
    }

    async fn exited(&mut self, id: &str, pid: u32, exit_status: u32, at_ms: i64) {
        let Some(i) = self.slots.iter().position(|s| s.id == id) else {
            return;
        };
        if self.slots[i].pid != pid || pid == 0 {
            return; // An older task, or one we stopped on purpose.
        }
        self.slots[i].waiter = None;
        self.slots[i].pid = 0;
        let code = i32::try_from(exit_status).unwrap_or(i32::MAX);
        self.after_exit(i, code, at_ms, exit_detail(code)).await;
        self.settle_phase();
    }

    /// Records the end of slot `i`'s run and applies the restart policy.
    async fn after_exit(&mut self, i: usize, exit_code: i32, at_ms: i64, detail: &str) {
        let policy = self.policy;
        let restart = policy.restarts(exit_code);
        let name = self.slots[i].spec.name.clone();
        if self.slots[i]
            .started
            .is_some_and(|s| s.elapsed() >= BACKOFF_RESET)
        {
            self.slots[i].backoff_step = 0;
        }
        let step = self.slots[i].backoff_step;
        let delay = self.inner.backoff(step);
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
        if restart {
            self.slots[i].backoff_step = step + 1;
            self.slots[i].restart_at = Some(Instant::now() + delay);
        }
    }

    /// Restarts what is due: back-off expired.
    async fn due(&mut self) {
        let now = Instant::now();
        if self.init_retry_at.is_some_and(|t| t <= now) {
            self.init_retry_at = None;
            if let Some(assignment) = self.assignment.clone() {
                self.bring_up = Some(Box::pin(bring_up(
                    Arc::clone(&self.inner),
                    self.handle.clone(),
                    assignment,
                )));
            }
        }
        for i in 0..self.slots.len() {
            if self.slots[i].restart_at.is_none_or(|t| t > now) {
                continue;
            }
            self.slots[i].restart_at = None;
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
                    self.after_exit(i, START_ERROR_EXIT, now_ms(), "StartError")
                        .await;
                }
            }
        }
        self.settle_phase();
    }

    /// Sets the group phase from its app containers once the bring-up is over.
    fn settle_phase(&mut self) {
        if self.bring_up.is_some() || self.init_retry_at.is_some() {
            return;
        }
        let apps: Vec<&Slot> = self.slots.iter().filter(|s| !s.init).collect();
        let live = apps.iter().any(|s| s.pid != 0 || s.restart_at.is_some());
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

    /// Stops every task gracefully (SIGTERM, grace period, SIGKILL) and deletes the tasks; containers,
    /// sandbox and volumes stay.
    async fn halt(&mut self) {
        self.bring_up = None;
        self.init_retry_at = None;
        let group_id = self.group_id();
        let containers = self
            .inner
            .cd
            .containers_labelled(super::LABEL_GROUP, Some(&group_id))
            .await
            .unwrap_or_default();
        let mut running = Vec::new();
        for slot in &mut self.slots {
            slot.forget_task();
            slot.restart_at = None;
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
            let stops = running.iter().map(|id| {
                let cd = self.inner.cd.clone();
                async move {
                    let _ = cd.kill(id, 15).await;
                    if tokio::time::timeout(grace, cd.wait(id)).await.is_err() {
                        let _ = cd.kill(id, 9).await;
                        let _ = tokio::time::timeout(Duration::from_secs(10), cd.wait(id)).await;
                    }
                }
            });
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

    async fn stop(&mut self, assignment: Option<GroupAssignment>) {
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
    async fn remove(&mut self) {
        self.halt().await;
        let group_id = self.group_id();
        self.inner.teardown(&group_id).await;
        self.inner.forget(&group_id);
    }

    /// Takes over a group a previous agent ran: tasks that still run are watched again (not
    /// restarted), tasks that ended meanwhile go through the restart policy.
    async fn adopt(&mut self, assignment: GroupAssignment) {
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
                    self.after_exit(i, code, at, exit_detail(code)).await;
                }
                Ok(None) if state == ContainerState::Running as i32 => {
                    self.after_exit(i, 137, now_ms(), "Killed").await;
                }
                _ if state == ContainerState::Waiting as i32 && phase == GroupPhase::Running => {
                    // It was in back-off: restart it after the back-off its count implies.
                    let restarts = status.containers.get(i).map_or(0, |c| c.restart_count);
                    self.slots[i].backoff_step = restarts;
                    self.slots[i].restart_at = Some(Instant::now() + self.inner.backoff(restarts));
                }
                _ => {}
            }
        }
        self.settle_phase();
    }
}

/// The ports the sandbox exposes: its `ipAddress.ports`, none without an `ipAddress`. A container's own
/// `ports` only say what it listens on; as in ACI, nothing outside the group reaches them.
fn ports(assignment: &GroupAssignment) -> Vec<PortSpec> {
    let Some(spec) = &assignment.spec else {
        return Vec::new();
    };
    let mut out: Vec<PortSpec> = Vec::new();
    for port in spec.ip_address.iter().flat_map(|ip| ip.ports.iter()) {
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        let protocol = if port.protocol.eq_ignore_ascii_case("udp") {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        if !out
            .iter()
            .any(|p| p.port == number && p.protocol == protocol)
        {
            out.push(PortSpec {
                port: number,
                protocol,
            });
        }
    }
    out
}

/// Pulls, builds the sandbox and volumes, runs init containers and starts the app containers.
async fn bring_up(
    inner: Arc<Inner>,
    handle: StatusHandle,
    assignment: GroupAssignment,
) -> Result<BringUp, StartFailure> {
    let group_id = assignment.group_id.clone();
    let spec = assignment.spec.clone().unwrap_or_default();
    let all: Vec<(usize, &Container, bool)> = spec
        .init_containers
        .iter()
        .map(|c| (c, true))
        .chain(spec.containers.iter().map(|c| (c, false)))
        .enumerate()
        .map(|(i, (c, init))| (i, c, init))
        .collect();
    // Every rule the apiserver applied, once more before anything touches the node.
    if let Err(refusal) = berth_proto::spec::admit(&spec, inner.config.allow_privileged) {
        return Err(StartFailure::Group {
            code: "InvalidSpec",
            message: format!("the node refuses the group's spec: {refusal}"),
        });
    }

    // Images: each distinct one once, all at once.
    let mut images: HashMap<String, PulledImage> = HashMap::new();
    let distinct: Vec<String> = {
        let mut v: Vec<String> = all.iter().map(|(_, c, _)| c.image.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    for (i, c, _) in &all {
        handle.event(
            Some(*i),
            NORMAL,
            "Pulling",
            format!("pulling image \"{}\"", c.image),
        );
    }
    let pulls = distinct.iter().map(|image| {
        let inner = Arc::clone(&inner);
        let credentials = spec.registry_credentials.clone();
        async move {
            (
                image.clone(),
                inner.images.ensure(image, &credentials).await,
            )
        }
    });
    for (image, result) in futures::future::join_all(pulls).await {
        match result {
            Ok(pulled) => {
                for (i, c, _) in &all {
                    if c.image == image {
                        let how = if pulled.cached {
                            "already present on the node"
                        } else {
                            "pulled"
                        };
                        handle.event(
                            Some(*i),
                            NORMAL,
                            "Pulled",
                            format!("Successfully {how}: image \"{image}\""),
                        );
                    }
                }
                images.insert(image, pulled);
            }
            Err(error) => {
                for (i, c, _) in &all {
                    if c.image == image {
                        handle.event(Some(*i), WARNING, "Failed", error.to_string());
                    }
                }
                return Err(StartFailure::Group {
                    code: "InaccessibleImage",
                    message: format!(
                        "The image '{image}' in container group '{}' is not accessible: {error}",
                        spec.name
                    ),
                });
            }
        }
    }

    // The sandbox: a network namespace now, attached by CNI (the slow part) while the containers are
    // made; the files every container sees.
    let network_failure = |error: super::network::NetworkError| StartFailure::Group {
        code: "Failed",
        message: format!("cannot set up the group's network: {error}"),
    };
    let netns = inner
        .network
        .prepare(&group_id)
        .await
        .map_err(network_failure)?;
    let host = resolv::hostname(&spec.name);
    let etc_dir = inner.group_dir(&group_id).join("etc");
    let etc_files: Vec<(PathBuf, &'static str)> = vec![
        (etc_dir.join("hosts"), "/etc/hosts"),
        (etc_dir.join("resolv.conf"), "/etc/resolv.conf"),
        (etc_dir.join("hostname"), "/etc/hostname"),
    ];
    let io_failure = |error: std::io::Error| StartFailure::Group {
        code: "Failed",
        message: format!("cannot write the group's /etc files: {error}"),
    };
    std::fs::create_dir_all(&etc_dir).map_err(io_failure)?;
    // Rewritten in place (same inode, so bind mounts see it) once the IP is known.
    std::fs::write(&etc_files[0].0, resolv::hosts_file(None, &host)).map_err(io_failure)?;
    std::fs::write(
        &etc_files[1].0,
        resolv::resolv_conf(&spec, inner.dns_server(), &resolv::node_resolv_conf()),
    )
    .map_err(io_failure)?;
    std::fs::write(&etc_files[2].0, format!("{host}\n")).map_err(io_failure)?;
    let attach = {
        let inner = Arc::clone(&inner);
        let handle = handle.clone();
        let group_id = group_id.clone();
        let hosts_path = etc_files[0].0.clone();
        let host = host.clone();
        let ports = ports(&assignment);
        async move {
            let sandbox = inner
                .network
                .setup(&group_id, &ports)
                .await
                .map_err(network_failure)?;
            let ip = sandbox.ip.to_string();
            std::fs::write(&hosts_path, resolv::hosts_file(Some(&ip), &host))
                .map_err(io_failure)?;
            handle.update(|s| s.ip = ip.clone());
            Ok::<(), StartFailure>(())
        }
    };

    // Volumes, with secret files owned by the user of the first container that mounts them.
    let mut owners: HashMap<String, (u32, u32)> = HashMap::new();
    for (_, c, _) in &all {
        let Some(image) = images.get(&c.image) else {
            continue;
        };
        let user = spec::user(c, &image.config).unwrap_or(spec::User { uid: 0, gid: 0 });
        for mount in &c.volume_mounts {
            owners
                .entry(mount.name.clone())
                .or_insert((user.uid, user.gid));
        }
    }
    // A gitRepo clone runs in the group's network namespace, so it waits for CNI; other volumes are
    // made while CNI attaches.
    let git_sandbox = volumes::has_git_repo(&spec).then(|| volumes::git::GitSandbox {
        netns: netns.clone(),
        resolv_conf: etc_files[1].0.clone(),
        hosts: etc_files[0].0.clone(),
        staging: inner.group_dir(&group_id).join("git"),
        hide: [inner.dir.parent().unwrap_or(&inner.dir)]
            .into_iter()
            .chain(inner.config.share_root.as_deref())
            .map(PathBuf::from)
            .collect(),
    });
    let attach = match &git_sandbox {
        Some(_) => {
            attach.await?;
            Either::Left(futures::future::ready(Ok(())))
        }
        None => Either::Right(attach),
    };
    let prepared = volumes::prepare(
        &spec,
        &inner.group_dir(&group_id).join("volumes"),
        inner.config.share_root.as_deref(),
        &owners,
        git_sandbox.as_ref().map(|s| (&inner.config.git, s)),
    )
    .await
    .map_err(|error| StartFailure::Group {
        code: "Failed",
        message: error.to_string(),
    })?;

    // Every container's spec, checked before anything runs.
    let inits = spec.init_containers.len();
    let mut specs = Vec::new();
    for (i, c, init) in &all {
        let image = images
            .get(&c.image)
            .map(|p| p.config.clone())
            .unwrap_or_else(empty_config);
        let mounts = prepared
            .mounts_for(c)
            .map_err(|error| StartFailure::Group {
                code: "Failed",
                message: error.to_string(),
            })?;
        let ctx = SpecContext {
            hostname: &host,
            netns: &netns,
            etc_files: &etc_files,
            volumes: &mounts,
            cgroups_path: format!("/{}/{group_id}/{}", inner.config.cgroup_parent, c.name),
            allow_privileged: inner.config.allow_privileged,
        };
        let oci = spec::build(c, &image, &ctx).map_err(|error| StartFailure::Group {
            code: "Failed",
            message: error.to_string(),
        })?;
        let pulled = images.get(&c.image);
        specs.push(Planned {
            slot: *i,
            id: container_id(&group_id, *init, if *init { *i } else { *i - inits }),
            name: c.name.clone(),
            init: *init,
            oci,
            reference: pulled.map(|p| p.reference.clone()).unwrap_or_default(),
            chain: pulled.map(|p| p.chain_id.clone()).unwrap_or_default(),
        });
    }

    let placement = assignment.placement.to_string();
    let create = |planned: Planned| {
        let inner = Arc::clone(&inner);
        let handle = handle.clone();
        let group_id = group_id.clone();
        let placement = placement.clone();
        async move {
            let labels = HashMap::from([
                (super::LABEL_GROUP.to_string(), group_id.clone()),
                (super::LABEL_CONTAINER.to_string(), planned.name.clone()),
                (super::LABEL_INIT.to_string(), planned.init.to_string()),
                (super::LABEL_PLACEMENT.to_string(), placement),
            ]);
            inner
                .cd
                .create_container(
                    &planned.id,
                    &planned.reference,
                    &planned.chain,
                    &planned.oci,
                    labels,
                )
                .await
                .map_err(|s| s.message().to_string())?;
            handle.event(
                Some(planned.slot),
                NORMAL,
                "Created",
                format!("Created container {}", planned.name),
            );
            let dir = inner.log_dir(&group_id, &planned.name);
            logs::begin_run(&dir).map_err(|e| e.to_string())?;
            inner
                .cd
                .create_task(&planned.id, &inner.stdio_uri(&dir))
                .await
                .map_err(|s| s.message().to_string())?;
            Ok::<Planned, String>(planned)
        }
    };
    let start = |planned: Planned| {
        let inner = Arc::clone(&inner);
        let handle = handle.clone();
        async move {
            let pid = inner
                .cd
                .start_created(&planned.id)
                .await
                .map_err(|s| s.message().to_string())?;
            let now = now_ms();
            handle.container(planned.slot, |c| mark_started(c, now));
            Ok::<(u32, i64), String>((pid, now))
        }
    };
    let create_all = |planned: Vec<Planned>| {
        futures::future::join_all(planned.into_iter().map(|p| {
            let slot = p.slot;
            let fut = create(p);
            async move { (slot, fut.await) }
        }))
    };
    let (init_specs, app_specs): (Vec<Planned>, Vec<Planned>) =
        specs.into_iter().partition(|p| p.init);

    // Without init containers, CNI runs while the app containers' tasks are created; the processes
    // start once the network is up. With them, the network comes first.
    let created: Vec<(usize, Result<Planned, String>)> = if init_specs.is_empty() {
        let (attached, created) = tokio::join!(attach, create_all(app_specs));
        attached?;
        created
    } else {
        attach.await?;
        for planned in init_specs {
            let (slot, id) = (planned.slot, planned.id.clone());
            let started = match create(planned).await {
                Ok(planned) => start(planned).await,
                Err(reason) => Err(reason),
            };
            let started = match started {
                Ok((_, started)) => started,
                Err(reason) => {
                    handle.start_failed(slot, &reason);
                    let _ = inner.cd.destroy(&id).await;
                    return Err(StartFailure::Init {
                        slot,
                        exit_code: START_ERROR_EXIT,
                    });
                }
            };
            let (exit_status, at_ms) = loop {
                match inner.cd.wait(&id).await {
                    Ok(done) => break done,
                    Err(status) if status.code() == tonic::Code::NotFound => break (137, now_ms()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            let code = i32::try_from(exit_status).unwrap_or(i32::MAX);
            handle.container(slot, |c| {
                c.current = Some(terminated(started, at_ms, code, exit_detail(code)));
            });
            let _ = inner.cd.destroy(&id).await;
            if code != 0 {
                handle.event(
                    Some(slot),
                    WARNING,
                    "Failed",
                    format!("init container exited with code {code}"),
                );
                return Err(StartFailure::Init {
                    slot,
                    exit_code: code,
                });
            }
        }
        create_all(app_specs).await
    };

    // App containers start all at once.
    let starting = created.into_iter().map(|(slot, created)| {
        let start = &start;
        async move {
            match created {
                Ok(planned) => (slot, start(planned).await),
                Err(reason) => (slot, Err(reason)),
            }
        }
    });
    let started = futures::future::join_all(starting).await;
    Ok(BringUp { started })
}

/// One container of a bring-up, its spec built.
struct Planned {
    slot: usize,
    id: String,
    name: String,
    init: bool,
    oci: serde_json::Value,
    reference: String,
    chain: String,
}

fn empty_config() -> ImageConfig {
    ImageConfig {
        env: Vec::new(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        working_dir: String::new(),
        user: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use berth_proto::node::{Container, GroupSpec, IpAddress, Port};

    use super::*;

    fn port(port: u32, protocol: &str) -> Port {
        Port {
            port,
            protocol: protocol.to_string(),
        }
    }

    #[test]
    fn only_the_ip_address_ports_are_exposed() {
        let container = Container {
            ports: vec![port(80, "TCP"), port(81, "TCP"), port(53, "UDP")],
            ..Default::default()
        };
        let mut assignment = GroupAssignment {
            spec: Some(GroupSpec {
                containers: vec![container],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(ports(&assignment), [], "no ipAddress: nothing is exposed");

        if let Some(spec) = assignment.spec.as_mut() {
            spec.ip_address = Some(IpAddress {
                ports: vec![
                    port(80, "TCP"),
                    port(53, "udp"),
                    port(80, "TCP"),
                    port(70_000, "TCP"),
                ],
                ..Default::default()
            });
        }
        let exposed = [
            PortSpec {
                port: 80,
                protocol: Protocol::Tcp,
            },
            PortSpec {
                port: 53,
                protocol: Protocol::Udp,
            },
        ];
        assert_eq!(ports(&assignment), exposed);
    }
}
