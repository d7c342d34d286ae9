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
            strategy: Some(RestoreStrategy::Backsync),
            subtree: None,
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
        if path.extension().is_none_or(|e| e != "toml") {
            continue; // scenarios/forests: the LDIF exports they import
        }
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

/// Any valid scenario, written and read back, is the same scenario.
mod written {
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    use super::*;
    use crate::limits::MAX_DURATION;

    /// Any string that is not blank: quotes, escapes, control characters.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[a-z \"'\\\\\n\t=.,#\\[\\]{}]{1,8}"]
            .prop_filter("not blank", |s| !s.trim().is_empty())
    }

    fn delay() -> impl Strategy<Value = Duration> {
        let max = MAX_DURATION.as_millis() as u64;
        prop_oneof![
            (0..=max).prop_map(Duration::from_millis),
            (0..=3650u64).prop_map(|d| Duration::from_secs(d * 86_400)),
            (0..=100u64).prop_map(|m| Duration::from_secs(m * 60)),
        ]
    }

    fn period() -> impl Strategy<Value = Duration> {
        delay().prop_map(|d| d.max(Duration::from_millis(1)))
    }

    /// A wait or converge limit: 30 of them stay within the total.
    fn step_time() -> impl Strategy<Value = Duration> {
        period().prop_map(|d| d.min(Duration::from_secs(1000 * 86_400)))
    }

    fn config() -> impl Strategy<Value = (Profile, ReplicationConfig)> {
        let p = prop_oneof![Just(Profile::Exchange55), Just(Profile::Ad)];
        let strategy = proptest::sample::select(RestoreStrategy::ALL.to_vec());
        let g = prop_oneof![Just(Granularity::Object), Just(Granularity::Attribute)];
        let packet = 1..=crate::limits::MAX_PACKET as usize;
        let durations = (delay(), delay(), delay(), delay(), delay());
        let periods = (period(), period(), period(), period());
        let rest = (
            packet.clone(),
            packet,
            g,
            strategy,
            any::<bool>(),
            any::<u8>(),
        );
        (p, durations, periods, rest).prop_map(|(p, d, t, r)| {
            let mut c = ReplicationConfig::for_profile(p);
            // Some settings are overridden, others keep the profile's value.
            let keep = r.5;
            let mut set = |bit: u8, f: &mut dyn FnMut(&mut ReplicationConfig)| {
                if keep & (1 << bit) == 0 {
                    f(&mut c);
                }
            };
            set(0, &mut |c| (c.notify_delay, c.notify_spacing) = (d.0, d.1));
            set(1, &mut |c| {
                (c.intrasite_latency, c.tombstone_lifetime) = (d.2, d.3)
            });
            set(2, &mut |c| (c.startup_delay, c.gc_interval) = (d.4, t.0));
            set(3, &mut |c| {
                (c.backsync_timeout, c.intrasite_schedule) = (t.1, t.2)
            });
            set(4, &mut |c| {
                (c.reply_timeout, c.intrasite_packet) = (t.3, r.0)
            });
            set(5, &mut |c| (c.intersite_packet, c.granularity) = (r.1, r.2));
            set(6, &mut |c| (c.restore, c.rollback_detection) = (r.3, r.4));
            set(7, &mut |c| c.strict_replication = r.0 % 2 == 0);
            (p, c)
        })
    }

    /// What a step does, its names picked among the scenario's later.
    #[derive(Debug, Clone)]
    enum Seed {
        Write(u8, String, BTreeMap<String, String>, Vec<String>, bool),
        Load(bool, u64, u64, u64, Option<String>),
        BackupRestore(Option<RestoreStrategy>),
        Partition,
        Heal,
        Release(bool),
        DeleteConnector(usize),
        Wait(Duration),
        Converge(Duration, bool, Option<Duration>, Option<u64>),
        Expect(u8, String, BTreeMap<String, String>, u64),
        ExpectLost(u64),
    }

    /// A dn a write can name: one to three `type=value` rdns.
    fn dn() -> impl Strategy<Value = String> {
        "[a-zA-Z]{1,3}=[^,\\\\\\s][^,\\\\]{0,6}(,[a-zA-Z]{1,3}=[^,\\\\\\s][^,\\\\]{0,6}){0,2}"
    }

    fn seed() -> impl Strategy<Value = Seed> {
        let attrs = || btree_map(text(), any::<String>(), 0..3);
        let count = 0..=crate::limits::MAX_COUNT;
        prop_oneof![
            (0..3u8, dn(), attrs(), vec(text(), 0..3), any::<bool>())
                .prop_map(|(k, dn, a, r, x)| Seed::Write(k, dn, a, r, x)),
            (
                any::<bool>(),
                0..1000u64,
                0..1000u64,
                0..1000u64,
                proptest::option::of("[a-z0-9_]{1,6}")
            )
                .prop_map(|(s, c, m, d, p)| Seed::Load(s, c, m, d, p)),
            proptest::option::of(proptest::sample::select(RestoreStrategy::ALL.to_vec()))
                .prop_map(Seed::BackupRestore),
            Just(Seed::Partition),
            Just(Seed::Heal),
            any::<bool>().prop_map(Seed::Release),
            any::<usize>().prop_map(Seed::DeleteConnector),
            step_time().prop_map(Seed::Wait),
            (
                step_time(),
                any::<bool>(),
                proptest::option::of(delay()),
                proptest::option::of(0..=crate::limits::MAX_OBJECTS_SENT)
            )
                .prop_map(|(w, d, s, o)| Seed::Converge(w, d, s, o)),
            (0..6u8, text(), attrs(), count.clone())
                .prop_map(|(k, dn, a, n)| Seed::Expect(k, dn, a, n)),
            count.prop_map(Seed::ExpectLost),
        ]
    }

    fn scenario() -> impl Strategy<Value = Scenario> {
        let sites = vec((text(), 1..4usize), 1..4);
        let connectors = vec(
            (
                any::<bool>(),
                proptest::option::of(period()),
                proptest::option::of(delay()),
            ),
            3,
        );
        let network = (
            0.0..=1.0f64,
            prop_oneof![Just(0.0), Just(1.0), 0.0..=1.0f64],
            delay(),
        );
        // One-way connections instead of connectors, and read-only servers:
        // windows any set of quarter hours (every one must round-trip).
        let windows = prop_oneof![
            Just(crate::core::WeekWindows::always()),
            Just(crate::core::WeekWindows::never()),
            vec(0u8..16, 168).prop_map(|h| {
                crate::core::WeekWindows::from_hours(&h.try_into().expect("168 hours"))
            }),
        ];
        let links = (
            any::<bool>(),
            vec(any::<bool>(), 12),
            vec(
                (
                    any::<usize>(),
                    any::<usize>(),
                    proptest::option::of(period()),
                    proptest::option::of(windows),
                    proptest::option::of(delay()),
                ),
                0..6,
            ),
        );
        (
            text(),
            any::<u64>(),
            config(),
            sites,
            connectors,
            network,
            vec((seed(), any::<usize>()), 0..30),
            links,
        )
            .prop_map(
                |(name, seed, (profile, config), sites, conns, net, seeds, links)| {
                    let (use_connections, ro, links) = links;
                    let mut sites: Vec<SiteSpec> = (sites.iter().enumerate())
                        .map(|(i, (n, k))| SiteSpec {
                            name: format!("{n} #{i}"),
                            servers: (0..*k).map(|j| format!("{n} #{i}.{j}")).collect(),
                            read_only: Vec::new(),
                        })
                        .collect();
                    let mut connections = Vec::new();
                    if use_connections {
                        let mut k = 0;
                        for site in &mut sites {
                            for s in &site.servers {
                                if ro[k % ro.len()] {
                                    site.read_only.push(s.clone());
                                }
                                k += 1;
                            }
                        }
                        let all: Vec<String> =
                            sites.iter().flat_map(|s| s.servers.clone()).collect();
                        let writable: Vec<String> = (all.iter())
                            .filter(|s| !sites.iter().any(|x| x.read_only.contains(s)))
                            .cloned()
                            .collect();
                        for (a, b, schedule, windows, latency) in links {
                            if writable.is_empty() {
                                break;
                            }
                            let from = writable[a % writable.len()].clone();
                            let to = all[b % all.len()].clone();
                            let dup = (connections.iter())
                                .any(|c: &ConnectionSpec| c.from == from && c.to == to);
                            if from != to && !dup {
                                connections.push(ConnectionSpec {
                                    from,
                                    to,
                                    schedule,
                                    windows,
                                    latency,
                                });
                            }
                        }
                    }
                    let conns = if connections.is_empty() {
                        conns
                    } else {
                        Vec::new()
                    };
                    let connectors: Vec<ConnectorSpec> = (sites.windows(2).zip(conns))
                        .filter(|(_, c)| c.0)
                        .map(|(w, (_, schedule, latency))| ConnectorSpec {
                            between: [w[0].name.clone(), w[1].name.clone()],
                            bridgeheads: [w[0].servers[0].clone(), w[1].servers[0].clone()],
                            schedule,
                            latency,
                        })
                        .collect();
                    let all: Vec<String> = sites.iter().flat_map(|s| s.servers.clone()).collect();
                    let mut actions = Vec::new();
                    let mut deleted = Vec::new();
                    for (seed, pick) in seeds {
                        let server = all[pick % all.len()].clone();
                        actions.extend(actions_of(
                            seed,
                            server,
                            &all,
                            &connectors,
                            &mut deleted,
                            actions.len(),
                        ));
                    }
                    let steps = (actions.into_iter().enumerate())
                        .map(|(index, action)| Step {
                            index,
                            line: 0,
                            action,
                        })
                        .collect();
                    let network = NetworkSpec {
                        loss: net.0,
                        duplicate: net.1,
                        jitter: net.2,
                    };
                    Scenario {
                        name,
                        seed,
                        profile,
                        sites,
                        connectors,
                        connections,
                        config,
                        network,
                        steps,
                    }
                },
            )
    }

    /// The valid steps of `seed`, on `server`.
    fn actions_of(
        seed: Seed,
        server: String,
        all: &[String],
        connectors: &[ConnectorSpec],
        deleted: &mut Vec<usize>,
        at: usize,
    ) -> Vec<Action> {
        let expect = |check| Action::Expect {
            server: server.clone(),
            check,
        };
        vec![match seed {
            Seed::Write(0, dn, attrs, _, expect_refused) => Action::Create {
                server,
                dn,
                attrs,
                expect_refused,
            },
            Seed::Write(1, dn, mut attrs, remove, expect_refused) => {
                let remove: Vec<String> = remove
                    .into_iter()
                    .filter(|r| !attrs.contains_key(r))
                    .collect();
                if remove.is_empty() {
                    attrs.insert("mail".into(), String::new());
                }
                Action::Modify {
                    server,
                    dn,
                    attrs,
                    remove,
                    expect_refused,
                }
            }
            Seed::Write(_, dn, _, _, expect_refused) => Action::Delete {
                server,
                dn,
                tree: false,
                expect_refused,
            },
            Seed::Load(some, creates, modifies, deletes, prefix) => Action::Load {
                servers: some.then(|| vec![server]),
                creates,
                modifies,
                deletes,
                prefix,
            },
            Seed::BackupRestore(strategy) => {
                let backup = format!("b{at}");
                return vec![
                    Action::Backup {
                        server: server.clone(),
                        name: backup.clone(),
                    },
                    Action::Crash {
                        server: server.clone(),
                    },
                    Action::Restore {
                        server,
                        backup,
                        strategy,
                        // Valid only on an authoritative restore.
                        subtree: (strategy == Some(RestoreStrategy::Authoritative))
                            .then(|| "ou=Sales".to_string()),
                    },
                ];
            }
            Seed::Partition if all.len() > 1 => Action::Partition {
                groups: vec![all[..1].to_vec(), all[1..].to_vec()],
            },
            Seed::Partition | Seed::Heal => Action::Heal,
            Seed::Release(expect_refused) => Action::Release {
                server,
                expect_refused,
            },
            Seed::DeleteConnector(c)
                if !connectors.is_empty() && !deleted.contains(&(c % connectors.len())) =>
            {
                deleted.push(c % connectors.len());
                Action::DeleteConnector {
                    between: connectors[c % connectors.len()].between.clone(),
                }
            }
            Seed::DeleteConnector(_) => Action::Heal,
            Seed::Wait(duration) => Action::Wait { duration },
            Seed::Converge(within, diverged, max_sim, max_objects_sent) => Action::Converge {
                within,
                expect: if diverged {
                    ConvergeExpect::Diverged
                } else {
                    ConvergeExpect::Converged
                },
                max_sim,
                max_objects_sent,
            },
            Seed::Expect(0, dn, attrs, _) => expect(ExpectCheck::Dn {
                dn,
                present: true,
                attrs,
            }),
            Seed::Expect(1, dn, ..) => expect(ExpectCheck::Dn {
                dn,
                present: false,
                attrs: BTreeMap::new(),
            }),
            Seed::Expect(2, _, _, n) => expect(ExpectCheck::Objects(n)),
            Seed::Expect(3, dn, ..) => expect(ExpectCheck::Tombstone { dn }),
            Seed::Expect(4, _, _, n) => {
                let states = [
                    ServerState::Running,
                    ServerState::Backsync,
                    ServerState::Quarantined,
                    ServerState::Down,
                ];
                expect(ExpectCheck::State(states[n as usize % 4]))
            }
            Seed::Expect(_, _, _, n) => expect(ExpectCheck::AnsweredBy(
                all.iter().skip(n as usize % 3).cloned().collect(),
            )),
            Seed::ExpectLost(lost_unreplicated) => Action::ExpectLost { lost_unreplicated },
        }]
    }

    proptest! {
        #[test]
        fn a_written_scenario_reads_back_equal(s in scenario()) {
            super::round_trip(&s);
        }
    }
}

