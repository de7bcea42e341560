//! Fuzz target: one key and value of the etcd cluster store as a daemon reads them from
//! etcd (a range read at start, then every watch event): `vswitch::store::etcd::keys::
//! decode`, which decides the record's kind from the key (relative to the prefix) and
//! checks that the value names the same record as its key.
//!
//! Input layout: the relative key (`cluster`, `nodes/<name>`, `subnets/<net>/<len>`,
//! `pods/<node>/<container>/<ifname>`, `objects/<kind>/<ns>/<name>`), a NUL byte, then
//! the value. Without a NUL, the whole input is the value, tried under every kind of key.
//!
//! Beyond "no panic": what decodes re-encodes ([`keys::encode`]) into a value that
//! decodes, under the same key, to the same record; a key outside the layout is ignored
//! (`None`) whatever the value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::store::etcd::keys::{self, Record};

/// Keys of every kind, for inputs that are only a value.
const KEYS: [&str; 6] = [
    keys::CLUSTER,
    "nodes/node1",
    "subnets/10.244.1.0/24",
    "pods/node1/c1/eth0",
    "objects/NetworkPolicy/default/deny",
    "elsewhere/x",
];

fn check(key: &str, value: &[u8]) {
    let Some(decoded) = keys::decode(key, value) else {
        assert!(
            ![keys::NODES, keys::SUBNETS, keys::PODS, keys::OBJECTS]
                .iter()
                .any(|prefix| key.starts_with(prefix))
                && key != keys::CLUSTER,
            "a key of the layout was ignored: {key}"
        );
        return;
    };
    let Ok(record) = decoded else {
        return;
    };
    let encoded = match &record {
        Record::Cluster(r) => keys::encode(r),
        Record::Node(r) => keys::encode(r),
        Record::Subnet(r) => keys::encode(r),
        Record::Pod(r) => keys::encode(r),
        Record::Object(r) => keys::encode(r),
    }
    .expect("a decoded record encodes");
    match keys::decode(key, &encoded) {
        Some(Ok(again)) => assert_eq!(
            again,
            record,
            "{key}: {} decodes to another record",
            String::from_utf8_lossy(&encoded)
        ),
        other => panic!(
            "{key}: the re-encoded {} does not decode: {other:?}",
            String::from_utf8_lossy(&encoded)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    match data.iter().position(|&b| b == 0) {
        Some(at) => {
            let (key, value) = (&data[..at], &data[at + 1..]);
            if let Ok(key) = std::str::from_utf8(key) {
                check(key, value);
            }
        }
        None => {
            for key in KEYS {
                check(key, data);
            }
        }
    }
});
