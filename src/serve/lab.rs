//! The lab thread: owns the [`Cluster`] (its actors on one arbiter and a
//! paused tokio clock, as everywhere else), moves the simulated clock with
//! the real one times `speed`, and answers the calls of LDAP connections
//! and the admin API, one at a time, between steps of the clock.
//!
//! The network runs on the same thread, on a second tokio runtime (real
//! clock) that the lab drives between steps: calls come over a crossbeam
//! channel with a [`Notify`] that ends the network's turn, and are answered
//! over tokio oneshots. The two runtimes never run nested.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use ldap3_proto::proto::{LdapFilter, LdapResultCode, LdapSearchScope};
use serde::Serialize;
use tokio::sync::{Notify, oneshot};

use super::entry::{Entry, child_of, generalized_time, join_values, values, within};
use crate::Cluster;
use crate::config::RestoreStrategy;
use crate::core::WriteError;
use crate::core::tree::{LOST_AND_FOUND, eq_ci, lower, split_dn};
use crate::error::ClusterError;
use crate::view::{ObjectView, ServerStatus};

/// How long the lab sleeps for a call before it moves the clock again, and
/// the least real time between two moves.
const TICK: Duration = Duration::from_millis(2);
/// The most real time one step of the clock stands for, so that calls are
/// answered between steps when the simulation falls behind the clock.
const MAX_STEP_REAL: Duration = Duration::from_millis(20);
/// Calls answered between two steps of the clock, at most.
const CALLS_PER_STEP: usize = 256;

/// The answer to a call an LDAP client made that failed: a result code and
/// a message for it.
#[derive(Debug, Clone, PartialEq)]
pub struct LdapFail {
    /// The result code.
    pub code: LdapResultCode,
    /// The diagnostic message.
    pub message: String,
}

impl LdapFail {
    pub(crate) fn new(code: LdapResultCode, message: impl Into<String>) -> Self {
        LdapFail {
            code,
            message: message.into(),
        }
    }
}

/// A refused write as LDAP answers it ([`WriteError::ldap_result`]).
fn write_fail(e: ClusterError) -> LdapFail {
    let code = match &e {
        ClusterError::Write(w) => match w {
            WriteError::Busy(_) => LdapResultCode::Busy,
            WriteError::Down(_) => LdapResultCode::Unavailable,
            WriteError::DnExists { .. } => LdapResultCode::EntryAlreadyExists,
            WriteError::NoSuchDn { .. } | WriteError::NoSuchParent { .. } => {
                LdapResultCode::NoSuchObject
            }
            WriteError::NotLeaf { .. } => LdapResultCode::NotAllowedOnNonLeaf,
            WriteError::InvalidDn { .. } => LdapResultCode::InvalidDNSyntax,
            WriteError::Quarantined(_)
            | WriteError::ReadOnly(_)
            | WriteError::FixedContainer { .. }
            | WriteError::IntoOwnSubtree { .. } => LdapResultCode::UnwillingToPerform,
        },
        ClusterError::EmptyDn => LdapResultCode::InvalidDNSyntax,
        _ => LdapResultCode::Other,
    };
    LdapFail::new(code, e.to_string())
}

/// One change of an LDAP modify.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Add values (the attribute is created if absent).
    Add(String, Vec<String>),
    /// Delete these values, or the whole attribute when none are given.
    Delete(String, Vec<String>),
    /// Replace every value (none: delete the attribute).
    Replace(String, Vec<String>),
    /// Add a number to the attribute's one integer value (RFC 4525).
    Increment(String, i64),
}

/// An originating write a client asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Create an entry.
    Add {
        /// The dn.
        dn: String,
        /// Attributes with their values.
        attrs: Vec<(String, Vec<String>)>,
    },
    /// Modify an entry.
    Modify {
        /// The dn.
        dn: String,
        /// The changes, applied in order.
        changes: Vec<Change>,
    },
    /// Delete an entry, or with `tree` its whole subtree.
    Delete {
        /// The dn.
        dn: String,
        /// The tree delete control was given.
        tree: bool,
    },
    /// Rename or move an entry.
    Rename {
        /// The dn.
        dn: String,
        /// The new dn.
        new_dn: String,
        /// Remove the old rdn's value from the entry's attributes.
        delete_old_rdn: bool,
    },
}

