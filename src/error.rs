//! Typed errors of the library API.

use crate::config::ConfigError;
use crate::core::WriteError;

/// What a cluster operation can fail with. Every error leaves every table
/// as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// No server of that name.
    #[error("unknown server `{0}`")]
    UnknownServer(String),
    /// No site of that name.
    #[error("unknown site `{0}`")]
    UnknownSite(String),
    /// No backup of that name.
    #[error("unknown backup `{0}`")]
    UnknownBackup(String),
    /// A backup of one server restored onto another.
    #[error("backup `{backup}` was taken from {taken_from}, not {server}")]
    WrongServer {
        /// The backup.
        backup: String,
        /// Where it came from.
        taken_from: String,
        /// Where it was to go.
        server: String,
    },
    /// A backup of a server that is down.
    #[error("{0} is down: no backup can be taken")]
    ServerDown(String),
    /// No connector between those sites.
    #[error("no connector between `{0}` and `{1}`")]
    NoConnector(String, String),
    /// An invalid topology.
    #[error("invalid topology: {0}")]
    Topology(String),
    /// An invalid partition.
    #[error("invalid partition: {0}")]
    Partition(String),
    /// A refused or invalid write.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A replication setting out of its bounds ([`crate::limits`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Link faults out of their bounds: a probability that is not a number
    /// from 0 to 1, or a jitter past [`crate::limits::MAX_DURATION`].
    #[error("invalid link faults: `{field}` {message}")]
    Faults {
        /// The field of [`crate::LinkFaults`].
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An empty or blank dn.
    #[error("a dn must not be empty")]
    EmptyDn,
    /// An argument past its bound ([`crate::limits`]).
    #[error("invalid {what}: {message}")]
    OutOfBounds {
        /// The argument.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A refused `release` ([`crate::Cluster::release`]).
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// The actor system is gone: a server, the network or the supervisor
    /// stopped under us (a bug, reported as an error rather than a result
    /// or a panic).
    #[error("the actor system stopped: {0}")]
    Mailbox(String),
}

/// Why a server cannot be released from quarantine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The server is not quarantined.
    #[error("{server} is not quarantined (it is {mode}): nothing to release")]
    NotQuarantined {
        /// The server.
        server: String,
        /// Its state (`running`, `backsync`, `resync`).
        mode: &'static str,
    },
    /// The server is down.
    #[error("{0} is down: nothing to release")]
    Down(String),
}

impl From<actix::MailboxError> for ClusterError {
    fn from(e: actix::MailboxError) -> Self {
        ClusterError::Mailbox(e.to_string())
    }
}
