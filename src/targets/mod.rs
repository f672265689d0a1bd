//! Workspace targets: where the engine's operations land. `local` keeps the workspace in
//! oktasync's own store (served over SCIM); a downstream `scim` target comes next.

pub mod local;
