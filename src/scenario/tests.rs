use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::Granularity;

const EXAMPLE: &str = include_str!("../../scenarios/kb_q190703.toml");

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::from_str(text, "t.toml")
}

/// A valid head to which a test appends steps or tables.
const HEAD: &str = r#"name = "t"
[[site]]
name = "A"
servers = ["S1", "S2"]
[[site]]
name = "B"
servers = ["S3"]
[[connector]]
between = ["A", "B"]
bridgeheads = ["S2", "S3"]
"#;

fn err(tail: &str) -> ScenarioError {
    parse(&format!("{HEAD}{tail}")).expect_err("should be invalid")
}

#[test]
fn example_parses_with_expected_values() {
    let s = Scenario::from_path(Path::new("scenarios/kb_q190703.toml")).unwrap();
    assert_eq!(
        s.name,
        "KB Q190703: local objects backsync from other sites"
    );
    assert_eq!(s.seed, 1);
    assert_eq!(s.profile, Profile::Exchange55);
    assert_eq!(
        s.server_names(),
        ["Server1", "Server2", "Server3", "Server4"]
    );
    assert_eq!(s.sites[1].name, "Dublin");
    assert_eq!(s.site_of("Server3"), Some("Dublin"));
    assert_eq!(
        s.connectors,
        [ConnectorSpec {
            between: ["Redmond".into(), "Dublin".into()],
            bridgeheads: ["Server2".into(), "Server3".into()],
            schedule: Some(Duration::from_secs(15 * 60)),
            latency: Some(Duration::from_secs(2)),
        }]
    );
    assert_eq!(
        s.config,
        ReplicationConfig::for_profile(Profile::Exchange55)
    );
    assert_eq!(s.network, NetworkSpec::default());
    let names: Vec<&str> = s.steps.iter().map(|st| st.action.name()).collect();
    assert_eq!(
        names,
        [
            "load", "converge", "backup", "create", "converge", "crash", "restore", "converge",
            "expect"
        ]
    );
    assert_eq!(s.steps[0].line, 22);
    assert!(s.steps.iter().enumerate().all(|(i, st)| st.index == i));
    assert_eq!(
        s.steps[0].action,
        Action::Load {
            servers: None,
            creates: 1000,
            modifies: 0,
            deletes: 0,
            prefix: None
        }
    );
    assert_eq!(
        s.steps[6].action,
        Action::Restore {
            server: "Server1".into(),
            backup: "nightly".into(),
            strategy: Some(RestoreStrategy::Backsync)
        }
    );
    let mail = BTreeMap::from([("mail".to_string(), "usera@example.com".to_string())]);
    assert_eq!(
        s.steps[8].action,
        Action::Expect {
            server: "Server1".into(),
            check: ExpectCheck::Dn {
                dn: "cn=UserA,ou=Users".into(),
                present: true,
                attrs: mail
            }
        }
    );
    assert_eq!(s, Scenario::from_str(EXAMPLE, "other").unwrap());
}

/// Every `[replication]` and `[network]` field set.
fn overrides() -> String {
    format!(
        r#"profile = "ad"
seed = 42
{HEAD}
[replication]
notify_delay = "1s"
notify_spacing = "2s"
intrasite_latency = "3ms"
intrasite_packet = 4
intersite_packet = 5
granularity = "object"
tombstone_lifetime = "6d"
gc_interval = "7h"
restore = "full-resync"
backsync_timeout = "8m"
rollback_detection = false
startup_delay = "9s"
intrasite_schedule = "10m"
reply_timeout = "11s"

[network]
loss = 0.25
duplicate = 1
jitter = "50ms"
"#
    )
}

#[test]
fn defaults_and_overrides() {
    let s = parse(HEAD).unwrap();
    assert_eq!((s.seed, s.profile), (0, Profile::Exchange55));
    assert!(s.steps.is_empty());
    assert_eq!(s.connectors[0].schedule, None);

    let s = parse(&format!(
        "{HEAD}profile = \"ad\"\n" // after a table: belongs to it, so invalid
    ));
    assert!(s.unwrap_err().to_string().contains("connector[0].profile"));

    let s = parse(&overrides()).unwrap();
    assert_eq!((s.seed, s.profile), (42, Profile::Ad));
    let ms = Duration::from_millis;
    let c = &s.config;
    assert_eq!(
        [c.notify_delay, c.notify_spacing, c.intrasite_latency],
        [ms(1000), ms(2000), ms(3)]
    );
    assert_eq!((c.intrasite_packet, c.intersite_packet), (4, 5));
    assert_eq!(c.granularity, Granularity::Object);
    assert_eq!(c.tombstone_lifetime, ms(6 * 86_400_000));
    assert_eq!(c.gc_interval, ms(7 * 3_600_000));
    assert_eq!(c.restore, RestoreStrategy::FullResync);
    assert_eq!(c.backsync_timeout, ms(8 * 60_000));
    assert!(!c.rollback_detection);
    assert_eq!(
        [c.startup_delay, c.intrasite_schedule, c.reply_timeout],
        [ms(9000), ms(600_000), ms(11_000)]
    );
    // Not overridable from the file: still the AD profile's.
    let ad = ReplicationConfig::for_profile(Profile::Ad);
    assert_eq!(c.connector_schedule, ad.connector_schedule);
    assert_eq!(
        s.network,
        NetworkSpec {
            loss: 0.25,
            duplicate: 1.0,
            jitter: ms(50)
        }
    );
}

