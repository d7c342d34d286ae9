//! Property tests of the sans-IO core (`backsync::core`), no actors.
//!
//! A few DSAs make random creates, modifies and deletes and replicate
//! between random pairs (complete pull cycles, paged). From that history:
//!
//! - merge is a join: applying every object state the history produced to
//!   fresh DSAs in any order, with duplicates, gives one digest, and
//!   replicating between every pair converges on it;
//! - UTDV dampening: no reply carries a state the destination already holds;
//! - backsync: a restored DSA is sent only objects carrying a stamp of its
//!   own invocation above its UTDV entry, every such object, and resumes its
//!   USN counter above what any partner saw of it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use backsync::core::*;
use backsync::{Granularity, RestoreStrategy};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DNS: [&str; 4] = ["cn=a", "cn=b", "cn=c", "cn=d"];
const ATTRS: [&str; 3] = ["mail", "title", "phone"];

#[derive(Debug, Clone)]
enum Op {
    Create {
        at: usize,
        dn: usize,
        val: u8,
    },
    Modify {
        at: usize,
        dn: usize,
        attr: usize,
        val: u8,
    },
    Remove {
        at: usize,
        dn: usize,
        attr: usize,
    },
    Delete {
        at: usize,
        dn: usize,
    },
    /// A complete pull cycle of `to` from `from`, `page` objects per reply.
    Sync {
        from: usize,
        to: usize,
        page: usize,
    },
    /// Time passes (0: writes with equal times, which stamps must still order).
    Tick(u64),
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..n, 0..DNS.len(), any::<u8>()).prop_map(|(at, dn, val)| Op::Create { at, dn, val }),
        4 => (0..n, 0..DNS.len(), 0..ATTRS.len(), any::<u8>())
            .prop_map(|(at, dn, attr, val)| Op::Modify { at, dn, attr, val }),
        1 => (0..n, 0..DNS.len(), 0..ATTRS.len())
            .prop_map(|(at, dn, attr)| Op::Remove { at, dn, attr }),
        1 => (0..n, 0..DNS.len()).prop_map(|(at, dn)| Op::Delete { at, dn }),
        4 => (0..n, 0..n, 1..4usize).prop_map(|(from, to, page)| Op::Sync { from, to, page }),
        1 => (0..3u64).prop_map(Op::Tick),
    ]
}

fn granularity() -> impl Strategy<Value = Granularity> {
    prop_oneof![Just(Granularity::Object), Just(Granularity::Attribute)]
}

fn cfg(g: Granularity) -> CoreConfig {
    CoreConfig {
        granularity: g,
        tombstone_lifetime: u64::MAX / 2,
        rollback_detection: false,
    }
}

/// Some DSAs, a clock, and every object state their history produced.
struct World {
    dsas: Vec<Dsa>,
    cfg: CoreConfig,
    now: SimTime,
    next_guid: u128,
    states: Vec<ObjectState>,
    /// Check dampening on every reply. A restored DSA breaks its premise
    /// (its vector covers everything it holds) until it has pulled a
    /// complete cycle: backsync answers carry objects, not vectors.
    check_dampening: bool,
}

impl World {
    fn new(n: usize, g: Granularity) -> Self {
        let cfg = cfg(g);
        let dsas = (0..n)
            .map(|i| Dsa::new(format!("D{i}").into(), InvocationId(100 + i as u64), cfg))
            .collect();
        World {
            dsas,
            cfg,
            now: 1,
            next_guid: 1,
            states: Vec::new(),
            check_dampening: true,
        }
    }

    fn keep(&mut self, at: usize, guid: Guid) {
        let r = self.dsas[at].table().get(guid).expect("just written");
        self.states.push(r.state);
    }

