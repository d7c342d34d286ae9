//! The replication messages: GetChanges and its reply.

use std::sync::Arc;

use crate::core::ids::{InvocationId, Usn};
use crate::core::object::ObjectState;
use crate::core::vectors::UpToDatenessVector;

/// What a pull is for; a reply answers one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PullKind {
    /// Ordinary replication from a high-watermark.
    Normal,
    /// A restored server asking for the objects it had originated.
    Backsync,
    /// A full copy of the directory (full-resync restore).
    Full,
}

/// A destination asks a source for changes.
#[derive(Debug, Clone)]
pub struct GetChanges {
    /// Matches the reply to its request; stale and duplicated replies are ignored.
    pub request_id: u64,
    /// The asking server.
    pub requester: Arc<str>,
    /// The asking server's database instance; in a backsync request, the
    /// instance whose objects it asks for (after a safe-backsync restore,
    /// the restored backup's, not the server's new one).
    pub requester_invocation: InvocationId,
    /// The source invocation `from_usn` belongs to; another one means "from zero".
    pub source_invocation: Option<InvocationId>,
    /// Send changes above this source USN (backsync: above this originating USN).
    pub from_usn: Usn,
    /// What the requester already holds: the source skips it (dampening).
    pub utdv: UpToDatenessVector,
    /// The backsync flag, or a full copy.
    pub kind: PullKind,
    /// At most this many objects per reply.
    pub max_objects: usize,
    /// Send each object's ancestors before it (MS-DRSR 4.1.10's
    /// `DRS_GET_ANC`): the destination found an object whose parent it
    /// does not hold and asks again with this set.
    pub get_anc: bool,
}

/// A source's answer to [`GetChanges`].
#[derive(Debug, Clone)]
pub struct ChangesReply {
    /// The request this answers.
    pub request_id: u64,
    /// What the request was for.
    pub kind: PullKind,
    /// The answering server.
    pub source: Arc<str>,
    /// Its database instance: a new one resets the requester's watermark.
    pub source_invocation: InvocationId,
    /// Changed objects, in the source's USN order (backsync: originating-USN order).
    pub changes: Vec<ObjectState>,
    /// More changes wait: ask again from `watermark`.
    pub more: bool,
    /// The cursor to ask from next.
    pub watermark: Usn,
    /// The source's vector, sent with the last page.
    pub utdv: Option<UpToDatenessVector>,
    /// Backsync: the highest USN of the requester this source has seen.
    pub seen_requester_usn: Option<Usn>,
    /// The source would not answer (quarantined, or itself in backsync).
    pub refused: bool,
}
