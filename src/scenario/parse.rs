//! From text to a validated [`Scenario`]: TOML syntax, then the serde types
//! of [`super::format`] (which check each value's type and bounds), then
//! what serde cannot see: names a step uses, backups taken before use,
//! totals over steps, fields of `expect` that go together.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::error::{ScenarioError, Source};
use super::format::{
    ACTIONS, Attrs, ConnectionTable, ConnectorTable, ExpectStep, FileIn, Name, Names, Pair,
    SiteTable, StepTable, open_window,
};
use super::{
    Action, ConnectionSpec, ConnectorSpec, ExpectCheck, NetworkSpec, Scenario, SiteSpec, Step,
};
use crate::config::{Profile, ReplicationConfig, RestoreStrategy};
use crate::core::WeekWindows;
use crate::limits::{
    MAX_CONNECTIONS, MAX_LOAD_TOTAL, MAX_REPLICAS, MAX_SERVERS, MAX_TOTAL_DURATION,
    MAX_TOTAL_DURATION_TEXT,
};

type Result<T> = std::result::Result<T, ScenarioError>;

/// Parses and validates a whole scenario.
pub(super) fn parse(text: &str, origin: &str) -> Result<Scenario> {
    let src = Source { text, origin };
    if let Some(at) = text.find('\0') {
        return Err(src.error_at(at..at, None, "not UTF-8 text: binary data (NUL byte)"));
    }
    let doc = syntax(&src, text)?;
    let Some(import) = doc.get_ref().get("import") else {
        return read(&src, text, Profile::Exchange55);
    };
    // The forest's topology, written as tables after the file's own: the
    // same reader then checks it and the steps against it.
    let DeValue::String(path) = import.get_ref() else {
        return Err(src.error_at(import.span(), Some("import"), "expected a string (a path)"));
    };
    for key in ["site", "connector", "connection"] {
        if let Some(v) = doc.get_ref().get(key) {
            let msg = format!(
                "`[[{key}]]` cannot be used with `import`: the topology comes from the LDIF file"
            );
            return Err(src.error_at(v.span(), Some(key), msg));
        }
    }
    let forest = import_forest(&src, origin, path, import.span())?;
    let topology = forest.to_scenario("").to_toml();
    let tables = topology.find("[[site]]").map_or("", |i| &topology[i..]);
    let spliced = format!("{text}\n{tables}");
    read(
        &Source {
            text: &spliced,
            origin,
        },
        &spliced,
        Profile::Ad,
    )
}

/// Reads the LDIF named by `import`, relative to the scenario's directory.
fn import_forest(
    src: &Source<'_>,
    origin: &str,
    path: &str,
    span: Range<usize>,
) -> Result<crate::import::Forest> {
    let file = std::path::Path::new(origin)
        .parent()
        .unwrap_or(std::path::Path::new(""))
        .join(path);
    let fail = |msg: String| src.error_at(span.clone(), Some("import"), msg);
    let size = std::fs::metadata(&file)
        .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?
        .len();
    if size > crate::limits::MAX_LDIF_BYTES as u64 {
        return Err(fail(format!(
            "{}: {size} bytes, more than the {} an import reads",
            file.display(),
            crate::limits::MAX_LDIF_BYTES
        )));
    }
    let text = std::fs::read_to_string(&file)
        .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?;
    crate::import::Forest::from_ldif(&text).map_err(|e| {
        let dn =
            e.dn.as_ref()
                .map(|d| format!("entry `{d}`: "))
                .unwrap_or_default();
        fail(format!("{}:{}: {dn}{}", file.display(), e.line, e.kind))
    })
}

fn syntax<'i>(src: &Source<'_>, text: &'i str) -> Result<Spanned<DeTable<'i>>> {
    DeTable::parse(text).map_err(|e| {
        let message = format!("TOML syntax error: {}", e.message());
        match e.span() {
            Some(span) => src.error_at(span, None, message),
            None => src.error(None, message),
        }
    })
}

/// Reads a whole file; `profile` when it names none.
fn read(src: &Source<'_>, text: &str, default_profile: Profile) -> Result<Scenario> {
    let doc = syntax(src, text)?;
    let r = Reader {
        src,
        doc: doc.get_ref(),
    };
    r.array_of_tables("site")?;
    r.array_of_tables("connector")?;
    r.array_of_tables("connection")?;
    let step_tables = r.array_of_tables("step")?;
    let file: FileIn = r.read(Spanned::new(
        doc.span(),
        DeValue::Table(doc.get_ref().clone()),
    ))?;
    let steps = (step_tables.iter().enumerate())
        .map(|(i, t)| r.step(i, t))
        .collect::<Result<Vec<_>>>()?;

    let profile = file.profile.map_or(default_profile, |p| p.0);
    let topo = read_sites(src, file.site)?;
    let connector_line = file.connector.first().map(|c| src.line_of(c.span().start));
    let connectors = read_connectors(src, &topo, file.connector)?;
    let connections = read_connections(src, &topo, file.connection, connector_line)?;
    let mut config = ReplicationConfig::for_profile(profile);
    if let Some(r) = file.replication {
        r.apply(&mut config);
    }
    let mut network = NetworkSpec::default();
    if let Some(n) = file.network {
        n.apply(&mut network);
    }
    let steps = read_steps(&topo, &connectors, &steps, config.restore)?;
    Ok(Scenario {
        name: file.name.0,
        seed: file.seed.map_or(0, |s| s.0),
        profile,
        sites: topo.sites,
        connectors: connectors.into_iter().map(|(c, _)| c).collect(),
        connections,
        config,
        network,
        steps,
    })
}

