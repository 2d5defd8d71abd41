//! The hollow runtime: Kubemark-style, it runs nothing and reports plausible statuses.
//!
//! After `start_delay` a group's init containers have completed and its containers run; a container
//! whose image contains `fail_image` exits 1 at once (the group fails under restart policy `Never`, or
//! the container crash-loops with the shared back-off, [`super::restart`], under
//! `Always`/`OnFailure`). Stopping and removing take `stop_delay`. Probes pass: a container is ready
//! while it runs. Timestamps come from the node clock; IPs are fake addresses from 10.244.0.0/16,
//! unique per group within the node. Each group costs a few hundred bytes and, while a transition is
//! due, one sleeping tokio task: many groups per node and thousands of nodes per process are fine.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use berth_proto::clock::now_ms;
use berth_proto::node::{
    ContainerRun, ContainerState, ContainerStatus, GroupAssignment, GroupPhase, GroupSpec,
    GroupStatus,
};
use tokio::task::AbortHandle;

use super::restart::{BackOff, Schedule};
use super::{BoxFuture, Changes, RestartPolicy, RunEnd, Runtime, RuntimeError, record};

/// How the hollow runtime pretends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HollowConfig {
    /// Time from accepting a group ("pulling") to its containers running. Default 100 ms.
    pub start_delay: Duration,
    /// A container whose image contains this string fails (exit 1). Default `hollow/fail`; empty means
    /// nothing fails.
    pub fail_image: String,
    /// Time a stop or a removal takes. Default 10 ms.
    pub stop_delay: Duration,
}

impl Default for HollowConfig {
    fn default() -> Self {
        Self {
            start_delay: Duration::from_millis(100),
            fail_image: "hollow/fail".to_string(),
            stop_delay: Duration::from_millis(10),
        }
    }
}

/// The longest crash-loop back-off (Kubernetes' cap).
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The shortest first crash-loop back-off.
const MIN_BACKOFF: Duration = Duration::from_secs(1);

const NORMAL: &str = "Normal";
const WARNING: &str = "Warning";

/// The node clock, anchored to the wall clock once and advanced by tokio's clock, so paused-time
/// tests see exact durations.
#[derive(Debug, Clone, Copy)]
struct NodeClock {
    base_unix_ms: i64,
    base: tokio::time::Instant,
}

impl NodeClock {
    fn new() -> Self {
        Self {
            base_unix_ms: now_ms(),
            base: tokio::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.base.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.base_unix_ms.saturating_add(elapsed)
    }
}

/// The transition a group's timer will make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Nothing,
    Starting,
    CrashBackOff,
    Stopping,
    Removing,
}

/// What the runtime knows of one container beyond its status.
#[derive(Debug, Clone)]
struct Meta {
    image: String,
    fails: bool,
    /// Its crash loop: a restart is pending while it crashes.
    backoff: BackOff,
}

#[derive(Debug)]
struct Group {
    spec: Option<GroupSpec>,
    policy: RestartPolicy,
    status: GroupStatus,
    /// Parallel to `status.containers`: init containers first, then the others.
    meta: Vec<Meta>,
    /// Bumped by every new plan; a timer whose epoch is stale does nothing.
    epoch: u64,
    pending: Pending,
    timer: Option<AbortHandle>,
    ip_slot: u32,
}

impl Group {
    fn cancel_timer(&mut self) {
        self.epoch += 1;
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }
}

#[derive(Debug, Default)]
struct State {
    groups: HashMap<String, Group>,
    used_slots: BTreeSet<u32>,
}

impl State {
    fn alloc_slot(&mut self) -> u32 {
        let slot = (0..)
            .find(|s| !self.used_slots.contains(s))
            .expect("fewer than u32::MAX groups on one node");
        self.used_slots.insert(slot);
        slot
    }
}

struct Inner {
    config: HollowConfig,
    clock: NodeClock,
    changes: Changes,
    /// The third octet the node's addresses start at (a hash of the node name).
    ip_base: u8,
    state: Mutex<State>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        for group in state.groups.values_mut() {
            group.cancel_timer();
        }
    }
}

