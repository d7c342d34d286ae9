//! From text to a validated [`Scenario`]: syntax, then each table, then the
//! cross-references (names a step uses, backups taken before use).

use std::collections::BTreeMap;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ScenarioError, Source};
use super::fields::{
    Bad, Fields, Value, attrs, boolean, count, count_at_most, duration, fraction, list, name,
    packet, parsed, period, string,
};
use super::{
    Action, ConnectorSpec, ConvergeExpect, ExpectCheck, NetworkSpec, Scenario, ServerState,
    SiteSpec, Step,
};
use crate::config::{Granularity, Profile, ReplicationConfig, RestoreStrategy};
use crate::limits::{
    MAX_COUNT, MAX_LOAD_TOTAL, MAX_OBJECTS_SENT, MAX_REPLICAS, MAX_SERVERS, MAX_TOTAL_DURATION,
    MAX_TOTAL_DURATION_TEXT,
};

type Result<T> = std::result::Result<T, ScenarioError>;

const TOP_FIELDS: &[&str] = &[
    "name",
    "seed",
    "profile",
    "site",
    "connector",
    "replication",
    "network",
    "step",
];
const SITE_FIELDS: &[&str] = &["name", "servers"];
const CONNECTOR_FIELDS: &[&str] = &["between", "bridgeheads", "schedule", "latency"];
const REPLICATION_FIELDS: &[&str] = &[
    "notify_delay",
    "notify_spacing",
    "intrasite_latency",
    "intrasite_packet",
    "intersite_packet",
    "granularity",
    "tombstone_lifetime",
    "gc_interval",
    "restore",
    "backsync_timeout",
    "rollback_detection",
    "startup_delay",
    "intrasite_schedule",
    "reply_timeout",
];
const NETWORK_FIELDS: &[&str] = &["loss", "duplicate", "jitter"];

/// Every `do` value and the fields that action takes (besides `do`).
const ACTIONS: &[(&str, &[&str])] = &[
    ("create", &["server", "dn", "attrs", "expect_refused"]),
    (
        "modify",
        &["server", "dn", "attrs", "remove", "expect_refused"],
    ),
    ("delete", &["server", "dn", "expect_refused"]),
    (
        "load",
        &["servers", "creates", "modifies", "deletes", "prefix"],
    ),
    ("backup", &["server", "name"]),
    ("crash", &["server"]),
    ("restore", &["server", "backup", "strategy"]),
    ("partition", &["groups"]),
    ("heal", &[]),
    ("delete_connector", &["between"]),
    ("wait", &["for"]),
    (
        "converge",
        &["within", "expect", "max_sim", "max_objects_sent"],
    ),
    ("expect", EXPECT_FIELDS),
];

/// The fields of `expect`; `lost_unreplicated` (last) goes alone.
const EXPECT_FIELDS: &[&str] = &[
    "server",
    "dn",
    "present",
    "attrs",
    "objects",
    "tombstone",
    "state",
    "answered_by",
    "lost_unreplicated",
];

/// Parses and validates a whole scenario.
pub(super) fn parse(text: &str, origin: &str) -> Result<Scenario> {
    let src = Source { text, origin };
    if let Some(at) = text.find('\0') {
        return Err(src.error_at(at..at, None, "not UTF-8 text: binary data (NUL byte)"));
    }
    let doc = DeTable::parse(text).map_err(|e| {
        let message = format!("TOML syntax error: {}", e.message());
        match e.span() {
            Some(span) => src.error_at(span, None, message),
            None => src.error(None, message),
        }
    })?;
    let top = Fields::new(&src, "", None, doc.get_ref());
    top.only(TOP_FIELDS, |k| unknown(k, TOP_FIELDS))?;

    let name = top.req("name", name)?.into_inner();
    let seed = top.opt("seed", count)?.map_or(0, Spanned::into_inner);
    let profile = top
        .opt("profile", parsed::<Profile>)?
        .map_or(Profile::Exchange55, Spanned::into_inner);
    let topo = read_sites(&top)?;
    let connectors = read_connectors(&top, &topo)?;
    let config = read_replication(&top, profile)?;
    let network = read_network(&top)?;
    let steps = read_steps(&top, &topo, &connectors)?;
    Ok(Scenario {
        name,
        seed,
        profile,
        sites: topo.sites,
        connectors: connectors.into_iter().map(|(c, _)| c).collect(),
        config,
        network,
        steps,
    })
}

