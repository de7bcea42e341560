//! The operator CLI.
fn main() {}
