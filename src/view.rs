//! Read-only views of objects and servers, for reports and assertions.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::{Guid, InvocationId, Replica};

/// One object as one server holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectView {
    /// Its guid.
    pub guid: Guid,
    /// The dn it is shown with (`<dn> CNF:<guid>` when it lost a name conflict).
    pub dn: String,
    /// Whether it is a tombstone.
    pub deleted: bool,
    /// Live attribute values.
    pub attrs: BTreeMap<String, String>,
    /// Object version (the latest originating write's).
    pub version: u32,
    /// Invocation that made the latest originating write.
    pub origin: InvocationId,
    /// Local USN of the last change here.
    pub usn_changed: u64,
    /// Local USN when it arrived here.
    pub usn_created: u64,
    /// Simulated time (ms) of the latest originating write.
    pub when_changed: u64,
}

impl ObjectView {
    pub(crate) fn new(dn: String, r: &Replica) -> Self {
        ObjectView {
            guid: r.state.guid(),
            dn,
            deleted: r.state.deleted(),
            attrs: r.state.values(),
            version: r.state.stamp().version,
            origin: r.state.stamp().invocation,
            usn_changed: r.usn_changed.0,
            usn_created: r.usn_created.0,
            when_changed: r.state.stamp().time,
        }
    }
}

/// One server's state, as reports show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerStatus {
    /// Name.
    pub name: String,
    /// Site.
    pub site: String,
    /// Live objects.
    pub live_objects: usize,
    /// Tombstones.
    pub tombstones: usize,
    /// USN counter.
    pub usn: u64,
    /// Database instance (hex).
    pub invocation_id: String,
    /// `running`, `backsync`, `resync`, `quarantined` or `down`.
    pub state: String,
}
