#![allow(unreachable_pub, dead_code)]

//! End-to-end tests: a real apiserver (HTTPS, gRPC with mTLS, SQLite) and real hollow node agents,
//! in-process on loopback ports chosen by the OS, each cluster in its own temp dir.

mod harness;
mod validation;
