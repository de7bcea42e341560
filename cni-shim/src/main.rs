//! vswitch-cni (being written)
fn main() {}