/// The hollow [`Runtime`] of one node.
#[derive(Clone)]
pub struct HollowRuntime {
    inner: Arc<Inner>,
}

fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |hash, b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn run(
    state: ContainerState,
    start: i64,
    finish: i64,
    exit_code: i32,
    detail: &str,
) -> ContainerRun {
    ContainerRun {
        state: state as i32,
        start_time_unix_ms: start,
        finish_time_unix_ms: finish,
        exit_code,
        detail_status: detail.to_string(),
    }
}

fn waiting(detail: &str) -> ContainerRun {
    run(ContainerState::Waiting, 0, 0, 0, detail)
}

fn is_state(run: Option<&ContainerRun>, state: ContainerState) -> bool {
    run.is_some_and(|r| r.state == state as i32)
}

/// Hollow probes always pass: a container is ready while it runs, and no group is held back.
fn mark_ready(status: &mut GroupStatus) {
    for container in &mut status.containers {
        container.ready = is_state(container.current.as_ref(), ContainerState::Running);
    }
    status.not_ready = false;
}

impl HollowRuntime {
    /// A hollow runtime for the node `node_name`, announcing changes on `changes`.
    pub fn new(config: HollowConfig, node_name: &str, changes: Changes) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                clock: NodeClock::new(),
                changes,
                ip_base: fnv1a(node_name).to_le_bytes()[0],
                state: Mutex::new(State::default()),
            }),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ip(&self, slot: u32) -> String {
        let octet3 = (u32::from(self.ip_base) + slot / 254) % 256;
        let octet4 = slot % 254 + 1;
        Ipv4Addr::new(10, 244, octet3 as u8, octet4 as u8).to_string()
    }

    fn fails(&self, image: &str) -> bool {
        !self.config.fail_image.is_empty() && image.contains(&self.config.fail_image)
    }

    /// A group as first accepted: nothing has run.
    fn fresh(&self, assignment: &GroupAssignment, slot: u32) -> Group {
        let spec = assignment.spec.clone();
        let mut containers = Vec::new();
        let mut meta = Vec::new();
        if let Some(spec) = &spec {
            let all = spec
                .init_containers
                .iter()
                .map(|c| (c, true))
                .chain(spec.containers.iter().map(|c| (c, false)));
            for (container, init) in all {
                containers.push(ContainerStatus {
                    name: container.name.clone(),
                    init,
                    ..Default::default()
                });
                meta.push(Meta {
                    image: container.image.clone(),
                    fails: self.fails(&container.image),
                    backoff: BackOff::default(),
                });
            }
        }
        let policy = RestartPolicy::parse(spec.as_ref().map_or("", |s| s.restart_policy.as_str()));
        Group {
            spec,
            policy,
            status: GroupStatus {
                group_id: assignment.group_id.clone(),
                generation: assignment.generation,
                placement: assignment.placement,
                phase: GroupPhase::Pending as i32,
                ip: self.ip(slot),
                containers,
                ..Default::default()
            },
            meta,
            epoch: 0,
            pending: Pending::Nothing,
            timer: None,
            ip_slot: slot,
        }
    }

    fn schedule(self: &Arc<Self>, group: &mut Group, pending: Pending, delay: Duration) {
        group.cancel_timer();
        group.pending = pending;
        let weak: Weak<Self> = Arc::downgrade(self);
        let group_id = group.status.group_id.clone();
        let epoch = group.epoch;
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(inner) = weak.upgrade() {
                inner.fire(&group_id, epoch);
            }
        });
        group.timer = Some(task.abort_handle());
    }

    /// Starts a new run of `group` as `assignment` (its generation and placement): everything back to
    /// waiting, pulling begins.
    fn begin_run(self: &Arc<Self>, group: &mut Group, assignment: &GroupAssignment) {
        let now = self.clock.now_ms();
        group.cancel_timer();
        let status = &mut group.status;
        status.generation = assignment.generation;
        status.placement = assignment.placement;
        if group.spec.is_none() {
            status.phase = GroupPhase::Failed as i32;
            status.run_started_unix_ms = 0;
            status.run_finished_unix_ms = 0;
            record(
                &mut status.events,
                now,
                WARNING,
                "Failed",
                "the assignment carries no group spec".into(),
            );
            group.pending = Pending::Nothing;
            return;
        }
        status.phase = GroupPhase::Pending as i32;
        status.run_started_unix_ms = now;
        status.run_finished_unix_ms = 0;
        for (container, meta) in status.containers.iter_mut().zip(&mut group.meta) {
            meta.backoff.cancel();
            // What ran before becomes `previous` (a run still going ends now).
            if let Some(mut current) = container.current.take()
                && current.state != ContainerState::Waiting as i32
            {
                if current.state == ContainerState::Running as i32 {
                    current.state = ContainerState::Terminated as i32;
                    current.finish_time_unix_ms = now;
                    current.detail_status = "Restarted".into();
                }
                container.previous = Some(current);
            }
            container.current = Some(waiting("ContainerCreating"));
            record(
                &mut container.events,
                now,
                NORMAL,
                "Pulling",
                format!("pulling image \"{}\"", meta.image),
            );
        }
        self.schedule(group, Pending::Starting, self.config.start_delay);
    }

    /// How crash loops wait: ten start delays at least a second, doubling, at most 5 min.
    fn backoff_schedule(&self) -> Schedule {
        Schedule {
            first: (self.config.start_delay * 10).max(MIN_BACKOFF),
            max: MAX_BACKOFF,
        }
    }

    /// Container `i` (running since it started) exits 1 now; under a restarting policy it enters
    /// back-off.
    fn fail_container(&self, group: &mut Group, i: usize, now: i64) {
        let meta = &mut group.meta[i];
        meta.backoff.started(tokio::time::Instant::now());
        let restart = meta
            .backoff
            .ended(
                tokio::time::Instant::now(),
                group.policy,
                RunEnd::Exited(1),
                self.backoff_schedule(),
            )
            .is_some();
        let container = &mut group.status.containers[i];
        let started = container.current.as_ref().map_or(now, |r| {
            if r.start_time_unix_ms == 0 {
                now
            } else {
                r.start_time_unix_ms
            }
        });
        let failed = run(ContainerState::Terminated, started, now, 1, "Error");
        record(
            &mut container.events,
            now,
            WARNING,
            "Failed",
            format!("container {} exited with code 1", container.name),
        );
        if restart {
            container.previous = Some(failed);
            container.current = Some(waiting("CrashLoopBackOff"));
            record(
                &mut container.events,
                now,
                WARNING,
                "BackOff",
                format!("Back-off restarting failed container {}", container.name),
            );
        } else {
            container.current = Some(failed);
        }
    }

    fn started_events(container: &mut ContainerStatus, image: &str, now: i64) {
        record(
            &mut container.events,
            now,
            NORMAL,
            "Pulled",
            format!("Successfully pulled image \"{image}\""),
        );
        record(
            &mut container.events,
            now,
            NORMAL,
            "Created",
            format!("Created container {}", container.name),
        );
        record(
            &mut container.events,
            now,
            NORMAL,
            "Started",
            format!("Started container {}", container.name),
        );
    }

    /// `start_delay` has passed: init containers complete, containers run (or fail).
    fn on_started(self: &Arc<Self>, group: &mut Group, now: i64) {
        group.pending = Pending::Nothing;
        let mut failed_never = false;
        let mut init_blocked = false;
        for i in 0..group.status.containers.len() {
            let init = group.status.containers[i].init;
            if !init && init_blocked {
                group.status.containers[i].current = Some(waiting("PodInitializing"));
                continue;
            }
            let image = group.meta[i].image.clone();
            let container = &mut group.status.containers[i];
            Self::started_events(container, &image, now);
            container.current = Some(run(ContainerState::Running, now, 0, 0, ""));
            if group.meta[i].fails {
                self.fail_container(group, i, now);
                if group.policy == RestartPolicy::Never {
                    failed_never = true;
                }
                if init {
                    init_blocked = true;
                }
            } else if init {
                let container = &mut group.status.containers[i];
                container.current = Some(run(ContainerState::Terminated, now, now, 0, "Completed"));
            }
        }
        let apps = group.status.containers.iter().filter(|c| !c.init).count();
        let phase = if failed_never {
            GroupPhase::Failed
        } else if init_blocked {
            GroupPhase::Pending
        } else if apps == 0 {
            GroupPhase::Succeeded
        } else {
            GroupPhase::Running
        };
        group.status.phase = phase as i32;
        self.settle(group, now);
    }

    /// A crash back-off has passed: every crash-looping container due restarts and fails again.
    fn on_crash_restart(self: &Arc<Self>, group: &mut Group, now: i64) {
        group.pending = Pending::Nothing;
        let due = tokio::time::Instant::now();
        for i in 0..group.status.containers.len() {
            if !group.meta[i].backoff.take_due(due) {
                continue;
            }
            let image = group.meta[i].image.clone();
            let container = &mut group.status.containers[i];
            container.restart_count += 1;
            Self::started_events(container, &image, now);
            container.current = Some(run(ContainerState::Running, now, 0, 0, ""));
            self.fail_container(group, i, now);
        }
        self.settle(group, now);
    }

    /// After a transition: schedule the next crash restart if any container crash-loops, and set
    /// `run_finished` once nothing runs or will run again.
    fn settle(self: &Arc<Self>, group: &mut Group, now: i64) {
        let next = group
            .meta
            .iter()
            .filter_map(|m| m.backoff.restart_at())
            .min();
        if let Some(next) = next {
            let delay = next.saturating_duration_since(tokio::time::Instant::now());
            self.schedule(group, Pending::CrashBackOff, delay);
        }
        let phase = group.status.phase;
        let active = phase == GroupPhase::Pending as i32 || phase == GroupPhase::Running as i32;
        let anything_runs = group
            .status
            .containers
            .iter()
            .any(|c| is_state(c.current.as_ref(), ContainerState::Running));
        if active || anything_runs || group.pending == Pending::CrashBackOff {
            group.status.run_finished_unix_ms = 0;
        } else if group.status.run_finished_unix_ms == 0 && group.status.run_started_unix_ms != 0 {
            group.status.run_finished_unix_ms = now;
        }
    }

    /// `stop_delay` has passed after a stop: everything is terminated.
    fn on_stopped(&self, group: &mut Group, now: i64) {
        group.pending = Pending::Nothing;
        for (container, meta) in group.status.containers.iter_mut().zip(&mut group.meta) {
            meta.backoff.cancel();
            match container.current.as_mut() {
                Some(current) if current.state == ContainerState::Running as i32 => {
                    current.state = ContainerState::Terminated as i32;
                    current.finish_time_unix_ms = now;
                    current.detail_status = "Stopped".into();
                }
                Some(current) if current.state == ContainerState::Waiting as i32 => {
                    *current = run(ContainerState::Terminated, 0, now, 0, "Stopped");
                }
                _ => {}
            }
        }
        group.status.phase = GroupPhase::Stopped as i32;
        if group.status.run_started_unix_ms != 0 && group.status.run_finished_unix_ms == 0 {
            group.status.run_finished_unix_ms = now;
        }
    }

    /// Records `Killing` for every running container (the start of a stop or a removal).
    fn killing(&self, group: &mut Group) {
        let now = self.clock.now_ms();
        for container in &mut group.status.containers {
            if is_state(container.current.as_ref(), ContainerState::Running) {
                record(
                    &mut container.events,
                    now,
                    NORMAL,
                    "Killing",
                    format!("Stopping container {}", container.name),
                );
            }
        }
    }

    fn fire(self: &Arc<Self>, group_id: &str, epoch: u64) {
        let now = self.clock.now_ms();
        {
            let mut state = self.lock();
            let Some(group) = state.groups.get_mut(group_id) else {
                return;
            };
            if group.epoch != epoch {
                return;
            }
            group.timer = None;
            match group.pending {
                Pending::Nothing => return,
                Pending::Starting => self.on_started(group, now),
                Pending::CrashBackOff => self.on_crash_restart(group, now),
                Pending::Stopping => self.on_stopped(group, now),
                Pending::Removing => {
                    let slot = group.ip_slot;
                    state.groups.remove(group_id);
                    state.used_slots.remove(&slot);
                }
            }
        }
        self.changes.mark(group_id);
    }

    fn start(self: &Arc<Self>, assignment: &GroupAssignment) {
        let mut state = self.lock();
        let id = assignment.group_id.as_str();
        let Some(group) = state.groups.get_mut(id) else {
            let slot = state.alloc_slot();
            let mut group = self.fresh(assignment, slot);
            self.begin_run(&mut group, assignment);
            state.groups.insert(id.to_string(), group);
            return;
        };
        if group.spec != assignment.spec {
            // A new spec: re-create, keeping only the address.
            let slot = group.ip_slot;
            group.cancel_timer();
            let epoch = group.epoch;
            *group = self.fresh(assignment, slot);
            group.epoch = epoch;
            self.begin_run(group, assignment);
            return;
        }
        let phase = group.status.phase;
        let settled = phase != GroupPhase::Stopped as i32
            && !matches!(group.pending, Pending::Stopping | Pending::Removing);
        let same = group.status.generation == assignment.generation
            && group.status.placement == assignment.placement;
        if same && settled {
            return;
        }
        self.begin_run(group, assignment);
    }

    fn stop(self: &Arc<Self>, assignment: &GroupAssignment) {
        let mut state = self.lock();
        let id = assignment.group_id.as_str();
        let Some(group) = state.groups.get_mut(id) else {
            let slot = state.alloc_slot();
            let mut group = self.fresh(assignment, slot);
            group.status.phase = GroupPhase::Stopped as i32;
            state.groups.insert(id.to_string(), group);
            return;
        };
        group.status.generation = assignment.generation;
        group.status.placement = assignment.placement;
        let stopped =
            group.status.phase == GroupPhase::Stopped as i32 && group.pending == Pending::Nothing;
        if stopped || group.pending == Pending::Stopping {
            return;
        }
        self.killing(group);
        self.schedule(group, Pending::Stopping, self.config.stop_delay);
    }

    fn remove(self: &Arc<Self>, group_id: &str) {
        let mut state = self.lock();
        let Some(group) = state.groups.get_mut(group_id) else {
            return;
        };
        if group.pending == Pending::Removing {
            return;
        }
        self.killing(group);
        self.schedule(group, Pending::Removing, self.config.stop_delay);
    }

    fn record_event(&self, group_id: &str, kind: &str, name: &str, message: String) {
        let now = self.clock.now_ms();
        {
            let mut state = self.lock();
            let Some(group) = state.groups.get_mut(group_id) else {
                return;
            };
            record(&mut group.status.events, now, kind, name, message);
        }
        self.changes.mark(group_id);
    }

    fn status(&self, group_id: &str) -> Option<GroupStatus> {
        let state = self.lock();
        let mut status = state.groups.get(group_id)?.status.clone();
        status.observed_unix_ms = self.clock.now_ms();
        mark_ready(&mut status);
        Some(status)
    }

    fn groups(&self) -> Vec<GroupStatus> {
        let now = self.clock.now_ms();
        let state = self.lock();
        let mut all: Vec<GroupStatus> = state
            .groups
            .values()
            .map(|g| {
                let mut status = GroupStatus {
                    observed_unix_ms: now,
                    ..g.status.clone()
                };
                mark_ready(&mut status);
                status
            })
            .collect();
        all.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        all
    }
}

