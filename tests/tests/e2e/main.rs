#![allow(unreachable_pub, dead_code)]

//! End-to-end tests: a real apiserver (HTTPS, gRPC with mTLS, SQLite) and real hollow node agents,
//! in-process on loopback ports chosen by the OS, each cluster in its own temp dir.

mod arm;
mod arm_reading;
mod az;
mod billing;
mod cli;
mod containers;
mod dns;
mod errors;
mod exec;
mod group_races;
mod groups;
mod harness;
mod hostile;
mod isolation;
mod logs;
mod metering;
mod nodes;
mod real;
mod refusals;
mod replicas;
mod restart;
mod scheduling;
mod signin;
mod tenancy;
mod tokens;
mod validation;
mod wire;
