//! The actor shell: `DirectoryServer` actors, the simulated `Network` and
//! the `Supervisor`, carrying the core's messages on a simulated clock.

pub mod network;
pub mod observe;
pub mod server;
pub mod supervisor;
pub mod topology;

use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::config::ReplicationConfig;
use crate::core::{Containers, CoreConfig, InvocationId, SimTime, Usn};
use observe::Observatory;
use topology::Layout;

/// What every actor of one cluster shares: settings, layout, observations.
#[derive(Debug)]
pub struct Shared {
    pub(crate) cfg: ReplicationConfig,
    layout: RwLock<Layout>,
    /// Observations.
    pub obs: Observatory,
    start: tokio::time::Instant,
    seed: u64,
    /// Throughput mode (real clock, several threads): a server pulls from
    /// one source at a time, the others queued, as AD's inbound replication
    /// queue does (the deterministic mode's notification spacing staggers
    /// pulls instead), and a message without delay skips the timer.
    pub(crate) throughput: bool,
    /// Per server, its last restore that kept the backup's database
    /// instance (backsync, naive): what a reply still in flight from
    /// before it is checked against.
    restore_marks: Mutex<Vec<Option<RestoreMark>>>,
    /// Which parent dns are fixed containers, for every database instance.
    pub(crate) containers: RwLock<Arc<Containers>>,
}

/// A restore that kept the backup's invocation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RestoreMark {
    /// The restored instance's number (restores of that server so far).
    pub epoch: u64,
    /// The kept invocation id.
    pub invocation: InvocationId,
    /// The restored backup's USN: its own writes above it were lost.
    pub backup_usn: Usn,
}

impl Shared {
    pub(crate) fn new(
        cfg: ReplicationConfig,
        layout: Layout,
        seed: u64,
        throughput: bool,
    ) -> Arc<Self> {
        let n = layout.servers.len();
        Arc::new(Shared {
            cfg,
            layout: RwLock::new(layout),
            obs: Observatory::new(n),
            start: tokio::time::Instant::now(),
            seed,
            throughput,
            restore_marks: Mutex::new(vec![None; n]),
            containers: RwLock::new(Arc::new(Containers::Implicit)),
        })
    }

    pub(crate) fn layout(&self) -> RwLockReadGuard<'_, Layout> {
        self.layout.read().expect("layout lock")
    }

    pub(crate) fn layout_mut(&self) -> RwLockWriteGuard<'_, Layout> {
        self.layout.write().expect("layout lock")
    }

    pub(crate) fn set_restore_mark(&self, server: usize, mark: Option<RestoreMark>) {
        self.restore_marks.lock().expect("restore marks")[server] = mark;
    }

    pub(crate) fn restore_mark(&self, server: usize) -> Option<RestoreMark> {
        self.restore_marks.lock().expect("restore marks")[server]
    }

    /// Simulated ms since the cluster started (the runtime's clock).
    pub(crate) fn now(&self) -> SimTime {
        (tokio::time::Instant::now() - self.start).as_millis() as SimTime
    }

    /// Which parent dns are fixed containers now.
    pub(crate) fn containers(&self) -> Arc<Containers> {
        self.containers.read().expect("containers lock").clone()
    }

    pub(crate) fn core_config(&self) -> CoreConfig {
        CoreConfig {
            granularity: self.cfg.granularity,
            tombstone_lifetime: self.cfg.tombstone_lifetime.as_millis() as u64,
            rollback_detection: self.cfg.rollback_detection,
        }
    }

    /// A deterministic invocation id for a server's n-th database instance.
    pub(crate) fn invocation_for(&self, idx: usize, incarnation: u64) -> InvocationId {
        let mut z = self
            .seed
            .wrapping_add((idx as u64) << 32)
            .wrapping_add(incarnation)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // splitmix64 finaliser: well spread, never collides for distinct inputs.
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        // Zero means "no invocation" to the engine (an empty cursor).
        InvocationId((z ^ (z >> 31)).max(1))
    }
}