/// One step of every action, all valid.
fn all_actions() -> String {
    format!(
        r#"{HEAD}
[[step]]
do = "create"
server = "S1"
dn = "cn=a"
expect_refused = true
[[step]]
do = "modify"
server = "S1"
dn = "cn=a"
attrs = {{ x = "1" }}
remove = ["y"]
[[step]]
do = "delete"
server = "S3"
dn = "cn=a"
[[step]]
do = "load"
servers = ["S1", "S3"]
creates = 0
modifies = 5
deletes = 2
prefix = "u"
[[step]]
do = "backup"
server = "S3"
name = "b"
[[step]]
do = "crash"
server = "S3"
[[step]]
do = "restore"
server = "S3"
backup = "b"
[[step]]
do = "partition"
groups = [["S1"], ["S2", "S3"]]
[[step]]
do = "heal"
[[step]]
do = "delete_connector"
between = ["B", "A"]
[[step]]
do = "wait"
for = "90s"
[[step]]
do = "converge"
within = "1h"
expect = "diverged"
[[step]]
do = "expect"
server = "S2"
objects = 0
[[step]]
do = "expect"
server = "S2"
dn = "cn=a"
present = false
"#
    )
}

#[test]
fn every_action_parses() {
    let s = parse(&all_actions()).unwrap();
    let a: Vec<&Action> = s.steps.iter().map(|st| &st.action).collect();
    assert_eq!(
        a[0],
        &Action::Create {
            server: "S1".into(),
            dn: "cn=a".into(),
            attrs: BTreeMap::new(),
            expect_refused: true
        }
    );
    assert_eq!(
        a[1],
        &Action::Modify {
            server: "S1".into(),
            dn: "cn=a".into(),
            attrs: BTreeMap::from([("x".into(), "1".into())]),
            remove: vec!["y".into()],
            expect_refused: false
        }
    );
    assert!(matches!(
        a[2],
        Action::Delete {
            expect_refused: false,
            ..
        }
    ));
    assert_eq!(
        a[3],
        &Action::Load {
            servers: Some(vec!["S1".into(), "S3".into()]),
            creates: 0,
            modifies: 5,
            deletes: 2,
            prefix: Some("u".into())
        }
    );
    assert!(matches!(a[6], Action::Restore { strategy: None, .. }));
    assert_eq!(
        a[7],
        &Action::Partition {
            groups: vec![vec!["S1".into()], vec!["S2".into(), "S3".into()]]
        }
    );
    assert_eq!(a[8], &Action::Heal);
    assert_eq!(
        a[9],
        &Action::DeleteConnector {
            between: ["B".into(), "A".into()]
        }
    );
    assert_eq!(
        a[10],
        &Action::Wait {
            duration: Duration::from_secs(90)
        }
    );
    assert_eq!(
        a[11],
        &Action::Converge {
            within: Duration::from_secs(3600),
            expect: ConvergeExpect::Diverged,
            max_sim: None,
            max_objects_sent: None,
        }
    );
    assert_eq!(
        a[12],
        &Action::Expect {
            server: "S2".into(),
            check: ExpectCheck::Objects(0)
        }
    );
    assert!(matches!(
        a[13],
        Action::Expect {
            check: ExpectCheck::Dn { present: false, .. },
            ..
        }
    ));
}

#[test]
fn errors_name_file_line_column_and_field() {
    let e = err("[[step]]\ndo = \"crash\"\nserver = \"S9\"\n");
    assert_eq!(
        e.to_string(),
        "t.toml:13:10: field `step[0].server`: unknown server `S9` (servers: S1, S2, S3)"
    );
    assert_eq!((e.line, e.column), (Some(13), Some(10)));

    let e = err("[[step]]\ndo = \"crash\"\n");
    assert_eq!(e.field.as_deref(), Some("step[0].server"));
    assert_eq!(
        e.line,
        Some(11),
        "missing field: line of the [[step]] header"
    );

    let e = err("[[step]]\ndo = \"crash\"\nserver = \"S1\"\nbackup = \"x\"\n");
    assert!(e.message.contains("not a field of `do = \"crash\"`"), "{e}");

    let e = err(
        "[[step]]\ndo = \"modify\"\nserver = \"S1\"\ndn = \"x\"\nattrs = { a = \"1\", b = 2 }\n",
    );
    assert_eq!(e.field.as_deref(), Some("step[0].attrs.b"));

    let e = err("[[step]]\ndo = \"partition\"\ngroups = [[\"S1\"], [\"S2\", \"S9\"]]\n");
    assert_eq!(e.field.as_deref(), Some("step[0].groups[1][1]"));
    assert_eq!(e.column, Some(26));

    let e = parse("name = \"é\" x").unwrap_err();
    assert!(e.to_string().starts_with("t.toml:1:"), "{e}");
    assert!(e.message.starts_with("TOML syntax error"), "{e}");

    let e = parse("").unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml: field `name`: missing required field `name`"
    );
}

