//! One topology, one restore, each strategy side by side: converged or not,
//! simulated time, messages, objects sent, writes lost.
//!
//! Run: `cargo run --release --example restore_strategies`

use std::time::Duration;

use backsync::{Cluster, LoadSpec, ReplicationConfig, RestoreStrategy, Topology, fmt_duration};

fn main() -> Result<(), backsync::ClusterError> {
    let topology = Topology::new()
        .site("Redmond", &["Server1", "Server2"])
        .site("Dublin", &["Server3", "Server4"])
        .connector(["Redmond", "Dublin"], ["Server2", "Server3"]);
    let bound = Duration::from_secs(6 * 3600);
    println!(
        "{:<15} {:<10} {:>12} {:>9} {:>13} {:>5}  write after restore reached Server4",
        "strategy", "result", "simulated", "messages", "objects sent", "lost"
    );
    for strategy in RestoreStrategy::ALL {
        let mut c = Cluster::new(&topology, ReplicationConfig::default(), 42)?;
        c.load(&LoadSpec {
            creates: 5000,
            ..LoadSpec::default()
        })?;
        c.converge(bound)?;
        c.backup("Server1", "nightly")?;
        // 200 writes on Server1 after its backup; some reach partners, the
        // last ones do not before it crashes.
        c.load(&LoadSpec {
            servers: vec!["Server1".into()],
            creates: 150,
            modifies: 50,
            prefix: Some("late".into()),
            ..LoadSpec::default()
        })?;
        c.converge(bound)?;
        c.create("Server1", "cn=Unreplicated", &[])?;
        c.crash("Server1")?;
        c.restore("Server1", "nightly", Some(strategy))?;
        let r = c.converge(bound)?;
        // A write right after the restore (refused while backsync runs).
        c.wait(Duration::from_secs(600));
        let write = c.create("Server1", "cn=AfterRestore", &[]);
        let after = c.converge(bound)?;
        let reached = c.lookup("Server4", "cn=AfterRestore")?.is_some();
        println!(
            "{:<15} {:<10} {:>12} {:>9} {:>13} {:>5}  {}",
            strategy.as_str(),
            if r.converged && after.converged {
                "converged"
            } else {
                "diverged"
            },
            fmt_duration(Duration::from_millis(r.sim_ms)),
            r.messages,
            r.objects_sent,
            c.lost_unreplicated()?,
            match (write, reached) {
                (Err(e), _) => format!("refused: {e}"),
                (Ok(_), true) => "yes".into(),
                (Ok(_), false) => "NO: the partners skip its reused USNs".into(),
            }
        );
    }
    Ok(())
}
