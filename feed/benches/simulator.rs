//! How fast the simulator generates the market, without Kafka: one simulated second of the
//! eight default products (about 24 chain snapshots, 25 ticks and 30 quotes).
//!
//! `cargo bench -p chainflow-feed --bench simulator`

#![allow(missing_docs, reason = "criterion_group! generates the undocumented entry point")]

use chainflow_config::{default_products, ProductSpec};
use chainflow_feed::sim::{Pricing, Scenario, SimOptions, Simulator};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn simulated_second(c: &mut Criterion) {
    let specs: Vec<ProductSpec> = default_products()
        .into_iter()
        .map(|(n, p)| ProductSpec::new(&n, p).unwrap())
        .collect();
    let mut group = c.benchmark_group("simulator");
    for scenario in [Scenario::Normal, Scenario::Crash] {
        let options = SimOptions {
            seed: 1,
            start_us: 1_737_949_500_000_000,
            scenario,
            pricing: Pricing::Ticks,
        };
        let mut sim = Simulator::new(specs.clone(), options);
        let per_second = (&mut sim)
            .take_while(|e| e.event_time() <= options.start_us + 10_000_000)
            .count()
            / 10;
        group.throughput(Throughput::Elements(per_second as u64));
        group.bench_function(format!("one simulated second, {scenario} ({per_second} events)"), |b| {
            b.iter(|| (&mut sim).take(per_second).count());
        });
    }
    group.finish();
}

criterion_group!(benches, simulated_second);
criterion_main!(benches);
