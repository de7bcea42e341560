//! Fuzz target: one line on the control socket, as the daemon reads a request and as
//! `vswitchctl`/`vswitch-cni` read the response.
//!
//! Both [`Request`] and [`Response`] are parsed from the input with serde_json, exactly
//! as the two ends do. What parses must serialize, and the serialized text must parse
//! back to an equal value (and serialize to the same text again): the JSON shapes are
//! the protocol, so a value one end can write must be one the other end can read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use vswitch::control::proto::{Request, Response};

fn round_trip<T>(data: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(value) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let text = serde_json::to_vec(&value).expect("a parsed value serializes");
    let again: T = match serde_json::from_slice(&text) {
        Ok(again) => again,
        Err(e) => panic!(
            "{} does not parse back: {e}\n{value:?}",
            String::from_utf8_lossy(&text)
        ),
    };
    assert_eq!(again, value, "{}", String::from_utf8_lossy(&text));
    let text_again = serde_json::to_vec(&again).expect("serializes");
    assert_eq!(text, text_again, "serialization is not stable");
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Request>(data);
    round_trip::<Response>(data);
});
