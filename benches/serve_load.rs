//! The live lab under load, next to OpenLDAP's slapd under the same load.
//!
//! `cargo bench --bench serve_load [-- --adds N --searches M]` starts
//! `backsync serve` on a three-server site and, when `slapd` is installed
//! (Debian: `apt-get install slapd`), a private slapd (mdb backend,
//! `dbnosync`, as the lab keeps its directory in memory) on loopback ports,
//! and drives both with the same client: one connection adding N entries;
//! eight connections adding N entries between them (over the lab's three
//! servers, all on slapd's one); one connection running M base searches of
//! random added entries, timing each. Rounds alternate between the lab and
//! slapd (`--rounds`, 3); each figure is the median. Then it waits for the
//! lab to converge and checks that every server holds every acknowledged
//! add. It prints each figure next to slapd's, and exits 1 when the lab
//! lost an acknowledged add.
//!
//! The client is the same for both: blocking sockets, one request in flight
//! per connection, messages encoded and decoded by `ldap3_proto`.

// The command line's allocator, so these figures are comparable with
// `backsync bench`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ldap3_proto::LdapCodec;
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapAddRequest, LdapBindCred, LdapBindRequest, LdapDerefAliases, LdapFilter, LdapMsg, LdapOp,
    LdapPartialAttribute, LdapResultCode, LdapSearchRequest, LdapSearchScope,
};
use rand::{Rng, SeedableRng};
use tokio_util::codec::{Decoder, Encoder};

const LAB: &str = r#"
name = "serve load: three servers in one site"
seed = 1
profile = "ad"

[[site]]
name = "Redmond"
servers = ["S1", "S2", "S3"]
"#;

