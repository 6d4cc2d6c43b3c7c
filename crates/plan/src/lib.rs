//! Planning: which workflows an event fires (`trigger`, with GitHub's filter globs in
//! `filter`) and matrix expansion (`matrix`). The job graph's rules are the engine's
//! (`engine::graph`). Pure: no IO, no tokio, and no knowledge of the YAML model (the `workflow`
//! crate depends on this one, not the other way round).

pub mod filter;
pub mod matrix;
pub mod trigger;
