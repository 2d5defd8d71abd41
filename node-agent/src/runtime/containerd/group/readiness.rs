//! Which containers are ready, and whether the group as a whole is not (its DNS record is withheld
//! then). Pure: the worker's status handle applies it after every change.

use berth_proto::node::{ContainerState, GroupStatus};

/// Sets each container's `ready` (running, and passing its readiness probe if it has one) and the
/// group's `not_ready` (some app container with a readiness probe is not ready, also one that does
/// not run). `probed` is per container of `status`: `None` without a readiness probe, else whether
/// its probe passes; a container it does not cover counts as having none.
pub(super) fn apply(status: &mut GroupStatus, probed: &[Option<bool>]) {
    let mut not_ready = false;
    for (i, c) in status.containers.iter_mut().enumerate() {
        let running = c
            .current
            .as_ref()
            .is_some_and(|r| r.state == ContainerState::Running as i32);
        let probe = probed.get(i).copied().flatten();
        c.ready = running && probe.unwrap_or(true);
        not_ready |= !c.init && probe.is_some() && !c.ready;
    }
    status.not_ready = not_ready;
}

#[cfg(test)]
mod tests {
    use berth_proto::node::{ContainerRun, ContainerStatus};

    use super::*;

    fn container(init: bool, state: Option<ContainerState>) -> ContainerStatus {
        ContainerStatus {
            init,
            current: state.map(|state| ContainerRun {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn group(containers: Vec<ContainerStatus>) -> GroupStatus {
        GroupStatus {
            containers,
            ..Default::default()
        }
    }

    fn ready(status: &GroupStatus) -> Vec<bool> {
        status.containers.iter().map(|c| c.ready).collect()
    }

    #[test]
    fn a_container_without_a_readiness_probe_is_ready_while_it_runs() {
        let mut status = group(vec![
            container(false, Some(ContainerState::Running)),
            container(false, Some(ContainerState::Terminated)),
            container(false, Some(ContainerState::Waiting)),
            container(false, None),
        ]);
        apply(&mut status, &[]);
        assert_eq!(ready(&status), [true, false, false, false]);
        assert!(
            !status.not_ready,
            "no readiness probe: nothing withholds the group"
        );
    }

    #[test]
    fn the_group_is_not_ready_while_a_probed_app_container_is_not() {
        let running = Some(ContainerState::Running);
        let mut status = group(vec![
            container(true, Some(ContainerState::Terminated)),
            container(false, running),
            container(false, running),
        ]);
        apply(&mut status, &[None, None, Some(false)]);
        assert_eq!(ready(&status), [false, true, false]);
        assert!(status.not_ready);

        apply(&mut status, &[None, None, Some(true)]);
        assert_eq!(ready(&status), [false, true, true]);
        assert!(!status.not_ready);

        // Passing its probe is not enough: it must run.
        status.containers[2].current = Some(ContainerRun {
            state: ContainerState::Waiting as i32,
            detail_status: "CrashLoopBackOff".into(),
            ..Default::default()
        });
        apply(&mut status, &[None, None, Some(true)]);
        assert_eq!(ready(&status), [false, true, false]);
        assert!(status.not_ready, "a probed container that does not run");
    }

    #[test]
    fn an_init_container_never_holds_the_group_back() {
        let mut status = group(vec![
            container(true, Some(ContainerState::Running)),
            container(false, Some(ContainerState::Waiting)),
        ]);
        apply(&mut status, &[Some(false), None]);
        assert_eq!(ready(&status), [false, false]);
        assert!(!status.not_ready);
    }
}