struct Client {
    s: TcpStream,
    codec: LdapCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
    next_id: i32,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).unwrap();
        Client {
            s,
            codec: LdapCodec::new(Some(64 << 20), None),
            rbuf: BytesMut::with_capacity(64 << 10),
            wbuf: BytesMut::with_capacity(4 << 10),
            next_id: 1,
        }
    }

    fn send(&mut self, op: LdapOp, ctrl: Vec<LdapControl>) -> i32 {
        let msgid = self.next_id;
        self.next_id += 1;
        self.wbuf.clear();
        self.codec
            .encode(LdapMsg { msgid, op, ctrl }, &mut self.wbuf)
            .unwrap();
        self.s.write_all(&self.wbuf).unwrap();
        msgid
    }

    fn recv(&mut self) -> LdapMsg {
        loop {
            if let Some(m) = self.codec.decode(&mut self.rbuf).expect("a valid answer") {
                return m;
            }
            let mut chunk = [0u8; 64 << 10];
            let n = self.s.read(&mut chunk).unwrap();
            assert!(n > 0, "the server closed the connection");
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    fn bind(&mut self, dn: &str, pw: &str) {
        self.send(
            LdapOp::BindRequest(LdapBindRequest {
                version: 3,
                dn: dn.into(),
                cred: LdapBindCred::Simple(pw.into()),
            }),
            Vec::new(),
        );
        match self.recv().op {
            LdapOp::BindResponse(r) => assert_eq!(r.res.code, LdapResultCode::Success),
            op => panic!("bind: {op:?}"),
        }
    }

    fn add(&mut self, n: usize) -> LdapResultCode {
        let a = |t: &str, v: &str| LdapPartialAttribute {
            atype: t.into(),
            vals: vec![v.as_bytes().to_vec()],
        };
        self.send(
            LdapOp::AddRequest(LdapAddRequest {
                dn: format!("cn=user{n},ou=Users"),
                attributes: vec![
                    a("objectClass", "person"),
                    a("cn", &format!("user{n}")),
                    a("sn", &n.to_string()),
                ],
            }),
            Vec::new(),
        );
        match self.recv().op {
            LdapOp::AddResponse(r) => r.code,
            op => panic!("add: {op:?}"),
        }
    }

    /// Entries of a search, all pages (RFC 2696, 1,000 a page).
    fn search(&mut self, base: &str, scope: LdapSearchScope, paged: bool) -> usize {
        let mut cookie = Vec::new();
        let mut found = 0;
        loop {
            let ctrl = if paged {
                vec![LdapControl::SimplePagedResults {
                    size: 1000,
                    cookie: cookie.clone(),
                }]
            } else {
                Vec::new()
            };
            self.send(
                LdapOp::SearchRequest(LdapSearchRequest {
                    base: base.into(),
                    scope: scope.clone(),
                    aliases: LdapDerefAliases::Never,
                    sizelimit: 0,
                    timelimit: 0,
                    typesonly: false,
                    filter: LdapFilter::Present("objectClass".into()),
                    attrs: vec!["1.1".into()],
                }),
                ctrl,
            );
            loop {
                let m = self.recv();
                match m.op {
                    LdapOp::SearchResultEntry(_) => found += 1,
                    LdapOp::SearchResultDone(r) => {
                        assert_eq!(r.code, LdapResultCode::Success, "{}", r.message);
                        let next = m.ctrl.iter().find_map(|c| match c {
                            LdapControl::SimplePagedResults { cookie, .. } => Some(cookie.clone()),
                            _ => None,
                        });
                        match next {
                            Some(c) if paged && !c.is_empty() => {
                                cookie = c;
                                break;
                            }
                            _ => return found,
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A directory under test: where its servers listen, how to write to it.
struct Target {
    ports: Vec<u16>,
    bind: (String, String),
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lab(admin: u16) -> Target {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lab.toml");
    std::fs::write(&file, LAB).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_backsync"))
        .args(["serve", file.to_str().unwrap(), "--speed", "60", "-q"])
        .args(["--ldap", "127.0.0.1:0", "--admin"])
        .arg(format!("127.0.0.1:{admin}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut ports = Vec::new();
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0 {
        if line.trim() == "ready" {
            break;
        }
        if let Some(p) = line.trim().rsplit_once("ldap://127.0.0.1:") {
            ports.push(p.1.parse().unwrap());
        }
        line.clear();
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Target {
        ports,
        bind: ("cn=bench".into(), "any".into()),
        child,
        _dir: Some(dir),
    }
}

fn slapd() -> Option<Target> {
    let bin = Path::new("/usr/sbin/slapd");
    let modules = ["/usr/lib/ldap", "/usr/lib/openldap", "/usr/lib64/openldap"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("back_mdb.so").exists() || p.join("back_mdb.la").exists());
    let schema = Path::new("/etc/ldap/schema/core.schema");
    if !bin.exists() || !schema.exists() {
        eprintln!(
            "slapd is not installed (Debian: apt-get install slapd): measuring the lab alone"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    let module = match &modules {
        Some(m) => format!("modulepath {}\nmoduleload back_mdb\n", m.display()),
        None => String::new(),
    };
    let conf = format!(
        "include /etc/ldap/schema/core.schema\n\
         pidfile {dir}/slapd.pid\nloglevel 0\n{module}\
         database mdb\nsuffix \"ou=Users\"\nrootdn \"cn=admin,ou=Users\"\nrootpw secret\n\
         directory {db}\nmaxsize 4294967296\ndbnosync\n",
        dir = dir.path().display(),
        db = db.display()
    );
    let conf_path = dir.path().join("slapd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let port = free_port();
    let child = Command::new(bin)
        .arg("-f")
        .arg(&conf_path)
        .args(["-h", &format!("ldap://127.0.0.1:{port}/"), "-d", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let t = Target {
        ports: vec![port],
        bind: ("cn=admin,ou=Users".into(), "secret".into()),
        child,
        _dir: Some(dir),
    };
    wait_listening(port);
    // The suffix entry the users go under (the lab has it as a fixed container).
    let mut c = Client::connect(port);
    c.bind(&t.bind.0, &t.bind.1);
    let a = |t: &str, v: &str| LdapPartialAttribute {
        atype: t.into(),
        vals: vec![v.as_bytes().to_vec()],
    };
    c.send(
        LdapOp::AddRequest(LdapAddRequest {
            dn: "ou=Users".into(),
            attributes: vec![a("objectClass", "organizationalUnit"), a("ou", "Users")],
        }),
        Vec::new(),
    );
    match c.recv().op {
        LdapOp::AddResponse(r) => assert_eq!(r.code, LdapResultCode::Success, "{}", r.message),
        op => panic!("{op:?}"),
    }
    Some(t)
}

struct Figures {
    one_client: f64,
    eight_clients: f64,
    per_server: Vec<f64>,
    searches_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    acknowledged: usize,
}

/// Adds `count` entries numbered from `first` over `clients` connections
/// (connection k to the target's server k % servers); returns adds/s, per
/// server adds/s, and the numbers acknowledged.
fn adds(t: &Target, first: usize, count: usize, clients: usize) -> (f64, Vec<f64>, Vec<usize>) {
    let start = Instant::now();
    let per = count / clients;
    let results: Vec<(usize, Vec<usize>, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|k| {
                let port = t.ports[k % t.ports.len()];
                let bind = t.bind.clone();
                s.spawn(move || {
                    let mut c = Client::connect(port);
                    c.bind(&bind.0, &bind.1);
                    let started = Instant::now();
                    let mut ok = Vec::with_capacity(per);
                    for n in first + k * per..first + (k + 1) * per {
                        if c.add(n) == LdapResultCode::Success {
                            ok.push(n);
                        }
                    }
                    (k % t.ports.len(), ok, started.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let mut per_server = vec![0.0; t.ports.len()];
    let mut acked = Vec::new();
    for (server, ok, _) in results {
        per_server[server] += ok.len() as f64 / wall;
        acked.extend(ok);
    }
    (acked.len() as f64 / wall, per_server, acked)
}

fn searches(t: &Target, acked: &[usize], count: usize) -> (f64, f64, f64) {
    let mut c = Client::connect(t.ports[0]);
    c.bind(&t.bind.0, &t.bind.1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut lat = Vec::with_capacity(count);
    let start = Instant::now();
    for _ in 0..count {
        let n = acked[rng.random_range(0..acked.len())];
        let t0 = Instant::now();
        let found = c.search(
            &format!("cn=user{n},ou=Users"),
            LdapSearchScope::Base,
            false,
        );
        lat.push(t0.elapsed().as_secs_f64() * 1e6);
        assert_eq!(found, 1);
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    (rate, pct(0.5), pct(0.99))
}

/// One round: its entries are numbered from `first`.
fn measure(t: &Target, first: usize, n_adds: usize, n_searches: usize) -> Figures {
    let (one, _, on_first) = adds(t, first, n_adds, 1);
    let (eight, per_server, more) = adds(t, first + n_adds, n_adds, 8);
    // Searched where they were added, so none waits for replication.
    let (rate, p50, p99) = searches(t, &on_first, n_searches);
    let acked = on_first.len() + more.len();
    Figures {
        one_client: one,
        eight_clients: eight,
        per_server,
        searches_per_s: rate,
        p50_us: p50,
        p99_us: p99,
        acknowledged: acked,
    }
}

/// The median of a figure over rounds.
fn median(rounds: &[Figures], f: impl Fn(&Figures) -> f64) -> f64 {
    let mut v: Vec<f64> = rounds.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn converged(admin: u16) -> bool {
    let mut s = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.contains("\"converged\":true")
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn main() {
    let n_adds = arg("--adds", 16_000);
    let n_searches = arg("--searches", 20_000);
    let rounds = arg("--rounds", 3).max(1);
    let admin = free_port();
    let lab = lab(admin);
    for &p in &lab.ports {
        wait_listening(p);
    }
    let theirs_target = slapd();
    // Rounds alternate between the two, so a burst of load from elsewhere
    // on a shared machine hits both alike; each figure is the median.
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for r in 0..rounds {
        let first = r * 2 * n_adds;
        ours.push(measure(&lab, first, n_adds, n_searches));
        if let Some(t) = &theirs_target {
            theirs.push(measure(t, first, n_adds, n_searches));
        }
    }
    drop(theirs_target);
    let acknowledged: usize = ours.iter().map(|f| f.acknowledged).sum();
    // Every acknowledged add on every server once the lab has converged.
    let start = Instant::now();
    while !converged(admin) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no convergence in 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let settle = start.elapsed();
    let held: Vec<usize> = lab
        .ports
        .iter()
        .map(|&p| Client::connect(p).search("ou=Users", LdapSearchScope::OneLevel, true))
        .collect();
    drop(lab);

    println!(
        "Live lab under load, median of {rounds} rounds alternating with slapd: {n_adds} adds from 1 client, \
         {n_adds} from 8, {n_searches} base searches over 1 connection"
    );
    let row = |what: &str, f: &dyn Fn(&Figures) -> f64, unit: &str, higher_better: bool| {
        let o = median(&ours, f);
        let (t, r) = if theirs.is_empty() {
            ("not measured".to_string(), "-".to_string())
        } else {
            let t = median(&theirs, f);
            let r = if higher_better { o / t } else { t / o };
            (format!("{t:>8.0} {unit}"), format!("{r:.2}"))
        };
        println!("  {what:<26} lab {o:>8.0} {unit:<7} slapd {t:<18} ratio {r}");
    };
    row("adds, 1 client", &|f| f.one_client, "/s", true);
    row("adds, 8 clients", &|f| f.eight_clients, "/s", true);
    for i in 0..3 {
        println!(
            "    of which S{}: {:.0} adds/s",
            i + 1,
            median(&ours, |f| f.per_server[i])
        );
    }
    row("searches, 1 connection", &|f| f.searches_per_s, "/s", true);
    row("search latency p50", &|f| f.p50_us, "us", false);
    row("search latency p99", &|f| f.p99_us, "us", false);
    println!(
        "  (ratio: the lab's figure over slapd's; for latencies slapd's over the lab's, so above 1 is the lab ahead)"
    );
    println!(
        "  acknowledged adds: {acknowledged}; held by S1, S2, S3 once converged ({:.1} s after the last round): {held:?}",
        settle.as_secs_f64()
    );
    if held.iter().any(|&h| h != acknowledged) {
        eprintln!("error: a server does not hold every acknowledged add");
        std::process::exit(1);
    }
}