/// The parsed document: turns serde's errors into positioned ones.
struct Reader<'a, 'i> {
    src: &'a Source<'a>,
    doc: &'a DeTable<'i>,
}

impl<'i> Reader<'_, 'i> {
    /// `value` as `T`.
    fn read<T: Deserialize<'i>>(&self, value: Spanned<DeValue<'i>>) -> Result<T> {
        T::deserialize(ValueDeserializer::from(value)).map_err(|e| self.error(e))
    }

    /// The positioned form of a serde error: the field path is that of the
    /// key or value at the error's span.
    fn error(&self, e: toml::de::Error) -> ScenarioError {
        let Some(span) = e.span() else {
            return self.src.error(None, e.message());
        };
        let missing =
            (e.message().strip_prefix("missing field `")).and_then(|m| m.strip_suffix('`'));
        if let Some(key) = missing {
            // At the span of its table, which is the header of a [[table]].
            let is_table = |s: Range<usize>, v: Option<&DeValue<'_>>| {
                s == span && matches!(v, Some(DeValue::Table(_)))
            };
            return match find(self.doc, "", &is_table) {
                Some((table, _)) => Place::new(self.src, table, span).missing(key),
                None => self.src.error(Some(key), missing_message(key)),
            };
        }
        let found = find(self.doc, "", &|s, _| s.contains(&span.start));
        let (path, value) = found.map_or((None, None), |(p, v)| (Some(p), v));
        let message = plain_words(e.message(), value.map(DeValue::type_str));
        self.src.error_at(span, path.as_deref(), message)
    }

    /// The tables of `[[key]]`, checked to be an array of tables.
    fn array_of_tables(&self, key: &str) -> Result<Vec<&Spanned<DeValue<'i>>>> {
        let Some(v) = self.doc.get(key) else {
            return Ok(Vec::new());
        };
        let not_array = |what: String| {
            let msg = format!("expected an array of tables [[{key}]], found {what}");
            self.src.error_at(v.span(), Some(key), msg)
        };
        let DeValue::Array(items) = v.get_ref() else {
            let what = v.get_ref().type_str();
            return Err(not_array(format!("a {what}: write [[{key}]]")));
        };
        if let Some(item) = items.iter().find(|i| !i.get_ref().is_table()) {
            let what = item.get_ref().type_str();
            return Err(not_array(format!("a list with an item of type {what}")));
        }
        Ok(items.iter().collect())
    }

    /// Step `index`: its `do` picks the table type, which lists its fields.
    fn step(&self, index: usize, v: &Spanned<DeValue<'i>>) -> Result<(Place<'_>, StepTable)> {
        let place = Place::new(self.src, format!("step[{index}]"), v.span());
        let DeValue::Table(table) = v.get_ref() else {
            unreachable!("array_of_tables checked it");
        };
        let act = table.get("do").ok_or_else(|| place.missing("do"))?;
        let DeValue::String(act_name) = act.get_ref() else {
            let msg = format!("expected a string, found {}", act.get_ref().type_str());
            return Err(place.error(act.span(), "do", msg));
        };
        let Some(allowed) = StepTable::fields(act_name) else {
            let msg = format!(
                "unknown action `{act_name}` (expected one of: {})",
                ACTIONS.join(", ")
            );
            return Err(place.error(act.span(), "do", msg));
        };
        let mut keys: Vec<_> = table.keys().filter(|k| k.get_ref() != "do").collect();
        keys.sort_by_key(|k| k.span().start);
        if let Some(k) = keys
            .iter()
            .find(|k| !allowed.contains(&k.get_ref().as_ref()))
        {
            let key = k.get_ref().as_ref();
            let msg = unknown_step_field(act_name, key, &allowed);
            return Err(place.error(k.span(), key, msg));
        }
        let mut fields = table.clone();
        fields.remove("do");
        let value = Spanned::new(v.span(), DeValue::Table(fields));
        let table =
            StepTable::read(act_name, ValueDeserializer::from(value)).map_err(|e| self.error(e))?;
        Ok((place, table))
    }
}

