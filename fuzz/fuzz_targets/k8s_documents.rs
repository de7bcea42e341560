//! Fuzz target: the text of a file given to `vswitchctl apply -f` / `delete -f`, as the
//! daemon parses it (`vswitch::k8s::parse_documents`: YAML or JSON, `---` streams,
//! `List`s) — and, through the objects it accepts, what `policy matrix` and the data path
//! compile.
//!
//! Beyond "no panic": every accepted object survives the store round trip
//! (`to_record` → `from_record` gives it back equal), and the whole set compiles into a
//! policy set whose verdicts answer without panicking.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use vswitch::k8s::{parse_documents, Object};
use vswitch::policy::{PodInfo, PolicyModel, PolicySet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(objects) = parse_documents(text) else {
        return;
    };
    for object in &objects {
        let record = object.to_record();
        let back = Object::from_record(&record).expect("a stored object reads back");
        assert_eq!(&back, object, "store round trip changed the object");
    }
    let pods: Vec<PodInfo> = objects
        .iter()
        .filter_map(|object| match object {
            Object::Pod(pod) => PodInfo::from_pod(pod),
            _ => None,
        })
        .collect();
    let model = PolicyModel::from_objects(&objects, pods);
    let set = PolicySet::compile(&model);
    let probe = [Ipv4Addr::new(10, 244, 0, 2), Ipv4Addr::new(10, 244, 1, 3)];
    for src in probe {
        for dst in probe {
            for (protocol, port) in [(6, 80), (17, 53), (132, 9), (1, 0)] {
                let _ = set.allows(src, dst, protocol, port);
            }
        }
    }
});