/// A search as the lab runs it (dns already normalized).
#[derive(Debug, Clone)]
pub struct Search {
    /// The base dn.
    pub base: String,
    /// The scope.
    pub scope: LdapSearchScope,
    /// The filter.
    pub filter: LdapFilter,
    /// The Show Deleted control was given: tombstones are visible.
    pub tombstones: bool,
}

/// What the admin API asks of the lab.
#[derive(Debug, Clone)]
pub enum Admin {
    /// The lab's state.
    Status,
    /// Take a backup.
    Backup {
        /// The server.
        server: String,
        /// The backup's name.
        name: String,
    },
    /// Crash a server.
    Crash {
        /// The server.
        server: String,
    },
    /// Restore a server.
    Restore {
        /// The server.
        server: String,
        /// The backup.
        backup: String,
        /// The strategy (the profile's default when `None`).
        strategy: Option<RestoreStrategy>,
        /// An authoritative restore's subtree.
        subtree: Option<String>,
    },
    /// Partition the network.
    Partition {
        /// The groups.
        groups: Vec<Vec<String>>,
    },
    /// Heal every partition.
    Heal,
}

/// Why the admin API refused a request: its HTTP status and message.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminFail {
    /// 400, 404 or 409.
    pub status: u16,
    /// The message (`{"error": …}`).
    pub error: String,
}

fn admin_fail(e: ClusterError) -> AdminFail {
    let status = match &e {
        ClusterError::UnknownServer(_) | ClusterError::UnknownBackup(_) => 404,
        ClusterError::Partition(_)
        | ClusterError::WrongServer { .. }
        | ClusterError::OutOfBounds { .. }
        | ClusterError::EmptyDn => 400,
        _ => 409,
    };
    AdminFail {
        status,
        error: e.to_string(),
    }
}

/// `GET /status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Simulated time (ms).
    pub sim_ms: u64,
    /// Converged at this moment.
    pub converged: bool,
    /// Messages in flight.
    pub in_flight: u64,
    /// Every server, as `run --json` shows them.
    pub servers: Vec<ServerStatus>,
}

/// A call into the lab, with where to send its answer.
pub(crate) enum Call {
    Search {
        server: usize,
        search: Search,
        reply: oneshot::Sender<Result<Vec<Entry>, LdapFail>>,
    },
    Write {
        server: usize,
        write: Write,
        reply: oneshot::Sender<Result<(), LdapFail>>,
    },
    Admin {
        admin: Admin,
        reply: oneshot::Sender<Result<serde_json::Value, AdminFail>>,
    },
    Stop,
}

/// The lab's side of the channel: the cluster and its clock.
pub(crate) struct Lab {
    c: Cluster,
    names: Vec<String>,
    /// Lowercased fixed containers and their ancestors (valid search bases).
    fixed: BTreeSet<String>,
    /// The top fixed containers, as `namingContexts`.
    contexts: Vec<String>,
    /// Real time at which the clock started, and the simulated time then.
    start: Instant,
    /// When the clock last moved.
    last_step: Instant,
    sim0: Duration,
    speed: f64,
    /// Unix ms of simulated time zero, for `whenChanged`.
    epoch_unix_ms: u64,
}

impl Lab {
    pub(crate) fn new(c: Cluster, fixed_containers: &[String], speed: f64) -> Self {
        let mut fixed = BTreeSet::new();
        for d in fixed_containers
            .iter()
            .map(String::as_str)
            .chain([LOST_AND_FOUND])
        {
            let mut rest = d;
            while !rest.is_empty() {
                fixed.insert(lower(rest));
                rest = split_dn(rest).1;
            }
        }
        // The naming contexts: the fixed containers below no other one.
        let mut contexts: Vec<String> = Vec::new();
        for d in fixed_containers {
            let below_another = fixed_containers
                .iter()
                .any(|o| !eq_ci(o, d) && !o.is_empty() && within(d, o));
            if !d.is_empty()
                && !eq_ci(d, LOST_AND_FOUND)
                && !below_another
                && !contexts.iter().any(|c| eq_ci(c, d))
            {
                contexts.push(d.clone());
            }
        }
        let sim0 = c.now();
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Lab {
            names: c.servers().to_vec(),
            c,
            fixed,
            contexts,
            start: Instant::now(),
            last_step: Instant::now(),
            sim0,
            speed,
            epoch_unix_ms: now_unix.saturating_sub(sim0.as_millis() as u64),
        }
    }

