//! What the supervisor sees without asking: per-server digests, traffic
//! counters, messages in flight and the event log. Servers publish here
//! after every handler; convergence is judged from it.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::Notify;

use crate::config::RestoreStrategy;
use crate::core::{Digest, Guid, InvocationId, ObjectState, PullKind, Usn};

/// One server as last published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerObs {
    /// Whether it is up.
    pub running: bool,
    /// Its directory fingerprint.
    pub digest: Digest,
    /// Live objects.
    pub live: usize,
    /// Tombstones.
    pub tombstones: usize,
    /// USN counter.
    pub usn: u64,
    /// Database instance.
    pub invocation: InvocationId,
    /// What it is doing (`running`, `backsync`, `resync`, `quarantined`, `down`).
    pub mode: &'static str,
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Simulated time, ms.
    pub sim_ms: u64,
    /// What happened.
    pub text: String,
}

/// One change to one server's table, recorded for plots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// The object now holds this replicated state.
    Put(Guid, ObjectState),
    /// The object is gone (garbage collection, purge).
    Remove(Guid),
    /// The server went down: it holds nothing until restored.
    Down,
    /// The table was replaced (restore); `Put`s of its content follow.
    Reset,
    /// The server's mode changed (`running`, `backsync`, `resync`,
    /// `quarantined`, `down`): see [`ServerObs::mode`].
    Mode(&'static str),
}

/// A recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Simulated ms.
    pub sim_ms: u64,
    /// Server index.
    pub server: usize,
    /// What changed.
    pub kind: ChangeKind,
}

/// One step of a backsync, as it happened (the structured twin of the
/// `backsync ...` event lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacksyncNote {
    /// Simulated ms.
    pub sim_ms: u64,
    /// The restored server (index).
    pub server: usize,
    /// What happened.
    pub kind: BacksyncStep,
}

/// What a [`BacksyncNote`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BacksyncStep {
    /// A restore started a backsync, asking these partners (indices).
    Started(Vec<usize>),
    /// A partner answered: objects its reply carried, objects that changed.
    Answer {
        /// The partner (index).
        from: usize,
        /// Objects carried.
        sent: usize,
        /// Objects that changed on the restored server.
        restored: usize,
    },
    /// The backsync ended: every partner answered (`missing == 0`), the
    /// timeout passed, or the rest were cut off by a connector deletion.
    Done {
        /// Partners that never answered.
        missing: usize,
    },
}

/// Traffic counters, read as differences around a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Replication messages sent.
    pub messages: u64,
    /// Objects carried in replies.
    pub objects_sent: u64,
    /// Objects that changed on some server by replication.
    pub objects_repaired: u64,
    /// Messages dropped (partition, crash, loss, no route, held by a
    /// server that crashed).
    pub dropped: u64,
    /// Connector hops of relayed messages: a message from a server to one
    /// two sites away that crosses both connectors counts 2.
    pub relayed: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            messages: self.messages - o.messages,
            objects_sent: self.objects_sent - o.objects_sent,
            objects_repaired: self.objects_repaired - o.objects_repaired,
            dropped: self.dropped - o.dropped,
            relayed: self.relayed - o.relayed,
        }
    }
}

/// The shared observation point.
#[derive(Debug)]
pub struct Observatory {
    in_flight: AtomicI64,
    messages: AtomicU64,
    objects_sent: AtomicU64,
    repaired: AtomicU64,
    dropped: AtomicU64,
    relayed: AtomicU64,
    /// Relayed messages held by a server now (part of `in_flight`).
    held: AtomicI64,
    servers: Mutex<Vec<ServerObs>>,
    notify: Notify,
    events: Mutex<Vec<Event>>,
    /// Every delivery and apply, folded into one hash: the fine-grained log
    /// the determinism check compares without keeping it.
    trace_hash: AtomicU64,
    recording: AtomicBool,
    changes: Mutex<Vec<Change>>,
    backsyncs: Mutex<Vec<BacksyncNote>>,
    /// Campaign hook: facts for the invariant checker (`crate::campaign`).
    facts_on: AtomicBool,
    facts: Mutex<Vec<Fact>>,
    hazards: Mutex<Vec<Hazard>>,
    /// Inbound replication per (destination, source): what `--showrepl` shows.
    links: Mutex<BTreeMap<(usize, usize), LinkStatus>>,
}

