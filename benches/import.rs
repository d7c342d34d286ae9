//! Importing a generated `ldifde`-shaped export of 1,000 domain controllers
//! in 100 sites (`Forest::from_ldif`), and the LDIF reader alone.
//!
//! `cargo bench --bench import`.

// The command line's allocator, so these figures are comparable with
// `backsync bench`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use backsync::import::{Forest, ldif, synthetic_forest_ldif};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn import(c: &mut Criterion) {
    let text = synthetic_forest_ldif(100, 1000);
    let mut g = c.benchmark_group("import");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("forest_1000_dcs_100_sites", |b| {
        b.iter(|| Forest::from_ldif(&text).unwrap())
    });
    g.bench_function("ldif_parse_1000_dcs_100_sites", |b| {
        b.iter(|| ldif::parse(&text).unwrap())
    });
    g.finish();
}

criterion_group!(benches, import);
criterion_main!(benches);
