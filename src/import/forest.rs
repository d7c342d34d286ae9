//! LDIF entries mapped onto a [`Forest`]: sites, servers, inbound
//! connections and site links (docs/IMPORT.md).

use std::collections::HashMap;

use super::ldif::{self, Entry, Rdn};
use super::{ErrorKind, ImportError, schedule};
use crate::core::WeekWindows;
use crate::limits;

/// NTDSCONN_OPT_RODC_TOPOLOGY (MS-ADTS 6.1.1.2.2.1.2.1.3): a connection
/// used only by FRS, never for directory replication.
pub const NTDSCONN_OPT_RODC_TOPOLOGY: u32 = 0x40;

/// A site (an `objectClass: site` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Its `cn` (or the value of its RDN).
    pub name: String,
}

/// A domain controller (an `objectClass: server` entry under
/// `CN=Servers,CN=<site>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Its `cn`; a CNF-mangled `WIN05\nCNF:<guid>` becomes
    /// `WIN05-CNF-<first 8 characters of the guid>`.
    pub name: String,
    /// The name of its site.
    pub site: String,
    /// Whether its NTDS Settings say `msDS-isRODC: TRUE` (or are of class
    /// `nTDSDSARO`).
    pub read_only: bool,
    /// The `invocationId` of its NTDS Settings, if any.
    pub invocation_id: Option<[u8; 16]>,
}

/// A one-way connection: `to` pulls from `from` (an enabled
/// `nTDSConnection` under `to`'s NTDS Settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The connection object's `cn` (often a GUID string).
    pub name: String,
    /// The server that pulls (the connection sits under it).
    pub to: String,
    /// The server it pulls from (its `fromServer`).
    pub from: String,
    /// Its own schedule; `None`: the site link's `repl_interval` applies.
    pub schedule: Option<WeekWindows>,
}

/// A site link (`objectClass: siteLink`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteLink {
    /// Its `cn`.
    pub name: String,
    /// Its `cost` (100 when absent, as AD defaults).
    pub cost: u32,
    /// Its `replInterval` in minutes (180 when absent, as AD defaults).
    pub repl_interval_minutes: u32,
    /// The names of its sites (`siteList`), in file order.
    pub sites: Vec<String>,
    /// Its `schedule`, if any.
    pub schedule: Option<WeekWindows>,
}

/// A forest as an `ldifde` export of `CN=Sites,CN=Configuration` describes
/// it. Plain data, every list in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Forest {
    /// The sites.
    pub sites: Vec<Site>,
    /// The servers.
    pub servers: Vec<Server>,
    /// The imported connections (enabled, not RODC-topology).
    pub connections: Vec<Connection>,
    /// The site links.
    pub site_links: Vec<SiteLink>,
    /// Connections left out for `enabledConnection: FALSE`.
    pub disabled_connections: usize,
    /// Connections left out for NTDSCONN_OPT_RODC_TOPOLOGY in `options`.
    pub rodc_topology_skipped: usize,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Forest {
    /// Reads an LDIF export (see the [module docs](super)).
    pub fn from_ldif(text: &str) -> Result<Forest, ImportError> {
        let entries = ldif::parse(text)?;
        build(&entries)
    }

    /// One line: "N sites, N servers (N read-only), N connections (N
    /// disabled, N RODC-topology skipped), N site links".
    pub fn summary(&self) -> String {
        format!(
            "{}, {} ({} read-only), {} ({} disabled, {} RODC-topology skipped), {}",
            plural(self.sites.len(), "site", "sites"),
            plural(self.servers.len(), "server", "servers"),
            self.servers.iter().filter(|s| s.read_only).count(),
            plural(self.connections.len(), "connection", "connections"),
            self.disabled_connections,
            self.rodc_topology_skipped,
            plural(self.site_links.len(), "site link", "site links"),
        )
    }
}

fn err(e: &Entry, kind: ErrorKind) -> ImportError {
    ImportError::new(e.line, Some(&e.dn), kind)
}