/// One inbound replication link's state, as `repadmin /showrepl` shows it
/// (from the DS_REPL_NEIGHBOR of MS-DRSR/DsReplicaGetInfo): the last pull
/// that succeeded, and, while the link is failing, the time and status of
/// the last failure and the failures since the last success.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LinkStatus {
    /// Simulated ms of the last pull answered (`None`: never).
    pub last_success_ms: Option<u64>,
    /// Simulated ms of the last pull, if it failed (`None`: it succeeded, or
    /// none was tried).
    pub last_failure_ms: Option<u64>,
    /// Consecutive failures since the last success.
    pub failures: u32,
    /// The Win32 status of the last pull, as repadmin prints it: 0 (it
    /// succeeded), 1722 (the source did not answer in time: down, cut off
    /// or lost), 8456 (the source refused: busy in a backsync,
    /// quarantined) or 8614 (this server refused the source: strict
    /// replication consistency, silent past the tombstone lifetime).
    pub last_failure_status: u32,
}

/// repadmin's status for a source that did not answer: RPC_S_SERVER_UNAVAILABLE.
pub const STATUS_UNAVAILABLE: u32 = 1722;
/// repadmin's status for a source that refused: ERROR_DS_DRA_SOURCE_DISABLED.
pub const STATUS_SOURCE_DISABLED: u32 = 8456;
/// repadmin's status for a source refused under strict replication
/// consistency: ERROR_DS_REPL_LIFETIME_EXCEEDED.
pub const STATUS_LIFETIME_EXCEEDED: u32 = 8614;

impl Observatory {
    pub(crate) fn new(n: usize) -> Self {
        let down = ServerObs {
            running: false,
            digest: Digest::default(),
            live: 0,
            tombstones: 0,
            usn: 0,
            invocation: InvocationId(0),
            mode: "down",
        };
        Observatory {
            in_flight: AtomicI64::new(0),
            messages: AtomicU64::new(0),
            objects_sent: AtomicU64::new(0),
            repaired: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            relayed: AtomicU64::new(0),
            held: AtomicI64::new(0),
            servers: Mutex::new(vec![down; n]),
            notify: Notify::new(),
            events: Mutex::new(Vec::new()),
            trace_hash: AtomicU64::new(0xcbf2_9ce4_8422_2325),
            recording: AtomicBool::new(false),
            changes: Mutex::new(Vec::new()),
            backsyncs: Mutex::new(Vec::new()),
            facts_on: AtomicBool::new(false),
            hazards: Mutex::new(Vec::new()),
            links: Mutex::new(BTreeMap::new()),
            facts: Mutex::new(Vec::new()),
        }
    }

    /// A message left a server (counted before it reaches the network, so
    /// nothing is ever in flight unseen).
    /// Counts a message sent; returns its number (unique in the cluster).
    pub(crate) fn sent(&self, objects: usize) -> u64 {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let id = self.messages.fetch_add(1, Ordering::Relaxed);
        self.objects_sent
            .fetch_add(objects as u64, Ordering::Relaxed);
        id
    }

    /// The network made a second copy.
    pub(crate) fn duplicated(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// A message was dropped on the way.
    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.done();
    }

