//! The directory tree in the core: parents by guid, shown dns derived on
//! each server, LostAndFound, names compared ignoring case, GET_ANC.

use std::sync::Arc;

use backsync::Granularity;
use backsync::core::tree::Containers;
use backsync::core::*;
use proptest::prelude::*;

fn cfg(g: Granularity) -> CoreConfig {
    CoreConfig {
        granularity: g,
        tombstone_lifetime: 1_000_000,
        rollback_detection: false,
    }
}

fn dsa(name: &str, inv: u64, g: Granularity) -> Dsa {
    let mut d = Dsa::new(name.into(), InvocationId(inv), cfg(g));
    d.set_containers(Arc::new(Containers::fixed(["dc=corp"])));
    d
}

/// Pulls everything `src` has for `dst`, `page` objects a reply; returns
/// the replies applied.
fn sync(dst: &mut Dsa, src: &Dsa, page: usize, now: u64) -> Vec<Applied> {
    let mut out = Vec::new();
    let mut req = dst.pull(src.name(), PullKind::Normal, page, now);
    while let Some(r) = req {
        let a = dst.apply(src.answer(&r), now);
        req = a.follow_up.clone();
        out.push(a);
    }
    out
}

/// The shown dn of every live object, sorted.
fn shown(d: &Dsa) -> Vec<String> {
    let mut v: Vec<String> = d
        .objects()
        .into_iter()
        .filter(|(_, r)| !r.state.deleted())
        .map(|(dn, _)| dn)
        .collect();
    v.sort();
    v
}

/// A source where P, then C under P, were created and P then modified: by
/// usn_changed, C comes before P.
fn parent_changed_after_child(g: Granularity) -> Dsa {
    let mut a = dsa("A", 1, g);
    a.create(Guid(1), "ou=P,dc=corp", &[], 0).unwrap();
    a.create(Guid(2), "cn=C,ou=P,dc=corp", &[], 1).unwrap();
    a.modify("ou=P,dc=corp", &[("description", "d")], &[], 2)
        .unwrap();
    a
}

#[test]
fn a_child_paged_before_its_later_changed_parent_is_never_orphaned() {
    // P created, C created under P, P modified: by usn_changed, C comes
    // first. A server holding neither pulls one object a reply.
    let g = Granularity::Object;
    let a = parent_changed_after_child(g);
    let mut b = dsa("B", 2, g);
    let mut req = b.pull(a.name(), PullKind::Normal, 1, 3);
    let mut retried = false;
    while let Some(r) = req {
        let reply = a.answer(&r);
        let applied = b.apply(reply, 3);
        retried |= applied.get_anc_retry;
        // Never an object in LostAndFound on the way.
        assert!(
            shown(&b).iter().all(|dn| !dn.contains("LostAndFound")),
            "{:?}",
            shown(&b)
        );
        req = applied.follow_up;
    }
    assert!(
        retried,
        "the first page carried C before P: asked again with GET_ANC"
    );
    assert_eq!(shown(&b), ["cn=C,ou=P,dc=corp", "ou=P,dc=corp"]);
    assert_eq!(b.digest(), a.digest());
    // The watermark ends where the source is.
    assert_eq!(b.hwm("A").map(|h| h.usn), Some(a.usn()));
}

#[test]
fn without_get_anc_the_same_page_would_orphan_the_child() {
    // What GET_ANC prevents: the page, applied state by state, leaves C
    // with no parent, shown in LostAndFound.
    let g = Granularity::Object;
    let a = parent_changed_after_child(g);
    let mut b = dsa("B", 2, g);
    let req = b.pull(a.name(), PullKind::Normal, 1, 3).unwrap();
    let reply = a.answer(&req);
    assert_eq!(reply.changes[0].guid(), Guid(2), "the child first");
    b.apply_state(&reply.changes[0]);
    assert_eq!(shown(&b), ["cn=C,cn=LostAndFound"]);
}

