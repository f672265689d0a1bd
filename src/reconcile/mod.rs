//! The reconciliation engine: desired state, plan, safety gate and apply, plus the ports
//! (traits) it needs from the outside world. It depends on the domain model and its own
//! ports only; no module here knows Okta JSON, SCIM JSON or SQL.

pub mod apply;
pub mod cycle;
pub mod desired;
pub mod plan;
pub mod ports;
pub mod safety;

#[cfg(test)]
pub mod fakes;
#[cfg(test)]
mod tests;