#[test]
fn cross_references() {
    let backup = "[[step]]\ndo = \"backup\"\nserver = \"S1\"\nname = \"n\"\n";
    let restore =
        |s: &str| format!("[[step]]\ndo = \"restore\"\nserver = \"{s}\"\nbackup = \"n\"\n");
    assert!(parse(&format!("{HEAD}{backup}{}", restore("S1"))).is_ok());
    let e = err(&format!("{}{backup}", restore("S1")));
    assert!(
        e.message
            .contains("used before it is taken (by step[1], line 15)"),
        "{e}"
    );
    let e = err(&format!("{backup}{}", restore("S2")));
    assert!(e.message.contains("taken from `S1`"), "{e}");
    // The same name on the same server again replaces the backup...
    parse(&format!("{HEAD}{backup}{backup}")).expect("a nightly backup may be retaken");
    // ...on another server it is ambiguous.
    let e = err(&format!("{backup}{}", backup.replace("S1", "S2")));
    assert!(e.message.contains("already taken by step[0]"), "{e}");

    let del = "[[step]]\ndo = \"delete_connector\"\nbetween = [\"A\", \"B\"]\n";
    let e = err(&format!("{del}{del}"));
    assert!(e.message.contains("already deleted by step[0]"), "{e}");
}

/// A tiny deterministic generator: the fuzz loops need no extra dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn mutated_and_random_input_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let bases = [EXAMPLE.to_string(), all_actions()];
    // Bytes that matter to TOML and to this parser.
    let alphabet = b"[]{}=\",.#\n -0123456789.eE_+'\\\x00\xff\xc3truefalsminhd";
    let mut ok = 0;
    for round in 0..4000 {
        let mut b = bases[round % 2].as_bytes().to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(b.len());
            match rng.below(5) {
                0 => {
                    b.remove(at);
                }
                1 => b.insert(at, alphabet[rng.below(alphabet.len())]),
                2 => b[at] = alphabet[rng.below(alphabet.len())],
                3 => b.truncate(at),
                _ => {
                    // Duplicate a random line: repeated keys, tables, steps.
                    let text = String::from_utf8_lossy(&b).to_string();
                    let lines: Vec<&str> = text.lines().collect();
                    let line = lines[rng.below(lines.len())].to_string();
                    b.splice(at..at, format!("\n{line}\n").into_bytes());
                }
            }
            if b.is_empty() {
                b.push(b'x');
            }
        }
        match Scenario::from_bytes(&b, "fuzz.toml") {
            Ok(_) => ok += 1,
            Err(e) => {
                let shown = e.to_string();
                assert!(shown.starts_with("fuzz.toml"), "{shown}");
                assert!(!shown.contains('\n'), "one line: {shown}");
            }
        }
    }
    assert!(ok > 0, "some mutations (comments, values) stay valid");
    for _ in 0..2000 {
        let n = rng.below(200);
        let b: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        let _ = Scenario::from_bytes(&b, "random.toml");
        let t: Vec<u8> = (0..n)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let _ = Scenario::from_bytes(&t, "random.toml");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!(
        "name = \"x\"\na = {}{}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(parse(&deep).is_err());
    let deep = format!(
        "name = \"x\"\na = {}1{}",
        "{b=".repeat(50_000),
        "}".repeat(50_000)
    );
    assert!(parse(&deep).is_err());
}

#[test]
fn messages_stay_on_one_line() {
    let e = err("[[step]]\ndo = \"crash\"\nserver = \"S\\n1\"\n");
    assert!(e.to_string().contains("unknown server `S\\n1`"), "{e}");
    let e = parse(&format!("step = [1]\n{HEAD}")).unwrap_err();
    assert!(
        e.message
            .contains("found a list with an item of type integer"),
        "{e}"
    );
}

#[test]
fn the_more_checks_parse_to_their_actions() {
    let text = format!(
        "{HEAD}{}",
        r#"
[[step]]
do = "converge"
within = "2h"
max_sim = "30m"
max_objects_sent = 12
[[step]]
do = "expect"
server = "S1"
dn = "cn=A"
tombstone = true
[[step]]
do = "expect"
server = "S2"
state = "quarantined"
[[step]]
do = "expect"
server = "S1"
answered_by = ["S3", "S2"]
[[step]]
do = "expect"
server = "S1"
answered_by = []
[[step]]
do = "expect"
lost_unreplicated = 3
"#
    );
    let s = parse(&text).unwrap();
    let a: Vec<&Action> = s.steps.iter().map(|s| &s.action).collect();
    assert_eq!(
        a[0],
        &Action::Converge {
            within: Duration::from_secs(7200),
            expect: ConvergeExpect::Converged,
            max_sim: Some(Duration::from_secs(1800)),
            max_objects_sent: Some(12),
        }
    );
    let expect = |server: &str, check| Action::Expect {
        server: server.into(),
        check,
    };
    assert_eq!(
        a[1],
        &expect("S1", ExpectCheck::Tombstone { dn: "cn=A".into() })
    );
    assert_eq!(
        a[2],
        &expect("S2", ExpectCheck::State(ServerState::Quarantined))
    );
    assert_eq!(
        a[3],
        &expect(
            "S1",
            ExpectCheck::AnsweredBy(vec!["S3".into(), "S2".into()])
        )
    );
    assert_eq!(a[4], &expect("S1", ExpectCheck::AnsweredBy(Vec::new())));
    assert_eq!(
        a[5],
        &Action::ExpectLost {
            lost_unreplicated: 3
        }
    );
    assert!(a.iter().all(|a| ["converge", "expect"].contains(&a.name())));
}

/// `s` with every step's line set to 0: lines follow the text.
fn unlined(mut s: Scenario) -> Scenario {
    s.steps.iter_mut().for_each(|st| st.line = 0);
    s
}

/// Writes `s` and reads it back: the same scenario, and the same text again.
fn round_trip(s: &Scenario) -> String {
    let text = s.to_toml();
    let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(unlined(back.clone()), unlined(s.clone()), "{text}");
    assert_eq!(back.to_toml(), text, "writing is stable");
    text
}

#[test]
fn every_shipped_scenario_reads_back_from_its_written_form() {
    let mut n = 0;
    for entry in std::fs::read_dir("scenarios").unwrap() {
        let path = entry.unwrap().path();
        let s = Scenario::from_path(&path).unwrap_or_else(|e| panic!("{e}"));
        round_trip(&s);
        n += 1;
    }
    assert!(n >= 10, "{n} scenarios");
    for text in [all_actions(), overrides(), HEAD.to_string()] {
        round_trip(&parse(&text).unwrap());
    }
}

#[test]
fn the_written_form_is_plain_toml_in_the_documented_shape() {
    let text = round_trip(&parse(&all_actions()).unwrap());
    for line in [
        "name = \"t\"\nseed = 0\nprofile = \"exchange55\"\n",
        "\n[[site]]\nname = \"A\"\nservers = [\"S1\", \"S2\"]\n",
        "\n[[connector]]\nbetween = [\"A\", \"B\"]\nbridgeheads = [\"S2\", \"S3\"]\n",
        "\n[[step]]\ndo = \"create\"\nserver = \"S1\"\ndn = \"cn=a\"\nexpect_refused = true\n",
        "\n[step.attrs]\nx = \"1\"\n",
        "\n[[step]]\ndo = \"wait\"\nfor = \"90s\"\n",
        "\n[[step]]\ndo = \"heal\"\n",
        "\n[[step]]\ndo = \"converge\"\nwithin = \"1h\"\nexpect = \"diverged\"\n",
        "groups = [[\"S1\"], [\"S2\", \"S3\"]]\n",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    assert!(
        !text.contains("[replication]") && !text.contains("[network]"),
        "{text}"
    );
    let text = round_trip(&parse(&overrides()).unwrap());
    assert!(
        text.contains("[replication]\nnotify_delay = \"1s\"\n"),
        "{text}"
    );
    assert!(
        text.contains("[network]\nloss = 0.25\nduplicate = 1.0\njitter = \"50ms\"\n"),
        "{text}"
    );
}

#[test]
fn durations_are_written_in_the_largest_exact_unit() {
    use super::format::duration_text;
    let cases = [
        (Duration::from_secs(90), "90s"),
        (Duration::from_secs(7200), "2h"),
        (Duration::from_millis(1500), "1500ms"),
        (Duration::from_secs(2 * 86_400), "2d"),
        (Duration::from_secs(36 * 3600), "36h"),
        (Duration::ZERO, "0ms"),
    ];
    for (d, text) in cases {
        assert_eq!(duration_text(d), text);
        assert_eq!(crate::config::parse_duration(text), Ok(d));
    }
}