    /// Runs one operation; refused writes (dn taken, no such dn) are no-ops.
    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.now;
        match *op {
            Op::Create { at, dn, val } => {
                let guid = Guid(self.next_guid);
                self.next_guid += 1;
                let v = val.to_string();
                let attrs = [(ATTRS[0], v.as_str()), (ATTRS[1], "t")];
                if let Ok(g) = self.dsas[at].create(guid, DNS[dn], &attrs, now) {
                    self.keep(at, g);
                }
            }
            Op::Modify { at, dn, attr, val } => {
                let v = val.to_string();
                if let Ok(g) = self.dsas[at].modify(DNS[dn], &[(ATTRS[attr], &v)], &[], now) {
                    self.keep(at, g);
                }
            }
            Op::Remove { at, dn, attr } => {
                if let Ok(g) = self.dsas[at].modify(DNS[dn], &[], &[ATTRS[attr]], now) {
                    self.keep(at, g);
                }
            }
            Op::Delete { at, dn } => {
                if let Ok(g) = self.dsas[at].delete(DNS[dn], now) {
                    self.keep(at, g);
                }
            }
            Op::Sync { from, to, page } => self.sync(from, to, page)?,
            Op::Tick(d) => self.now += d,
        }
        Ok(())
    }

    /// One complete pull cycle, checking dampening on every page.
    fn sync(&mut self, from: usize, to: usize, page: usize) -> Result<(), TestCaseError> {
        if from == to {
            return Ok(());
        }
        let src = self.dsas[from].name().clone();
        let mut req = self.dsas[to]
            .pull(&src, PullKind::Normal, page, self.now)
            .expect("no pull outstanding between cycles");
        loop {
            let reply = self.dsas[from].answer(&req);
            prop_assert!(!reply.refused);
            prop_assert!(reply.changes.len() <= page);
            for s in reply.changes.iter().filter(|_| self.check_dampening) {
                let held = self.dsas[to].table().get(s.guid());
                prop_assert!(
                    held.as_ref().is_none_or(|r| r.state != *s),
                    "dampening: D{} sent D{} a state it already holds: {:?}",
                    from,
                    to,
                    s
                );
            }
            let applied = self.dsas[to].apply(reply, self.now);
            prop_assert!(!applied.ignored);
            for g in &applied.changed_guids {
                let r = self.dsas[to].table().get(*g).expect("just applied");
                self.states.push(r.state);
            }
            match applied.follow_up {
                Some(r) => req = r,
                None => return Ok(()),
            }
        }
    }

    /// Every DSA pulls from every other, `rounds` times.
    fn mesh(&mut self, rounds: usize) -> Result<(), TestCaseError> {
        let n = self.dsas.len();
        for _ in 0..rounds {
            for to in 0..n {
                for from in 0..n {
                    self.sync(from, to, 3)?;
                }
            }
        }
        Ok(())
    }
}

/// `states` shuffled by `seed`, with some of them repeated at random places.
fn shuffled_with_duplicates(states: &[ObjectState], seed: u64) -> Vec<ObjectState> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = states.to_vec();
    v.shuffle(&mut rng);
    if !states.is_empty() {
        for _ in 0..rng.random_range(0..=states.len()) {
            let s = states[rng.random_range(0..states.len())].clone();
            let at = rng.random_range(0..=v.len());
            v.insert(at, s);
        }
    }
    v
}

/// Per object `d` holds, the highest originating USN among the stamps of
/// `inv` it carries (objects without one left out). Read field by field
/// from a walk of the whole table, not from the by-origin index (nor
/// `ObjectState::stamps`) that backsync answers use: an independent
/// expectation.
fn origin_usns(d: &Dsa, inv: InvocationId) -> BTreeMap<Guid, Usn> {
    let objects = d.objects();
    assert_eq!(objects.len(), d.table().len(), "the walk sees every object");
    let mut out = BTreeMap::new();
    for (_, r) in objects {
        let s = &r.state;
        let max = [s.created(), s.stamp()]
            .into_iter()
            .chain(s.attrs().map(|a| a.stamp))
            .filter(|st| st.invocation == inv)
            .map(|st| st.usn)
            .max();
        if let Some(u) = max {
            out.insert(s.guid(), u);
        }
    }
    out
}

/// The highest originating USN of `inv` that `d` holds (zero for none).
fn max_origin_usn(d: &Dsa, inv: InvocationId) -> Usn {
    origin_usns(d, inv).into_values().max().unwrap_or_default()
}

