//! Planning: which workflows an event fires (GitHub's filter globs), matrix expansion and
//! the job graph. Pure: no IO, no tokio, and no knowledge of the YAML model (the `workflow`
//! crate depends on this one, not the other way round).

pub mod filter;
pub mod matrix;
pub mod trigger;