fn unknown_step_field(act: &str, key: &str, allowed: &[&str]) -> String {
    let takes = if allowed.is_empty() {
        format!("`{act}` takes no other fields")
    } else {
        format!("`{act}` takes: {}", allowed.join(", "))
    };
    let elsewhere = |a: &&str| StepTable::fields(a).is_some_and(|f| f.contains(&key));
    if key == "expect_refused" {
        format!(
            "`expect_refused` is only allowed on create, modify, delete, rename and release steps, not `{act}`"
        )
    } else if ACTIONS.iter().any(elsewhere) {
        format!("`{key}` is not a field of `do = \"{act}\"` ({takes})")
    } else {
        format!("unknown field `{key}` ({takes})")
    }
}

type Hit<'h> = &'h dyn Fn(Range<usize>, Option<&DeValue<'_>>) -> bool;

/// The innermost key (given with no value) or value of `table` that `hit`
/// picks by its span, with its field path below `path`.
fn find<'a, 'i>(
    table: &'a DeTable<'i>,
    path: &str,
    hit: Hit<'_>,
) -> Option<(String, Option<&'a DeValue<'i>>)> {
    table.iter().find_map(|(k, v)| {
        let key = k.get_ref();
        let bare = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let key = if bare {
            key.to_string()
        } else {
            format!("{key:?}")
        };
        let path = if path.is_empty() {
            key
        } else {
            format!("{path}.{key}")
        };
        if hit(k.span(), None) {
            return Some((path, None));
        }
        find_in(v, path, hit)
    })
}

fn find_in<'a, 'i>(
    v: &'a Spanned<DeValue<'i>>,
    path: String,
    hit: Hit<'_>,
) -> Option<(String, Option<&'a DeValue<'i>>)> {
    let inner = match v.get_ref() {
        DeValue::Table(t) => find(t, &path, hit),
        DeValue::Array(items) => {
            (items.iter().enumerate()).find_map(|(i, x)| find_in(x, format!("{path}[{i}]"), hit))
        }
        _ => None,
    };
    inner.or_else(|| hit(v.span(), Some(v.get_ref())).then(|| (path, Some(v.get_ref()))))
}

/// serde's "invalid type: integer `7`, expected a string" in the words of
/// the format: "expected a string, found integer"; its "unknown field `x`,
/// expected one of `a`, `b`" as "unknown field `x` (expected one of: a, b)".
fn plain_words(message: &str, found: Option<&str>) -> String {
    if message.starts_with("unknown field `")
        && let Some((head, allowed)) = message.split_once(", expected ")
    {
        let allowed = allowed.strip_prefix("one of ").unwrap_or(allowed);
        return format!("{head} (expected one of: {})", allowed.replace('`', ""));
    }
    let parts = (message.strip_prefix("invalid type: ")).and_then(|m| m.split_once(", expected "));
    let Some((unexpected, expected)) = parts else {
        return message.to_string();
    };
    let expected = match expected {
        "a sequence" => "a list",
        "a map" => "a table",
        "a boolean" => "true or false",
        e if e.starts_with("struct ") => "a table",
        e => e,
    };
    format!("expected {expected}, found {}", found.unwrap_or(unexpected))
}

fn missing_message(key: &str) -> String {
    format!("missing required field `{key}`")
}

/// A table being checked: its path in messages, its header for whole-table errors.
struct Place<'s> {
    src: &'s Source<'s>,
    /// `step[3]`, `site[0]`.
    path: String,
    /// Span of the table header (`[[step]]`).
    header: Range<usize>,
}

impl<'s> Place<'s> {
    fn new(src: &'s Source<'s>, path: impl Into<String>, header: Range<usize>) -> Self {
        Place {
            src,
            path: path.into(),
            header,
        }
    }

    /// 1-based line of the table header.
    fn line(&self) -> usize {
        self.src.line_of(self.header.start)
    }

    /// An error at `span` about field `key` of this table.
    fn error(&self, span: Range<usize>, key: &str, msg: impl Into<String>) -> ScenarioError {
        let field = format!("{}.{key}", self.path);
        self.src.error_at(span, Some(&field), msg)
    }

    /// An error about the table as a whole, at its header.
    fn table_error(&self, msg: impl Into<String>) -> ScenarioError {
        self.src
            .error_at(self.header.clone(), Some(&self.path), msg)
    }

