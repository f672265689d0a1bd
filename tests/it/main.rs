//! The one integration-test binary: real processes on loopback (the `oktasync` binary and
//! its fake Okta), against SQLite and PostgreSQL.

mod config_cli;
mod daemon;
mod helpers;
mod incremental;
mod okta_client;
mod okta_conformance;
mod okta_faults;
mod okta_oauth;
mod pipeline;
mod scim;
mod scim_target;
mod scim_target_faults;
mod store_conformance;