fn digest_of(order: &[ObjectState], cfg: CoreConfig) -> Digest {
    let mut d = Dsa::new("Fresh".into(), InvocationId(1), cfg);
    for s in order {
        d.apply_state(s);
    }
    d.digest()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Merge is a join: the order of arrival and duplicates do not matter,
    /// and replication reaches the same directory.
    #[test]
    fn apply_order_does_not_matter(
        g in granularity(),
        ops in prop::collection::vec(op(3), 1..60),
        seeds in prop::collection::vec(any::<u64>(), 4),
    ) {
        let mut w = World::new(3, g);
        for o in &ops {
            w.run(o)?;
        }
        let reference = digest_of(&w.states, w.cfg);
        for &seed in &seeds {
            let order = shuffled_with_duplicates(&w.states, seed);
            prop_assert_eq!(digest_of(&order, w.cfg), reference, "order from seed {}", seed);
        }
        // Applying everything twice changes nothing either.
        let mut twice = w.states.clone();
        twice.extend(w.states.iter().rev().cloned());
        prop_assert_eq!(digest_of(&twice, w.cfg), reference);
        // Replication between every pair converges on the same join.
        w.mesh(2)?;
        for d in &w.dsas {
            prop_assert_eq!(d.digest(), reference, "{} after the mesh", d.name());
        }
    }

    /// Backsync answers: only, and all, the objects carrying a stamp of the
    /// requester's invocation above its UTDV entry; afterwards the restored
    /// DSA holds them, resumes above every USN partners saw, and converges.
    #[test]
    fn backsync_sends_exactly_the_requesters_lost_writes(
        g in granularity(),
        before in prop::collection::vec(op(3), 0..30),
        after in prop::collection::vec(op(3), 1..30),
        page in 1..4usize,
    ) {
        let mut w = World::new(3, g);
        for o in &before {
            w.run(o)?;
        }
        let backup = w.dsas[0].backup(w.now);
        for o in &after {
            w.run(o)?;
        }
        let inv = w.dsas[0].invocation();
        let partners: Vec<Arc<str>> = w.dsas[1..].iter().map(|d| d.name().clone()).collect();
        let opts = RestoreOptions {
            strategy: RestoreStrategy::Backsync,
            partners: partners.clone(),
            new_invocation: InvocationId(999),
            now: w.now,
            backsync_timeout: 1_000_000,
            forget: BTreeSet::new(),
            subtree: None,
            since_backup: Vec::new(),
        };
        w.dsas[0] = Dsa::restore(&backup, w.cfg, opts);
        w.check_dampening = false;
        prop_assert_eq!(w.dsas[0].mode().name(), "backsync");
        prop_assert_eq!(w.dsas[0].utdv().get(inv), backup.usn);
        prop_assert!(w.dsas[0].create(Guid(u128::MAX), "cn=busy", &[], w.now).is_err());
        for (k, name) in partners.iter().enumerate() {
            let p = k + 1;
            // What the partner holds that the requester originated after the
            // backup, found without the by-origin index the answer reads.
            let owed: BTreeSet<Guid> = origin_usns(&w.dsas[p], inv)
                .into_iter()
                .filter(|(_, u)| *u > backup.usn)
                .map(|(g, _)| g)
                .collect();
            let mut got = BTreeSet::new();
            let mut req = w.dsas[0]
                .pull(name, PullKind::Backsync, page, w.now)
                .expect("a backsync pull");
            loop {
                prop_assert_eq!(req.kind, PullKind::Backsync);
                let entry = req.utdv.get(inv);
                prop_assert_eq!(entry, backup.usn, "the UTDV entry sent is the backup's");
                let reply = w.dsas[p].answer(&req);
                prop_assert!(!reply.refused);
                prop_assert!(reply.changes.len() <= page);
                // The benchmarks' whole-table baseline gives the same answer.
                let by_scan = w.dsas[p].answer_backsync_by_scan(&req);
                let guids = |r: &ChangesReply| r.changes.iter().map(|s| s.guid()).collect::<Vec<_>>();
                prop_assert_eq!(guids(&by_scan), guids(&reply));
                prop_assert_eq!(
                    (by_scan.more, by_scan.watermark, by_scan.seen_requester_usn),
                    (reply.more, reply.watermark, reply.seen_requester_usn)
                );
                for s in &reply.changes {
                    prop_assert!(
                        s.stamps().any(|st| st.invocation == inv && st.usn > entry && st.usn > req.from_usn),
                        "backsync sent an object without a lost stamp of the requester: {:?}",
                        s
                    );
                    got.insert(s.guid());
                }
                if let Some(seen) = reply.seen_requester_usn {
                    prop_assert!(seen >= max_origin_usn(&w.dsas[p], inv));
                }
                let applied = w.dsas[0].apply(reply, w.now);
                prop_assert!(!applied.ignored);
                match applied.follow_up {
                    Some(r) => req = r,
                    None => break,
                }
            }
            prop_assert_eq!(&got, &owed, "D{} sent every object owed", p);
        }
        let restored = &w.dsas[0];
        prop_assert_eq!(restored.mode().name(), "running");
        for p in 1..w.dsas.len() {
            // Every lost write came back, or something that supersedes it.
            let owed = origin_usns(&w.dsas[p], inv)
                .into_iter()
                .filter(|(_, u)| *u > backup.usn);
            for (guid, _) in owed {
                let theirs = w.dsas[p].table().get(guid).unwrap().state;
                let mine = restored.table().get(guid);
                prop_assert!(mine.is_some(), "object {} came back", guid);
                let mine = mine.unwrap().state;
                prop_assert!(
                    matches!(merge(&mine, &theirs, g), Merge::Keep),
                    "the restored state supersedes D{}'s", p
                );
            }
            // No USN a partner saw is reused.
            let seen = max_origin_usn(&w.dsas[p], inv);
            prop_assert!(restored.usn() >= seen);
            prop_assert!(restored.utdv().get(inv) >= seen);
            // What backsync brought in is above the partner's watermark for
            // the restored DSA: a pull from it will see it (in a topology
            // where the restored DSA is the only path, nothing else would).
            if let Some(h) = w.dsas[p].hwm(restored.name()).filter(|h| h.invocation == inv) {
                for (usn, guid) in restored.table().changed_after(backup.usn) {
                    prop_assert!(
                        usn > h.usn,
                        "object {} applied at USN {} which D{} has passed ({})",
                        guid, usn, p, h.usn
                    );
                }
            }
        }
        // New writes of the restored DSA reach everyone, and all converge.
        w.run(&Op::Create { at: 0, dn: 0, val: 7 })?;
        w.run(&Op::Modify { at: 0, dn: 1, attr: 2, val: 9 })?;
        w.mesh(2)?;
        let d0 = w.dsas[0].digest();
        for d in &w.dsas {
            prop_assert_eq!(d.digest(), d0, "{} converged with the restored DSA", d.name());
        }
    }
}

