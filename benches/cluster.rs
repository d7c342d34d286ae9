//! Whole-cluster benches on the deterministic cluster: convergence after N
//! writes for 4, 16 and 64 servers, and the restore strategies compared on
//! the same directory.
//!
//! `cargo bench --bench cluster`; figures in docs/PERFORMANCE.md.

// The command line's allocator, so these figures are comparable with
// `backsync bench`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use backsync::bench::{hub_topology, restore_fixture, restore_once};
use backsync::{Cluster, LoadSpec, ReplicationConfig, RestoreStrategy};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// (4) N writes spread over every server, then convergence (Exchange 5.5
/// defaults, sites of four servers joined hub and spoke).
fn convergence(c: &mut Criterion) {
    let writes = 1000u64;
    let mut g = c.benchmark_group("converge_after_writes");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(writes));
    for servers in [4usize, 16, 64] {
        let t = hub_topology(servers, 4);
        g.bench_with_input(BenchmarkId::from_parameter(servers), &servers, |b, _| {
            b.iter_batched(
                || Cluster::new(&t, ReplicationConfig::default(), 7).expect("valid topology"),
                |mut c| {
                    c.load(&LoadSpec {
                        creates: writes,
                        ..LoadSpec::default()
                    })
                    .expect("load");
                    assert!(
                        c.converge(Duration::from_secs(7 * 86_400))
                            .unwrap()
                            .converged
                    );
                    c
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// (5) Restore to convergence on the same directory (100k objects, 1,000
/// created on the restored server after its backup): backsync, full
/// resync, new invocation id. The crash between runs is not timed.
fn restore(c: &mut Criterion) {
    let mut cluster = restore_fixture(100_000, 1000, 7).expect("fixture");
    let mut g = c.benchmark_group("restore_100k_lost_1000");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for s in [
        RestoreStrategy::Backsync,
        RestoreStrategy::FullResync,
        RestoreStrategy::NewInvocation,
    ] {
        g.bench_function(s.as_str(), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        restore_once(&mut cluster, s)
                            .expect("restore converges")
                            .total
                    })
                    .sum()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, convergence, restore);
criterion_main!(benches);
