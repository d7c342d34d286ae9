//! `Forest::from_ldif` on the fixtures of tests/fixtures/forests: a forest
//! in the shape of an `ldifde` export, and one invalid file per error.

use backsync::core::WeekWindows;
use backsync::import::{ErrorKind, Forest, ScheduleError, schedule};

/// The example forest shipped with `scenarios/forest_restore.toml`.
fn shipped_forest() -> String {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/forests/branch-offices.ldif"
    );
    std::fs::read_to_string(p).unwrap()
}

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/forests/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const B: &str = "CN=Sites,CN=Configuration,DC=example,DC=com";

#[test]
fn branch_offices() {
    let f = Forest::from_ldif(&shipped_forest()).unwrap();
    assert_eq!(
        f.summary(),
        "3 sites, 6 servers (1 read-only), 6 connections (1 disabled, 1 RODC-topology skipped), 2 site links"
    );
    let sites: Vec<&str> = f.sites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(sites, ["Hub", "Site-B", "Site-C"]);
    let servers: Vec<(&str, &str, bool)> = f
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.site.as_str(), s.read_only))
        .collect();
    assert_eq!(
        servers,
        [
            ("HUB01", "Hub", false),
            ("HUB02", "Hub", false),
            // Its dn has a `<GUID=…>;<SID=…>;` prefix.
            ("WIN02", "Site-B", false),
            // `cn:: ` base64 of "WIN05\nCNF:7d3a4e61-…".
            ("WIN05-CNF-7d3a4e61", "Site-B", false),
            ("RODC01", "Site-C", true),
            ("WIN09", "Site-C", false),
        ]
    );
    assert!(f.servers.iter().all(|s| s.invocation_id.is_some()));

    let conns: Vec<(&str, &str, Option<usize>)> = f
        .connections
        .iter()
        .map(|c| {
            (
                c.to.as_str(),
                c.from.as_str(),
                c.schedule.as_ref().map(WeekWindows::open_quarters),
            )
        })
        .collect();
    assert_eq!(
        conns,
        [
            ("HUB02", "HUB01", None),
            // fromServer with a `<GUID=…>;` prefix.
            ("HUB01", "HUB02", None),
            // Night only: 6 hours a day.
            ("WIN02", "HUB01", Some(7 * 6 * 4)),
            ("HUB01", "WIN02", Some(672)),
            ("WIN05-CNF-7d3a4e61", "WIN02", None),
            // Closed on weekdays from 06:00 to 20:00.
            ("RODC01", "HUB01", Some(672 - 5 * 14 * 4)),
        ]
    );
    // WIN09 has no inbound connection.
    assert!(!f.connections.iter().any(|c| c.to == "WIN09"));

    assert_eq!(f.site_links.len(), 2);
    let l = &f.site_links[0];
    assert_eq!(
        (l.name.as_str(), l.cost, l.repl_interval_minutes),
        ("Hub-SiteB", 100, 15)
    );
    assert_eq!(l.sites, ["Hub", "Site-B"]);
    assert_eq!(l.schedule.as_ref().map(|s| s.open_quarters()), Some(168));
    let l = &f.site_links[1];
    assert_eq!(
        (l.cost, l.repl_interval_minutes, &l.schedule),
        (200, 180, &None)
    );
}

/// The error's line, dn and Display for an invalid fixture.
fn error(name: &str) -> (usize, Option<String>, ErrorKind, String) {
    let e = Forest::from_ldif(&fixture(name)).unwrap_err();
    let shown = e.to_string();
    (e.line, e.dn, e.kind, shown)
}

#[test]
fn not_ldif() {
    let (line, dn, kind, shown) = error("invalid-not-ldif.ldif");
    assert_eq!((line, dn), (1, None));
    assert!(matches!(kind, ErrorKind::NotLdif(_)));
    assert_eq!(
        shown,
        "line 1: not LDIF: `DN,objectClass,cn` is not `name: value`"
    );
}

#[test]
fn bad_base64() {
    let (line, dn, kind, shown) = error("invalid-bad-base64.ldif");
    let want = format!("CN=NTDS Settings,CN=WIN01,CN=Servers,CN=Hub,{B}");
    assert_eq!((line, dn.as_deref()), (50, Some(want.as_str())));
    assert_eq!(kind, ErrorKind::BadBase64("objectGUID".into()));
    assert_eq!(
        shown,
        format!("line 50: entry `{want}`: bad base64 in `objectGUID`")
    );
}

#[test]
fn unknown_from_server() {
    let (line, dn, kind, shown) = error("invalid-unknown-from-server.ldif");
    let want = format!(
        "CN=1b6b9e01-0000-0000-0000-000000000002,CN=NTDS Settings,CN=WIN02,CN=Servers,CN=Hub,{B}"
    );
    assert_eq!((line, dn.as_deref()), (95, Some(want.as_str())));
    let from = format!("CN=NTDS Settings,CN=WIN07,CN=Servers,CN=Hub,{B}");
    assert_eq!(kind, ErrorKind::UnknownFromServer(from.clone()));
    assert_eq!(
        shown,
        format!("line 95: entry `{want}`: `fromServer` `{from}` names no server of the file")
    );
}

#[test]
fn schedule_of_the_wrong_size() {
    let (line, dn, kind, shown) = error("invalid-schedule-size.ldif");
    let want = format!(
        "CN=1b6b9e01-0000-0000-0000-000000000001,CN=NTDS Settings,CN=WIN01,CN=Servers,CN=Hub,{B}"
    );
    assert_eq!((line, dn.as_deref()), (79, Some(want.as_str())));
    assert_eq!(kind, ErrorKind::Schedule(ScheduleError::Length(180)));
    assert_eq!(
        shown,
        format!("line 79: entry `{want}`: `schedule`: a SCHEDULE of 180 bytes, not 188")
    );
}

#[test]
fn no_site_and_no_server() {
    let (line, dn, kind, shown) = error("invalid-no-site.ldif");
    assert_eq!((line, dn, kind), (1, None, ErrorKind::NoSite));
    assert!(shown.starts_with("line 1: no site"), "{shown}");
    let (line, dn, kind, _) = error("invalid-no-server.ldif");
    assert_eq!((line, dn, kind), (1, None, ErrorKind::NoServer));
}

#[test]
fn duplicate_server() {
    let (line, dn, kind, shown) = error("invalid-duplicate-server.ldif");
    let want = format!("CN=WIN01,CN=Servers,CN=Site-B,{B}");
    assert_eq!((line, dn.as_deref()), (86, Some(want.as_str())));
    assert_eq!(kind, ErrorKind::DuplicateServer("WIN01".into()));
    assert_eq!(
        shown,
        format!("line 86: entry `{want}`: duplicate server name `WIN01`")
    );
}

#[test]
fn schedule_fields_are_checked() {
    let text = shipped_forest();
    // A schedule with Type 1 (SCHEDULE_BANDWIDTH) instead of 0.
    let mut blob = schedule::encode(&WeekWindows::always());
    blob[12] = 1;
    let good = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(schedule::encode(&WeekWindows::always()))
    };
    let bad = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&blob)
    };
    // The fixture folds values at 79 columns: unfold it first.
    let unfolded = text.replace("\n ", "");
    assert!(unfolded.contains(&good));
    let e = Forest::from_ldif(&unfolded.replacen(&good, &bad, 1)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Schedule(ScheduleError::Type(1)));
    assert!(e.dn.is_some());
}
