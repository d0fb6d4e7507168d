//! Load driver for the balancer's viewer routing, on one core (this
//! thread): a fleet of 1,000 edges in metros over the globe, 10,000 live
//! streams each present on 1–3 edges, and viewers near random metros.
//! Each decision ranks the fleet for the viewer (top 5, pending bandwidth
//! from the provisional ledger) and charges the winner, as the balancer
//! does; viewers "arrive" a while later and their charge is released.
//! Prints decisions/s and p50/p99 decision times, the same without a
//! viewer location, and GeoIP lookups over a synthetic table.
//!
//! `cargo bench --bench balancer_routing` runs the full load (release
//! build) and a criterion micro-benchmark of `rank` (`rank_1000_edges`);
//! under `cargo test` a small smoke load exercises the driver.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::Criterion;
use frameworks_balancer::geo::{GeoIpTable, GeoPoint};
use frameworks_balancer::routing::{Charges, Demand, EdgeState, Fleet, Liveness, Weights, rank};
use hdrhistogram::Histogram;

struct Load {
    edges: usize,
    streams: usize,
    decisions: usize,
    /// Charges outstanding before the viewer "arrives" and its charge is
    /// released.
    in_flight: usize,
    geoip_rows: u32,
    lookups: usize,
}

const FULL: Load = Load {
    edges: 1_000,
    streams: 10_000,
    decisions: 200_000,
    in_flight: 10_000,
    geoip_rows: 400_000,
    lookups: 1_000_000,
};

const SMOKE: Load = Load {
    edges: 1_000,
    streams: 10_000,
    decisions: 300,
    in_flight: 100,
    geoip_rows: 1_000,
    lookups: 1_000,
};

/// What one viewer is assumed to draw until its edge reports it.
const VIEWER_BPS: u64 = 3_000_000;
const GBPS: u64 = 1_000_000_000;

/// Where edges are, and near where viewers are.
const METROS: [(f64, f64); 24] = [
    (40.71, -74.01),  // New York
    (34.05, -118.24), // Los Angeles
    (41.88, -87.63),  // Chicago
    (32.78, -96.80),  // Dallas
    (47.61, -122.33), // Seattle
    (25.76, -80.19),  // Miami
    (43.65, -79.38),  // Toronto
    (19.43, -99.13),  // Mexico City
    (-23.55, -46.63), // São Paulo
    (-34.60, -58.38), // Buenos Aires
    (51.51, -0.13),   // London
    (52.37, 4.90),    // Amsterdam
    (50.11, 8.68),    // Frankfurt
    (48.86, 2.35),    // Paris
    (40.42, -3.70),   // Madrid
    (59.33, 18.07),   // Stockholm
    (52.23, 21.01),   // Warsaw
    (25.20, 55.27),   // Dubai
    (19.08, 72.88),   // Mumbai
    (1.35, 103.82),   // Singapore
    (35.68, 139.69),  // Tokyo
    (37.57, 126.98),  // Seoul
    (-33.87, 151.21), // Sydney
    (-26.20, 28.05),  // Johannesburg
];

/// A deterministic pseudo-random sequence (xorshift64*).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [low, high).
    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// A point within about `spread` degrees of a random metro.
    fn near_metro(&mut self, spread: f64) -> GeoPoint {
        let (lat, lon) = METROS[self.below(METROS.len())];
        let lat = (lat + self.between(-spread, spread)).clamp(-90.0, 90.0);
        let lon = (lon + self.between(-spread, spread)).clamp(-180.0, 180.0);
        GeoPoint::new(lat, lon).expect("clamped coordinates")
    }
}

fn fleet(random: &mut Random, load: &Load) -> (Fleet, Vec<String>) {
    let edges = (0..load.edges)
        .map(|i| {
            let limit = if random.below(4) == 0 {
                40 * GBPS
            } else {
                10 * GBPS
            };
            let memory_total = 64u64 << 30;
            EdgeState {
                node_id: format!("edge-{i:04}"),
                cluster_id: format!("cluster-{}", i % 40),
                public_host: format!("edge-{i:04}.cdn.example.net"),
                // A few edges have not reported where they are.
                location: (random.below(50) != 0).then(|| random.near_metro(1.0)),
                cpu_percent: random.between(5.0, 99.0),
                memory_used_bytes: (memory_total as f64 * random.between(0.1, 0.9)) as u64,
                memory_total_bytes: memory_total,
                bandwidth_up_bps: (limit as f64 * random.between(0.05, 0.95)) as u64,
                bandwidth_limit_bps: limit,
                liveness: match random.below(100) {
                    0 => Liveness::Gone,
                    1 | 2 => Liveness::Stale,
                    _ => Liveness::Live,
                },
                accepts_viewers: random.below(50) != 0,
            }
        })
        .collect();
    let mut fleet = Fleet::new(edges);
    let streams: Vec<String> = (0..load.streams)
        .map(|i| format!("live+stream-{i:05}"))
        .collect();
    for stream in &streams {
        for _ in 0..1 + random.below(3) {
            let node = format!("edge-{:04}", random.below(load.edges));
            fleet.add_presence(stream, &node);
        }
    }
    (fleet, streams)
}

/// Prints a histogram of nanoseconds.
fn report(name: &str, unit: &str, histogram: &Histogram<u64>, elapsed: Duration) {
    println!(
        "  {name:<38} {:>9.0} {unit}/s   p50 {:>9.1} µs   p99 {:>9.1} µs   ({} {unit})",
        histogram.len() as f64 / elapsed.as_secs_f64(),
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.len()
    );
}

