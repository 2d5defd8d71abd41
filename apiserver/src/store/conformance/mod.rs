//! The store conformance suite: what callers rely on, per concern, for any backend.
//!
//! A backend runs it with [`store_conformance!`] and a factory that opens a fresh, empty store:
//! `store_conformance!(crate::store::sqlite::tests::fresh);` expands into one `#[tokio::test]` per
//! case (on a multi-threaded runtime, so the concurrency cases really race). Each case takes the
//! store as `Arc<dyn Store>` and uses nothing but the traits. Concurrency cases run several tasks at
//! once against one row, so a backend whose read-modify-writes are not guarded fails them.

pub(crate) mod agent_endpoints;
pub(crate) mod census;
pub(crate) mod exec_sessions;
pub(crate) mod fixtures;
pub(crate) mod groups;
pub(crate) mod leases;
pub(crate) mod metrics;
pub(crate) mod node_lifecycle;
pub(crate) mod nodes;
pub(crate) mod operations;
pub(crate) mod reports;
pub(crate) mod resource_groups;
pub(crate) mod scheduling;
pub(crate) mod tokens;

use std::sync::Arc;

use super::Store;

/// A fresh store and whatever keeps it alive (a temporary directory, a database to drop).
pub(crate) struct Subject {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) _keep: Box<dyn std::any::Any + Send + Sync>,
}

/// Expands into every case of the suite as a test, each on a fresh store from `$fresh`, an
/// `async fn() -> Subject`.
macro_rules! store_conformance {
    ($fresh:path) => {
        $crate::store::conformance::store_conformance!(@cases $fresh;
            tokens::tokens_round_trip_and_list_in_order,
            tokens::revoking_is_idempotent_and_never_takes_the_last_live_operator_token,
            tokens::racing_revokes_of_the_last_two_operator_tokens_leave_one,
            tokens::last_use_is_written_in_one_go_and_never_moves_back,
            nodes::a_join_token_use_is_consumed_once_by_racing_joins,
            nodes::a_taken_name_is_refused_and_consumes_no_use,
            nodes::heartbeats_never_move_back,
            nodes::not_ready_marks_running_groups_unhealthy,
            groups::created_groups_read_back_and_list_in_pages,
            groups::racing_creates_of_one_name_create_it_once,
            groups::a_taken_dns_name_is_a_conflict,
            groups::quota_counts_creates_and_deletes_give_it_back,
            groups::racing_creates_never_pass_the_quota,
            groups::an_update_is_refused_once_the_generation_moved,
            groups::an_update_moves_the_fqdn_unless_another_group_holds_it,
            groups::of_racing_updates_from_one_generation_one_wins,
            groups::stop_start_and_restart_move_generations,
            groups::delete_releases_capacity_once_however_many_race,
            groups::stop_and_delete_racing_release_capacity_once,
            scheduling::placements_never_overcommit_and_give_back_what_did_not_stick,
            scheduling::a_placement_of_a_stale_generation_drops_out,
            scheduling::racing_commits_never_overcommit_a_node,
            scheduling::racing_events_are_all_kept,
            scheduling::an_unplaceable_group_fails_with_its_operation,
            reports::reports_from_the_wrong_node_or_an_old_generation_are_ignored,
            reports::reports_move_provisioning_and_finish_operations,
            reports::a_failure_before_any_container_ran_fails_the_deployment,
            reports::dns_records_are_the_running_groups_with_addresses,
            reports::a_dns_record_waits_until_the_group_is_ready,
            resource_groups::a_create_makes_its_resource_group_which_is_deleted_only_when_empty,
            resource_groups::past_the_resource_group_limit_nothing_is_created_and_quota_is_given_back,
            resource_groups::a_resource_group_is_never_deleted_under_a_group_created_into_it,
            operations::operations_round_trip_and_stop_cancels_pending_ones,
            leases::of_racing_holders_one_gets_the_lease_and_renews_it,
            leases::an_expired_lease_passes_to_the_next_holder,
            leases::a_released_lease_passes_at_once,
            exec_sessions::a_session_round_trips_and_is_taken_once,
            exec_sessions::racing_takes_of_one_session_give_it_to_one,
            exec_sessions::expired_sessions_are_not_pending_and_are_purged_on_insert,
            exec_sessions::past_the_cap_the_soonest_expiring_make_room,
            agent_endpoints::the_latest_endpoint_wins_and_none_forgets,
            census::the_census_counts_nodes_groups_waiting_groups_and_ledger_rows,
            node_lifecycle::a_loss_needs_not_ready_and_yields_to_a_later_heartbeat,
            node_lifecycle::a_lost_node_gives_up_its_groups_by_restart_policy,
            node_lifecycle::reports_of_a_copy_left_behind_are_ignored,
            node_lifecycle::a_cordoned_node_gets_no_placement,
            node_lifecycle::a_drain_moves_everything_and_ends_billing_now,
            node_lifecycle::a_node_is_deleted_only_when_empty,
            node_lifecycle::a_settled_group_waits_until_restarted_or_started,
            node_lifecycle::a_created_group_waits_since_its_creation,
            node_lifecycle::across_a_loss_and_a_new_placement_each_second_is_billed_once,
            node_lifecycle::placements_racing_a_drain_or_a_forced_loss_leave_nothing_behind,
            metrics::only_samples_of_a_nodes_own_groups_are_kept,
            metrics::a_window_reads_back_oldest_first_and_values_round_trip,
            metrics::the_latest_samples_are_the_newest_per_row_with_arm_names,
            metrics::pruning_drops_samples_older_than_the_cut_only,
        );
    };
    (@cases $fresh:path; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let subject = $fresh().await;
                $crate::store::conformance::$module::$case(subject.store.clone()).await;
            }
        )*
    };
}

pub(crate) use store_conformance;