    /// Required field `key` is not there.
    fn missing(&self, key: &str) -> ScenarioError {
        self.error(self.header.clone(), key, missing_message(key))
    }
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

fn text(name: &Spanned<Name>) -> &str {
    &name.get_ref().0
}

fn plain(names: &[Spanned<Name>]) -> Vec<String> {
    names.iter().map(|n| text(n).to_string()).collect()
}

fn strings(attrs: &Attrs) -> BTreeMap<String, String> {
    attrs
        .iter()
        .map(|(k, v)| (k.0.clone(), v.clone()))
        .collect()
}

/// Sites and servers, with lookups by name.
struct Topology {
    sites: Vec<SiteSpec>,
    /// Site index by site name.
    site_index: BTreeMap<String, usize>,
    /// Site index by server name.
    server_site: BTreeMap<String, usize>,
    /// Read-only servers.
    read_only: std::collections::BTreeSet<String>,
}

impl Topology {
    /// Checks that `server` (field `key` of `p`) names a server; gives its site index.
    fn server(&self, p: &Place<'_>, key: &str, server: &Spanned<Name>) -> Result<usize> {
        self.server_site.get(text(server)).copied().ok_or_else(|| {
            let all = self.sites.iter().flat_map(|s| s.servers.iter());
            let msg = format!(
                "unknown server `{}` (servers: {})",
                text(server),
                listing(all)
            );
            p.error(server.span(), key, msg)
        })
    }

