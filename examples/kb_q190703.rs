//! The story of Microsoft KB article Q190703 in code: UserA is created on
//! Server1 after its last backup, replicates to the other servers (also to
//! another site), Server1 is restored from that backup, and backsync brings
//! UserA back.
//!
//! Run: `cargo run --release --example kb_q190703`

use std::process::ExitCode;
use std::time::Duration;

use backsync::{Cluster, LoadSpec, ReplicationConfig, RestoreStrategy, Topology, fmt_duration};

fn main() -> Result<ExitCode, backsync::ClusterError> {
    let topology = Topology::new()
        .site("Redmond", &["Server1", "Server2"])
        .site("Dublin", &["Server3", "Server4"])
        .connector(["Redmond", "Dublin"], ["Server2", "Server3"]);
    let mut c = Cluster::new(&topology, ReplicationConfig::default(), 1)?;
    let hours = Duration::from_secs(2 * 3600);
    let at = |c: &Cluster| format!("{:>14}", fmt_duration(c.now()));

    c.load(&LoadSpec {
        creates: 1000,
        ..LoadSpec::default()
    })?;
    let first = c.converge(hours)?;
    println!(
        "{}  1000 objects loaded, converged after {}",
        at(&c),
        fmt_duration(Duration::from_millis(first.sim_ms))
    );

    c.backup("Server1", "nightly")?;
    println!("{}  backup `nightly` of Server1", at(&c));
    c.create(
        "Server1",
        "cn=UserA,ou=Users",
        &[("mail", "usera@example.com")],
    )?;
    println!(
        "{}  Server1 creates cn=UserA,ou=Users (after the backup)",
        at(&c)
    );
    c.converge(hours)?;
    println!(
        "{}  UserA has replicated to every server, Dublin included",
        at(&c)
    );

    c.crash("Server1")?;
    println!("{}  Server1 crashes", at(&c));
    let before = c.events().len();
    c.restore("Server1", "nightly", Some(RestoreStrategy::Backsync))?;
    println!(
        "{}  Server1 restored from `nightly`: UserA is not in it; backsync asks every directory",
        at(&c)
    );
    let done = c.converge(hours)?;
    for e in &c.events()[before..] {
        if e.text.contains("backsync") {
            println!(
                "{:>14}  {}",
                fmt_duration(Duration::from_millis(e.sim_ms)),
                e.text
            );
        }
    }
    let usera = c.lookup("Server1", "cn=UserA,ou=Users")?;
    println!(
        "{}  converged after {} simulated ({} messages, {} objects sent, {} repaired)",
        at(&c),
        fmt_duration(Duration::from_millis(done.sim_ms)),
        done.messages,
        done.objects_sent,
        done.objects_repaired
    );
    match usera {
        Some(o) if done.converged => {
            println!("UserA is back on Server1: mail = {}", o.attrs["mail"]);
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            println!("UserA did not come back");
            Ok(ExitCode::FAILURE)
        }
    }
}
