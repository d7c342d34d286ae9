//! The sans-IO protocol core: no actix, no clock, no threads.
//!
//! Everything here is plain data and functions; the caller passes the time
//! and carries the messages. That keeps it testable by unit and property
//! tests, and lets the actor shell and the benchmarks drive the same code.

pub(crate) mod chunklog;
pub(crate) mod cow;
pub mod dsa;
pub mod hash;
pub mod ids;
pub mod messages;
pub mod object;
pub(crate) mod origin;
pub(crate) mod prefetch;
pub mod table;
pub mod tree;
pub mod vectors;
pub mod week;

pub use dsa::{
    Applied, AuthoritativeRaise, BacksyncRun, Backup, CoreConfig, CoreEvent, Dsa, Mode, OwnWrite,
    RestoreOptions, VERSION_RAISE_PER_DAY, WriteError, dn_in_subtree, version_raise,
};
pub use hash::StableHasher;
pub use ids::{Guid, InvocationId, SimTime, Stamp, Usn};
pub use messages::{ChangesReply, GetChanges, PullKind};
pub use object::{Attr, AttrRef, Attrs, Merge, Name, ObjectState, StateParts, merge};
pub use table::{Ahead, Digest, Found, GuidHasher, ObjectTable, Origin, Replica};
pub use tree::{Containers, Parent, ParentRef};
pub use vectors::{HighWatermark, UpToDatenessVector};
pub use week::WeekWindows;
