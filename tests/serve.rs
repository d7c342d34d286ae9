//! `backsync serve` driven by the stock OpenLDAP clients (`ldapsearch`,
//! `ldapadd`, `ldapmodify`, `ldapmodrdn`, `ldapdelete`) and `curl`, on
//! loopback ports the test picks: the KB Q190703 story, refusals, bad
//! bytes, 500 concurrent adds and a clean stop on SIGTERM.
//!
//! `.ci/run` installs `ldap-utils` when missing; elsewhere, without the
//! clients, the test says so and passes without running.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const LAB: &str = r#"
name = "serve test: three servers in one site"
seed = 7
profile = "exchange55"

[[site]]
name = "Redmond"
servers = ["S1", "S2", "S3"]

[[step]]
do = "create"
server = "S2"
dn = "ou=Sales"

[[step]]
do = "converge"
within = "1h"
"#;

/// Simulated seconds per real second: the 5-minute notification delay of
/// Exchange 5.5 takes half a second.
const SPEED: &str = "600";

fn have_clients() -> bool {
    let found = [
        "ldapsearch",
        "ldapadd",
        "ldapmodify",
        "ldapmodrdn",
        "ldapdelete",
        "curl",
    ]
    .iter()
    .all(|t| {
        Command::new(t)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if !found && std::env::var_os("CI").is_some() {
        panic!("CI must have ldap-utils and curl: .ci/run installs them");
    }
    if !found {
        eprintln!("skipped: ldap-utils or curl is not installed (apt-get install ldap-utils curl)");
    }
    found
}

/// A first port with the next `n - 1` free too (then released for the lab).
fn free_ports(n: u16) -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if first > u16::MAX - n {
            continue;
        }
        let held: Vec<_> = (0..n)
            .map_while(|i| TcpListener::bind(("127.0.0.1", first + i)).ok())
            .collect();
        if held.len() == n as usize {
            return first;
        }
    }
    panic!("no {n} free ports in a row");
}

struct Lab {
    child: Child,
    ldap: Vec<String>,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lab {
    fn start(extra: &[&str]) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lab.toml");
        std::fs::write(&file, LAB).unwrap();
        let ldap = free_ports(3);
        let admin = free_ports(1);
        let mut child = Command::new(env!("CARGO_BIN_EXE_backsync"))
            .args(["serve", file.to_str().unwrap(), "--speed", SPEED])
            .args(["--ldap", &format!("127.0.0.1:{ldap}")])
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut urls = Vec::new();
        for line in &mut lines {
            let line = line.unwrap();
            if line == "ready" {
                break;
            }
            if let Some((name, url)) = line.split_once(" ldap://") {
                urls.push((name.to_string(), format!("ldap://{url}")));
            }
        }
        // Keep reading stdout so the lab never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let names: Vec<&str> = urls.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["S1", "S2", "S3"], "one line per server, in order");
        let want: Vec<String> = (0..3)
            .map(|i| format!("ldap://127.0.0.1:{}", ldap + i))
            .collect();
        let got: Vec<String> = urls.into_iter().map(|(_, u)| u).collect();
        assert_eq!(got, want, "server i on the --ldap port + i");
        Lab {
            child,
            ldap: got,
            admin: format!("http://127.0.0.1:{admin}"),
            _dir: dir,
        }
    }

    fn url(&self, server: usize) -> &str {
        &self.ldap[server]
    }