    /// A message was handled (or dropped): it is no longer in flight.
    pub(crate) fn done(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Relayed messages held (positive) or handed on or dropped (negative).
    pub(crate) fn held(&self, n: i64) {
        self.held.fetch_add(n, Ordering::SeqCst);
    }

    /// Relayed messages crossed a connector.
    pub(crate) fn relayed(&self, n: u64) {
        self.relayed.fetch_add(n, Ordering::Relaxed);
    }

    /// Relayed messages held by a server now, waiting for a connector's
    /// tick or for the next server to be up and reachable. They count as
    /// in flight ([`Observatory::in_flight`]): a run with any held has not
    /// converged.
    pub fn held_now(&self) -> i64 {
        self.held.load(Ordering::SeqCst)
    }

    pub(crate) fn repaired(&self, n: usize) {
        self.repaired.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Messages in flight now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The traffic counters now.
    pub fn counters(&self) -> Counters {
        Counters {
            messages: self.messages.load(Ordering::Relaxed),
            objects_sent: self.objects_sent.load(Ordering::Relaxed),
            objects_repaired: self.repaired.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            relayed: self.relayed.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn publish(&self, sim_ms: u64, idx: usize, obs: ServerObs) {
        let mut s = self.servers.lock().expect("observatory lock");
        if s[idx].mode != obs.mode && self.recording() {
            self.record(sim_ms, idx, [ChangeKind::Mode(obs.mode)]);
        }
        if s[idx] != obs {
            s[idx] = obs;
            drop(s);
            self.notify.notify_waiters();
        }
    }

    /// Every server as last published.
    pub fn servers(&self) -> Vec<ServerObs> {
        self.servers.lock().expect("observatory lock").clone()
    }

    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Adds a line to the event log (and to tracing).
    pub(crate) fn event(&self, sim_ms: u64, text: String) {
        tracing::info!(target: "backsync::events", sim_ms, "{text}");
        self.trace(&text);
        self.events
            .lock()
            .expect("observatory lock")
            .push(Event { sim_ms, text });
    }

    /// Folds one fine-grained occurrence into the trace hash.
    pub(crate) fn trace<T: Hash + ?Sized>(&self, what: &T) {
        // XXH3 over fixed-width little-endian integers: a trace hash
        // recorded today replays on any toolchain (`core::hash`).
        let mut h = crate::core::StableHasher::new();
        h.write_u64(self.trace_hash.load(Ordering::Relaxed));
        what.hash(&mut h);
        self.trace_hash.store(h.finish(), Ordering::Relaxed);
    }

    /// Starts or stops recording every table change (for plots; costs memory).
    pub fn set_recording(&self, on: bool) {
        self.recording.store(on, Ordering::Relaxed);
    }

    /// Whether table changes are recorded.
    pub fn recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    pub(crate) fn record(
        &self,
        sim_ms: u64,
        server: usize,
        kinds: impl IntoIterator<Item = ChangeKind>,
    ) {
        let mut c = self.changes.lock().expect("observatory lock");
        c.extend(kinds.into_iter().map(|kind| Change {
            sim_ms,
            server,
            kind,
        }));
    }

    /// Takes the recorded changes.
    pub fn take_changes(&self) -> Vec<Change> {
        std::mem::take(&mut *self.changes.lock().expect("observatory lock"))
    }

    /// Notes a step of a backsync (always on: reports tell who answered).
    pub(crate) fn backsync_note(&self, note: BacksyncNote) {
        self.backsyncs.lock().expect("observatory lock").push(note);
    }

    /// Every backsync step noted so far, in order.
    pub fn backsync_notes(&self) -> Vec<BacksyncNote> {
        self.backsyncs.lock().expect("observatory lock").clone()
    }

    /// The event log so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("observatory lock").clone()
    }

    /// The hash of every delivery and apply so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace_hash.load(Ordering::Relaxed)
    }

    /// Campaign hook: starts or stops recording [`Fact`]s. Off by default;
    /// every hook then costs one relaxed atomic load.
    pub fn set_facts(&self, on: bool) {
        self.facts_on.store(on, Ordering::Relaxed);
    }

    /// Whether [`Fact`]s are recorded.
    pub fn facts_on(&self) -> bool {
        self.facts_on.load(Ordering::Relaxed)
    }

    pub(crate) fn facts(&self, facts: impl IntoIterator<Item = Fact>) {
        self.facts.lock().expect("observatory lock").extend(facts);
    }

    /// Takes the facts recorded so far.
    pub fn take_facts(&self) -> Vec<Fact> {
        std::mem::take(&mut *self.facts.lock().expect("observatory lock"))
    }

    /// Announces a restore hazard: an event line `hazard: <kind>: ...` in
    /// the log (and tracing, at warn level), and a record for
    /// [`Observatory::hazards`].
    pub(crate) fn hazard(&self, h: Hazard) {
        tracing::info!(target: "backsync::hazards", sim_ms = h.sim_ms, kind = %h.kind, "{}", h.text);
        self.event(h.sim_ms, format!("hazard: {}: {}", h.kind, h.text));
        self.hazards.lock().expect("observatory lock").push(h);
    }

    /// Every hazard announced so far, in order.
    pub fn hazards(&self) -> Vec<Hazard> {
        self.hazards.lock().expect("observatory lock").clone()
    }

    /// An ordinary pull of `dest` from `source` ended: answered (`status`
    /// 0) or failed with that status.
    pub(crate) fn pull_ended(&self, sim_ms: u64, dest: usize, source: usize, status: u32) {
        let mut links = self.links.lock().expect("observatory lock");
        let l = links.entry((dest, source)).or_default();
        if status == 0 {
            // As DS_REPL_NEIGHBOR keeps it: a success clears the last
            // result, so a healthy link shows no failure.
            *l = LinkStatus {
                last_success_ms: Some(sim_ms),
                ..LinkStatus::default()
            };
        } else {
            l.last_failure_ms = Some(sim_ms);
            l.failures = l.failures.saturating_add(1);
            l.last_failure_status = status;
        }
    }

    /// The state of the inbound link of `dest` from `source`.
    pub fn link(&self, dest: usize, source: usize) -> LinkStatus {
        let links = self.links.lock().expect("observatory lock");
        links.get(&(dest, source)).copied().unwrap_or_default()
    }
}

/// The ways a restore can lose data or bring deleted data back that the
/// protocol cannot prevent, only announce. Each is announced when it
/// happens, naming the server and, where known, the objects or the USN
/// range at risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HazardKind {
    /// A backup from a timeline the directory rolled back past (taken after
    /// the backup an earlier restore of the same server used) was restored:
    /// its writes above that restore point carry USNs that may have been
    /// handed out again since.
    AbandonedBackup,
    /// A backsync gave up before every partner answered: the server's own
    /// writes held only by the silent partners may be lost, and it may hand
    /// out USNs they have already seen.
    BacksyncTimeout,
    /// A reply sent by a server before its restore arrived after it,
    /// carrying the server's writes above the restored backup: the receiver
    /// now holds USNs of that database instance that the restored server
    /// will hand out again.
    WriteInFlightAtRestore,
    /// A server came back with a backup older than the tombstone lifetime:
    /// objects deleted meanwhile may linger on it and replicate back.
    TombstoneLifetimeExceeded,
}

impl HazardKind {
    /// Every kind, in a fixed order (for reports).
    pub const ALL: [HazardKind; 4] = [
        HazardKind::AbandonedBackup,
        HazardKind::BacksyncTimeout,
        HazardKind::WriteInFlightAtRestore,
        HazardKind::TombstoneLifetimeExceeded,
    ];

