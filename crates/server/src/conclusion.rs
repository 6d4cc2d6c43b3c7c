//! The engine's conclusions and the store's: the same four values, each crate with its own
//! type (the store knows nothing of the engine).

/// A conclusion the engine reached, as the store keeps it.
pub(crate) fn to_store(c: engine::Conclusion) -> store::Conclusion {
    match c {
        engine::Conclusion::Success => store::Conclusion::Success,
        engine::Conclusion::Failure => store::Conclusion::Failure,
        engine::Conclusion::Cancelled => store::Conclusion::Cancelled,
        engine::Conclusion::Skipped => store::Conclusion::Skipped,
    }
}

/// A stored conclusion as the engine's.
pub(crate) fn to_engine(c: store::Conclusion) -> engine::Conclusion {
    match c {
        store::Conclusion::Success => engine::Conclusion::Success,
        store::Conclusion::Failure => engine::Conclusion::Failure,
        store::Conclusion::Cancelled => engine::Conclusion::Cancelled,
        store::Conclusion::Skipped => engine::Conclusion::Skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways_and_the_same_words() {
        for c in [
            engine::Conclusion::Success,
            engine::Conclusion::Failure,
            engine::Conclusion::Cancelled,
            engine::Conclusion::Skipped,
        ] {
            assert_eq!(to_store(c).as_str(), c.as_str());
            assert_eq!(to_engine(to_store(c)), c);
        }
    }
}