    /// `curl`: (HTTP status, body).
    fn curl(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let mut c = Command::new("curl");
        c.args(["-s", "-w", "\n%{http_code}", "-X", method]);
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "-d", b]);
        }
        let out = c.arg(format!("{}{path}", self.admin)).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {body}: {e}"));
        (code.parse().unwrap(), json)
    }

    fn state(&self, server: &str) -> String {
        let (code, s) = self.curl("GET", "/status", None);
        assert_eq!(code, 200);
        s["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == server)
            .unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn ldap(tool: &str, url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(tool);
    c.args(["-x", "-H", url]).args(args);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn search(url: &str, args: &[&str]) -> String {
    let out = ldap("ldapsearch", url, &[&["-LLL"], args].concat(), None);
    assert!(
        out.status.success(),
        "ldapsearch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn dns(url: &str, base: &str, filter: &str) -> Vec<String> {
    let mut v: Vec<String> = search(url, &["-b", base, filter, "1.1"])
        .lines()
        .filter_map(|l| l.strip_prefix("dn: "))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn add(url: &str, ldif: &str) -> Output {
    ldap("ldapadd", url, &[], Some(ldif))
}

#[test]
fn the_kb_story_with_the_stock_clients() {
    if !have_clients() {
        return;
    }
    let lab = Lab::start(&[]);
    let (s1, s2, s3) = (lab.url(0), lab.url(1), lab.url(2));
    let wait = Duration::from_secs(30);

    // Binds: anonymous and simple with any password; the rootDSE.
    let root = search(
        s1,
        &["-D", "cn=admin", "-w", "anything", "-b", "", "-s", "base"],
    );
    for want in [
        "dsServiceName: S1",
        "highestCommittedUSN: 1",
        "namingContexts: ou=Users",
    ] {
        assert!(root.contains(want), "{want} in {root}");
    }
    let by_name = search(s2, &["-b", "", "-s", "base", "invocationId"]);
    assert!(by_name.contains("invocationId: ") && !by_name.contains("dsServiceName"));

    // Backup, then UserA on S1 reaches S2 and S3.
    let (code, _) = lab.curl("POST", "/servers/S1/backup?name=nightly", None);
    assert_eq!(code, 200);
    let user_a =
        "dn: cn=UserA,ou=Sales\nobjectClass: top\nobjectClass: person\nmail: a@example.com\n";
    assert!(add(s1, user_a).status.success());
    for s in [s2, s3] {
        until("UserA everywhere", wait, || {
            dns(s, "ou=Sales", "(cn=UserA)") == ["cn=UserA,ou=Sales"]
        });
    }
    let entry = search(s3, &["-b", "cn=UserA,ou=Sales", "-s", "base", "*", "+"]);
    for want in [
        "objectClass: person",
        "mail: a@example.com",
        "objectGUID:: ",
        "uSNChanged: ",
        "whenChanged: ",
    ] {
        assert!(entry.contains(want), "{want} in {entry}");
    }
    // Refusals as result codes.
    assert_eq!(
        add(s2, user_a).status.code(),
        Some(68),
        "entryAlreadyExists"
    );
    let orphan = "dn: cn=X,ou=Nowhere,ou=Sales\ncn: X\n";
    assert_eq!(add(s2, orphan).status.code(), Some(32), "noSuchObject");
    let del = ldap("ldapdelete", s2, &["ou=Sales"], None);
    assert_eq!(del.status.code(), Some(66), "notAllowedOnNonLeaf");

    // Crash S1: its port refuses connections.
    let (code, _) = lab.curl("POST", "/servers/S1/crash", None);
    assert_eq!(code, 200);
    let refused = ldap("ldapsearch", s1, &["-b", "", "-s", "base"], None);
    assert!(
        !refused.status.success(),
        "a crashed server's port is closed"
    );
    assert_eq!(lab.state("S1"), "down");

    // Keep S3 away so the backsync cannot end, restore: a write is `busy`.
    let (code, _) = lab.curl(
        "POST",
        "/partition",
        Some(r#"{"groups": [["S1", "S2"], ["S3"]]}"#),
    );
    assert_eq!(code, 200);
    let (code, body) = lab.curl(
        "POST",
        "/servers/S1/restore?backup=nightly&strategy=backsync",
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(lab.state("S1"), "backsync");
    let user_b = "dn: cn=UserB,ou=Sales\ncn: UserB\n";
    assert_eq!(
        add(s1, user_b).status.code(),
        Some(51),
        "busy during backsync"
    );

    // Heal: the backsync ends, UserA is back on S1, and S1 takes writes.
    let (code, _) = lab.curl("POST", "/heal", None);
    assert_eq!(code, 200);
    until("the backsync to end", wait, || lab.state("S1") == "running");
    assert_eq!(dns(s1, "ou=Sales", "(cn=UserA)"), ["cn=UserA,ou=Sales"]);
    assert!(add(s1, user_b).status.success());

    // Modify, rename, delete; the tombstone under Show Deleted.
    let modify = "dn: cn=UserB,ou=Sales\nchangetype: modify\nadd: mail\nmail: b@example.com\n-\nreplace: description\ndescription: moved\n";
    assert!(ldap("ldapmodify", s1, &[], Some(modify)).status.success());
    let mv = ldap(
        "ldapmodrdn",
        s1,
        &["-r", "cn=UserB,ou=Sales", "cn=UserC"],
        None,
    );
    assert!(
        mv.status.success(),
        "{}",
        String::from_utf8_lossy(&mv.stderr)
    );
    until("the rename on S2", wait, || {
        search(s2, &["-b", "ou=Sales", "(cn=UserC)", "mail"]).contains("mail: b@example.com")
    });
    assert!(
        ldap("ldapdelete", s2, &["cn=UserA,ou=Sales"], None)
            .status
            .success()
    );
    until("the delete on S3", wait, || {
        dns(s3, "ou=Sales", "(cn=UserA)").is_empty()
    });
    let shown = search(
        s3,
        &[
            "-E",
            "!1.2.840.113556.1.4.417",
            "-b",
            "ou=Sales",
            "(isDeleted=TRUE)",
            "isDeleted",
        ],
    );
    assert!(shown.contains("isDeleted: TRUE"), "{shown}");

    // Admin refusals change nothing.
    let (code, body) = lab.curl("POST", "/servers/S9/crash", None);
    assert_eq!(code, 404);
    assert!(body["error"].as_str().unwrap().contains("S9"));
    let (code, _) = lab.curl("POST", "/servers/S1/restore?backup=none", None);
    assert_eq!(code, 404);
    let (code, _) = lab.curl(
        "POST",
        "/servers/S1/restore?backup=nightly&strategy=magic",
        None,
    );
    assert_eq!(code, 400);
    assert_eq!(lab.state("S1"), "running");
}

#[test]
fn bad_bytes_close_one_connection_and_500_adds_land_everywhere() {
    if !have_clients() {
        return;
    }
    let lab = Lab::start(&[]);
    let port = |i: usize| {
        lab.url(i)
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap()
    };
    // An LDAPMessage with an id and no operation, random bytes, and a
    // message over 8 MiB: each closes its own connection.
    let closes = |bytes: &[u8]| {
        let mut c = TcpStream::connect(("127.0.0.1", port(1))).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = c.write_all(bytes);
        let mut rest = Vec::new();
        // EOF or a reset: either way the server ended the connection.
        let _ = c.read_to_end(&mut rest);
    };
    closes(&[0x30, 0x03, 0x02, 0x01, 0x01]);
    closes(&[0xff; 64]);
    let mut big = vec![0x30, 0x84];
    big.extend_from_slice(&(9u32 << 20).to_be_bytes());
    big.resize(6 + (9 << 20), 0x04);
    closes(&big);
    let root = search(lab.url(1), &["-b", "", "-s", "base", "dsServiceName"]);
    assert!(root.contains("dsServiceName: S2"), "the server goes on");

    // 500 adds from 500 concurrent clients over the three servers.
    let children: Vec<_> = (0..500)
        .map(|i| {
            let mut c = Command::new("ldapadd")
                .args(["-x", "-H", lab.url(i % 3)])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let ldif = format!("dn: cn=load{i},ou=Users\ncn: load{i}\n");
            c.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
            c
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut want: Vec<String> = (0..500).map(|i| format!("cn=load{i},ou=Users")).collect();
    want.sort();
    for i in 0..3 {
        until("every add on every server", Duration::from_secs(60), || {
            dns(lab.url(i), "ou=Users", "(cn=load*)") == want
        });
    }
    // Paged: 500 entries in pages of 100 (ldapsearch asks for each page).
    let paged = search(
        lab.url(0),
        &[
            "-E",
            "pr=100/noprompt",
            "-b",
            "ou=Users",
            "(cn=load*)",
            "1.1",
        ],
    );
    assert_eq!(paged.lines().filter(|l| l.starts_with("dn: ")).count(), 500);
    // A size limit of 10: ten entries, then sizeLimitExceeded (4).
    let limited = ldap(
        "ldapsearch",
        lab.url(0),
        &["-LLL", "-z", "10", "-b", "ou=Users", "(cn=load*)", "1.1"],
        None,
    );
    assert_eq!(limited.status.code(), Some(4));
    let text = String::from_utf8(limited.stdout).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("dn: ")).count(), 10);
}

#[test]
fn a_password_guards_writes_and_sigterm_stops_within_a_second() {
    if !have_clients() {
        return;
    }
    let mut lab = Lab::start(&["--bind-password", "secret"]);
    let s1 = lab.url(0).to_string();
    let user = "dn: cn=Guarded,ou=Users\ncn: Guarded\n";
    assert_eq!(add(&s1, user).status.code(), Some(50), "anonymous write");
    let wrong = ldap(
        "ldapadd",
        &s1,
        &["-D", "cn=admin", "-w", "nope"],
        Some(user),
    );
    assert_eq!(wrong.status.code(), Some(49), "invalidCredentials");
    let right = ldap(
        "ldapadd",
        &s1,
        &["-D", "cn=admin", "-w", "secret"],
        Some(user),
    );
    assert!(right.status.success());
    assert_eq!(
        dns(&s1, "ou=Users", "(cn=Guarded)"),
        ["cn=Guarded,ou=Users"]
    );

    let pid = lab.child.id().to_string();
    let start = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(s) = lab.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "still running after a second"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "exit 0 on SIGTERM, got {status:?}");
}

#[test]
fn open_addresses_need_a_password_or_insecure() {
    let out = Command::new(env!("CARGO_BIN_EXE_backsync"))
        .args(["serve", "scenarios/lab.toml", "--ldap", "0.0.0.0:3890"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--ldap 0.0.0.0:3890 is not a loopback address"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_backsync"))
        .args(["serve", "scenarios/lab.toml", "--speed", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_library_starts_and_stops_a_lab_in_process() {
    let s = backsync::Scenario::from_str(LAB, "lab.toml").unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let opts = backsync::serve::ServeOptions {
        ldap: any,
        admin: any,
        speed: 600.0,
        ..Default::default()
    };
    let lab = backsync::serve::start(&s, &opts).unwrap();
    assert!(lab.report().passed);
    let addrs: Vec<_> = lab.ldap_addrs().iter().map(|(_, a)| *a).collect();
    assert_eq!(addrs.len(), 3);
    for a in &addrs {
        TcpStream::connect(a).expect("each server listens");
    }
    let start = Instant::now();
    lab.stop();
    assert!(start.elapsed() < Duration::from_secs(1));
    for a in &addrs {
        assert!(TcpStream::connect(a).is_err(), "{a} closed after stop");
    }
}