fn misplaced(e: &Entry, what: &str) -> ImportError {
    err(e, ErrorKind::Misplaced(what.into()))
}

/// The entry (in `by_key`) that is the parent of the one named by `rdns`.
fn parent(by_key: &HashMap<String, usize>, rdns: &[ldif::Rdn]) -> Option<usize> {
    let up = rdns.get(1..).filter(|up| !up.is_empty())?;
    by_key.get(&ldif::rdns_key(up)).copied()
}

fn bad(e: &Entry, attr: &str, problem: impl Into<String>) -> ImportError {
    err(
        e,
        ErrorKind::BadValue {
            attr: attr.to_string(),
            problem: problem.into(),
        },
    )
}

fn text<'a>(e: &'a Entry, attr: &str) -> Result<Option<&'a str>, ImportError> {
    match e.first(attr) {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v)
            .map(|s| Some(s.trim()))
            .map_err(|_| err(e, ErrorKind::NotUtf8(attr.to_string()))),
    }
}

fn boolean(e: &Entry, attr: &str) -> Result<Option<bool>, ImportError> {
    match text(e, attr)? {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("TRUE") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("FALSE") => Ok(Some(false)),
        Some(v) => Err(bad(e, attr, format!("`{v}` is not TRUE or FALSE"))),
    }
}

/// An integer attribute; AD writes 32-bit flags signed, so negative values
/// are taken as their bits.
fn integer(e: &Entry, attr: &str) -> Result<Option<u32>, ImportError> {
    match text(e, attr)? {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (i32::MIN as i64..=u32::MAX as i64).contains(&n) => Ok(Some(n as u32)),
            _ => Err(bad(e, attr, format!("`{v}` is not a 32-bit integer"))),
        },
    }
}

fn schedule_of(e: &Entry) -> Result<Option<WeekWindows>, ImportError> {
    e.first("schedule")
        .map(|b| schedule::decode(b).map_err(|s| err(e, ErrorKind::Schedule(s))))
        .transpose()
}

/// An entry's name: its `cn`, else its RDN value; CNF-mangled names
/// (`NAME\nCNF:<guid>`) made readable.
fn name_of(e: &Entry, rdns: &[Rdn]) -> Result<String, ImportError> {
    let raw = match text(e, "cn")? {
        Some(cn) => cn.to_string(),
        None => rdns[0].value.clone(),
    };
    let name = match raw.split_once("\nCNF:") {
        Some((base, guid)) => {
            let short: String = guid.chars().filter(|c| *c != '-').take(8).collect();
            format!("{base}-CNF-{short}")
        }
        None => raw,
    };
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(bad(e, "cn", format!("{name:?} is not a usable name")));
    }
    Ok(name)
}

/// The RDNs of a dn value held in attribute `attr` of `e`.
fn dn_value(e: &Entry, attr: &str, v: &[u8]) -> Result<String, ImportError> {
    let s = std::str::from_utf8(v).map_err(|_| err(e, ErrorKind::NotUtf8(attr.to_string())))?;
    ldif::dn_key(s).ok_or_else(|| bad(e, attr, format!("`{}` is not a dn", s.trim())))
}