    /// Serves until [`Call::Stop`]: moves the clock, runs the network (the
    /// LDAP connections and the admin API are tasks of `net`, a runtime on
    /// this same thread) until a call comes or a [`TICK`] passes, answers
    /// the calls, and again. One thread does it all, so a request crosses
    /// no thread on its way in or out: on a busy machine a wake-up of
    /// another thread costs more than the request itself.
    pub(crate) fn run(mut self, rx: Receiver<Call>, net: &tokio::runtime::Runtime, wake: &Notify) {
        loop {
            self.catch_up();
            if rx.is_empty() {
                net.block_on(async {
                    tokio::select! {
                        _ = wake.notified() => {},
                        _ = tokio::time::sleep(TICK) => {},
                    }
                });
            }
            for _ in 0..CALLS_PER_STEP {
                match rx.try_recv() {
                    Ok(call) => {
                        if !self.serve(call) {
                            return;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
        }
    }

    /// Lets simulated time reach the real clock times `speed` (at most one
    /// bounded step), at most once per [`TICK`]: a step costs a turn of the
    /// actors' runtime, which back-to-back requests should not each pay.
    fn catch_up(&mut self) {
        if self.last_step.elapsed() < TICK {
            return;
        }
        self.last_step = Instant::now();
        let real = self.start.elapsed();
        let target = self.sim0 + real.mul_f64(self.speed);
        let now = self.c.now();
        if target > now {
            let step = (target - now).min(MAX_STEP_REAL.mul_f64(self.speed));
            self.c.wait(step);
        }
    }

    fn serve(&mut self, call: Call) -> bool {
        match call {
            Call::Search {
                server,
                search,
                reply,
            } => {
                let _ = reply.send(self.search(server, &search));
            }
            Call::Write {
                server,
                write,
                reply,
            } => {
                let _ = reply.send(self.write(server, write));
            }
            Call::Admin { admin, reply } => {
                let _ = reply.send(self.admin(admin));
            }
            Call::Stop => return false,
        }
        true
    }

    fn name(&self, server: usize) -> &str {
        &self.names[server]
    }

    fn is_fixed(&self, dn: &str) -> bool {
        dn.is_empty() || self.fixed.contains(&lower(dn))
    }

    /// The rootDSE, as AD returns it: every attribute by default.
    fn root_dse(&self, server: usize) -> Entry {
        let st = self.c.status().swap_remove(server);
        let text = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let user = vec![
            ("currentTime".to_string(), vec![self.time_now()]),
            ("dsServiceName".to_string(), vec![st.name.clone()]),
            ("highestCommittedUSN".to_string(), vec![st.usn.to_string()]),
            ("invocationId".to_string(), vec![st.invocation_id.clone()]),
            ("namingContexts".to_string(), self.contexts.clone()),
            ("objectClass".to_string(), text(&["top"])),
            (
                "supportedControl".to_string(),
                text(&[
                    super::ldap::SHOW_DELETED_OID,
                    super::ldap::PAGED_RESULTS_OID,
                    super::ldap::TREE_DELETE_OID,
                ]),
            ),
            ("supportedLDAPVersion".to_string(), text(&["3"])),
            ("vendorName".to_string(), text(&["backsync"])),
        ];
        Entry {
            dn: String::new(),
            user,
            operational: Vec::new(),
        }
    }

    fn time_now(&self) -> String {
        generalized_time(self.epoch_unix_ms, self.c.now().as_millis() as u64)
    }

    fn search(&mut self, server: usize, s: &Search) -> Result<Vec<Entry>, LdapFail> {
        if s.base.is_empty() && s.scope == LdapSearchScope::Base {
            let root = self.root_dse(server);
            return Ok(if root.matches(&s.filter) {
                vec![root]
            } else {
                Vec::new()
            });
        }
        let name = self.name(server).to_string();
        let unavailable = || LdapFail::new(LdapResultCode::Unavailable, format!("{name} is down"));
        let base_object = if s.base.is_empty() {
            None
        } else {
            let live = self.c.lookup(&name, &s.base).map_err(write_fail)?;
            match live {
                Some(o) => Some(o),
                None if s.tombstones => self.c.tombstone(&name, &s.base).map_err(write_fail)?,
                None => None,
            }
        };
        if base_object.is_none() && !self.is_fixed(&s.base) {
            return Err(LdapFail::new(
                LdapResultCode::NoSuchObject,
                format!("no entry `{}` on {name}", s.base),
            ));
        }
        let candidates: Vec<ObjectView> = match &s.scope {
            LdapSearchScope::Base => base_object.into_iter().collect(),
            scope => {
                let all = self.c.objects(&name).map_err(write_fail)?;
                let all = all.ok_or_else(unavailable)?;
                all.into_iter()
                    .filter(|o| match scope {
                        LdapSearchScope::OneLevel => child_of(&o.dn, &s.base),
                        LdapSearchScope::Children => {
                            within(&o.dn, &s.base) && !eq_ci(&o.dn, &s.base)
                        }
                        _ => within(&o.dn, &s.base),
                    })
                    .collect()
            }
        };
        Ok(candidates
            .iter()
            .filter(|o| s.tombstones || !o.deleted)
            .map(|o| Entry::of(o, self.epoch_unix_ms))
            .filter(|e| e.matches(&s.filter))
            .collect())
    }

    fn write(&mut self, server: usize, w: Write) -> Result<(), LdapFail> {
        let name = self.name(server).to_string();
        match w {
            Write::Add { dn, attrs } => {
                let joined: Vec<(String, String)> = attrs
                    .iter()
                    .map(|(k, v)| (k.clone(), join_values(v)))
                    .collect();
                let pairs: Vec<(&str, &str)> = joined
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                self.c.create(&name, &dn, &pairs).map_err(write_fail)?;
            }
            Write::Modify { dn, changes } => {
                let cur = self.c.lookup(&name, &dn).map_err(write_fail)?;
                let Some(cur) = cur else {
                    // A down server refuses every write as down.
                    if self.c.state(&name).ok() == Some("down") {
                        return Err(write_fail(ClusterError::Write(WriteError::Down(
                            name.as_str().into(),
                        ))));
                    }
                    return Err(LdapFail::new(
                        LdapResultCode::NoSuchObject,
                        format!("no entry `{dn}` on {name}"),
                    ));
                };
                let Modified { set, remove } = modified(&cur.attrs, &changes)?;
                let set: Vec<(&str, &str)> =
                    set.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
                self.c
                    .modify(&name, &dn, &set, &remove)
                    .map_err(write_fail)?;
            }
            Write::Delete { dn, tree } => {
                if tree {
                    self.c.delete_tree(&name, &dn)
                } else {
                    self.c.delete(&name, &dn)
                }
                .map_err(write_fail)?;
            }
            Write::Rename {
                dn,
                new_dn,
                delete_old_rdn,
            } => {
                self.c.rename(&name, &dn, &new_dn).map_err(write_fail)?;
                // An rdn is also an attribute value (RFC 4511 4.9): keep the
                // stored attribute in step, in a second write at the same
                // simulated instant.
                let cur = self.c.lookup(&name, &new_dn).map_err(write_fail)?;
                if let Some(cur) = cur {
                    let mut changes = Vec::new();
                    if let Some((ty, v)) = rdn_value(&dn).filter(|_| delete_old_rdn) {
                        let has = cur.attrs.iter().find(|(k, _)| eq_ci(k, &ty));
                        if has.is_some_and(|(_, s)| values(s).any(|x| eq_ci(x, &v))) {
                            changes.push(Change::Delete(ty, vec![v]));
                        }
                    }
                    if let Some((ty, v)) = rdn_value(&new_dn) {
                        let has = cur.attrs.iter().find(|(k, _)| eq_ci(k, &ty));
                        let gone = changes.iter().any(
                            |c| matches!(c, Change::Delete(_, d) if d.iter().any(|x| eq_ci(x, &v))),
                        );
                        if has.is_some_and(|(_, s)| !values(s).any(|x| eq_ci(x, &v)) || gone) {
                            changes.push(Change::Add(ty, vec![v]));
                        }
                    }
                    if !changes.is_empty() {
                        let Modified { set, remove } = modified(&cur.attrs, &changes)?;
                        let set: Vec<(&str, &str)> =
                            set.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                        let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
                        self.c
                            .modify(&name, &new_dn, &set, &remove)
                            .map_err(write_fail)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn status(&self) -> Status {
        Status {
            sim_ms: self.c.now().as_millis() as u64,
            converged: self.c.is_converged(),
            in_flight: self.c.in_flight(),
            servers: self.c.status(),
        }
    }

    /// Runs an admin request. The cluster checks names, backups and the
    /// server's state before it changes anything, so a refusal here
    /// changes nothing.
    fn admin(&mut self, a: Admin) -> Result<serde_json::Value, AdminFail> {
        let json = |v: serde_json::Value| Ok(v);
        match a {
            Admin::Status => json(serde_json::to_value(self.status()).unwrap_or_default()),
            Admin::Backup { server, name } => {
                self.c.backup(&server, &name).map_err(admin_fail)?;
                json(serde_json::json!({"server": server, "backup": name, "sim_ms": self.sim_ms()}))
            }
            Admin::Crash { server } => {
                let lost = self.c.crash(&server).map_err(admin_fail)?;
                json(serde_json::json!({
                    "server": server, "state": "down", "lost_by_nature": lost, "sim_ms": self.sim_ms()
                }))
            }
            Admin::Restore {
                server,
                backup,
                strategy,
                subtree,
            } => {
                if subtree.is_some() && strategy != Some(RestoreStrategy::Authoritative) {
                    return Err(AdminFail {
                        status: 400,
                        error: "`subtree` needs strategy=authoritative".into(),
                    });
                }
                match (strategy, subtree) {
                    (Some(RestoreStrategy::Authoritative), sub) => {
                        self.c
                            .restore_authoritative(&server, &backup, sub.as_deref())
                    }
                    (s, _) => self.c.restore(&server, &backup, s),
                }
                .map_err(admin_fail)?;
                let state = self.c.state(&server).unwrap_or("down");
                json(serde_json::json!({
                    "server": server, "backup": backup, "state": state, "sim_ms": self.sim_ms()
                }))
            }
            Admin::Partition { groups } => {
                self.c.partition(&groups).map_err(admin_fail)?;
                json(serde_json::json!({"groups": groups, "sim_ms": self.sim_ms()}))
            }
            Admin::Heal => {
                self.c.heal().map_err(admin_fail)?;
                json(serde_json::json!({"healed": true, "sim_ms": self.sim_ms()}))
            }
        }
    }

    fn sim_ms(&self) -> u64 {
        self.c.now().as_millis() as u64
    }

    /// Which servers are up (their LDAP ports open).
    pub(crate) fn up(&self) -> Vec<bool> {
        self.c.status().iter().map(|s| s.state != "down").collect()
    }
}

/// The attribute type and unescaped value of a dn's rdn.
fn rdn_value(dn: &str) -> Option<(String, String)> {
    let (ty, v) = split_dn(dn).0.split_once('=')?;
    let value = super::entry::unescape(v);
    Some((ty.to_string(), value))
}

/// Applies an LDAP modify's changes to an object's attributes: what to set
/// and what to remove, with LDAP's errors (a value that exists, one that
/// does not, an increment of no single integer).
fn modified(attrs: &BTreeMap<String, String>, changes: &[Change]) -> Result<Modified, LdapFail> {
    // Working copy: stored name -> values; names compare ignoring case.
    let mut work: Vec<(String, Vec<String>)> = attrs
        .iter()
        .map(|(k, v)| (k.clone(), values(v).map(str::to_string).collect()))
        .collect();
    let mut touched: Vec<String> = Vec::new();
    fn slot<'a>(work: &'a mut Vec<(String, Vec<String>)>, name: &str) -> &'a mut Vec<String> {
        let i = match work.iter().position(|(k, _)| eq_ci(k, name)) {
            Some(i) => i,
            None => {
                work.push((name.to_string(), Vec::new()));
                work.len() - 1
            }
        };
        &mut work[i].1
    }
    let no_attr = |a: &str| LdapFail::new(LdapResultCode::NoSuchAttribute, format!("no `{a}`"));
    for ch in changes {
        let name = match ch {
            Change::Add(a, _) | Change::Delete(a, _) | Change::Replace(a, _) => a,
            Change::Increment(a, _) => a,
        };
        let existed = work.iter().any(|(k, v)| eq_ci(k, name) && !v.is_empty());
        let vals = slot(&mut work, name);
        match ch {
            Change::Add(a, new) => {
                for v in new {
                    if vals.iter().any(|x| eq_ci(x, v)) {
                        return Err(LdapFail::new(
                            LdapResultCode::AttributeOrValueExists,
                            format!("`{a}` already has the value `{v}`"),
                        ));
                    }
                    vals.push(v.clone());
                }
            }
            Change::Delete(a, gone) => {
                if !existed {
                    return Err(no_attr(a));
                }
                if gone.is_empty() {
                    vals.clear();
                }
                for v in gone {
                    let Some(i) = vals.iter().position(|x| eq_ci(x, v)) else {
                        return Err(LdapFail::new(
                            LdapResultCode::NoSuchAttribute,
                            format!("`{a}` has no value `{v}`"),
                        ));
                    };
                    vals.remove(i);
                }
            }
            Change::Replace(_, new) => *vals = new.clone(),
            Change::Increment(a, by) => {
                let n = match vals.as_slice() {
                    [one] => one.trim().parse::<i64>().ok(),
                    _ => None,
                };
                let Some(n) = n else {
                    return Err(LdapFail::new(
                        LdapResultCode::ConstraintViolation,
                        format!("`{a}` is not one integer"),
                    ));
                };
                *vals = vec![n.saturating_add(*by).to_string()];
            }
        }
        if !touched.iter().any(|t| eq_ci(t, name)) {
            touched.push(name.clone());
        }
    }
    let mut set = Vec::new();
    let mut remove = Vec::new();
    for t in touched {
        let (k, v) = work
            .iter()
            .find(|(k, _)| eq_ci(k, &t))
            .expect("a touched attribute has a slot");
        if v.is_empty() {
            if attrs.contains_key(k) {
                remove.push(k.clone());
            }
        } else {
            set.push((k.clone(), join_values(v)));
        }
    }
    Ok(Modified { set, remove })
}

/// What a modify writes: attributes to set (values joined) and to remove.
#[derive(Debug, PartialEq)]
struct Modified {
    set: Vec<(String, String)>,
    remove: Vec<String>,
}

/// The network side's handle on the lab.
#[derive(Clone)]
pub(crate) struct LabHandle {
    pub(crate) tx: Sender<Call>,
    /// Ends the network's turn on the lab thread, so the call is answered.
    pub(crate) wake: Arc<Notify>,
}

impl LabHandle {
    /// Sends a call and waits for its answer; `None` when the lab stopped.
    pub(crate) async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Call) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).ok()?;
        self.wake.notify_one();
        rx.await.ok()
    }

    /// Asks the lab to stop.
    pub(crate) fn stop(&self) {
        let _ = self.tx.send(Call::Stop);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn modify_follows_rfc4511_section_4_6() {
        let a = attrs(&[("mail", "a@x"), ("objectClass", "top\0person")]);
        let Modified { set, remove } = modified(
            &a,
            &[
                Change::Add("objectclass".into(), s(&["inetOrgPerson"])),
                Change::Replace("MAIL".into(), vec![]),
                Change::Add("description".into(), s(&["one", "two"])),
                Change::Delete("description".into(), s(&["ONE"])),
            ],
        )
        .unwrap();
        assert_eq!(
            set,
            [
                (
                    "objectClass".to_string(),
                    "top\0person\0inetOrgPerson".to_string()
                ),
                ("description".to_string(), "two".to_string()),
            ]
        );
        assert_eq!(remove, ["mail"]);
        let code = |changes: &[Change]| modified(&a, changes).unwrap_err().code;
        assert_eq!(
            code(&[Change::Add("mail".into(), s(&["A@X"]))]),
            LdapResultCode::AttributeOrValueExists
        );
        assert_eq!(
            code(&[Change::Delete("phone".into(), vec![])]),
            LdapResultCode::NoSuchAttribute
        );
        assert_eq!(
            code(&[Change::Delete("mail".into(), s(&["b@x"]))]),
            LdapResultCode::NoSuchAttribute
        );
        assert_eq!(
            code(&[Change::Increment("mail".into(), 1)]),
            LdapResultCode::ConstraintViolation
        );
        let n = attrs(&[("uidNumber", "41")]);
        let set = modified(&n, &[Change::Increment("uidnumber".into(), 1)])
            .unwrap()
            .set;
        assert_eq!(set, [("uidNumber".to_string(), "42".to_string())]);
    }
}
