//! Shared helpers of the benchmarks (frame builders).
