//! Protocol-core benches: apply vs a `HashMap` of `Arc`ed states, the GetChanges
//! scan, and the backsync answer by index vs by full-table scan.
//!
//! `cargo bench --bench core`; figures in docs/PERFORMANCE.md.

// The command line's allocator, so these figures are comparable with
// `backsync bench`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use backsync::Granularity;
use backsync::bench::{
    BaselineMap, apply_all, backsync_fixture, baseline_apply, core_config, modify_all, replicated,
    source,
};
use backsync::core::{Dsa, GetChanges, InvocationId, PullKind, UpToDatenessVector, Usn};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn quick(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

fn empty() -> Dsa {
    Dsa::new(
        "D".into(),
        InvocationId(9),
        core_config(Granularity::Object),
    )
}

/// (1) Applying replicated objects, core vs the `HashMap<u128, Arc<_>>` +
/// USN log baseline, in one group: inserts into an empty replica, then newer
/// versions of every object.
fn apply(c: &mut Criterion) {
    let n = 10_000;
    let mut src = source(1, n, "obj");
    let v1 = replicated(&src);
    modify_all(&mut src, "obj");
    let v2 = replicated(&src);
    let mut g = c.benchmark_group("apply");
    quick(&mut g);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("core/insert", |b| {
        b.iter_batched(
            empty,
            |mut d| {
                apply_all(&mut d, &v1);
                d
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("core/update", |b| {
        b.iter_batched(
            || {
                let mut d = empty();
                apply_all(&mut d, &v1);
                d
            },
            |mut d| {
                apply_all(&mut d, &v2);
                d
            },
            BatchSize::LargeInput,
        )
    });
    // The floor: the same `Arc` states into a `HashMap` with the table's
    // guid hasher, plus one push to a USN log per change.
    let fresh = || (BaselineMap::default(), Vec::new(), Usn(0));
    let all = |(m, log, usn): &mut (BaselineMap, Vec<(Usn, u128)>, Usn), v: &[_]| {
        for o in v {
            baseline_apply(m, log, usn, o);
        }
    };
    g.bench_function("arc_map_baseline/insert", |b| {
        b.iter_batched(
            fresh,
            |mut st| {
                all(&mut st, &v1);
                st
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("arc_map_baseline/update", |b| {
        b.iter_batched(
            || {
                let mut st = fresh();
                all(&mut st, &v1);
                st
            },
            |mut st| {
                all(&mut st, &v2);
                st
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn request_from_zero(src: &Dsa, utdv: UpToDatenessVector, max: usize) -> GetChanges {
    GetChanges {
        get_anc: false,
        request_id: 1,
        requester: "D".into(),
        requester_invocation: InvocationId(9),
        source_invocation: Some(src.invocation()),
        from_usn: Usn(0),
        utdv,
        kind: PullKind::Normal,
        max_objects: max,
    }
}

/// (2) The GetChanges scan: everything sent, and everything dampened
/// (the requester's vector covers it all: the scan alone).
fn get_changes(c: &mut Criterion) {
    let mut g = c.benchmark_group("get_changes");
    quick(&mut g);
    for n in [10_000usize, 100_000] {
        let src = source(1, n, "obj");
        g.throughput(Throughput::Elements(n as u64));
        let all = request_from_zero(&src, UpToDatenessVector::default(), n);
        g.bench_with_input(BenchmarkId::new("send_all", n), &n, |b, _| {
            b.iter(|| src.answer(&all))
        });
        let mut held = UpToDatenessVector::default();
        held.raise(src.invocation(), src.usn());
        let none = request_from_zero(&src, held, n);
        g.bench_with_input(BenchmarkId::new("dampened", n), &n, |b, _| {
            b.iter(|| src.answer(&none))
        });
    }
    g.finish();
}

/// (3) Answering a backsync request (1,000 objects originated by the
/// requester since its backup) on 10k, 100k and 1M objects: by the
/// by-origin index, and by a full-table scan next to it.
fn backsync_answer(c: &mut Criterion) {
    let mut g = c.benchmark_group("backsync_answer");
    quick(&mut g);
    g.throughput(Throughput::Elements(1000));
    for n in [10_000usize, 100_000, 1_000_000] {
        let (partner, req) = backsync_fixture(n, 1000);
        assert_eq!(partner.answer(&req).changes.len(), 1000);
        g.bench_with_input(BenchmarkId::new("index", n), &n, |b, _| {
            b.iter(|| partner.answer(&req))
        });
        if n == 1_000_000 {
            g.sample_size(10);
        }
        g.bench_with_input(BenchmarkId::new("full_scan", n), &n, |b, _| {
            b.iter(|| partner.answer_backsync_by_scan(&req))
        });
    }
    g.finish();
}

criterion_group!(benches, apply, get_changes, backsync_answer);
criterion_main!(benches);