#[test]
fn lost_and_found_is_the_same_on_every_server() {
    // Replica sync's LostAndFound case: B creates a child under P while A
    // deletes P; two children with one rdn clash there (CNF rule).
    let g = Granularity::Attribute;
    let mut a = dsa("A", 1, g);
    let mut b = dsa("B", 2, g);
    b.create(Guid(1), "ou=P,dc=corp", &[], 0).unwrap();
    b.create(Guid(2), "ou=Q,dc=corp", &[], 0).unwrap();
    sync(&mut a, &b, 100, 1);
    a.delete("ou=P,dc=corp", 2).unwrap();
    a.delete("ou=Q,dc=corp", 2).unwrap();
    b.create(Guid(3), "ou=Child,ou=P,dc=corp", &[], 3).unwrap();
    b.create(Guid(4), "ou=Child,ou=Q,dc=corp", &[], 4).unwrap();
    sync(&mut a, &b, 100, 5);
    sync(&mut b, &a, 100, 5);
    assert_eq!(a.digest(), b.digest());
    let want = [
        format!("ou=Child CNF:{},cn=LostAndFound", Guid(3)),
        "ou=Child,cn=LostAndFound".to_string(),
    ];
    assert_eq!(shown(&a), want);
    assert_eq!(shown(&b), want);
    assert!(a.lookup("OU=child,CN=lostandfound").is_some());
}

#[test]
fn a_case_only_rename_changes_the_case_shown_and_keeps_children() {
    let g = Granularity::Attribute;
    let mut a = dsa("A", 1, g);
    a.create(Guid(1), "ou=Sales,dc=corp", &[], 0).unwrap();
    a.create(Guid(2), "cn=Ann,ou=Sales,dc=corp", &[], 1)
        .unwrap();
    // The name is taken by the object itself: only its case changes.
    a.rename("OU=sales,dc=corp", "OU=SALES,dc=corp", 2).unwrap();
    assert_eq!(shown(&a), ["OU=SALES,dc=corp", "cn=Ann,OU=SALES,dc=corp"]);
    // The same dn exactly is refused.
    assert!(matches!(
        a.rename("OU=SALES,dc=corp", "OU=SALES,dc=corp", 3),
        Err(WriteError::DnExists { .. })
    ));
    // Under itself or its own child: refused.
    assert!(matches!(
        a.rename("ou=sales,dc=corp", "ou=x,cn=Ann,ou=sales,dc=corp", 3),
        Err(WriteError::IntoOwnSubtree { .. })
    ));
    // A name another object holds, a parent that is not live.
    a.create(Guid(3), "ou=Other,dc=corp", &[], 4).unwrap();
    assert!(matches!(
        a.rename("ou=Other,dc=corp", "ou=sales,dc=corp", 5),
        Err(WriteError::DnExists { .. })
    ));
    assert!(matches!(
        a.rename("ou=Other,dc=corp", "ou=Other,ou=Gone,dc=corp", 5),
        Err(WriteError::NoSuchParent { .. })
    ));
    assert!(matches!(
        a.rename("dc=corp", "dc=corp2", 5),
        Err(WriteError::FixedContainer { .. })
    ));
    assert_eq!(
        WriteError::NoSuchParent {
            server: "A".into(),
            dn: "x".into(),
            parent: "y".into()
        }
        .ldap_result(),
        "noSuchObject"
    );
}

#[test]
fn the_later_rename_keeps_a_contested_name() {
    let g = Granularity::Attribute;
    let mut a = dsa("A", 1, g);
    let mut b = dsa("B", 2, g);
    a.create(Guid(1), "ou=One,dc=corp", &[], 0).unwrap();
    b.create(Guid(2), "ou=Two,dc=corp", &[], 0).unwrap();
    sync(&mut a, &b, 100, 1);
    sync(&mut b, &a, 100, 1);
    a.rename("ou=One,dc=corp", "ou=Three,dc=corp", 10).unwrap();
    b.rename("ou=Two,dc=corp", "ou=Three,dc=corp", 11).unwrap();
    sync(&mut a, &b, 100, 12);
    sync(&mut b, &a, 100, 12);
    let want = [
        format!("ou=Three CNF:{},dc=corp", Guid(1)),
        "ou=Three,dc=corp".to_string(),
    ];
    assert_eq!(shown(&a), want);
    assert_eq!(shown(&b), want);
    assert_eq!(a.lookup("ou=three,dc=corp").unwrap().state.guid(), Guid(2));
}

