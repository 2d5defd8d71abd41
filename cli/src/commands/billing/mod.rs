//! `berth billing …`: usage and cost, from the usage routes (FOCUS rows).

pub mod export;
pub mod show;