#[test]
fn windows_read_wrap_and_write_back_per_day() {
    let text = r#"
name = "w"
[[site]]
name = "A"
servers = ["S1", "S2"]
[[connection]]
from = "S1"
to = "S2"
windows = ["mon-fri 20:00-06:00", "sat 00:00-24:00"]
"#;
    let s = Scenario::from_str(text, "w.toml").unwrap();
    let w = s.connections[0].windows.clone().unwrap();
    let h = |h: u64, m: u64| Duration::from_secs(h * 3600 + m * 60);
    // Monday 20:00 to Tuesday 06:00; Friday night runs into Saturday.
    assert!(w.is_open(h(24 + 20, 0)) && w.is_open(h(48 + 5, 45)));
    assert!(!w.is_open(h(48 + 6, 0)) && !w.is_open(h(24 + 19, 45)));
    assert!(!w.is_open(h(0, 0)) && !w.is_open(h(24 + 5, 0)));
    let written = s.to_toml();
    assert!(
        written.contains(r#"windows = ["mon 20:00-24:00", "tue-fri 00:00-06:00", "tue-fri 20:00-24:00", "sat 00:00-24:00"]"#),
        "{written}"
    );
    assert_eq!(
        Scenario::from_str(&written, "again.toml")
            .unwrap()
            .connections,
        s.connections
    );
    for (bad, want) in [
        ("mon 20:10-21:00", "not on a quarter hour"),
        ("mo 20:00-21:00", "unknown day `mo`"),
        ("mon 20:00-20:00", "is empty"),
        ("mon 25:00-26:00", "not a time of day"),
        ("mon", "expected a window like"),
    ] {
        let t = text.replace("mon-fri 20:00-06:00", bad);
        let e = Scenario::from_str(&t, "w.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("w.toml:9:12: field `connection[0].windows[0]`: "),
            "{e}"
        );
        assert!(e.contains(want), "{e}");
    }
}