/// Routes `load.decisions` viewers: rank, charge the winner, and release
/// the charge of the viewer `in_flight` decisions back.
fn route(fleet: &Fleet, streams: &[String], load: &Load, random: &mut Random, located: bool) {
    let weights = Weights::default();
    let mut charges = Charges::new(Duration::from_secs(30));
    let mut arriving: Vec<Option<(u32, String)>> = vec![None; load.in_flight.max(1)];
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let mut unrouted = 0usize;
    let started = Instant::now();
    for n in 0..load.decisions {
        let viewer = located.then(|| random.near_metro(3.0));
        let stream = &streams[random.below(streams.len())];
        let at = Instant::now();
        let pending = |node: &str| charges.pending_bps(node, at);
        let ranking = rank(
            fleet,
            &Demand {
                stream: Some(stream),
                clusters: None,
                viewer,
                estimate_bps: VIEWER_BPS,
                limit: 5,
            },
            &weights,
            &pending,
        );
        let charged = ranking.first().map(|best| {
            let key = format!("session-{n}");
            let node = &fleet.edges()[best.index as usize].node_id;
            charges.charge(node, key.clone(), VIEWER_BPS, at);
            (best.index, key)
        });
        histogram
            .record(at.elapsed().as_nanos() as u64)
            .expect("record");
        if charged.is_none() {
            unrouted += 1;
        }
        black_box(&ranking);
        // The viewer from `in_flight` decisions ago shows up on its edge.
        let slot = n % arriving.len();
        if let Some((index, key)) = std::mem::replace(&mut arriving[slot], charged) {
            charges.release(&fleet.edges()[index as usize].node_id, &key);
        }
        if n % 1_000 == 999 {
            charges.expire(at);
        }
    }
    let name = if located {
        "route (top 5 + charge)"
    } else {
        "route, viewer location unknown"
    };
    report(name, "decisions", &histogram, started.elapsed());
    assert_eq!(unrouted, 0, "every viewer finds an edge");
}

/// A GeoIP table of `rows` adjacent IPv4 /24 networks, each at a metro.
fn geoip(random: &mut Random, rows: u32) -> GeoIpTable {
    let mut csv = String::from("network,geoname_id,latitude,longitude,accuracy_radius\n");
    for row in 0..rows {
        let network = Ipv4Addr::from((16u32 << 24) + (row << 8));
        let point = random.near_metro(2.0);
        csv.push_str(&format!(
            "{network}/24,{row},{:.4},{:.4},100\n",
            point.lat(),
            point.lon()
        ));
    }
    GeoIpTable::from_csv_reader(csv.as_bytes()).expect("synthetic GeoIP data")
}

fn lookups(table: &GeoIpTable, load: &Load, random: &mut Random) {
    let span = u64::from(load.geoip_rows) << 8;
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let mut found = 0usize;
    let started = Instant::now();
    for _ in 0..load.lookups {
        // Mostly inside the table, some outside it.
        let address = (16u64 << 24) + random.next() % (span + span / 8);
        let ip = IpAddr::V4(Ipv4Addr::from(address as u32));
        let at = Instant::now();
        let point = table.lookup(ip);
        histogram
            .record(at.elapsed().as_nanos() as u64)
            .expect("record");
        found += usize::from(black_box(point).is_some());
    }
    report("GeoIP lookup", "lookups", &histogram, started.elapsed());
    assert!(found > 0, "lookups inside the table find it");
}

/// `rank` alone, with nothing pending, for a rotating set of viewers.
fn criterion_rank(fleet: &Fleet, streams: &[String], random: &mut Random) {
    let viewers: Vec<(GeoPoint, &str)> = (0..1024)
        .map(|_| {
            (
                random.near_metro(3.0),
                streams[random.below(streams.len())].as_str(),
            )
        })
        .collect();
    let weights = Weights::default();
    let nothing = |_: &str| 0;
    let mut criterion = Criterion::default().configure_from_args();
    let mut next = 0usize;
    criterion.bench_function("rank_1000_edges", |b| {
        b.iter(|| {
            let (viewer, stream) = viewers[next % viewers.len()];
            next += 1;
            rank(
                black_box(fleet),
                &Demand {
                    stream: Some(stream),
                    clusters: None,
                    viewer: Some(viewer),
                    estimate_bps: VIEWER_BPS,
                    limit: 5,
                },
                &weights,
                &nothing,
            )
        })
    });
    criterion.final_summary();
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let load = if full { FULL } else { SMOKE };
    let mut random = Random(0x5eed_f00d_cafe_d00d);
    let (fleet, streams) = fleet(&mut random, &load);
    println!(
        "balancer routing: {} edges, {} streams on 1-3 edges each, {} decisions on one core",
        fleet.len(),
        streams.len(),
        load.decisions
    );
    route(&fleet, &streams, &load, &mut random, true);
    route(&fleet, &streams, &load, &mut random, false);

    let loading = Instant::now();
    let table = geoip(&mut random, load.geoip_rows);
    println!(
        "  GeoIP table: {} /24 rows parsed and indexed in {:.0} ms",
        load.geoip_rows,
        loading.elapsed().as_secs_f64() * 1000.0
    );
    lookups(&table, &load, &mut random);

    if full {
        criterion_rank(&fleet, &streams, &mut random);
    }
}