    /// The kind as written in event lines and JSON.
    pub fn name(self) -> &'static str {
        match self {
            HazardKind::AbandonedBackup => "abandoned-backup",
            HazardKind::BacksyncTimeout => "backsync-timeout",
            HazardKind::WriteInFlightAtRestore => "write-in-flight-at-restore",
            HazardKind::TombstoneLifetimeExceeded => "tombstone-lifetime-exceeded",
        }
    }
}

impl std::fmt::Display for HazardKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One announced hazard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hazard {
    /// Simulated ms.
    pub sim_ms: u64,
    /// What kind.
    pub kind: HazardKind,
    /// The server at risk (index into the cluster's servers).
    pub server: usize,
    /// Objects at risk, where the engine knows them (may be empty).
    pub objects: Vec<Guid>,
    /// The range of the server's originating USNs at risk, `(after, up_to]`.
    pub usns: Option<(u64, u64)>,
    /// The event text after `hazard: <kind>: `.
    pub text: String,
}

/// Why a replica was stored (a campaign [`Fact`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PutCause {
    /// An originating write on that server.
    Write,
    /// A replicated state applied from a reply.
    Apply,
    /// Loaded from a backup by a restore.
    Restore,
}

/// Why a replica was removed (a campaign [`Fact`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RemoveCause {
    /// Tombstone garbage collection.
    Gc,
    /// Connector deletion purge.
    Purge,
}

