//! `berth container …`: the ACI container-group operations.

pub mod create;
pub mod delete;
pub mod list;
pub mod restart;
pub mod show;
pub mod start;
pub mod stop;
