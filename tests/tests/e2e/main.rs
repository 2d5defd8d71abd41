#![allow(unreachable_pub, dead_code)]

//! End-to-end tests: a real apiserver (HTTPS, gRPC with mTLS, SQLite) and real hollow node agents,
//! in-process on loopback ports chosen by the OS, each cluster in its own temp dir; real nodes
//! (containerd, CNI) and apiserver processes where a test needs them (`real`, `process`), replicas on
//! a PostgreSQL of the test binary's own (`pg_replicas`, `ha`).

mod arm;
mod arm_reading;
mod az;
mod billing;
mod cli;
mod console;
mod console_browser;
mod containers;
mod dns;
mod dns_inside;
mod errors;
mod exec;
mod fencing;
mod group_races;
mod groups;
mod ha;
mod harness;
mod hostile;
mod isolation;
mod logs;
mod metering;
mod metrics;
mod metrics_prometheus;
mod node_lifecycle;
mod node_loss;
mod nodes;
mod pg_replicas;
mod probes;
mod process;
mod real;
mod refusals;
mod replicas;
mod rescheduling;
mod restart;
mod scheduling;
mod signin;
mod tenancy;
mod tokens;
mod validation;
mod wire;