fn unknown(key: &str, allowed: &[&str]) -> String {
    format!(
        "unknown field `{key}` (expected one of: {})",
        allowed.join(", ")
    )
}

/// `a, b, c`, or the first ten and a count: for "known names" hints.
fn listing<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&String> = names.collect();
    let shown: Vec<&str> = names.iter().take(10).map(|s| s.as_str()).collect();
    match names.len() {
        0 => "none".to_string(),
        n if n > 10 => format!("{}, and {} more", shown.join(", "), n - 10),
        _ => shown.join(", "),
    }
}

/// The value of `key` as an optional table (`[replication]` or inline).
fn subtable<'a, 'i>(top: &Fields<'a, 'i>, key: &str) -> Result<Option<Fields<'a, 'i>>> {
    let Some(v) = top.get(key) else {
        return Ok(None);
    };
    match v.get_ref() {
        DeValue::Table(t) => Ok(Some(Fields::new(top.src, key, Some(v.span()), t))),
        other => Err(top.error(
            v.span(),
            key,
            format!("expected a table [{key}], found {}", other.type_str()),
        )),
    }
}

/// The elements of an array of tables (`[[step]]`), each as `key[i]`.
fn tables<'a, 'i>(top: &Fields<'a, 'i>, key: &str) -> Result<Vec<Fields<'a, 'i>>> {
    let Some(v) = top.get(key) else {
        return Ok(Vec::new());
    };
    let not_array = |what: &str| {
        top.error(
            v.span(),
            key,
            format!("expected an array of tables [[{key}]], found {what}"),
        )
    };
    let DeValue::Array(items) = v.get_ref() else {
        return Err(not_array(&format!(
            "a {}: write [[{key}]]",
            v.get_ref().type_str()
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item.get_ref() {
            DeValue::Table(t) => Ok(Fields::new(
                top.src,
                format!("{key}[{i}]"),
                Some(item.span()),
                t,
            )),
            other => Err(not_array(&format!(
                "a list with an item of type {}",
                other.type_str()
            ))),
        })
        .collect()
}

/// Drops the spans once a list is checked.
fn plain(names: Vec<Spanned<String>>) -> Vec<String> {
    names.into_iter().map(Spanned::into_inner).collect()
}

/// A list of exactly two names (`between`, `bridgeheads`).
fn pair(v: &Value<'_>) -> std::result::Result<[Spanned<String>; 2], Bad> {
    let items = list(v, name)?;
    let n = items.len();
    <[Spanned<String>; 2]>::try_from(items)
        .map_err(|_| Bad::new(format!("expected a list of exactly two names, found {n}")))
}

/// Sites and servers, with lookups by name.
struct Topology {
    sites: Vec<SiteSpec>,
    /// Site index by site name.
    site_index: BTreeMap<String, usize>,
    /// Site index by server name.
    server_site: BTreeMap<String, usize>,
}

impl Topology {
    /// Checks that `server` (field `key` of `f`) names a server; gives its site index.
    fn server(&self, f: &Fields<'_, '_>, key: &str, server: &Spanned<String>) -> Result<usize> {
        self.server_site
            .get(server.get_ref())
            .copied()
            .ok_or_else(|| {
                let all = self.sites.iter().flat_map(|s| s.servers.iter());
                let msg = format!(
                    "unknown server `{}` (servers: {})",
                    server.get_ref(),
                    listing(all)
                );
                f.error(server.span(), key, msg)
            })
    }

    /// Checks that `site` (field `key` of `f`) names a site; gives its index.
    fn site(&self, f: &Fields<'_, '_>, key: &str, site: &Spanned<String>) -> Result<usize> {
        self.site_index.get(site.get_ref()).copied().ok_or_else(|| {
            let all = self.sites.iter().map(|s| &s.name);
            let msg = format!(
                "unknown site `{}` (sites: {})",
                site.get_ref(),
                listing(all)
            );
            f.error(site.span(), key, msg)
        })
    }
}

fn read_sites(top: &Fields<'_, '_>) -> Result<Topology> {
    let mut topo = Topology {
        sites: Vec::new(),
        site_index: BTreeMap::new(),
        server_site: BTreeMap::new(),
    };
    let src = top.src;
    let mut site_lines = Vec::new();
    for f in tables(top, "site")? {
        f.only(SITE_FIELDS, |k| unknown(k, SITE_FIELDS))?;
        let site = f.req("name", name)?;
        if let Some(&other) = topo.site_index.get(site.get_ref()) {
            let msg = format!(
                "duplicate site name `{}` (also on line {})",
                site.get_ref(),
                site_lines[other]
            );
            return Err(f.error(site.span(), "name", msg));
        }
        let servers = f.req("servers", |v| list(v, name))?;
        if servers.get_ref().is_empty() {
            return Err(f.error(
                servers.span(),
                "servers",
                "a site needs at least one server",
            ));
        }
        let index = topo.sites.len();
        for (j, server) in servers.get_ref().iter().enumerate() {
            if topo.server_site.len() >= MAX_SERVERS {
                let msg = format!("too many servers: a scenario has at most {MAX_SERVERS}");
                return Err(f.error(server.span(), &format!("servers[{j}]"), msg));
            }
            if let Some(&other) = topo.server_site.get(server.get_ref()) {
                let msg = if other == index {
                    format!("server `{}` is listed twice in this site", server.get_ref())
                } else {
                    format!(
                        "server `{}` is already in site `{}` (line {}): a server is in exactly one site",
                        server.get_ref(),
                        topo.sites[other].name,
                        site_lines[other]
                    )
                };
                return Err(f.error(server.span(), &format!("servers[{j}]"), msg));
            }
            topo.server_site.insert(server.get_ref().clone(), index);
        }
        site_lines.push(f.line());
        topo.site_index.insert(site.get_ref().clone(), index);
        topo.sites.push(SiteSpec {
            name: site.into_inner(),
            servers: servers
                .into_inner()
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
        });
    }
    if topo.sites.is_empty() {
        return Err(src.error(
            Some("site"),
            "no sites: a scenario needs at least one [[site]] with `name` and `servers`",
        ));
    }
    Ok(topo)
}

/// Connectors, each with the line of its `[[connector]]` header.
fn read_connectors(top: &Fields<'_, '_>, topo: &Topology) -> Result<Vec<(ConnectorSpec, usize)>> {
    let mut out: Vec<(ConnectorSpec, usize)> = Vec::new();
    for f in tables(top, "connector")? {
        f.only(CONNECTOR_FIELDS, |k| unknown(k, CONNECTOR_FIELDS))?;
        let between = f.req("between", pair)?;
        let [a, b] = between.get_ref();
        let sites = [
            topo.site(&f, "between[0]", a)?,
            topo.site(&f, "between[1]", b)?,
        ];
        if a.get_ref() == b.get_ref() {
            let msg = format!(
                "a connector joins two different sites (both are `{}`)",
                a.get_ref()
            );
            return Err(f.error(b.span(), "between[1]", msg));
        }
        if let Some((_, line)) = out.iter().find(|(c, _)| same_pair(&c.between, a, b)) {
            let msg = format!(
                "sites `{}` and `{}` already have a connector (line {line}): at most one per pair",
                a.get_ref(),
                b.get_ref()
            );
            return Err(f.error(between.span(), "between", msg));
        }
        let heads = f.req("bridgeheads", pair)?;
        for (i, head) in heads.get_ref().iter().enumerate() {
            let key = format!("bridgeheads[{i}]");
            let site = topo.server(&f, &key, head)?;
            if site != sites[i] {
                let msg = format!(
                    "bridgehead `{}` is in site `{}`, not `{}` (bridgeheads follow the order of `between`)",
                    head.get_ref(),
                    topo.sites[site].name,
                    topo.sites[sites[i]].name
                );
                return Err(f.error(head.span(), &key, msg));
            }
        }
        let schedule = f.opt("schedule", period)?.map(Spanned::into_inner);
        let latency = f.opt("latency", duration)?.map(Spanned::into_inner);
        let line = f.line();
        let [a, b] = between.into_inner().map(Spanned::into_inner);
        let bridgeheads = heads.into_inner().map(Spanned::into_inner);
        let connector = ConnectorSpec {
            between: [a, b],
            bridgeheads,
            schedule,
            latency,
        };
        out.push((connector, line));
    }
    Ok(out)
}

fn same_pair(between: &[String; 2], a: &Spanned<String>, b: &Spanned<String>) -> bool {
    let (a, b) = (a.get_ref(), b.get_ref());
    (&between[0] == a && &between[1] == b) || (&between[0] == b && &between[1] == a)
}

/// Overwrites `slot` with field `key` when it is given.
fn set<'i, T>(
    f: &Fields<'_, 'i>,
    key: &str,
    conv: impl Fn(&Value<'i>) -> std::result::Result<T, Bad>,
    slot: &mut T,
) -> Result<()> {
    if let Some(v) = f.opt(key, conv)? {
        *slot = v.into_inner();
    }
    Ok(())
}

fn read_replication(top: &Fields<'_, '_>, profile: Profile) -> Result<ReplicationConfig> {
    let mut c = ReplicationConfig::for_profile(profile);
    let Some(f) = subtable(top, "replication")? else {
        return Ok(c);
    };
    f.only(REPLICATION_FIELDS, |k| unknown(k, REPLICATION_FIELDS))?;
    set(&f, "notify_delay", duration, &mut c.notify_delay)?;
    set(&f, "notify_spacing", duration, &mut c.notify_spacing)?;
    set(&f, "intrasite_latency", duration, &mut c.intrasite_latency)?;
    set(&f, "intrasite_packet", packet, &mut c.intrasite_packet)?;
    set(&f, "intersite_packet", packet, &mut c.intersite_packet)?;
    set(&f, "granularity", parsed::<Granularity>, &mut c.granularity)?;
    set(
        &f,
        "tombstone_lifetime",
        duration,
        &mut c.tombstone_lifetime,
    )?;
    set(&f, "gc_interval", period, &mut c.gc_interval)?;
    set(&f, "restore", parsed::<RestoreStrategy>, &mut c.restore)?;
    set(&f, "backsync_timeout", period, &mut c.backsync_timeout)?;
    set(&f, "rollback_detection", boolean, &mut c.rollback_detection)?;
    set(&f, "startup_delay", duration, &mut c.startup_delay)?;
    set(&f, "intrasite_schedule", period, &mut c.intrasite_schedule)?;
    set(&f, "reply_timeout", period, &mut c.reply_timeout)?;
    Ok(c)
}

fn read_network(top: &Fields<'_, '_>) -> Result<NetworkSpec> {
    let mut n = NetworkSpec::default();
    let Some(f) = subtable(top, "network")? else {
        return Ok(n);
    };
    f.only(NETWORK_FIELDS, |k| unknown(k, NETWORK_FIELDS))?;
    set(&f, "loss", fraction, &mut n.loss)?;
    set(&f, "duplicate", fraction, &mut n.duplicate)?;
    set(&f, "jitter", duration, &mut n.jitter)?;
    Ok(n)
}

/// What earlier steps left behind that later steps may refer to.
#[derive(Default)]
struct History {
    /// Backup name -> (server, step index, line).
    backups: BTreeMap<String, (String, usize, usize)>,
    /// Connectors deleted so far: (index in the connector list, step index, line).
    deleted: Vec<(usize, usize, usize)>,
    /// Writes of the `load` steps so far.
    load_writes: u64,
    /// Objects the `load` steps so far create.
    load_creates: u64,
    /// Simulated time the `wait` and `converge` steps so far may take.
    sim_total: std::time::Duration,
}

fn read_steps(
    top: &Fields<'_, '_>,
    topo: &Topology,
    connectors: &[(ConnectorSpec, usize)],
) -> Result<Vec<Step>> {
    let all = tables(top, "step")?;
    let mut history = History::default();
    let mut steps = Vec::with_capacity(all.len());
    for (index, f) in all.iter().enumerate() {
        let line = f.line();
        let cx = StepCx {
            f,
            topo,
            index,
            line,
            all: &all,
            connectors,
        };
        let action = cx.action(&mut history)?;
        steps.push(Step {
            index,
            line,
            action,
        });
    }
    Ok(steps)
}

/// One step being read, with what it may refer to.
struct StepCx<'s, 'a, 'i> {
    f: &'s Fields<'a, 'i>,
    topo: &'s Topology,
    index: usize,
    line: usize,
    /// Every step, to say "taken later, by step[N]" when a backup is used too early.
    all: &'s [Fields<'a, 'i>],
    connectors: &'s [(ConnectorSpec, usize)],
}

impl<'i> StepCx<'_, '_, 'i> {
    fn action(&self, history: &mut History) -> Result<Action> {
        let f = self.f;
        let act = f.req("do", string)?;
        let Some(&(act, allowed)) = ACTIONS.iter().find(|(n, _)| n == act.get_ref()) else {
            let names: Vec<&str> = ACTIONS.iter().map(|a| a.0).collect();
            let msg = format!(
                "unknown action `{}` (expected one of: {})",
                act.get_ref(),
                names.join(", ")
            );
            return Err(f.error(act.span(), "do", msg));
        };
        let takes = if allowed.is_empty() {
            format!("`{act}` takes no other fields")
        } else {
            format!("`{act}` takes: {}", allowed.join(", "))
        };
        let valid: Vec<&str> = allowed.iter().copied().chain(["do"]).collect();
        f.only(&valid, |k| {
            if k == "expect_refused" {
                format!("`expect_refused` is only allowed on create, modify and delete steps, not `{act}`")
            } else if ACTIONS.iter().any(|(_, fs)| fs.contains(&k)) {
                format!("`{k}` is not a field of `do = \"{act}\"` ({takes})")
            } else {
                format!("unknown field `{k}` ({takes})")
            }
        })?;

        let refused = || {
            Ok::<_, ScenarioError>(
                f.opt("expect_refused", boolean)?
                    .is_some_and(|b| *b.get_ref()),
            )
        };
        let attrs_or_empty = || {
            Ok::<_, ScenarioError>(
                f.opt("attrs", attrs)?
                    .map(Spanned::into_inner)
                    .unwrap_or_default(),
            )
        };
        Ok(match act {
            "create" => Action::Create {
                server: self.server("server")?,
                dn: f.req("dn", name)?.into_inner(),
                attrs: attrs_or_empty()?,
                expect_refused: refused()?,
            },
            "modify" => {
                let server = self.server("server")?;
                let dn = f.req("dn", name)?.into_inner();
                let set = attrs_or_empty()?;
                let remove = f
                    .opt("remove", |v| list(v, name))?
                    .map(Spanned::into_inner)
                    .unwrap_or_default();
                if set.is_empty() && remove.is_empty() {
                    return Err(
                        f.table_error("`modify` needs `attrs` to set or `remove` to remove")
                    );
                }
                if let Some((i, a)) = remove
                    .iter()
                    .enumerate()
                    .find(|(_, a)| set.contains_key(a.get_ref()))
                {
                    let msg = format!(
                        "attribute `{}` is both set in `attrs` and removed",
                        a.get_ref()
                    );
                    return Err(f.error(a.span(), &format!("remove[{i}]"), msg));
                }
                Action::Modify {
                    server,
                    dn,
                    attrs: set,
                    remove: plain(remove),
                    expect_refused: refused()?,
                }
            }
            "delete" => Action::Delete {
                server: self.server("server")?,
                dn: f.req("dn", name)?.into_inner(),
                expect_refused: refused()?,
            },
            "load" => self.load(history)?,
            "backup" => {
                let server = self.server("server")?;
                let backup = f.req("name", name)?;
                // Taking the same name again on the same server replaces the
                // backup (a nightly job); on another server it would be ambiguous.
                if let Some((owner, step, line)) = history
                    .backups
                    .get(backup.get_ref())
                    .filter(|(owner, _, _)| *owner != server)
                {
                    let msg = format!(
                        "backup name `{}` is already taken by step[{step}] (line {line}) for {owner}: use another name",
                        backup.get_ref()
                    );
                    return Err(f.error(backup.span(), "name", msg));
                }
                let info = (server.clone(), self.index, self.line);
                history.backups.insert(backup.get_ref().clone(), info);
                Action::Backup {
                    server,
                    name: backup.into_inner(),
                }
            }
            "crash" => Action::Crash {
                server: self.server("server")?,
            },
            "restore" => {
                let server = self.server("server")?;
                let backup = f.req("backup", name)?;
                self.check_backup(history, &server, &backup)?;
                Action::Restore {
                    server,
                    backup: backup.into_inner(),
                    strategy: f
                        .opt("strategy", parsed::<RestoreStrategy>)?
                        .map(Spanned::into_inner),
                }
            }
            "partition" => self.partition()?,
            "heal" => Action::Heal,
            "delete_connector" => self.delete_connector(history)?,
            "wait" => Action::Wait {
                duration: self.sim_time(history, "for", duration)?,
            },
            "converge" => Action::Converge {
                within: self.sim_time(history, "within", period)?,
                expect: f
                    .opt("expect", parsed::<ConvergeExpect>)?
                    .map(Spanned::into_inner)
                    .unwrap_or_default(),
                max_sim: f.opt("max_sim", duration)?.map(Spanned::into_inner),
                max_objects_sent: f
                    .opt("max_objects_sent", count_at_most(MAX_OBJECTS_SENT))?
                    .map(Spanned::into_inner),
            },
            "expect" => self.expect()?,
            _ => unreachable!("every name in ACTIONS is handled"),
        })
    }

    /// Field `key`: a known server.
    fn server(&self, key: &str) -> Result<String> {
        let server = self.f.req(key, name)?;
        self.topo.server(self.f, key, &server)?;
        Ok(server.into_inner())
    }

    /// Checks that list `key` names known servers, none twice.
    fn servers(&self, key: &str, names: &[Spanned<String>]) -> Result<()> {
        for (i, s) in names.iter().enumerate() {
            let key = format!("{key}[{i}]");
            self.topo.server(self.f, &key, s)?;
            if names[..i].iter().any(|t| t.get_ref() == s.get_ref()) {
                return Err(self.f.error(
                    s.span(),
                    &key,
                    format!("server `{}` is listed twice", s.get_ref()),
                ));
            }
        }
        Ok(())
    }

    /// Duration field `key`, added to the file's total simulated time, which
    /// must stay within [`MAX_TOTAL_DURATION`].
    fn sim_time(
        &self,
        history: &mut History,
        key: &str,
        conv: impl Fn(&Value<'i>) -> std::result::Result<std::time::Duration, Bad>,
    ) -> Result<std::time::Duration> {
        let d = self.f.req(key, conv)?;
        history.sim_total += *d.get_ref();
        if history.sim_total > MAX_TOTAL_DURATION {
            let msg = format!(
                "the `wait` and `converge` steps of a scenario may add up to at most {MAX_TOTAL_DURATION_TEXT} (about 100 years) of simulated time; this step goes past it"
            );
            return Err(self.f.error(d.span(), key, msg));
        }
        Ok(d.into_inner())
    }

    fn load(&self, history: &mut History) -> Result<Action> {
        let f = self.f;
        let servers = match f.opt("servers", |v| list(v, name))? {
            None => None,
            Some(list) if list.get_ref().is_empty() => {
                let msg =
                    "must name at least one server (leave it out to use every running server)";
                return Err(f.error(list.span(), "servers", msg));
            }
            Some(list) => {
                self.servers("servers", list.get_ref())?;
                Some(plain(list.into_inner()))
            }
        };
        let prefix = f.opt("prefix", name)?;
        if let Some(p) = &prefix
            && p.get_ref().contains([',', '=', ' '])
        {
            let msg = "must not contain `,`, `=` or spaces: load dns are `cn=<prefix><n>`";
            return Err(f.error(p.span(), "prefix", msg));
        }
        let bounded = count_at_most(MAX_COUNT);
        let creates = f.req("creates", &bounded)?;
        let n = |key| Ok::<_, ScenarioError>(f.opt(key, &bounded)?.map_or(0, Spanned::into_inner));
        let (modifies, deletes) = (n("modifies")?, n("deletes")?);
        let span = creates.span();
        let creates = creates.into_inner();
        // Each count is at most MAX_COUNT: these sums cannot overflow.
        history.load_writes += creates + modifies + deletes;
        if history.load_writes > MAX_LOAD_TOTAL {
            let msg = format!(
                "the `load` steps of a scenario may write at most {MAX_LOAD_TOTAL} times in all; this step brings the total to {}",
                history.load_writes
            );
            return Err(f.error(span, "creates", msg));
        }
        history.load_creates += creates;
        let replicas = history.load_creates * self.topo.server_site.len() as u64;
        if replicas > MAX_REPLICAS {
            let msg = format!(
                "the `load` steps of a scenario may create at most {MAX_REPLICAS} object replicas (objects times servers); this step brings it to {replicas}"
            );
            return Err(f.error(span, "creates", msg));
        }
        Ok(Action::Load {
            servers,
            creates,
            modifies,
            deletes,
            prefix: prefix.map(Spanned::into_inner),
        })
    }

    /// A restore's backup must be taken earlier, from the same server.
    fn check_backup(
        &self,
        history: &History,
        server: &str,
        backup: &Spanned<String>,
    ) -> Result<()> {
        let name = backup.get_ref();
        let msg = match history.backups.get(name) {
            Some((from, ..)) if from == server => return Ok(()),
            Some((from, step, line)) => format!(
                "backup `{name}` was taken from `{from}` (step[{step}], line {line}), not from `{server}`"
            ),
            None => match self.later_backup(name) {
                Some((step, line)) => format!(
                    "backup `{name}` is used before it is taken (by step[{step}], line {line})"
                ),
                None => format!("backup `{name}` is not taken by any earlier `backup` step"),
            },
        };
        Err(self.f.error(backup.span(), "backup", msg))
    }

    /// A later `backup` step named `name`: (index, line).
    fn later_backup(&self, name: &str) -> Option<(usize, usize)> {
        let is = |f: &Fields<'_, '_>, key, want: &str| {
            f.get(key).and_then(|v| v.get_ref().as_str()) == Some(want)
        };
        self.all
            .iter()
            .enumerate()
            .skip(self.index + 1)
            .find(|(_, f)| is(f, "do", "backup") && is(f, "name", name))
            .map(|(j, f)| (j, f.line()))
    }

    fn partition(&self) -> Result<Action> {
        let f = self.f;
        let groups = f.req("groups", |v| list(v, |g| list(g, name)))?;
        if groups.get_ref().len() < 2 {
            let msg = format!(
                "needs at least two groups, found {}",
                groups.get_ref().len()
            );
            return Err(f.error(groups.span(), "groups", msg));
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (g, group) in groups.get_ref().iter().enumerate() {
            if group.get_ref().is_empty() {
                return Err(f.error(
                    group.span(),
                    &format!("groups[{g}]"),
                    "a group must not be empty",
                ));
            }
            for (k, s) in group.get_ref().iter().enumerate() {
                let key = format!("groups[{g}][{k}]");
                self.topo.server(f, &key, s)?;
                if let Some(other) = seen.insert(s.get_ref(), g) {
                    let msg = if other == g {
                        format!("server `{}` is listed twice in groups[{g}]", s.get_ref())
                    } else {
                        format!(
                            "server `{}` is in two groups: groups[{other}] and groups[{g}]",
                            s.get_ref()
                        )
                    };
                    return Err(f.error(s.span(), &key, msg));
                }
            }
        }
        let groups = groups.into_inner().into_iter();
        Ok(Action::Partition {
            groups: groups.map(|g| plain(g.into_inner())).collect(),
        })
    }

    fn delete_connector(&self, history: &mut History) -> Result<Action> {
        let f = self.f;
        let between = f.req("between", pair)?;
        let [a, b] = between.get_ref();
        self.topo.site(f, "between[0]", a)?;
        self.topo.site(f, "between[1]", b)?;
        let Some(c) = self
            .connectors
            .iter()
            .position(|(c, _)| same_pair(&c.between, a, b))
        else {
            let existing: Vec<String> = self
                .connectors
                .iter()
                .map(|(c, _)| format!("{}-{}", c.between[0], c.between[1]))
                .collect();
            let msg = format!(
                "no connector between `{}` and `{}` (connectors: {})",
                a.get_ref(),
                b.get_ref(),
                listing(existing.iter())
            );
            return Err(f.error(between.span(), "between", msg));
        };
        if let Some((_, step, line)) = history.deleted.iter().find(|d| d.0 == c) {
            let msg = format!(
                "the connector between `{}` and `{}` is already deleted by step[{step}] (line {line})",
                a.get_ref(),
                b.get_ref()
            );
            return Err(f.error(between.span(), "between", msg));
        }
        history.deleted.push((c, self.index, self.line));
        Ok(Action::DeleteConnector {
            between: between.into_inner().map(Spanned::into_inner),
        })
    }

    fn expect(&self) -> Result<Action> {
        let f = self.f;
        let span = |k: &str| f.get(k).map_or(0..0, |v| v.span());
        if let Some(lost) = f.opt("lost_unreplicated", count_at_most(MAX_COUNT))? {
            if let Some(k) = EXPECT_FIELDS
                .iter()
                .find(|k| **k != "lost_unreplicated" && f.has(k))
            {
                let msg = if *k == "server" {
                    "`lost_unreplicated` counts over the whole cluster: leave out `server`"
                        .to_string()
                } else {
                    format!("give `lost_unreplicated` alone, not with `{k}`")
                };
                return Err(f.error(span(k), k, msg));
            }
            return Ok(Action::ExpectLost {
                lost_unreplicated: lost.into_inner(),
            });
        }
        let server = self.server("server")?;
        if f.has("objects")
            && let Some(k) = ["dn", "present", "attrs"].into_iter().find(|k| f.has(k))
        {
            let msg =
                format!("give either `objects` or `dn` + `present`, not both (`{k}` is given too)");
            return Err(f.error(span("objects"), "objects", msg));
        }
        let checks: Vec<&str> = ["objects", "present", "tombstone", "state", "answered_by"]
            .into_iter()
            .filter(|k| f.has(k))
            .collect();
        let check = match checks.as_slice() {
            // `dn` without `present`: that branch reports it missing.
            [] if f.has("dn") || f.has("attrs") => "present",
            [] => {
                return Err(f.table_error(
                    "`expect` needs either `dn` + `present` or `objects` (or `dn` + `tombstone = true`, `state`, `answered_by`, or `lost_unreplicated` without `server`)",
                ));
            }
            [one] => *one,
            [first, second, ..] => {
                let msg = format!(
                    "give one check per `expect` step: `{first}` and `{second}` are both given"
                );
                return Err(f.error(span(second), second, msg));
            }
        };
        // The fields each check takes besides `server`.
        let takes: &[&str] = match check {
            "present" => &["dn", "present", "attrs"],
            "tombstone" => &["dn", "tombstone"],
            other => &[other][..],
        };
        if let Some(k) = EXPECT_FIELDS
            .iter()
            .find(|k| **k != "server" && f.has(k) && !takes.contains(k))
        {
            let msg = if *k == "attrs" {
                "`attrs` is only allowed with `present = true`".to_string()
            } else {
                format!("`{k}` is not used with `{check}`")
            };
            return Err(f.error(span(k), k, msg));
        }
        let check = match check {
            "objects" => {
                ExpectCheck::Objects(f.req("objects", count_at_most(MAX_COUNT))?.into_inner())
            }
            "tombstone" => {
                let dn = f.req("dn", name)?.into_inner();
                let tombstone = f.req("tombstone", boolean)?;
                if !tombstone.get_ref() {
                    let msg = "only `tombstone = true` is checked (for no live object with that dn, write `present = false`)";
                    return Err(f.error(tombstone.span(), "tombstone", msg));
                }
                ExpectCheck::Tombstone { dn }
            }
            "state" => ExpectCheck::State(f.req("state", parsed::<ServerState>)?.into_inner()),
            "answered_by" => {
                let names = f.req("answered_by", |v| list(v, name))?.into_inner();
                self.servers("answered_by", &names)?;
                ExpectCheck::AnsweredBy(plain(names))
            }
            // "present": `dn` + `present`, and `attrs` when present.
            _ => {
                let dn = f.req("dn", name)?.into_inner();
                let present = *f.req("present", boolean)?.get_ref();
                let attrs = f.opt("attrs", attrs)?;
                if let Some(a) = &attrs
                    && !present
                {
                    return Err(f.error(
                        a.span(),
                        "attrs",
                        "`attrs` is only allowed with `present = true`",
                    ));
                }
                ExpectCheck::Dn {
                    dn,
                    present,
                    attrs: attrs.map(Spanned::into_inner).unwrap_or_default(),
                }
            }
        };
        Ok(Action::Expect { server, check })
    }
}