/// A write of a small tree workload on one of three servers.
#[derive(Debug, Clone)]
enum W {
    Create(usize, u8, u8),
    Rename(usize, u8, u8, u8),
    Delete(usize, u8),
    Sync(usize, usize),
}

fn w() -> impl Strategy<Value = W> {
    prop_oneof![
        (0..3usize, 0..4u8, 0..5u8).prop_map(|(s, n, p)| W::Create(s, n, p)),
        (0..3usize, 0..4u8, 0..4u8, 0..5u8).prop_map(|(s, o, n, p)| W::Rename(s, o, n, p)),
        (0..3usize, 0..4u8).prop_map(|(s, n)| W::Delete(s, n)),
        (0..3usize, 0..3usize).prop_map(|(a, b)| W::Sync(a, b)),
    ]
}

/// The dn of a workload name: `ou=n<k>` under the parent `p` (4 is dc=corp).
fn dn_of(d: &Dsa, n: u8, p: u8) -> String {
    if p == 4 {
        return format!("ou=n{n},dc=corp");
    }
    // The parent as this server shows it, if live.
    let parent = d
        .objects()
        .into_iter()
        .find(|(dn, r)| !r.state.deleted() && dn.starts_with(&format!("ou=n{p},")))
        .map(|(dn, _)| dn)
        .unwrap_or_else(|| format!("ou=n{p},dc=corp"));
    format!("ou=n{n},{parent}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever the writes and the order replies arrive in, servers holding
    /// the same states show the same dns, LostAndFound placement and CNF
    /// names included, and a server rebuilt from those states in another
    /// order shows them too.
    #[test]
    fn shown_dns_follow_the_states_not_the_order(ws in proptest::collection::vec(w(), 1..40), g in prop_oneof![Just(Granularity::Object), Just(Granularity::Attribute)]) {
        let mut ds: Vec<Dsa> = (0..3).map(|i| dsa(&format!("S{i}"), i as u64 + 1, g)).collect();
        let mut next = 1u128;
        for (t, op) in ws.iter().enumerate() {
            let now = t as u64;
            match op {
                W::Create(s, n, p) => {
                    let dn = dn_of(&ds[*s], *n, *p);
                    if ds[*s].create(Guid(next), &dn, &[], now).is_ok() {
                        next += 1;
                    }
                }
                W::Rename(s, o, n, p) => {
                    let from = ds[*s].objects().into_iter()
                        .find(|(dn, r)| !r.state.deleted() && dn.starts_with(&format!("ou=n{o},")))
                        .map(|(dn, _)| dn);
                    if let Some(from) = from {
                        let to = dn_of(&ds[*s], *n, *p);
                        let _ = ds[*s].rename(&from, &to, now);
                    }
                }
                W::Delete(s, n) => {
                    let dn = ds[*s].objects().into_iter()
                        .find(|(dn, r)| !r.state.deleted() && dn.starts_with(&format!("ou=n{n},")))
                        .map(|(dn, _)| dn);
                    if let Some(dn) = dn {
                        let _ = ds[*s].delete_tree(&dn, now);
                    }
                }
                W::Sync(a, b) if a != b => {
                    let src = ds[*b].clone();
                    sync(&mut ds[*a], &src, 2, now);
                }
                W::Sync(..) => {}
            }
        }
        // Everyone pulls from everyone until nothing changes.
        for _ in 0..3 {
            for a in 0..3 {
                for b in 0..3 {
                    if a != b {
                        let src = ds[b].clone();
                        sync(&mut ds[a], &src, 3, 1000);
                    }
                }
            }
        }
        prop_assert_eq!(ds[0].digest(), ds[1].digest());
        prop_assert_eq!(ds[1].digest(), ds[2].digest());
        let want = shown(&ds[0]);
        prop_assert_eq!(&shown(&ds[1]), &want);
        prop_assert_eq!(&shown(&ds[2]), &want);
        // The same states applied in reverse order to a fresh server.
        let mut states: Vec<ObjectState> = ds[0].objects().into_iter().map(|(_, r)| r.state).collect();
        states.reverse();
        let mut fresh = dsa("F", 9, g);
        for s in &states {
            fresh.apply_state(s);
        }
        prop_assert_eq!(fresh.digest(), ds[0].digest());
        prop_assert_eq!(shown(&fresh), want);
    }
}
