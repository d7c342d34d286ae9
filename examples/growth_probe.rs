use backsync::bench::*;
use backsync::RestoreStrategy;
fn main() {
    let n: u64 = std::env::args().nth(1).unwrap().parse().unwrap();
    let reps: usize = std::env::args().nth(2).map_or(5, |s| s.parse().unwrap());
    let t = std::time::Instant::now();
    let mut c = growth_fixture(n, 7).unwrap();
    eprintln!("fixture {:?}", t.elapsed());
    for _ in 0..reps {
        let r = restore_once(&mut c, RestoreStrategy::Backsync).unwrap();
        println!("{n}: restore {:?} converge {:?} total {:?}", r.restore, r.converge, r.total);
    }
}
