//! What the fleet's minute exchange costs one replica at each close, at 100,000 clients a
//! minute (`--clients N` to change) over three replicas: choosing and encoding its share (at
//! most `SHARE_CAP` clients, the busiest), and decoding and merging the two others' into its
//! own minute. The store's round trip is not included (one HSET and one HGETALL of a few
//! megabytes on the local network). Median of 5 rounds. Run: `cargo bench --bench fleet_exchange`.

use std::time::{Duration, Instant};

use sluice_core::learn::fleet_minute::{self, SHARE_CAP, ShareFloor};
use sluice_core::learn::observe::{
    Aggregator, ClientSummary, Event, MinuteData, Observation, ObserveConfig,
};
use sluice_core::rules::Tier;
use sluice_core::time::NANOS_PER_SEC;

const REPLICAS: usize = 3;

/// Three replicas' minutes: `clients` clients, each with 3 to 12 requests dealt round robin.
fn minutes(clients: usize) -> Vec<MinuteData> {
    let config = ObserveConfig {
        max_clients: clients * 2 + 10,
        ..ObserveConfig::default()
    };
    let aggs: Vec<Aggregator> = (0..REPLICAS)
        .map(|_| Aggregator::new(config.clone()))
        .collect();
    let mut turn = 0;
    let mut ip = String::new();
    let mut path = String::new();
    for c in 0..clients {
        use std::fmt::Write;
        ip.clear();
        write!(ip, "10.{}.{}.{}", c >> 16, (c >> 8) & 0xff, c & 0xff).unwrap();
        for r in 0..(3 + c % 10) {
            path.clear();
            write!(path, "/product/{}", (c * 7 + r) % 5000).unwrap();
            let o = Observation {
                now: (r as u64 * 5) * NANOS_PER_SEC,
                client: &ip,
                user: "",
                tier: Tier::Std,
                endpoint: &path,
                user_agent: "Mozilla/5.0",
                event: Event::Decision {
                    allowed: true,
                    anomaly: false,
                    cut: false,
                },
            };
            let agg = &aggs[turn % REPLICAS];
            turn += 1;
            agg.record(&o);
            agg.record(&Observation {
                event: Event::Outcome { status: 200 },
                ..o
            });
        }
    }
    aggs.iter().map(Aggregator::drain).collect()
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    let clients: usize = std::env::args()
        .skip_while(|a| a != "--clients")
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let (mut publish, mut receive, mut bytes, mut merged) = (Vec::new(), Vec::new(), 0, 0);
    for _ in 0..5 {
        let mut drained = minutes(clients);
        let started = Instant::now();
        let shares: Vec<Vec<u8>> = drained
            .iter()
            .map(|m| {
                let share = fleet_minute::to_share(&m.clients, ShareFloor::ANY, SHARE_CAP);
                serde_json::to_vec(&share).unwrap()
            })
            .collect();
        // Each replica publishes its own: a third of the three.
        publish.push(started.elapsed() / REPLICAS as u32);
        bytes = shares[1].len();
        let started = Instant::now();
        let others: Vec<ClientSummary> = shares[1..]
            .iter()
            .flat_map(|s| serde_json::from_slice::<Vec<ClientSummary>>(s).unwrap())
            .collect();
        fleet_minute::merge_shared(&mut drained[0], others);
        receive.push(started.elapsed());
        merged = drained[0].clients.len();
    }
    let (p, r) = (median(publish), median(receive));
    println!(
        "{clients} clients a minute over {REPLICAS} replicas: a replica's share {} clients, {:.1} MB; \
         publish (choose + encode) {:.1} ms, receive (decode + merge {} shares) {:.1} ms, \
         {:.1} ms of CPU a minute ({:.3}% of a core); its minute holds {merged} clients after",
        SHARE_CAP.min(clients),
        bytes as f64 / 1e6,
        p.as_secs_f64() * 1e3,
        REPLICAS - 1,
        r.as_secs_f64() * 1e3,
        (p + r).as_secs_f64() * 1e3,
        (p + r).as_secs_f64() / 60.0 * 100.0,
    );
}