/// Campaign hook: one fine-grained fact about a server's real state, for
/// the invariant checker of [`crate::campaign`]. Recorded only while
/// [`Observatory::set_facts`] is on.
#[derive(Debug, Clone)]
pub enum Fact {
    /// A replica was stored (the state now held, with its local USN).
    Put {
        /// Simulated ms.
        sim_ms: u64,
        /// Server index.
        server: usize,
        /// The server's database instance.
        invocation: InvocationId,
        /// The replica's local USN (`usn_changed`).
        usn: Usn,
        /// The state now held.
        state: ObjectState,
        /// What stored it.
        cause: PutCause,
    },
    /// A replica was removed.
    Remove {
        /// Simulated ms.
        sim_ms: u64,
        /// Server index.
        server: usize,
        /// The object.
        guid: Guid,
        /// Why.
        cause: RemoveCause,
    },
    /// A server crashed: its table is gone.
    Down {
        /// Simulated ms.
        sim_ms: u64,
        /// Server index.
        server: usize,
    },
    /// A server started from a backup; `Put`s of its whole table follow.
    Restored {
        /// Simulated ms.
        sim_ms: u64,
        /// Server index.
        server: usize,
        /// Its database instance now.
        invocation: InvocationId,
        /// The strategy.
        strategy: RestoreStrategy,
        /// When the backup was taken (simulated ms).
        backup_taken_at: u64,
        /// Its restored watermarks: (source invocation, USN).
        hwm: Vec<(InvocationId, Usn)>,
    },
    /// A reply was delivered to a server.
    Reply {
        /// Simulated ms.
        sim_ms: u64,
        /// The receiving server.
        server: usize,
        /// The answering server.
        from: usize,
        /// The request it answers.
        request_id: u64,
        /// The reply's message number (see `Answered`).
        message: u64,
        /// What the request was for.
        kind: PullKind,
        /// Ignored as stale or duplicated.
        ignored: bool,
        /// The source refused to answer (it was restoring or quarantined):
        /// the reply carries nothing and does not count as hearing from it.
        refused: bool,
        /// Objects that changed.
        changed: usize,
        /// The receiver's digest before.
        before: Digest,
        /// And after.
        after: Digest,
        /// Normal pages applied: the source invocation and watermark.
        watermark: Option<(InvocationId, Usn)>,
    },
    /// A server answered a request: which objects its reply carries (the
    /// oracle reads their content from its own model, not from here).
    Answered {
        /// Simulated ms.
        sim_ms: u64,
        /// The answering server.
        server: usize,
        /// The requester.
        to: usize,
        /// The request answered.
        request_id: u64,
        /// The reply's message number (a request delivered twice is
        /// answered twice, each answer its own message).
        message: u64,
        /// The objects carried, in order.
        guids: Vec<Guid>,
    },
    /// Strict replication consistency: a server dropped a reply unapplied
    /// because it refuses its source (event 1988). The oracle decides on
    /// its own whether the refusal was due.
    StrictRefused {
        /// Simulated ms.
        sim_ms: u64,
        /// The refusing server.
        server: usize,
        /// The refused source.
        from: usize,
        /// The reply's message number (see `Answered`).
        message: u64,
    },
    /// A server took a backup (its position among the facts).
    BackedUp {
        /// Simulated ms.
        sim_ms: u64,
        /// Server index.
        server: usize,
    },
    /// The network lost a message (link fault).
    LinkLost {
        /// Simulated ms.
        sim_ms: u64,
    },
    /// The network delivered a message twice (link fault).
    LinkDuplicated {
        /// Simulated ms.
        sim_ms: u64,
    },
}
