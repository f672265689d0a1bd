//! oktasync: keeps a workspace's members and groups in step with Okta by pulling.
//! See ARCHITECTURE.md for the map and its invariants.

pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod heap;
pub mod http;
pub mod metrics;
pub mod model;
pub mod okta;
pub mod pull;
pub mod reconcile;
pub mod render;
pub mod scim;
pub mod scim_wire;
pub mod status;
pub mod store;
pub mod targets;