/// Ring A→B→C: a change from A that C got through B is not sent again
/// when C pulls from A.
#[test]
fn dampening_in_a_ring() {
    for g in [Granularity::Object, Granularity::Attribute] {
        let mut w = World::new(3, g);
        for (i, dn) in DNS.iter().enumerate() {
            w.dsas[0]
                .create(Guid(i as u128 + 1), dn, &[("mail", "x")], 1)
                .unwrap();
        }
        w.dsas[0].modify("cn=a", &[("title", "y")], &[], 2).unwrap();
        w.dsas[0].delete("cn=b", 3).unwrap();
        w.sync(0, 1, 2).unwrap();
        w.sync(1, 2, 2).unwrap();
        assert_eq!(w.dsas[2].digest(), w.dsas[0].digest());
        let a = w.dsas[0].name().clone();
        let req = w.dsas[2].pull(&a, PullKind::Normal, 100, 4).unwrap();
        assert_eq!(req.from_usn, Usn(0), "C never pulled from A");
        let reply = w.dsas[0].answer(&req);
        assert!(
            reply.changes.is_empty(),
            "{g:?}: A sent C {} objects it got through B",
            reply.changes.len()
        );
        // A new change of A is sent, alone.
        w.dsas[2].apply(reply, 4);
        w.dsas[0].modify("cn=c", &[("title", "z")], &[], 5).unwrap();
        let req = w.dsas[2].pull(&a, PullKind::Normal, 100, 6).unwrap();
        let reply = w.dsas[0].answer(&req);
        assert_eq!(reply.changes.len(), 1);
        assert_eq!(reply.changes[0].value("title"), Some("z"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// After complete cycles, a pull sends nothing the destination holds:
    /// checked on every page of every random sync (see `World::sync`), and
    /// at the end once more between every pair.
    #[test]
    fn dampening_sends_nothing_already_held(
        g in granularity(),
        ops in prop::collection::vec(op(4), 1..80),
    ) {
        let mut w = World::new(4, g);
        for o in &ops {
            w.run(o)?;
        }
        w.mesh(2)?;
        // Converged: every pull is now empty.
        for to in 0..4 {
            for from in 0..4 {
                if from == to {
                    continue;
                }
                let src = w.dsas[from].name().clone();
                let req = w.dsas[to].pull(&src, PullKind::Normal, 1000, w.now).unwrap();
                let reply = w.dsas[from].answer(&req);
                prop_assert!(reply.changes.is_empty(), "D{} sent D{} {:?}", from, to, reply.changes);
                w.dsas[to].apply(reply, w.now);
            }
        }
    }
}