impl Runtime for HollowRuntime {
    fn start<'a>(
        &'a self,
        assignment: &'a GroupAssignment,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.inner.start(assignment);
        Box::pin(std::future::ready(Ok(())))
    }

    fn stop<'a>(
        &'a self,
        assignment: &'a GroupAssignment,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.inner.stop(assignment);
        Box::pin(std::future::ready(Ok(())))
    }

    fn remove<'a>(&'a self, group_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.inner.remove(group_id);
        Box::pin(std::future::ready(Ok(())))
    }

    fn status(&self, group_id: &str) -> Option<GroupStatus> {
        self.inner.status(group_id)
    }

    fn groups(&self) -> Vec<GroupStatus> {
        self.inner.groups()
    }

    fn record_event(&self, group_id: &str, kind: &str, name: &str, message: String) {
        self.inner.record_event(group_id, kind, name, message);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use berth_proto::node::{Container, DesiredPhase};

    const START: Duration = Duration::from_millis(100);
    const STOP: Duration = Duration::from_millis(10);

    fn container(name: &str, image: &str) -> Container {
        Container {
            name: name.into(),
            image: image.into(),
            ..Default::default()
        }
    }

    fn assignment(id: &str, generation: u64, policy: &str, images: &[&str]) -> GroupAssignment {
        GroupAssignment {
            placement: 1,
            group_id: id.into(),
            generation,
            phase: DesiredPhase::Running as i32,
            spec: Some(GroupSpec {
                name: id.into(),
                restart_policy: policy.into(),
                containers: images
                    .iter()
                    .enumerate()
                    .map(|(i, image)| container(&format!("c{i}"), image))
                    .collect(),
                ..Default::default()
            }),
        }
    }

    fn runtime() -> (HollowRuntime, Changes) {
        let changes = Changes::default();
        let runtime = HollowRuntime::new(HollowConfig::default(), "node-a", changes.clone());
        (runtime, changes)
    }

    fn phase(status: &GroupStatus) -> GroupPhase {
        GroupPhase::try_from(status.phase).unwrap()
    }

    fn current(status: &GroupStatus, i: usize) -> ContainerRun {
        status.containers[i].current.clone().unwrap()
    }

    fn event_names(status: &ContainerStatus) -> Vec<&str> {
        status.events.iter().map(|e| e.name.as_str()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn containers_run_after_the_start_delay() {
        let (runtime, changes) = runtime();
        let mut a = assignment("g", 1, "Always", &["nginx"]);
        a.spec.as_mut().unwrap().init_containers = vec![container("init", "busybox")];
        runtime.start(&a).await.unwrap();

        let pending = runtime.status("g").unwrap();
        assert_eq!(phase(&pending), GroupPhase::Pending);
        assert_eq!(pending.generation, 1);
        assert!(pending.ip.starts_with("10.244."));
        assert!(pending.run_started_unix_ms > 0);
        assert_eq!(pending.containers.len(), 2);
        assert!(pending.containers[0].init);
        assert_eq!(current(&pending, 1).state, ContainerState::Waiting as i32);
        assert_eq!(event_names(&pending.containers[1]), ["Pulling"]);

        tokio::time::sleep(START - Duration::from_millis(1)).await;
        assert_eq!(phase(&runtime.status("g").unwrap()), GroupPhase::Pending);

        assert_eq!(changes.next().await, vec!["g".to_string()]);
        let running = runtime.status("g").unwrap();
        assert_eq!(phase(&running), GroupPhase::Running);
        let init = current(&running, 0);
        assert_eq!(init.state, ContainerState::Terminated as i32);
        assert_eq!(
            (init.exit_code, init.detail_status.as_str()),
            (0, "Completed")
        );
        let app = current(&running, 1);
        assert_eq!(app.state, ContainerState::Running as i32);
        assert!(running.containers[1].ready, "a running container is ready");
        assert!(!running.containers[0].ready, "a completed one is not");
        assert!(!pending.containers[1].ready && !running.not_ready);
        assert_eq!(
            app.start_time_unix_ms - running.run_started_unix_ms,
            START.as_millis() as i64
        );
        assert_eq!(running.run_finished_unix_ms, 0);
        assert_eq!(
            event_names(&running.containers[1]),
            ["Pulling", "Pulled", "Created", "Started"]
        );
        let pulled = &running.containers[1].events[1];
        assert_eq!(pulled.r#type, "Normal");
        assert_eq!(pulled.first_timestamp_unix_ms, app.start_time_unix_ms);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_image_fails_the_group_under_never() {
        let (runtime, changes) = runtime();
        runtime
            .start(&assignment("g", 1, "Never", &["registry/hollow/fail:1"]))
            .await
            .unwrap();
        changes.next().await;
        let status = runtime.status("g").unwrap();
        assert_eq!(phase(&status), GroupPhase::Failed);
        let run = current(&status, 0);
        assert_eq!(run.state, ContainerState::Terminated as i32);
        assert_eq!((run.exit_code, run.detail_status.as_str()), (1, "Error"));
        let failed = status.containers[0]
            .events
            .iter()
            .find(|e| e.name == "Failed")
            .unwrap();
        assert_eq!(failed.r#type, "Warning");
        assert_eq!(status.containers[0].restart_count, 0);
        assert!(status.run_finished_unix_ms >= run.finish_time_unix_ms);
        assert!(status.run_finished_unix_ms > 0);

        // Nothing more happens to a failed group.
        let quiet = tokio::time::timeout(Duration::from_secs(600), changes.next()).await;
        assert!(quiet.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_image_crash_loops_with_back_off_under_always() {
        let (runtime, changes) = runtime();
        runtime
            .start(&assignment("g", 1, "Always", &["nginx", "hollow/fail"]))
            .await
            .unwrap();
        changes.next().await;
        let first = runtime.status("g").unwrap();
        assert_eq!(phase(&first), GroupPhase::Running);
        assert_eq!(first.run_finished_unix_ms, 0);
        assert_eq!(current(&first, 0).state, ContainerState::Running as i32);
        let crashing = &first.containers[1];
        assert_eq!(crashing.restart_count, 0);
        assert_eq!(current(&first, 1).detail_status, "CrashLoopBackOff");
        let previous = crashing.previous.clone().unwrap();
        assert_eq!(
            (previous.state, previous.exit_code),
            (ContainerState::Terminated as i32, 1)
        );
        let backoff = crashing
            .events
            .iter()
            .find(|e| e.name == "BackOff")
            .unwrap();
        assert_eq!(backoff.r#type, "Warning");

        let before = tokio::time::Instant::now();
        changes.next().await;
        assert_eq!(before.elapsed(), MIN_BACKOFF);
        let second = runtime.status("g").unwrap();
        assert_eq!(second.containers[1].restart_count, 1);
        assert_eq!(phase(&second), GroupPhase::Running);
        let backoff = second.containers[1]
            .events
            .iter()
            .find(|e| e.name == "BackOff")
            .unwrap();
        assert_eq!(backoff.count, 2);

        let before = tokio::time::Instant::now();
        changes.next().await;
        assert_eq!(before.elapsed(), MIN_BACKOFF * 2, "the back-off doubles");
        assert_eq!(runtime.status("g").unwrap().containers[1].restart_count, 2);
        // The healthy container was never touched.
        assert_eq!(runtime.status("g").unwrap().containers[0].restart_count, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_terminates_everything_but_keeps_the_group() {
        let (runtime, changes) = runtime();
        runtime
            .start(&assignment("g", 1, "Always", &["nginx", "redis"]))
            .await
            .unwrap();
        changes.next().await;
        let mut stop = assignment("g", 2, "Always", &["nginx", "redis"]);
        stop.phase = DesiredPhase::Stopped as i32;
        runtime.stop(&stop).await.unwrap();
        let stopping = runtime.status("g").unwrap();
        assert_eq!(stopping.generation, 2);
        assert!(event_names(&stopping.containers[0]).contains(&"Killing"));

        let before = tokio::time::Instant::now();
        changes.next().await;
        assert_eq!(before.elapsed(), STOP);
        let stopped = runtime.status("g").unwrap();
        assert_eq!(phase(&stopped), GroupPhase::Stopped);
        assert!(stopped.run_finished_unix_ms > stopped.run_started_unix_ms);
        for i in 0..2 {
            let run = current(&stopped, i);
            assert_eq!(run.state, ContainerState::Terminated as i32);
            assert_eq!(run.finish_time_unix_ms, stopped.run_finished_unix_ms);
        }
        // Stopping again is a no-op.
        runtime.stop(&stop).await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_secs(60), changes.next())
                .await
                .is_err()
        );

        // Started again: a new run, billing restarts.
        runtime
            .start(&assignment("g", 3, "Always", &["nginx", "redis"]))
            .await
            .unwrap();
        changes.next().await;
        let again = runtime.status("g").unwrap();
        assert_eq!(phase(&again), GroupPhase::Running);
        assert_eq!(again.run_finished_unix_ms, 0);
        assert!(again.run_started_unix_ms > stopped.run_finished_unix_ms - 1);
        assert_eq!(again.ip, stopped.ip);
    }

    #[tokio::test(start_paused = true)]
    async fn remove_forgets_the_group_and_frees_its_address() {
        let (runtime, changes) = runtime();
        runtime
            .start(&assignment("a", 1, "Always", &["nginx"]))
            .await
            .unwrap();
        runtime
            .start(&assignment("b", 1, "Always", &["nginx"]))
            .await
            .unwrap();
        let ip_a = runtime.status("a").unwrap().ip;
        let ip_b = runtime.status("b").unwrap().ip;
        assert_ne!(ip_a, ip_b);
        changes.next().await;

        runtime.remove("a").await.unwrap();
        assert!(runtime.status("a").is_some(), "removal takes stop_delay");
        runtime.remove("a").await.unwrap();
        assert_eq!(changes.next().await, vec!["a".to_string()]);
        assert!(runtime.status("a").is_none());
        assert_eq!(runtime.groups().len(), 1);
        // Removing what is gone does nothing.
        runtime.remove("a").await.unwrap();

        runtime
            .start(&assignment("c", 1, "Always", &["nginx"]))
            .await
            .unwrap();
        assert_eq!(runtime.status("c").unwrap().ip, ip_a);
    }

    #[tokio::test(start_paused = true)]
    async fn start_is_idempotent_and_a_new_spec_recreates() {
        let (runtime, changes) = runtime();
        let a = assignment("g", 1, "Always", &["nginx"]);
        runtime.start(&a).await.unwrap();
        changes.next().await;
        let running = runtime.status("g").unwrap();
        runtime.start(&a).await.unwrap();
        assert_eq!(
            GroupStatus {
                observed_unix_ms: 0,
                ..runtime.status("g").unwrap()
            },
            GroupStatus {
                observed_unix_ms: 0,
                ..running.clone()
            }
        );

        // Same spec, newer generation: a restart keeps the history.
        runtime
            .start(&assignment("g", 2, "Always", &["nginx"]))
            .await
            .unwrap();
        changes.next().await;
        let restarted = runtime.status("g").unwrap();
        assert!(restarted.containers[0].previous.is_some());
        assert_eq!(restarted.containers[0].events[0].count, 2, "pulled twice");

        // New spec: re-created from scratch, same address.
        runtime
            .start(&assignment("g", 3, "Always", &["redis"]))
            .await
            .unwrap();
        changes.next().await;
        let recreated = runtime.status("g").unwrap();
        assert_eq!(recreated.generation, 3);
        assert!(recreated.containers[0].previous.is_none());
        assert_eq!(recreated.containers[0].events[0].count, 1);
        assert_eq!(recreated.ip, running.ip);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_for_an_unknown_group_records_it_stopped() {
        let (runtime, _changes) = runtime();
        let mut stop = assignment("g", 4, "Always", &["nginx"]);
        stop.phase = DesiredPhase::Stopped as i32;
        runtime.stop(&stop).await.unwrap();
        let status = runtime.status("g").unwrap();
        assert_eq!(phase(&status), GroupPhase::Stopped);
        assert_eq!(status.generation, 4);
        assert_eq!(
            (status.run_started_unix_ms, status.run_finished_unix_ms),
            (0, 0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_assignment_without_spec_fails() {
        let (runtime, _changes) = runtime();
        let mut a = assignment("g", 1, "Always", &[]);
        a.spec = None;
        runtime.start(&a).await.unwrap();
        let status = runtime.status("g").unwrap();
        assert_eq!(phase(&status), GroupPhase::Failed);
        assert_eq!(status.events[0].r#type, "Warning");
    }

    #[test]
    fn addresses_are_unique_per_group_and_deterministic_per_node() {
        let changes = Changes::default();
        let a = HollowRuntime::new(HollowConfig::default(), "node-a", changes.clone());
        let again = HollowRuntime::new(HollowConfig::default(), "node-a", changes);
        let ips: BTreeSet<String> = (0..600).map(|slot| a.inner.ip(slot)).collect();
        assert_eq!(ips.len(), 600);
        assert_eq!(a.inner.ip(7), again.inner.ip(7));
        assert!(
            ips.iter()
                .all(|ip| ip.starts_with("10.244.") && !ip.ends_with(".0"))
        );
    }
}
