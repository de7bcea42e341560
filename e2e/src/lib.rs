//! Test harness for namespaces, daemons and CNI calls (being written).
