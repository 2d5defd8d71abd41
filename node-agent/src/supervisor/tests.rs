use super::*;
use crate::runtime::hollow::{HollowConfig, HollowRuntime};
use berth_proto::node::{Container, ContainerState, GroupSpec};

fn assignment(id: &str, generation: u64, phase: DesiredPhase, image: &str) -> GroupAssignment {
    GroupAssignment {
        placement: 1,
        group_id: id.into(),
        generation,
        phase: phase as i32,
        spec: Some(GroupSpec {
            name: id.into(),
            restart_policy: "Always".into(),
            containers: vec![Container {
                name: "app".into(),
                image: image.into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn running(id: &str, generation: u64) -> GroupAssignment {
    assignment(id, generation, DesiredPhase::Running, "nginx")
}

fn full(groups: Vec<GroupAssignment>) -> DesiredState {
    DesiredState {
        full: true,
        groups,
        ..Default::default()
    }
}

fn delta(groups: Vec<GroupAssignment>, removed: &[&str]) -> DesiredState {
    DesiredState {
        full: false,
        groups,
        removed: removed.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn supervisor() -> Supervisor {
    let changes = Changes::default();
    let runtime = HollowRuntime::new(HollowConfig::default(), "node-a", changes.clone());
    Supervisor::new(Arc::new(runtime), changes)
}

/// Lets the runtime's timers fire and feeds the changes to the supervisor until it is quiet.
async fn settle(sup: &mut Supervisor) -> Vec<GroupStatus> {
    let mut out = Vec::new();
    let changes = sup.changes().clone();
    while let Ok(ids) = tokio::time::timeout(Duration::from_secs(1), changes.next()).await {
        out.extend(sup.on_changes(ids).await);
    }
    out
}

fn phase(s: &GroupStatus) -> GroupPhase {
    GroupPhase::try_from(s.phase).unwrap()
}

#[test]
fn decide_covers_the_table() {
    let run1 = running("g", 1);
    let stop2 = assignment("g", 2, DesiredPhase::Stopped, "nginx");
    let obs = |generation, phase: GroupPhase| GroupStatus {
        group_id: "g".into(),
        generation,
        placement: 1,
        phase: phase as i32,
        ..Default::default()
    };
    assert_eq!(decide(None, None), Action::Nothing);
    assert_eq!(
        decide(None, Some(&obs(1, GroupPhase::Running))),
        Action::Remove
    );
    assert_eq!(decide(Some(&run1), None), Action::Start);
    assert_eq!(
        decide(Some(&run1), Some(&obs(1, GroupPhase::Running))),
        Action::Nothing
    );
    assert_eq!(
        decide(Some(&run1), Some(&obs(1, GroupPhase::Failed))),
        Action::Nothing
    );
    assert_eq!(
        decide(Some(&run1), Some(&obs(1, GroupPhase::Stopped))),
        Action::Start
    );
    assert_eq!(
        decide(Some(&run1), Some(&obs(0, GroupPhase::Running))),
        Action::Start
    );
    assert_eq!(decide(Some(&stop2), None), Action::Stop);
    assert_eq!(
        decide(Some(&stop2), Some(&obs(1, GroupPhase::Running))),
        Action::Stop
    );
    assert_eq!(
        decide(Some(&stop2), Some(&obs(2, GroupPhase::Running))),
        Action::Stop
    );
    assert_eq!(
        decide(Some(&stop2), Some(&obs(2, GroupPhase::Stopped))),
        Action::Nothing
    );
    assert_eq!(
        decide(Some(&stop2), Some(&obs(1, GroupPhase::Stopped))),
        Action::Stop
    );
}

#[test]
fn decide_treats_another_placement_like_another_generation() {
    let observed = |placement, phase: GroupPhase| GroupStatus {
        group_id: "g".into(),
        generation: 1,
        placement,
        phase: phase as i32,
        ..Default::default()
    };
    // The copy of an earlier placement (the group left the node and came back): re-created.
    let run = running("g", 1);
    assert_eq!(run.placement, 1);
    for phase in [
        GroupPhase::Running,
        GroupPhase::Pending,
        GroupPhase::Failed,
        GroupPhase::Succeeded,
        GroupPhase::Stopped,
    ] {
        assert_eq!(
            decide(Some(&run), Some(&observed(0, phase))),
            Action::Start,
            "{phase:?}"
        );
        assert_eq!(
            decide(Some(&run), Some(&observed(1, phase))),
            if phase == GroupPhase::Stopped {
                Action::Start
            } else {
                Action::Nothing
            },
            "{phase:?}"
        );
    }
    // Stopped at another placement: stopped again as this one (the status then says which).
    let stop = assignment("g", 1, DesiredPhase::Stopped, "nginx");
    assert_eq!(
        decide(Some(&stop), Some(&observed(0, GroupPhase::Stopped))),
        Action::Stop
    );
    assert_eq!(
        decide(Some(&stop), Some(&observed(1, GroupPhase::Stopped))),
        Action::Nothing
    );
}

#[test]
fn cut_off_nothing_starts_and_whatever_may_run_stops() {
    use super::fencing::cut_off_action;
    let observed = |phase: GroupPhase| GroupStatus {
        group_id: "g".into(),
        generation: 1,
        phase: phase as i32,
        ..Default::default()
    };
    for action in [Action::Start, Action::Nothing] {
        for phase in [GroupPhase::Running, GroupPhase::Pending] {
            assert_eq!(cut_off_action(action, Some(&observed(phase))), Action::Stop);
        }
        for phase in [
            GroupPhase::Stopped,
            GroupPhase::Succeeded,
            GroupPhase::Failed,
        ] {
            assert_eq!(
                cut_off_action(action, Some(&observed(phase))),
                Action::Nothing
            );
        }
        assert_eq!(cut_off_action(action, None), Action::Nothing);
    }
    let running = observed(GroupPhase::Running);
    assert_eq!(cut_off_action(Action::Stop, Some(&running)), Action::Stop);
    assert_eq!(
        cut_off_action(Action::Remove, Some(&running)),
        Action::Remove
    );
}

#[tokio::test(start_paused = true)]
async fn full_state_starts_what_is_desired_and_removes_everything_else() {
    let mut sup = supervisor();
    let out = sup
        .apply(full(vec![running("a", 1), running("b", 1)]))
        .await;
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|s| phase(s) == GroupPhase::Pending));
    let out = settle(&mut sup).await;
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|s| phase(s) == GroupPhase::Running));

    // A new full state without "a": "a" is torn down and reported REMOVED exactly once.
    let mut out = sup.apply(full(vec![running("b", 1)])).await;
    out.extend(settle(&mut sup).await);
    let about_a: Vec<_> = out.iter().filter(|s| s.group_id == "a").collect();
    let removals: Vec<_> = about_a
        .iter()
        .filter(|s| phase(s) == GroupPhase::Removed)
        .collect();
    assert_eq!(removals.len(), 1, "{out:#?}");
    assert_eq!(removals[0].generation, 1);
    assert!(
        out.iter().all(|s| s.group_id != "b"),
        "b did not change: {out:#?}"
    );
    assert!(sup.runtime.status("a").is_none());

    // Nothing more is said about "a", however often the same state is applied.
    let mut again = sup.apply(full(vec![running("b", 1)])).await;
    again.extend(settle(&mut sup).await);
    assert!(again.is_empty(), "{again:#?}");
}

#[tokio::test(start_paused = true)]
async fn full_state_removes_groups_the_runtime_has_but_nobody_asked_for() {
    let mut sup = supervisor();
    // The runtime already runs "stray" (e.g. from before a reconnect), reported in Hello.
    sup.runtime.start(&running("stray", 3)).await.unwrap();
    let hello = sup.hello_groups();
    assert_eq!(hello.len(), 1);
    let mut out = sup.apply(full(vec![])).await;
    out.extend(settle(&mut sup).await);
    let last = out.last().unwrap();
    assert_eq!(last.group_id, "stray");
    assert_eq!(phase(last), GroupPhase::Removed);
    assert_eq!(last.generation, 3);
    assert_eq!(
        out.iter()
            .filter(|s| phase(s) == GroupPhase::Removed)
            .count(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn delta_with_a_newer_generation_restarts_and_an_older_one_is_ignored() {
    let mut sup = supervisor();
    sup.apply(full(vec![running("a", 1)])).await;
    settle(&mut sup).await;
    let first = sup.runtime.status("a").unwrap();
    let first_start = first.containers[0]
        .current
        .as_ref()
        .unwrap()
        .start_time_unix_ms;

    tokio::time::advance(Duration::from_secs(5)).await;
    let out = sup.apply(delta(vec![running("a", 2)], &[])).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].generation, 2);
    assert_eq!(phase(&out[0]), GroupPhase::Pending);
    let out = settle(&mut sup).await;
    let restarted = out.last().unwrap();
    assert_eq!(phase(restarted), GroupPhase::Running);
    let container = &restarted.containers[0];
    let current = container.current.as_ref().unwrap();
    assert_eq!(current.state, ContainerState::Running as i32);
    assert!(current.start_time_unix_ms >= first_start + 5000);
    assert_eq!(
        container.previous.as_ref().unwrap().start_time_unix_ms,
        first_start
    );

    // An older generation arriving late changes nothing.
    let out = sup.apply(delta(vec![running("a", 1)], &[])).await;
    assert!(out.is_empty(), "{out:#?}");
    assert!(settle(&mut sup).await.is_empty());
    assert_eq!(sup.runtime.status("a").unwrap().generation, 2);
}

#[tokio::test(start_paused = true)]
async fn statuses_are_whole_and_never_repeated() {
    let mut sup = supervisor();
    let mut out = sup.apply(full(vec![running("a", 1)])).await;
    out.extend(settle(&mut sup).await);
    for status in &out {
        assert_eq!(status.group_id, "a");
        assert_eq!(status.containers.len(), 1, "whole status: {status:#?}");
        assert!(!status.ip.is_empty());
        assert!(status.observed_unix_ms > 0);
    }
    // The same desired state twice is a no-op.
    assert!(sup.apply(full(vec![running("a", 1)])).await.is_empty());
    assert!(
        sup.apply(delta(vec![running("a", 1)], &[]))
            .await
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn stop_then_start_again() {
    let mut sup = supervisor();
    sup.apply(full(vec![running("a", 1)])).await;
    settle(&mut sup).await;
    let stop = assignment("a", 2, DesiredPhase::Stopped, "nginx");
    let mut out = sup.apply(delta(vec![stop], &[])).await;
    out.extend(settle(&mut sup).await);
    let stopped = out.last().unwrap();
    assert_eq!(phase(stopped), GroupPhase::Stopped);
    assert_eq!(stopped.generation, 2);
    assert!(stopped.run_finished_unix_ms > 0);
    assert_eq!(
        stopped.containers[0].current.as_ref().unwrap().state,
        ContainerState::Terminated as i32
    );

    let mut out = sup.apply(delta(vec![running("a", 3)], &[])).await;
    out.extend(settle(&mut sup).await);
    let started = out.last().unwrap();
    assert_eq!(phase(started), GroupPhase::Running);
    assert_eq!(started.generation, 3);
    assert_eq!(started.run_finished_unix_ms, 0);
}

#[tokio::test(start_paused = true)]
async fn removing_an_unknown_group_is_confirmed_once() {
    let mut sup = supervisor();
    let out = sup.apply(delta(vec![], &["ghost"])).await;
    assert_eq!(out.len(), 1);
    assert_eq!(phase(&out[0]), GroupPhase::Removed);
    assert!(settle(&mut sup).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn delta_removal_tears_down_and_reports_removed_once() {
    let mut sup = supervisor();
    sup.apply(full(vec![running("a", 1), running("b", 1)]))
        .await;
    settle(&mut sup).await;
    let mut out = sup.apply(delta(vec![], &["a"])).await;
    out.extend(settle(&mut sup).await);
    let removals: Vec<_> = out
        .iter()
        .filter(|s| phase(s) == GroupPhase::Removed)
        .collect();
    assert_eq!(removals.len(), 1);
    assert_eq!(removals[0].group_id, "a");
    assert!(sup.runtime.status("b").is_some());
    // The teardown is over: later changes say nothing more about "a".
    assert!(sup.on_changes(vec!["a".into()]).await.is_empty());
    // A removal asked for again is answered again (a status applied twice changes nothing).
    let again = sup.apply(delta(vec![], &["a"])).await;
    assert_eq!(again.len(), 1);
    assert_eq!(phase(&again[0]), GroupPhase::Removed);
}

fn has_fenced_event(status: &GroupStatus) -> bool {
    status.events.iter().any(|e| {
        e.name == "Fenced" && e.r#type == "Warning" && e.message == "no apiserver heard for 20 s"
    })
}

const SILENT: Duration = Duration::from_secs(20);

#[tokio::test(start_paused = true)]
async fn fencing_stops_every_group_and_starts_none_until_a_full_state() {
    let mut sup = supervisor();
    sup.apply(full(vec![running("a", 1), running("b", 1)]))
        .await;
    settle(&mut sup).await;
    assert!(!sup.is_fenced());

    sup.fence(SILENT).await;
    assert!(sup.is_fenced());
    // Changes while cut off (the stops completing) are reconciled; nothing runs again.
    let out = settle(&mut sup).await;
    assert!(
        out.iter().all(|s| phase(s) == GroupPhase::Stopped),
        "{out:#?}"
    );
    for id in ["a", "b"] {
        let raw = sup.runtime.status(id).unwrap();
        assert_eq!(phase(&raw), GroupPhase::Stopped, "{raw:#?}");
        assert!(
            has_fenced_event(&raw),
            "the runtime keeps the event: {raw:#?}"
        );
    }
    // A delta heard while cut off does not start anything either.
    let mut out = sup.apply(delta(vec![running("c", 1)], &[])).await;
    out.extend(settle(&mut sup).await);
    assert!(sup.runtime.status("c").is_none(), "{out:#?}");
    assert!(
        sup.runtime
            .status("a")
            .is_some_and(|s| phase(&s) == GroupPhase::Stopped)
    );

    // The next stream: Hello says STOPPED, with the event, the run ended.
    let hello = sup.hello_groups();
    assert_eq!(hello.len(), 2);
    for status in &hello {
        assert_eq!(phase(status), GroupPhase::Stopped);
        assert!(has_fenced_event(status), "{status:#?}");
        assert!(status.run_finished_unix_ms > 0);
    }

    // The full state brings back what is still listed and removes the rest, never running.
    let mut out = sup.apply(full(vec![running("a", 1)])).await;
    assert!(!sup.is_fenced());
    out.extend(settle(&mut sup).await);
    let about_b: Vec<_> = out.iter().filter(|s| s.group_id == "b").collect();
    assert!(
        about_b.iter().all(|s| phase(s) != GroupPhase::Running),
        "{about_b:#?}"
    );
    assert_eq!(about_b.last().map(|s| phase(s)), Some(GroupPhase::Removed));
    assert!(sup.runtime.status("b").is_none());
    let last_a = out.iter().rfind(|s| s.group_id == "a").unwrap();
    assert_eq!(phase(last_a), GroupPhase::Running, "{out:#?}");
    assert!(
        sup.runtime
            .status("a")
            .is_some_and(|s| phase(&s) == GroupPhase::Running)
    );
}

#[tokio::test(start_paused = true)]
async fn a_fenced_run_is_reported_stopped_while_the_runtime_still_stops_it() {
    let mut sup = supervisor();
    sup.apply(full(vec![running("a", 1), running("b", 1)]))
        .await;
    settle(&mut sup).await;
    sup.fence(SILENT).await;
    // No time has passed: the runtime is still stopping both.
    assert_eq!(
        phase(&sup.runtime.status("a").unwrap()),
        GroupPhase::Running
    );
    let hello = sup.hello_groups();
    assert!(
        hello
            .iter()
            .all(|s| phase(s) == GroupPhase::Stopped && s.run_finished_unix_ms > 0),
        "{hello:#?}"
    );
    // The full state arrives before the stops are done: "b" goes without ever being reported running,
    // "a" runs again once stopped.
    let mut out = sup.apply(full(vec![running("a", 1)])).await;
    out.extend(settle(&mut sup).await);
    let b: Vec<_> = out.iter().filter(|s| s.group_id == "b").collect();
    assert!(b.iter().all(|s| phase(s) != GroupPhase::Running), "{b:#?}");
    assert_eq!(b.last().map(|s| phase(s)), Some(GroupPhase::Removed));
    let a: Vec<_> = out.iter().filter(|s| s.group_id == "a").collect();
    let first_running = a.iter().position(|s| phase(s) == GroupPhase::Running);
    let first_pending = a.iter().position(|s| phase(s) == GroupPhase::Pending);
    assert!(
        first_pending.is_some() && first_pending < first_running,
        "a fresh run: {a:#?}"
    );
    assert_eq!(a.last().map(|s| phase(s)), Some(GroupPhase::Running));
}

#[tokio::test(start_paused = true)]
async fn finished_groups_are_left_as_they_are() {
    let mut sup = supervisor();
    let mut done = running("done", 1);
    if let Some(spec) = done.spec.as_mut() {
        spec.restart_policy = "Never".into();
        spec.containers[0].image = "hollow/fail".into();
    }
    sup.apply(full(vec![done.clone()])).await;
    settle(&mut sup).await;
    let before = sup.runtime.status("done").unwrap();
    assert_eq!(phase(&before), GroupPhase::Failed);
    sup.fence(SILENT).await;
    settle(&mut sup).await;
    let after = sup.runtime.status("done").unwrap();
    assert_eq!(phase(&after), GroupPhase::Failed);
    assert!(!has_fenced_event(&after));
    let hello = sup.hello_groups();
    assert_eq!(phase(&hello[0]), GroupPhase::Failed);
    // Listed again: nothing to do, nothing said.
    let mut out = sup.apply(full(vec![done])).await;
    out.extend(settle(&mut sup).await);
    assert!(out.is_empty(), "{out:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_new_placement_re_creates_and_every_status_echoes_it() {
    let mut sup = supervisor();
    let mut out = sup.apply(full(vec![running("a", 1)])).await;
    out.extend(settle(&mut sup).await);
    assert!(out.iter().all(|s| s.placement == 1), "{out:#?}");
    let mut moved_back = running("a", 1);
    moved_back.placement = 2;
    let mut out = sup.apply(delta(vec![moved_back], &[])).await;
    out.extend(settle(&mut sup).await);
    assert_eq!(phase(&out[0]), GroupPhase::Pending, "{out:#?}");
    assert!(out.iter().all(|s| s.placement == 2), "{out:#?}");
    assert_eq!(phase(out.last().unwrap()), GroupPhase::Running);
    let mut out = sup.apply(delta(vec![], &["a"])).await;
    out.extend(settle(&mut sup).await);
    let removed = out.last().unwrap();
    assert_eq!(phase(removed), GroupPhase::Removed);
    assert_eq!((removed.generation, removed.placement), (1, 2));
}

/// A runtime that runs nothing and remembers the nameservers it was told.
#[derive(Default)]
struct Nameservers(std::sync::Mutex<Vec<Option<std::net::IpAddr>>>);

impl Runtime for Nameservers {
    fn start<'a>(
        &'a self,
        _: &'a GroupAssignment,
    ) -> crate::runtime::BoxFuture<'a, Result<(), crate::runtime::RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
    fn stop<'a>(
        &'a self,
        _: &'a GroupAssignment,
    ) -> crate::runtime::BoxFuture<'a, Result<(), crate::runtime::RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
    fn remove<'a>(
        &'a self,
        _: &'a str,
    ) -> crate::runtime::BoxFuture<'a, Result<(), crate::runtime::RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
    fn status(&self, _: &str) -> Option<GroupStatus> {
        None
    }
    fn groups(&self) -> Vec<GroupStatus> {
        Vec::new()
    }
    fn set_advertised_dns(&self, server: Option<std::net::IpAddr>) {
        self.0.lock().unwrap().push(server);
    }
}

#[tokio::test]
async fn every_full_state_tells_the_runtime_the_advertised_nameserver() {
    let runtime = Arc::new(Nameservers::default());
    let mut sup = Supervisor::new(runtime.clone(), Changes::default());
    let full_with = |server: &str| DesiredState {
        dns_server: server.into(),
        ..full(Vec::new())
    };
    sup.apply(full_with("10.88.0.1")).await;
    sup.apply(delta(Vec::new(), &[])).await;
    sup.apply(full_with("")).await;
    sup.apply(full_with("fd00::53")).await;
    sup.apply(full_with("not an address")).await;
    let told = runtime.0.lock().unwrap().clone();
    let ip = |s: &str| Some(s.parse().unwrap());
    assert_eq!(
        told,
        [ip("10.88.0.1"), None, ip("fd00::53"), None],
        "full states only; empty or unparsable is none"
    );
}
