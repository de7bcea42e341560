//! Talking to etcd: every call under [`CALL_TIMEOUT`], its failures sorted into what the
//! store does about them, and [`Plan`]s turned into etcd transactions.
//!
//! Invariants:
//! - No call waits longer than [`CALL_TIMEOUT`]: an unreachable etcd costs a write at
//!   most that long, never a hang.
//! - A failure is [`CallError::Refused`] only when etcd answered and rejected the request
//!   itself (retrying the same request cannot help); everything else that is not about the
//!   node lease is [`CallError::Unreachable`], which the store treats as losing etcd.
#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
};
use tonic::Code;

use super::cache::RawKv;
use super::keys::{Keyspace, SUBNETS};
use super::writes::{Guard, Op, Plan};

/// The longest any single etcd call may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest full read of the store the client accepts (the gRPC default is 4 MiB,
/// about ten thousand pods).
const MAX_READ_BYTES: usize = 256 << 20;

/// Why an etcd call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No answer, a broken connection, or an answer that says etcd cannot serve now.
    Unreachable(String),
    /// The lease named in the request no longer exists (it expired).
    LeaseNotFound,
    /// etcd rejected the request itself; the message says why and what to change.
    Refused(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Unreachable(m) | CallError::Refused(m) => f.write_str(m),
            CallError::LeaseNotFound => f.write_str("the node's etcd lease expired"),
        }
    }
}

/// Runs one etcd call under [`CALL_TIMEOUT`]; `what` names it in errors.
///
/// # Errors
/// The call's failure, classified.
pub async fn call<T>(
    what: &str,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Err(_) => Err(CallError::Unreachable(format!(
            "{what}: no answer from etcd within {} s",
            CALL_TIMEOUT.as_secs()
        ))),
        Ok(Err(e)) => Err(classify(what, &e)),
        Ok(Ok(v)) => Ok(v),
    }
}

fn classify(what: &str, e: &etcd_client::Error) -> CallError {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            match status.code() {
                Code::NotFound if message.contains("lease not found") => CallError::LeaseNotFound,
                Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                    CallError::Refused(format!(
                        "{what}: etcd refused it: {message}{}",
                        hint(message)
                    ))
                }
                _ => CallError::Unreachable(format!("{what}: {}", explain(e))),
            }
        }
        etcd_client::Error::LeaseKeepAliveError(m) if m.contains("lease not found") => {
            CallError::LeaseNotFound
        }
        other => CallError::Unreachable(format!("{what}: {}", explain(other))),
    }
}

/// A readable account of an etcd client error: a gRPC status by its message and its
/// innermost cause (its `Display` dumps the whole transport error), anything else with
/// its causes.
pub fn explain(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            let mut innermost = std::error::Error::source(status);
            while let Some(next) = innermost.and_then(std::error::Error::source) {
                innermost = Some(next);
            }
            match innermost.map(ToString::to_string) {
                Some(cause) if !status.message().contains(&cause) => {
                    format!("{}: {cause}", status.message())
                }
                _ => status.message().to_owned(),
            }
        }
        other => describe(other),
    }
}

/// What to do about etcd's request limits.
fn hint(message: &str) -> &'static str {
    if message.contains("too many operations") {
        "; raise etcd's --max-txn-ops (default 128), or apply fewer objects at once"
    } else if message.contains("too large") {
        "; raise etcd's --max-request-bytes (default 1.5 MiB), or apply fewer objects at once"
    } else {
        ""
    }
}

/// An error with its chain of causes, which is where transport errors say what happened.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// A full read of the store: every key under the prefix (relative), and the revision the
/// read was made at.
///
/// # Errors
/// The read's failure.
pub async fn read_all(client: &Client, keys: &Keyspace) -> Result<(Vec<RawKv>, i64), CallError> {
    let mut kv = client.kv_client().max_decoding_message_size(MAX_READ_BYTES);
    let resp = call(
        "reading the cluster store",
        kv.get(keys.prefix(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let kvs = resp.kvs().iter().filter_map(|kv| raw(keys, kv)).collect();
    Ok((kvs, revision))
}

/// One key as the cache takes it, or `None` for a key outside the prefix.
pub fn raw(keys: &Keyspace, kv: &KeyValue) -> Option<RawKv> {
    Some(RawKv {
        key: keys.relative(kv.key())?.to_owned(),
        value: kv.value().to_vec(),
        lease: kv.lease(),
        mod_revision: kv.mod_revision(),
    })
}

/// The etcd transaction of a plan.
pub fn transaction(keys: &Keyspace, plan: &Plan) -> Txn {
    let compares: Vec<Compare> = plan
        .guards
        .iter()
        .map(|g| match g {
            Guard::Absent(k) => Compare::create_revision(keys.full(k), CompareOp::Equal, 0),
            Guard::Unchanged(k, rev) => Compare::mod_revision(keys.full(k), CompareOp::Equal, *rev),
            Guard::NoNewReservation(rev) => {
                Compare::create_revision(keys.full(SUBNETS), CompareOp::Less, rev.saturating_add(1))
                    .with_prefix()
            }
        })
        .collect();
    let ops: Vec<TxnOp> = plan
        .ops
        .iter()
        .map(|op| match op {
            Op::Put { key, value, lease } => TxnOp::put(
                keys.full(key),
                value.clone(),
                (*lease != 0).then(|| PutOptions::new().with_lease(*lease)),
            ),
            Op::Delete(key) => TxnOp::delete(keys.full(key), None),
            Op::DeletePrefix(prefix) => {
                TxnOp::delete(keys.full(prefix), Some(DeleteOptions::new().with_prefix()))
            }
        })
        .collect();
    Txn::new().when(compares).and_then(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let status =
            |code, msg: &str| etcd_client::Error::GRpcStatus(tonic::Status::new(code, msg));
        assert_eq!(
            classify(
                "x",
                &status(Code::NotFound, "etcdserver: requested lease not found")
            ),
            CallError::LeaseNotFound
        );
        let refused = classify(
            "x",
            &status(
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
        );
        assert!(
            matches!(&refused, CallError::Refused(m) if m.contains("--max-txn-ops")),
            "{refused}"
        );
        assert!(matches!(
            classify("x", &status(Code::Unavailable, "etcdserver: no leader")),
            CallError::Unreachable(_)
        ));
        assert!(matches!(
            classify("x", &etcd_client::Error::WatchError("gone".into())),
            CallError::Unreachable(_)
        ));
    }
}