fn build(entries: &[Entry]) -> Result<Forest, ImportError> {
    let parsed: Vec<Vec<Rdn>> = entries
        .iter()
        .map(|e| ldif::parse_dn(&e.dn).expect("the reader keeps dns only"))
        .collect();
    let class_of = |e: &Entry| {
        if e.is_a("nTDSConnection") {
            Some(Class::Connection)
        } else if e.is_a("nTDSDSA") || e.is_a("nTDSDSARO") {
            Some(Class::Dsa)
        } else if e.is_a("siteLink") {
            Some(Class::SiteLink)
        } else if e.is_a("site") {
            Some(Class::Site)
        } else if e.is_a("server") {
            Some(Class::Server)
        } else {
            None
        }
    };
    let classes: Vec<Option<Class>> = entries.iter().map(class_of).collect();
    let of = |c: Class| {
        entries
            .iter()
            .zip(&parsed)
            .zip(&classes)
            .filter(move |(_, k)| **k == Some(c))
            .map(|(p, _)| p)
    };

    // Sites, by dn key.
    let mut sites = Vec::new();
    let mut site_by_key: HashMap<String, usize> = HashMap::new();
    for (e, rdns) in of(Class::Site) {
        let name = name_of(e, rdns)?;
        site_by_key.insert(ldif::rdns_key(rdns), sites.len());
        sites.push(Site { name });
    }
    if sites.is_empty() {
        return Err(ImportError::new(1, None, ErrorKind::NoSite));
    }

    // Servers, under CN=Servers,<site dn>.
    let mut servers: Vec<Server> = Vec::new();
    let mut server_by_key: HashMap<String, usize> = HashMap::new();
    let mut server_by_name: HashMap<String, usize> = HashMap::new();
    for (e, rdns) in of(Class::Server) {
        let site = (rdns.len() >= 3 && rdns[1].value.eq_ignore_ascii_case("Servers"))
            .then(|| site_by_key.get(&ldif::rdns_key(&rdns[2..])))
            .flatten()
            .ok_or_else(|| {
                err(
                    e,
                    ErrorKind::Misplaced(
                        "a server not under `CN=Servers,CN=<site>` of a site of the file".into(),
                    ),
                )
            })?;
        let name = name_of(e, rdns)?;
        if server_by_name
            .insert(name.to_lowercase(), servers.len())
            .is_some()
        {
            return Err(err(e, ErrorKind::DuplicateServer(name)));
        }
        if servers.len() == limits::MAX_SERVERS {
            return Err(err(
                e,
                ErrorKind::TooLarge(format!("more than {} servers", limits::MAX_SERVERS)),
            ));
        }
        server_by_key.insert(ldif::rdns_key(rdns), servers.len());
        servers.push(Server {
            name,
            site: sites[*site].name.clone(),
            read_only: false,
            invocation_id: None,
        });
    }
    if servers.is_empty() {
        return Err(ImportError::new(1, None, ErrorKind::NoServer));
    }

    // NTDS Settings, children of servers.
    let mut dsa_by_key: HashMap<String, usize> = HashMap::new();
    for (e, rdns) in of(Class::Dsa) {
        let server = parent(&server_by_key, rdns)
            .ok_or_else(|| misplaced(e, "NTDS Settings not under a server of the file"))?;
        let s = &mut servers[server];
        s.read_only = boolean(e, "msDS-isRODC")?.unwrap_or(false) || e.is_a("nTDSDSARO");
        if let Some(id) = e.first("invocationId") {
            s.invocation_id = Some(
                id.try_into()
                    .map_err(|_| bad(e, "invocationId", format!("{} bytes, not 16", id.len())))?,
            );
        }
        dsa_by_key.insert(ldif::rdns_key(rdns), server);
    }

    // Connections, children of NTDS Settings.
    let mut connections = Vec::new();
    let (mut disabled, mut rodc) = (0, 0);
    for (e, rdns) in of(Class::Connection) {
        let to = parent(&dsa_by_key, rdns).ok_or_else(|| {
            misplaced(
                e,
                "a connection not under the NTDS Settings of a server of the file",
            )
        })?;
        if boolean(e, "enabledConnection")? == Some(false) {
            disabled += 1;
            continue;
        }
        if integer(e, "options")?.unwrap_or(0) & NTDSCONN_OPT_RODC_TOPOLOGY != 0 {
            rodc += 1;
            continue;
        }
        let from_raw = e
            .first("fromServer")
            .ok_or_else(|| err(e, ErrorKind::Missing("fromServer".into())))?;
        let from_key = dn_value(e, "fromServer", from_raw)?;
        let from = *dsa_by_key.get(&from_key).ok_or_else(|| {
            err(
                e,
                ErrorKind::UnknownFromServer(
                    ldif::strip_extended(&String::from_utf8_lossy(from_raw))
                        .trim()
                        .to_string(),
                ),
            )
        })?;
        if from == to {
            return Err(bad(e, "fromServer", "a server pulling from itself"));
        }
        connections.push(Connection {
            name: name_of(e, rdns)?,
            to: servers[to].name.clone(),
            from: servers[from].name.clone(),
            schedule: schedule_of(e)?,
        });
    }

    // Site links.
    let mut site_links = Vec::new();
    for (e, rdns) in of(Class::SiteLink) {
        let mut linked = Vec::new();
        for v in e.values("siteList") {
            let key = dn_value(e, "siteList", v)?;
            let site = site_by_key.get(&key).ok_or_else(|| {
                err(
                    e,
                    ErrorKind::UnknownSite(
                        ldif::strip_extended(&String::from_utf8_lossy(v))
                            .trim()
                            .to_string(),
                    ),
                )
            })?;
            linked.push(sites[*site].name.clone());
        }
        site_links.push(SiteLink {
            name: name_of(e, rdns)?,
            cost: integer(e, "cost")?.unwrap_or(100),
            repl_interval_minutes: integer(e, "replInterval")?.unwrap_or(180),
            sites: linked,
            schedule: schedule_of(e)?,
        });
    }

    Ok(Forest {
        sites,
        servers,
        connections,
        site_links,
        disabled_connections: disabled,
        rodc_topology_skipped: rodc,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Site,
    Server,
    Dsa,
    Connection,
    SiteLink,
}

/// An `ldifde`-shaped export of a generated forest: `sites` sites (the
/// first the hub) and `dcs` domain controllers spread over them round
/// robin. Inside a site each DC pulls from the one before it (a ring when
/// there are three or more); the first DC of each branch site and the hub's
/// first DC pull from each other, on a night-only schedule. One site link
/// per branch, to the hub. For benches and tests.
#[doc(hidden)]
pub fn synthetic_forest_ldif(sites: usize, dcs: usize) -> String {
    use ldif::{Attribute, write_entry};
    let sites = sites.max(1);
    let base = "CN=Sites,CN=Configuration,DC=example,DC=com";
    let site_dn = |s: usize| format!("CN=Site-{s:03},{base}");
    let server_dn = |d: usize| format!("CN=DC{d:04},CN=Servers,{}", site_dn(d % sites));
    let ntds_dn = |d: usize| format!("CN=NTDS Settings,{}", server_dn(d));
    let attr = |name: &str, v: &[u8]| Attribute {
        name: name.to_string(),
        options: Vec::new(),
        value: v.to_vec(),
    };
    let mut night = WeekWindows::never();
    for day in 0..7 {
        for q in 0..16 {
            night.open(day * 96 + q);
        }
    }
    let night = schedule::encode(&night);
    let mut out = String::from("version: 1\n\n");
    let mut add = |dn: String, attrs: Vec<Attribute>| {
        write_entry(&mut out, &Entry { dn, line: 0, attrs }, 79)
    };
    for s in 0..sites {
        add(
            site_dn(s),
            vec![
                attr("objectClass", b"top"),
                attr("objectClass", b"site"),
                attr("cn", format!("Site-{s:03}").as_bytes()),
            ],
        );
    }
    let in_site = |s: usize| (0..dcs).filter(move |d| d % sites == s);
    let mut conn = 0u32;
    let mut connection = |to: usize, from: usize, sched: bool| {
        conn += 1;
        let mut attrs = vec![
            attr("objectClass", b"top"),
            attr("objectClass", b"nTDSConnection"),
            attr(
                "cn",
                format!("{conn:08x}-0000-4000-8000-000000000000").as_bytes(),
            ),
            attr("enabledConnection", b"TRUE"),
            attr("fromServer", ntds_dn(from).as_bytes()),
            attr("options", b"1"),
        ];
        if sched {
            attrs.push(attr("schedule", &night));
        }
        (
            format!("CN={conn:08x}-0000-4000-8000-000000000000,{}", ntds_dn(to)),
            attrs,
        )
    };
    let mut pending = Vec::new();
    for d in 0..dcs {
        let s = d % sites;
        let peers: Vec<usize> = in_site(s).collect();
        let i = peers.iter().position(|&p| p == d).unwrap_or(0);
        if peers.len() >= 2 && (i > 0 || peers.len() >= 3) {
            let prev = peers[(i + peers.len() - 1) % peers.len()];
            pending.push((d, connection(d, prev, false)));
        }
        if s != 0 && i == 0 && dcs > 0 {
            pending.push((d, connection(d, 0, true)));
            pending.push((0, connection(0, d, true)));
        }
    }
    for d in 0..dcs {
        add(
            server_dn(d),
            vec![
                attr("objectClass", b"top"),
                attr("objectClass", b"server"),
                attr("cn", format!("DC{d:04}").as_bytes()),
            ],
        );
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(d as u64 + 1).to_le_bytes());
        add(
            ntds_dn(d),
            vec![
                attr("objectClass", b"top"),
                attr("objectClass", b"applicationSettings"),
                attr("objectClass", b"nTDSDSA"),
                attr("cn", b"NTDS Settings"),
                attr("invocationId", &id),
            ],
        );
    }
    for (_, (dn, attrs)) in pending {
        add(dn, attrs);
    }
    for s in 1..sites {
        add(
            format!("CN=Hub-{s:03},CN=IP,CN=Inter-Site Transports,{base}"),
            vec![
                attr("objectClass", b"top"),
                attr("objectClass", b"siteLink"),
                attr("cn", format!("Hub-{s:03}").as_bytes()),
                attr("cost", b"100"),
                attr("replInterval", b"15"),
                attr("siteList", site_dn(0).as_bytes()),
                attr("siteList", site_dn(s).as_bytes()),
            ],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_forests_import() {
        let f = Forest::from_ldif(&synthetic_forest_ldif(4, 10)).unwrap();
        assert_eq!(f.sites.len(), 4);
        assert_eq!(f.servers.len(), 10);
        assert_eq!(f.site_links.len(), 3);
        assert!(f.servers.iter().all(|s| s.invocation_id.is_some()));
        // Sites 0 and 1 have 3 DCs (rings of 3), 2 and 3 have 2 (one
        // connection each); 3 branch hubs both ways.
        assert_eq!(f.connections.len(), 3 + 3 + 1 + 1 + 6);
        let f = Forest::from_ldif(&synthetic_forest_ldif(100, 1000)).unwrap();
        assert_eq!(f.servers.len(), 1000);
        assert_eq!(f.sites.len(), 100);
    }

    #[test]
    fn cnf_names_are_readable() {
        let text = "dn: CN=S,CN=Sites,DC=x\nobjectClass: site\n\n\
                    dn: CN=W\\0ACNF:2f1c9a7e-1111-2222-3333-444455556666,CN=Servers,CN=S,CN=Sites,DC=x\n\
                    objectClass: server\n\
                    cn:: V0lOMDUKQ05GOjJmMWM5YTdlLTExMTEtMjIyMi0zMzMzLTQ0NDQ1NTU1NjY2Ng==\n";
        let f = Forest::from_ldif(text).unwrap();
        assert_eq!(f.servers[0].name, "WIN05-CNF-2f1c9a7e");
    }

    #[test]
    fn summary_counts() {
        let f = Forest::from_ldif(&synthetic_forest_ldif(1, 1)).unwrap();
        assert_eq!(
            f.summary(),
            "1 site, 1 server (0 read-only), 0 connections (0 disabled, 0 RODC-topology skipped), 0 site links"
        );
    }
}
