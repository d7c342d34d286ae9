//! backsync: an actor-based in-process multi-master directory that restores
//! servers from backups and measures what comes back.
//!
//! - [`core`]: the sans-IO protocol (object table, stamps, conflicts,
//!   GetChanges, apply, backup, restore strategies).
//! - [`shell`]: `DirectoryServer`, `Network` and `Supervisor` actors on a
//!   simulated clock.
//! - [`Cluster`]: the synchronous API over them.
//! - [`import`]: an Active Directory forest read from an `ldifde` export.
//! - [`limits`]: the bounds of every number and duration, checked by the
//!   scenario parser and the library alike.
/// The measurements of `backsync bench`, and fixtures the criterion benches
/// share; not meant for library users.
#[doc(hidden)]
pub mod bench;
pub mod campaign;
pub mod cluster;
pub mod config;
pub mod core;
pub mod error;
pub mod import;
pub mod limits;
#[cfg(feature = "plot")]
pub mod plot;
pub mod report;
pub mod run;
pub mod scenario;
#[cfg(feature = "serve")]
pub mod serve;
pub mod shell;
pub mod throughput;
pub mod view;

pub use cluster::{Cluster, InboundLink, LoadReport, LoadSpec};
pub use config::{
    BadDuration, ConfigError, Granularity, Profile, ReplicationConfig, RestoreStrategy,
    UnknownName, count, fmt_duration, group, parse_duration, plural,
};
pub use error::{ClusterError, ReleaseError};
pub use scenario::{Scenario, ScenarioError};
pub use shell::network::LinkFaults;
pub use shell::observe::{Counters, Event};
pub use shell::supervisor::Convergence;
pub use shell::topology::{Connection, Connector, Site, Topology};
pub use view::{ObjectView, ServerStatus};

// The README's Rust example compiles and runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