    /// Checks that `site` (field `key` of `p`) names a site; gives its index.
    fn site(&self, p: &Place<'_>, key: &str, site: &Spanned<Name>) -> Result<usize> {
        self.site_index.get(text(site)).copied().ok_or_else(|| {
            let all = self.sites.iter().map(|s| &s.name);
            let msg = format!("unknown site `{}` (sites: {})", text(site), listing(all));
            p.error(site.span(), key, msg)
        })
    }
}

fn read_sites(src: &Source<'_>, tables: Vec<Spanned<SiteTable>>) -> Result<Topology> {
    let mut topo = Topology {
        sites: Vec::new(),
        site_index: BTreeMap::new(),
        server_site: BTreeMap::new(),
        read_only: Default::default(),
    };
    let mut site_lines = Vec::new();
    for (i, t) in tables.into_iter().enumerate() {
        let f = Place::new(src, format!("site[{i}]"), t.span());
        let SiteTable {
            name,
            servers,
            read_only,
        } = t.into_inner();
        if let Some(&other) = topo.site_index.get(text(&name)) {
            let msg = format!(
                "duplicate site name `{}` (also on line {})",
                text(&name),
                site_lines[other]
            );
            return Err(f.error(name.span(), "name", msg));
        }
        if servers.get_ref().is_empty() {
            let msg = "a site needs at least one server";
            return Err(f.error(servers.span(), "servers", msg));
        }
        let index = topo.sites.len();
        for (j, server) in servers.get_ref().iter().enumerate() {
            let key = format!("servers[{j}]");
            if topo.server_site.len() >= MAX_SERVERS {
                let msg = format!("too many servers: a scenario has at most {MAX_SERVERS}");
                return Err(f.error(server.span(), &key, msg));
            }
            if let Some(&other) = topo.server_site.get(text(server)) {
                let msg = if other == index {
                    format!("server `{}` is listed twice in this site", text(server))
                } else {
                    format!(
                        "server `{}` is already in site `{}` (line {}): a server is in exactly one site",
                        text(server),
                        topo.sites[other].name,
                        site_lines[other]
                    )
                };
                return Err(f.error(server.span(), &key, msg));
            }
            topo.server_site.insert(text(server).to_string(), index);
        }
        let read_only = read_only.map(|r| r.into_inner()).unwrap_or_default();
        for (j, server) in read_only.iter().enumerate() {
            let key = format!("read_only[{j}]");
            if !servers.get_ref().iter().any(|s| text(s) == text(server)) {
                let msg = format!(
                    "`{}` is not a server of this site (servers: {})",
                    text(server),
                    listing(plain(servers.get_ref()).iter())
                );
                return Err(f.error(server.span(), &key, msg));
            }
            if !topo.read_only.insert(text(server).to_string()) {
                let msg = format!("server `{}` is listed twice", text(server));
                return Err(f.error(server.span(), &key, msg));
            }
        }
        site_lines.push(f.line());
        topo.site_index.insert(text(&name).to_string(), index);
        topo.sites.push(SiteSpec {
            name: name.into_inner().0,
            servers: plain(servers.get_ref()),
            read_only: plain(&read_only),
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
fn read_connectors(
    src: &Source<'_>,
    topo: &Topology,
    tables: Vec<Spanned<ConnectorTable>>,
) -> Result<Vec<(ConnectorSpec, usize)>> {
    let mut out: Vec<(ConnectorSpec, usize)> = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let f = Place::new(src, format!("connector[{i}]"), t.span());
        let t = t.get_ref();
        let [a, b] = &t.between.get_ref().0;
        let sites = [
            topo.site(&f, "between[0]", a)?,
            topo.site(&f, "between[1]", b)?,
        ];
        if text(a) == text(b) {
            let msg = format!(
                "a connector joins two different sites (both are `{}`)",
                text(a)
            );
            return Err(f.error(b.span(), "between[1]", msg));
        }
        if let Some((_, line)) = out.iter().find(|(c, _)| same_pair(&c.between, a, b)) {
            let msg = format!(
                "sites `{}` and `{}` already have a connector (line {line}): at most one per pair",
                text(a),
                text(b)
            );
            return Err(f.error(t.between.span(), "between", msg));
        }
        let heads = &t.bridgeheads.get_ref().0;
        for (i, head) in heads.iter().enumerate() {
            let key = format!("bridgeheads[{i}]");
            let site = topo.server(&f, &key, head)?;
            if site != sites[i] {
                let msg = format!(
                    "bridgehead `{}` is in site `{}`, not `{}` (bridgeheads follow the order of `between`)",
                    text(head),
                    topo.sites[site].name,
                    topo.sites[sites[i]].name
                );
                return Err(f.error(head.span(), &key, msg));
            }
        }
        let connector = ConnectorSpec {
            between: [a, b].map(|s| text(s).to_string()),
            bridgeheads: heads.each_ref().map(|s| text(s).to_string()),
            schedule: t.schedule.map(|d| d.0),
            latency: t.latency.map(|d| d.0),
        };
        out.push((connector, f.line()));
    }
    Ok(out)
}

/// One-way connections; none may be given with connectors (`connector_line`:
/// the line of the first `[[connector]]`).
fn read_connections(
    src: &Source<'_>,
    topo: &Topology,
    tables: Vec<Spanned<ConnectionTable>>,
    connector_line: Option<usize>,
) -> Result<Vec<ConnectionSpec>> {
    let mut out: Vec<(ConnectionSpec, usize)> = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let f = Place::new(src, format!("connection[{i}]"), t.span());
        if let Some(line) = connector_line {
            return Err(f.table_error(format!(
                "`[[connection]]` and `[[connector]]` do not mix in one file (a connector is on line {line}): give one-way connections or connectors"
            )));
        }
        if i >= MAX_CONNECTIONS {
            return Err(f.table_error(format!(
                "too many connections: a scenario has at most {MAX_CONNECTIONS}"
            )));
        }
        let t = t.get_ref();
        topo.server(&f, "from", &t.from)?;
        topo.server(&f, "to", &t.to)?;
        let (from, to) = (text(&t.from), text(&t.to));
        if from == to {
            let msg = format!("a connection joins two different servers (both are `{from}`)");
            return Err(f.error(t.to.span(), "to", msg));
        }
        if topo.read_only.contains(from) {
            let msg = format!("`{from}` is read-only: a read-only server is never a source");
            return Err(f.error(t.from.span(), "from", msg));
        }
        if let Some((_, line)) = out.iter().find(|(c, _)| c.from == from && c.to == to) {
            let msg = format!(
                "there is already a connection from `{from}` to `{to}` (line {line}): at most one per direction"
            );
            return Err(f.error(t.to.span(), "to", msg));
        }
        let windows = match &t.windows {
            None => None,
            Some(list) => {
                let mut w = WeekWindows::never();
                for (j, item) in list.get_ref().iter().enumerate() {
                    open_window(item.get_ref(), &mut w)
                        .map_err(|msg| f.error(item.span(), &format!("windows[{j}]"), msg))?;
                }
                Some(w)
            }
        };
        let connection = ConnectionSpec {
            from: from.to_string(),
            to: to.to_string(),
            schedule: t.schedule.map(|d| d.0),
            windows,
            latency: t.latency.map(|d| d.0),
        };
        out.push((connection, f.line()));
    }
    Ok(out.into_iter().map(|(c, _)| c).collect())
}

fn same_pair(between: &[String; 2], a: &Spanned<Name>, b: &Spanned<Name>) -> bool {
    let (a, b) = (text(a), text(b));
    (between[0] == a && between[1] == b) || (between[0] == b && between[1] == a)
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
    topo: &Topology,
    connectors: &[(ConnectorSpec, usize)],
    all: &[(Place<'_>, StepTable)],
    default_restore: RestoreStrategy,
) -> Result<Vec<Step>> {
    let mut history = History::default();
    let mut steps = Vec::with_capacity(all.len());
    for (index, (f, table)) in all.iter().enumerate() {
        let line = f.line();
        let cx = StepCx {
            f,
            topo,
            index,
            line,
            all,
            connectors,
            default_restore,
        };
        steps.push(Step {
            index,
            line,
            action: cx.action(&mut history, table)?,
        });
    }
    Ok(steps)
}

/// One step being checked, with what it may refer to.
struct StepCx<'s> {
    f: &'s Place<'s>,
    topo: &'s Topology,
    index: usize,
    line: usize,
    /// Every step, to say "taken later, by step[N]" when a backup is used too early.
    all: &'s [(Place<'s>, StepTable)],
    connectors: &'s [(ConnectorSpec, usize)],
    /// The `[replication]` restore strategy, for restore steps without one.
    default_restore: RestoreStrategy,
}

impl StepCx<'_> {
    fn action(&self, history: &mut History, table: &StepTable) -> Result<Action> {
        let f = self.f;
        Ok(match table {
            StepTable::Create(w) => Action::Create {
                server: self.server("server", &w.server)?,
                dn: self.dn("dn", &w.dn)?,
                attrs: strings(&w.attrs),
                expect_refused: w.expect_refused,
            },
            StepTable::Rename(r) => {
                let server = self.server("server", &r.server)?;
                let dn = self.dn("dn", &r.dn)?;
                let new_dn = self.dn("new_dn", &r.new_dn)?;
                if dn == new_dn {
                    let msg = format!(
                        "renames `{dn}` to the same dn (a case-only rename changes the case of some letter)"
                    );
                    return Err(f.error(r.new_dn.span(), "new_dn", msg));
                }
                Action::Rename {
                    server,
                    dn,
                    new_dn,
                    expect_refused: r.expect_refused,
                }
            }
            StepTable::Modify(w) => {
                let server = self.server("server", &w.server)?;
                if w.attrs.is_empty() && w.remove.is_empty() {
                    return Err(
                        f.table_error("`modify` needs `attrs` to set or `remove` to remove")
                    );
                }
                if let Some((i, a)) =
                    (w.remove.iter().enumerate()).find(|(_, a)| w.attrs.contains_key(a.get_ref()))
                {
                    let msg = format!("attribute `{}` is both set in `attrs` and removed", text(a));
                    return Err(f.error(a.span(), &format!("remove[{i}]"), msg));
                }
                Action::Modify {
                    server,
                    dn: self.dn("dn", &w.dn)?,
                    attrs: strings(&w.attrs),
                    remove: plain(&w.remove),
                    expect_refused: w.expect_refused,
                }
            }
            StepTable::Delete(w) => Action::Delete {
                server: self.server("server", &w.server)?,
                dn: self.dn("dn", &w.dn)?,
                tree: w.tree,
                expect_refused: w.expect_refused,
            },
            StepTable::Load(_) => self.load(history, table)?,
            StepTable::Backup(b) => {
                let server = self.server("server", &b.server)?;
                // Taking the same name again on the same server replaces the
                // backup (a nightly job); on another server it would be ambiguous.
                if let Some((owner, step, line)) =
                    (history.backups.get(text(&b.name))).filter(|(owner, _, _)| *owner != server)
                {
                    let msg = format!(
                        "backup name `{}` is already taken by step[{step}] (line {line}) for {owner}: use another name",
                        text(&b.name)
                    );
                    return Err(f.error(b.name.span(), "name", msg));
                }
                let info = (server.clone(), self.index, self.line);
                history.backups.insert(text(&b.name).to_string(), info);
                Action::Backup {
                    server,
                    name: text(&b.name).to_string(),
                }
            }
            StepTable::Crash(c) => Action::Crash {
                server: self.server("server", &c.server)?,
            },
            StepTable::Restore(r) => {
                let server = self.server("server", &r.server)?;
                self.check_backup(history, &server, &r.backup)?;
                let strategy = r.strategy.map(|s| s.0);
                if let Some(root) = &r.subtree {
                    let effective = strategy.unwrap_or(self.default_restore);
                    if effective != RestoreStrategy::Authoritative {
                        let why = match strategy {
                            Some(s) => format!("this step's strategy is `{s}`"),
                            None => format!("the default `restore` is `{effective}`"),
                        };
                        let msg = format!(
                            "`subtree` is only allowed with strategy = \"authoritative\" ({why})"
                        );
                        return Err(self.f.error(root.span(), "subtree", msg));
                    }
                }
                Action::Restore {
                    server,
                    backup: text(&r.backup).to_string(),
                    strategy,
                    subtree: r.subtree.as_ref().map(|t| text(t).to_string()),
                }
            }
            StepTable::Release(r) => Action::Release {
                server: self.server("server", &r.server)?,
                expect_refused: r.expect_refused,
            },
            StepTable::Partition(p) => self.partition(&p.groups)?,
            StepTable::Heal(_) => Action::Heal,
            StepTable::DeleteConnector(d) => self.delete_connector(history, &d.between)?,
            StepTable::Wait(w) => Action::Wait {
                duration: self.sim_time(
                    history,
                    "for",
                    w.duration.span(),
                    w.duration.get_ref().0,
                )?,
            },
            StepTable::Converge(c) => Action::Converge {
                within: self.sim_time(history, "within", c.within.span(), c.within.get_ref().0)?,
                expect: c.expect.map(|e| e.0).unwrap_or_default(),
                max_sim: c.max_sim.map(|d| d.0),
                max_objects_sent: c.max_objects_sent.map(|n| n.0),
            },
            StepTable::Expect(e) => self.expect(e)?,
        })
    }

    /// Field `key`: a dn a write can name (`type=value` rdns).
    fn dn(&self, key: &str, dn: &Spanned<Name>) -> Result<String> {
        crate::core::tree::check_dn(text(dn)).map_err(|why| {
            self.f
                .error(dn.span(), key, format!("invalid dn `{}`: {why}", text(dn)))
        })?;
        Ok(text(dn).to_string())
    }

    /// Field `key`: a known server.
    fn server(&self, key: &str, server: &Spanned<Name>) -> Result<String> {
        self.topo.server(self.f, key, server)?;
        Ok(text(server).to_string())
    }

    /// Checks that list `key` names known servers, none twice.
    fn servers(&self, key: &str, names: &[Spanned<Name>]) -> Result<()> {
        for (i, s) in names.iter().enumerate() {
            let key = format!("{key}[{i}]");
            self.topo.server(self.f, &key, s)?;
            if names[..i].iter().any(|t| text(t) == text(s)) {
                let msg = format!("server `{}` is listed twice", text(s));
                return Err(self.f.error(s.span(), &key, msg));
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
        span: Range<usize>,
        d: std::time::Duration,
    ) -> Result<std::time::Duration> {
        history.sim_total += d;
        if history.sim_total > MAX_TOTAL_DURATION {
            let msg = format!(
                "the `wait` and `converge` steps of a scenario may add up to at most {MAX_TOTAL_DURATION_TEXT} (about 100 years) of simulated time; this step goes past it"
            );
            return Err(self.f.error(span, key, msg));
        }
        Ok(d)
    }

    fn load(&self, history: &mut History, table: &StepTable) -> Result<Action> {
        let (f, StepTable::Load(l)) = (self.f, table) else {
            unreachable!("called for load steps");
        };
        if let Some(list) = &l.servers {
            if list.get_ref().is_empty() {
                let msg =
                    "must name at least one server (leave it out to use every running server)";
                return Err(f.error(list.span(), "servers", msg));
            }
            self.servers("servers", list.get_ref())?;
        }
        if let Some(p) = &l.prefix
            && text(p).contains([',', '=', ' '])
        {
            let msg = "must not contain `,`, `=` or spaces: load dns are `cn=<prefix><n>`";
            return Err(f.error(p.span(), "prefix", msg));
        }
        let span = l.creates.span();
        let (creates, modifies, deletes) = (l.creates.get_ref().0, l.modifies.0, l.deletes.0);
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
            servers: l.servers.as_ref().map(|s| plain(s.get_ref())),
            creates,
            modifies,
            deletes,
            prefix: l.prefix.as_ref().map(|p| text(p).to_string()),
        })
    }

    /// A restore's backup must be taken earlier, from the same server.
    fn check_backup(&self, history: &History, server: &str, backup: &Spanned<Name>) -> Result<()> {
        let name = text(backup);
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
        (self.all.iter().enumerate().skip(self.index + 1))
            .find(|(_, (_, t))| matches!(t, StepTable::Backup(b) if text(&b.name) == name))
            .map(|(j, (f, _))| (j, f.line()))
    }

    fn partition(&self, groups: &Spanned<Vec<Names>>) -> Result<Action> {
        let f = self.f;
        let n = groups.get_ref().len();
        if n < 2 {
            let msg = format!("needs at least two groups, found {n}");
            return Err(f.error(groups.span(), "groups", msg));
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (g, group) in groups.get_ref().iter().enumerate() {
            if group.get_ref().is_empty() {
                let key = format!("groups[{g}]");
                return Err(f.error(group.span(), &key, "a group must not be empty"));
            }
            for (k, s) in group.get_ref().iter().enumerate() {
                let key = format!("groups[{g}][{k}]");
                self.topo.server(f, &key, s)?;
                if let Some(other) = seen.insert(text(s), g) {
                    let msg = if other == g {
                        format!("server `{}` is listed twice in groups[{g}]", text(s))
                    } else {
                        format!(
                            "server `{}` is in two groups: groups[{other}] and groups[{g}]",
                            text(s)
                        )
                    };
                    return Err(f.error(s.span(), &key, msg));
                }
            }
        }
        Ok(Action::Partition {
            groups: groups
                .get_ref()
                .iter()
                .map(|g| plain(g.get_ref()))
                .collect(),
        })
    }

    fn delete_connector(&self, history: &mut History, between: &Pair) -> Result<Action> {
        let f = self.f;
        let [a, b] = &between.get_ref().0;
        self.topo.site(f, "between[0]", a)?;
        self.topo.site(f, "between[1]", b)?;
        let Some(c) = (self.connectors.iter()).position(|(c, _)| same_pair(&c.between, a, b))
        else {
            let existing: Vec<String> = (self.connectors.iter())
                .map(|(c, _)| format!("{}-{}", c.between[0], c.between[1]))
                .collect();
            let msg = format!(
                "no connector between `{}` and `{}` (connectors: {})",
                text(a),
                text(b),
                listing(existing.iter())
            );
            return Err(f.error(between.span(), "between", msg));
        };
        if let Some((_, step, line)) = history.deleted.iter().find(|d| d.0 == c) {
            let msg = format!(
                "the connector between `{}` and `{}` is already deleted by step[{step}] (line {line})",
                text(a),
                text(b)
            );
            return Err(f.error(between.span(), "between", msg));
        }
        history.deleted.push((c, self.index, self.line));
        Ok(Action::DeleteConnector {
            between: [a, b].map(|s| text(s).to_string()),
        })
    }

    fn expect(&self, e: &ExpectStep) -> Result<Action> {
        let f = self.f;
        // The fields given, in the order of the format, with their spans.
        let given: Vec<(&str, Range<usize>)> = [
            ("server", e.server.as_ref().map(Spanned::span)),
            ("dn", e.dn.as_ref().map(Spanned::span)),
            ("present", e.present.as_ref().map(Spanned::span)),
            ("attrs", e.attrs.as_ref().map(Spanned::span)),
            ("objects", e.objects.as_ref().map(Spanned::span)),
            ("tombstone", e.tombstone.as_ref().map(Spanned::span)),
            ("state", e.state.as_ref().map(Spanned::span)),
            ("answered_by", e.answered_by.as_ref().map(Spanned::span)),
            (
                "lost_unreplicated",
                e.lost_unreplicated.as_ref().map(Spanned::span),
            ),
        ]
        .into_iter()
        .filter_map(|(k, s)| Some((k, s?)))
        .collect();
        let has = |k: &str| given.iter().any(|g| g.0 == k);
        let span = |k: &str| {
            given
                .iter()
                .find(|g| g.0 == k)
                .map_or(0..0, |g| g.1.clone())
        };
        if let Some(lost) = &e.lost_unreplicated {
            if let Some((k, s)) = given.iter().find(|g| g.0 != "lost_unreplicated") {
                let msg = if *k == "server" {
                    "`lost_unreplicated` counts over the whole cluster: leave out `server`"
                        .to_string()
                } else {
                    format!("give `lost_unreplicated` alone, not with `{k}`")
                };
                return Err(f.error(s.clone(), k, msg));
            }
            return Ok(Action::ExpectLost {
                lost_unreplicated: lost.get_ref().0,
            });
        }
        let server = match &e.server {
            Some(s) => self.server("server", s)?,
            None => return Err(f.missing("server")),
        };
        if has("objects")
            && let Some(k) = ["dn", "present", "attrs"].into_iter().find(|k| has(k))
        {
            let msg =
                format!("give either `objects` or `dn` + `present`, not both (`{k}` is given too)");
            return Err(f.error(span("objects"), "objects", msg));
        }
        let checks: Vec<&str> = ["objects", "present", "tombstone", "state", "answered_by"]
            .into_iter()
            .filter(|k| has(k))
            .collect();
        let check = match checks.as_slice() {
            // `dn` without `present`: that branch reports it missing.
            [] if has("dn") || has("attrs") => "present",
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
        if let Some((k, s)) = given
            .iter()
            .find(|g| g.0 != "server" && !takes.contains(&g.0))
        {
            let msg = if *k == "attrs" {
                "`attrs` is only allowed with `present = true`".to_string()
            } else {
                format!("`{k}` is not used with `{check}`")
            };
            return Err(f.error(s.clone(), k, msg));
        }
        let dn = || match &e.dn {
            Some(dn) => Ok(text(dn).to_string()),
            None => Err(f.missing("dn")),
        };
        let check = match (check, &e.objects, &e.tombstone, &e.state, &e.answered_by) {
            ("objects", Some(n), ..) => ExpectCheck::Objects(n.get_ref().0),
            ("tombstone", _, Some(t), ..) => {
                let dn = dn()?;
                if !t.get_ref() {
                    let msg = "only `tombstone = true` is checked (for no live object with that dn, write `present = false`)";
                    return Err(f.error(t.span(), "tombstone", msg));
                }
                ExpectCheck::Tombstone { dn }
            }
            ("state", _, _, Some(s), _) => ExpectCheck::State(s.get_ref().0),
            ("answered_by", .., Some(names)) => {
                self.servers("answered_by", names.get_ref())?;
                ExpectCheck::AnsweredBy(plain(names.get_ref()))
            }
            // "present": `dn` + `present`, and `attrs` when present.
            _ => {
                let dn = dn()?;
                let Some(present) = &e.present else {
                    return Err(f.missing("present"));
                };
                if let Some(a) = &e.attrs
                    && !present.get_ref()
                {
                    let msg = "`attrs` is only allowed with `present = true`";
                    return Err(f.error(a.span(), "attrs", msg));
                }
                ExpectCheck::Dn {
                    dn,
                    present: *present.get_ref(),
                    attrs: e
                        .attrs
                        .as_ref()
                        .map(|a| strings(a.get_ref()))
                        .unwrap_or_default(),
                }
            }
        };
        Ok(Action::Expect { server, check })
    }
}
