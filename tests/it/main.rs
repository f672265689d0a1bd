//! The one integration-test binary: real processes on loopback (the `oktasync` binary and
//! its fake Okta), against SQLite and PostgreSQL.

mod config_cli;
mod helpers;
mod okta_client;
mod pipeline;
mod store_conformance;
