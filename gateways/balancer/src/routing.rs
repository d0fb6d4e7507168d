//! Viewer routing: which edges should serve one viewer, best first.
//!
//! Every eligible edge gets a score in [0, 1], the weighted mean of five
//! components each normalised to [0, 1]: nearness to the viewer, CPU and
//! memory headroom, bandwidth headroom (counting viewers already sent but
//! not yet visible in the edge's heartbeats, see [`Charges`]), and whether
//! the stream is already on the edge (no pull from the origin needed).
//! Unknown inputs score a neutral 0.5 so they neither win nor lose a
//! decision on their own.
//!
//! [`rank`] runs per viewer request against a [`Fleet`] snapshot, so it
//! scans the edges once, allocates nothing per edge and keeps only the best
//! `limit` candidates in a bounded heap.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::geo::{GeoPoint, UnitVector};

/// Half the Earth's equatorial circumference: no two points are farther
/// apart, so it maps distances onto [0, 1].
pub const MAX_DISTANCE_KM: f64 = 20_037.5;
/// Edges at or above this CPU load take no new viewers: they would degrade
/// everyone already watching.
pub const CPU_CEILING_PERCENT: f64 = 98.0;
/// The score of a component whose inputs are unknown.
pub const NEUTRAL: f64 = 0.5;

/// Whether an edge is heard from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// Heartbeats arrive on time.
    Live,
    /// Heartbeats are late: the edge is used only when no live edge can
    /// take the viewer, since a stale edge may already be gone.
    Stale,
    /// Presumed down: never routed to.
    Gone,
}

/// What routing knows of one edge, from its latest heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeState {
    pub node_id: String,
    pub cluster_id: String,
    /// Host name or host:port viewers are sent to.
    pub public_host: String,
    pub location: Option<GeoPoint>,
    /// CPU load, 0..=100.
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// What the edge sends now.
    pub bandwidth_up_bps: u64,
    /// What the edge may send; 0 when unknown.
    pub bandwidth_limit_bps: u64,
    pub liveness: Liveness,
    /// False for draining or maintenance nodes.
    pub accepts_viewers: bool,
}

/// A snapshot of the edges and which streams each holds, built once per
/// change and shared by all routing decisions until the next one.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    edges: Vec<EdgeState>,
    /// Each edge's location as a unit vector, by index: computed here once
    /// rather than per decision.
    vectors: Vec<Option<UnitVector>>,
    by_node: NodeMap<u32>,
    /// Stream id to the indexes of the edges it is present on.
    streams: HashMap<String, Vec<u32>>,
}

impl Fleet {
    /// A fleet of `edges`, indexed in the given order. Node ids are expected
    /// to be unique; on a duplicate, [`Fleet::index_of`] and presence refer
    /// to the first.
    #[must_use]
    pub fn new(edges: Vec<EdgeState>) -> Fleet {
        let vectors = edges
            .iter()
            .map(|e| e.location.map(|p| p.unit_vector()))
            .collect();
        let mut by_node = NodeMap::with_capacity_and_hasher(edges.len(), Default::default());
        for (index, edge) in (0u32..).zip(&edges) {
            by_node.entry(edge.node_id.clone()).or_insert(index);
        }
        Fleet {
            edges,
            vectors,
            by_node,
            streams: HashMap::new(),
        }
    }

    /// Records that `stream_id` is present on `node_id`; false when the
    /// node is not in the fleet.
    pub fn add_presence(&mut self, stream_id: &str, node_id: &str) -> bool {
        let Some(&index) = self.by_node.get(node_id) else {
            return false;
        };
        match self.streams.get_mut(stream_id) {
            Some(edges) => {
                if !edges.contains(&index) {
                    edges.push(index);
                }
            }
            None => {
                self.streams.insert(stream_id.to_owned(), vec![index]);
            }
        }
        true
    }

    /// The indexes of the edges `stream_id` is present on.
    #[must_use]
    pub fn presence(&self, stream_id: &str) -> &[u32] {
        self.streams.get(stream_id).map_or(&[], Vec::as_slice)
    }

    /// The index of the edge `node_id`.
    #[must_use]
    pub fn index_of(&self, node_id: &str) -> Option<u32> {
        self.by_node.get(node_id).copied()
    }

    #[must_use]
    pub fn edges(&self) -> &[EdgeState] {
        &self.edges
    }

    #[must_use]
    pub fn edge(&self, index: u32) -> Option<&EdgeState> {
        self.edges.get(usize::try_from(index).ok()?)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.edges.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }
}

/// How much each component counts in an edge's score. Only the ratios
/// matter; a zero weight ignores its component.
#[derive(Debug, Clone, Copy, PartialEq, clap::Args)]
pub struct Weights {
    /// Weight of nearness between viewer and edge.
    #[arg(
        id = "weight_distance",
        long = "weight-distance",
        env = "FRAMEWORKS_BALANCER_WEIGHT_DISTANCE",
        default_value_t = Weights::DEFAULT.distance,
        value_parser = parse_weight,
    )]
    pub distance: f64,
    /// Weight of the edge's idle CPU.
    #[arg(
        id = "weight_cpu",
        long = "weight-cpu",
        env = "FRAMEWORKS_BALANCER_WEIGHT_CPU",
        default_value_t = Weights::DEFAULT.cpu,
        value_parser = parse_weight,
    )]
    pub cpu: f64,
    /// Weight of the edge's free memory.
    #[arg(
        id = "weight_memory",
        long = "weight-memory",
        env = "FRAMEWORKS_BALANCER_WEIGHT_MEMORY",
        default_value_t = Weights::DEFAULT.memory,
        value_parser = parse_weight,
    )]
    pub memory: f64,
    /// Weight of the edge's bandwidth headroom.
    #[arg(
        id = "weight_bandwidth",
        long = "weight-bandwidth",
        env = "FRAMEWORKS_BALANCER_WEIGHT_BANDWIDTH",
        default_value_t = Weights::DEFAULT.bandwidth,
        value_parser = parse_weight,
    )]
    pub bandwidth: f64,
    /// Weight of the stream being on the edge already.
    #[arg(
        id = "weight_presence",
        long = "weight-presence",
        env = "FRAMEWORKS_BALANCER_WEIGHT_PRESENCE",
        default_value_t = Weights::DEFAULT.presence,
        value_parser = parse_weight,
    )]
    pub presence: f64,
}

impl Weights {
    /// Nearness first (it decides startup time and transit cost), then
    /// bandwidth, the resource viewers exhaust; CPU and presence next;
    /// memory matters least for serving live segments.
    pub const DEFAULT: Weights = Weights {
        distance: 1.0,
        cpu: 0.5,
        memory: 0.25,
        bandwidth: 0.75,
        presence: 0.5,
    };
}

impl Default for Weights {
    fn default() -> Weights {
        Weights::DEFAULT
    }
}

/// A weight is a finite, non-negative number.
fn parse_weight(value: &str) -> Result<f64, String> {
    let weight: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number"))?;
    if weight.is_finite() && weight >= 0.0 {
        Ok(weight)
    } else {
        Err(format!("`{value}` is not a finite, non-negative weight"))
    }
}

/// One edge in a ranking: its index in the [`Fleet`] and its score in
/// [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    pub index: u32,
    pub score: f64,
    /// Over its limits (CPU or bandwidth), offered because no edge within
    /// them could take the demand: a degraded answer beats none.
    pub over_limits: bool,
}

/// What is being placed: a viewer of `stream` (or an encoder, with no
/// stream) at `viewer`, who may use the edges of `clusters` (any edge when
/// `None`), drawing `estimate_bps`; the best `limit` edges are wanted.
#[derive(Debug, Clone, Copy)]
pub struct Demand<'a> {
    pub stream: Option<&'a str>,
    pub clusters: Option<&'a HashSet<String>>,
    pub viewer: Option<GeoPoint>,
    pub estimate_bps: u64,
    pub limit: usize,
}

/// The best `demand.limit` edges for `demand`, best first.
///
/// `pending_bps` gives the bandwidth already promised to each node (by node
/// id; see [`Charges::pending_bps`]) and is only asked about nodes with a
/// known bandwidth limit.
///
/// Excluded: edges outside the demand's clusters, gone edges, edges not
/// accepting viewers, edges at or above [`CPU_CEILING_PERCENT`] (or
/// reporting no number), and edges whose current, promised and estimated
/// bandwidth together exceed a known limit. Stale edges are ranked only
/// when no live edge is eligible. Equal scores are ordered by node id, so
/// the same inputs always give the same answer.
///
/// When every edge the demand may use is over its CPU or bandwidth limit,
/// the least-loaded of them (one that has the stream first) is answered
/// alone, marked [`Ranked::over_limits`]: a busy machine serves slowly,
/// while no answer serves nobody.
///
/// Negative or non-finite weights count as zero; when all are zero every
/// eligible edge scores 0 and the order is by node id.
pub fn rank(
    fleet: &Fleet,
    demand: &Demand<'_>,
    weights: &Weights,
    pending_bps: &impl Fn(&str) -> u64,
) -> Vec<Ranked> {
    let Demand {
        stream,
        clusters,
        viewer,
        estimate_bps,
        limit,
    } = *demand;
    if limit == 0 || fleet.is_empty() {
        return Vec::new();
    }
    let weights = Effective::new(weights);
    let present = stream.map_or(&[][..], |s| fleet.presence(s));
    let viewer = viewer.map(|p| p.unit_vector());
    let mut live = TopK::new(limit);
    let mut stale = TopK::new(limit);
    // The least-loaded edge over its limits: (has the stream, cpu, index).
    let mut least_loaded: Option<(bool, f64, u32)> = None;
    let node_of = |index: u32| fleet.edges.get(index as usize).map(|e| e.node_id.as_str());
    let mut over_limits = |index: u32, cpu: f64| {
        let present = present.contains(&index);
        let better = least_loaded.is_none_or(|(p, c, i)| {
            (present, -cpu, Reverse(node_of(index))) > (p, -c, Reverse(node_of(i)))
        });
        if better {
            least_loaded = Some((present, cpu, index));
        }
    };
    for ((index, edge), vector) in (0u32..).zip(&fleet.edges).zip(&fleet.vectors) {
        if clusters.is_some_and(|usable| !usable.contains(&edge.cluster_id)) {
            continue;
        }
        let top = match edge.liveness {
            Liveness::Live => &mut live,
            // Once a live edge is eligible, stale ones cannot be chosen.
            Liveness::Stale if live.is_empty() => &mut stale,
            Liveness::Stale | Liveness::Gone => continue,
        };
        let cpu_percent = edge.cpu_percent;
        if !edge.accepts_viewers || cpu_percent.is_nan() {
            continue;
        }
        if cpu_percent >= CPU_CEILING_PERCENT {
            over_limits(index, cpu_percent);
            continue;
        }
        let limit_bps = edge.bandwidth_limit_bps;
        let committed = edge.bandwidth_up_bps.saturating_add(estimate_bps);
        if limit_bps != 0 && committed > limit_bps {
            over_limits(index, cpu_percent);
            continue;
        }
        let headroom = |load: u64| match limit_bps {
            0 => NEUTRAL,
            limit => 1.0 - load as f64 / limit as f64,
        };
        let cpu = 1.0 - cpu_percent.clamp(0.0, 100.0) / 100.0;
        let memory = match edge.memory_total_bytes {
            0 => NEUTRAL,
            total => 1.0 - edge.memory_used_bytes.min(total) as f64 / total as f64,
        };
        let presence = if present.contains(&index) { 1.0 } else { 0.0 };
        let half_chord = match (&viewer, vector) {
            (Some(viewer), Some(at)) if weights.distance > 0.0 => Some(viewer.half_chord(at)),
            _ => None,
        };
        let nearness = |km: f64| (1.0 - km / MAX_DISTANCE_KM).clamp(0.0, 1.0);
        // The best this edge could score, before the costly parts (the
        // pending lookup and the arcsine of the distance): most edges cannot
        // beat the current top `limit` even so. The score is monotone in
        // each component, in floating point too, so the bound never drops an
        // edge that would have made it.
        let best_distance =
            half_chord.map_or(NEUTRAL, |h| nearness(UnitVector::arc_km_at_least(h)));
        let bound = weights.score(best_distance, cpu, memory, headroom(committed), presence);
        if !top.admits(bound) {
            continue;
        }
        let bandwidth = if limit_bps == 0 {
            NEUTRAL
        } else {
            let load = committed.saturating_add(pending_bps(&edge.node_id));
            if load > limit_bps {
                over_limits(index, cpu_percent);
                continue;
            }
            headroom(load)
        };
        let distance = half_chord.map_or(NEUTRAL, |h| nearness(UnitVector::arc_km(h)));
        top.offer(Candidate {
            score: weights.score(distance, cpu, memory, bandwidth, presence),
            node: &edge.node_id,
            index,
        });
    }
    if !live.is_empty() {
        live.into_ranked()
    } else if !stale.is_empty() {
        stale.into_ranked()
    } else {
        least_loaded
            .map(|(_, _, index)| Ranked {
                index,
                score: 0.0,
                over_limits: true,
            })
            .into_iter()
            .collect()
    }
}

/// Weights as [`rank`] uses them: invalid ones zeroed, and their sum.
struct Effective {
    distance: f64,
    cpu: f64,
    memory: f64,
    bandwidth: f64,
    presence: f64,
    total: f64,
}

impl Effective {
    fn new(weights: &Weights) -> Effective {
        let valid = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
        let (distance, cpu, memory, bandwidth, presence) = (
            valid(weights.distance),
            valid(weights.cpu),
            valid(weights.memory),
            valid(weights.bandwidth),
            valid(weights.presence),
        );
        Effective {
            distance,
            cpu,
            memory,
            bandwidth,
            presence,
            total: distance + cpu + memory + bandwidth + presence,
        }
    }

    /// The weighted mean of the components, each in [0, 1]; 0 when every
    /// weight is 0.
    fn score(&self, distance: f64, cpu: f64, memory: f64, bandwidth: f64, presence: f64) -> f64 {
        if self.total <= 0.0 {
            return 0.0;
        }
        let sum = self.distance * distance
            + self.cpu * cpu
            + self.memory * memory
            + self.bandwidth * bandwidth
            + self.presence * presence;
        // `+ 0.0` turns a -0.0 into 0.0, so equal scores order by node id.
        sum / self.total + 0.0
    }
}

/// An eligible edge while ranking.
#[derive(Debug)]
struct Candidate<'a> {
    score: f64,
    node: &'a str,
    index: u32,
}

impl Ord for Candidate<'_> {
    /// Better candidates order first: higher score, then lower node id
    /// (then index, should node ids repeat).
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.node.cmp(other.node))
            .then_with(|| self.index.cmp(&other.index))
    }
}

impl PartialOrd for Candidate<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate<'_> {}

/// The best `limit` candidates offered: a max-heap under [`Candidate`]'s
/// order, so its top is the worst kept and is what a better one replaces.
struct TopK<'a> {
    limit: usize,
    heap: BinaryHeap<Candidate<'a>>,
}

impl<'a> TopK<'a> {
    fn new(limit: usize) -> TopK<'a> {
        // Allocates on the first offer only, so an unused stale heap is free.
        TopK {
            limit,
            heap: BinaryHeap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Whether a candidate scoring at most `bound` could be kept.
    fn admits(&self, bound: f64) -> bool {
        self.heap.len() < self.limit || self.heap.peek().is_none_or(|worst| bound >= worst.score)
    }

    fn offer(&mut self, candidate: Candidate<'a>) {
        if self.heap.len() < self.limit {
            if self.heap.capacity() == 0 {
                self.heap.reserve_exact(self.limit.min(64));
            }
            self.heap.push(candidate);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && candidate < *worst
        {
            *worst = candidate;
        }
    }

    fn into_ranked(self) -> Vec<Ranked> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|c| Ranked {
                index: c.index,
                score: c.score,
                over_limits: false,
            })
            .collect()
    }
}

/// The provisional bandwidth ledger: what was promised to each node for
/// viewers sent there whose traffic its heartbeats do not show yet.
///
/// Without it, a burst of viewers arriving between two heartbeats would
/// all land on the same best edge. Each charge is held until released
/// (the viewer showed up, or gave up) or until `hold` passes, by which time
/// the edge's own figures include the viewer.
#[derive(Debug, Clone)]
pub struct Charges {
    hold: Duration,
    nodes: NodeMap<NodeCharges>,
}

/// One node's charges, oldest first, and their sum.
#[derive(Debug, Clone, Default)]
struct NodeCharges {
    total: u128,
    entries: VecDeque<Charge>,
}

#[derive(Debug, Clone)]
struct Charge {
    key: String,
    bps: u64,
    at: Instant,
}

impl Charges {
    /// An empty ledger whose charges last `hold` (the balancer uses 30 s).
    #[must_use]
    pub fn new(hold: Duration) -> Charges {
        Charges {
            hold,
            nodes: NodeMap::default(),
        }
    }

    #[must_use]
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// Promises `bps` on `node` for `key` (a viewer session) at `now`. A
    /// charge under the same key on the node is replaced, so a retried
    /// request is counted once.
    pub fn charge(&mut self, node: &str, key: String, bps: u64, now: Instant) {
        let charge = Charge { key, bps, at: now };
        if let Some(charges) = self.nodes.get_mut(node) {
            charges.put(charge);
        } else {
            let mut charges = NodeCharges::default();
            charges.put(charge);
            self.nodes.insert(node.to_owned(), charges);
        }
    }

    /// Drops the charge `key` on `node`; false when there is none.
    pub fn release(&mut self, node: &str, key: &str) -> bool {
        let Some(charges) = self.nodes.get_mut(node) else {
            return false;
        };
        let released = charges.remove(key);
        if charges.entries.is_empty() {
            self.nodes.remove(node);
        }
        released
    }

    /// What is promised on `node` at `now`, ignoring charges held `hold`
    /// or longer.
    #[must_use]
    pub fn pending_bps(&self, node: &str, now: Instant) -> u64 {
        let Some(charges) = self.nodes.get(node) else {
            return 0;
        };
        // Expired charges are the oldest ones: usually none, since
        // `expire` runs regularly.
        let expired: u128 = charges
            .entries
            .iter()
            .take_while(|c| self.expired(c, now))
            .map(|c| u128::from(c.bps))
            .sum();
        u64::try_from(charges.total - expired).unwrap_or(u64::MAX)
    }

    /// Drops the charges held `hold` or longer at `now`; how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let hold = self.hold;
        let mut dropped = 0;
        self.nodes.retain(|_, charges| {
            while let Some(oldest) = charges.entries.front()
                && now.saturating_duration_since(oldest.at) >= hold
            {
                charges.total -= u128::from(oldest.bps);
                charges.entries.pop_front();
                dropped += 1;
            }
            !charges.entries.is_empty()
        });
        dropped
    }

    /// Number of charges held, expired or not.
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.values().map(|c| c.entries.len()).sum()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn expired(&self, charge: &Charge, now: Instant) -> bool {
        now.saturating_duration_since(charge.at) >= self.hold
    }
}

impl NodeCharges {
    fn put(&mut self, charge: Charge) {
        self.remove(&charge.key);
        self.total += u128::from(charge.bps);
        // Kept oldest first; a charge is almost always the newest.
        let at = self.entries.partition_point(|c| c.at <= charge.at);
        self.entries.insert(at, charge);
    }

    fn remove(&mut self, key: &str) -> bool {
        match self.entries.iter().position(|c| c.key == key) {
            Some(at) => {
                if let Some(charge) = self.entries.remove(at) {
                    self.total -= u128::from(charge.bps);
                }
                true
            }
            None => false,
        }
    }
}

/// Maps keyed by node id. Routing looks a node up for every edge of every
/// decision, so the keyed SipHash default costs more than the rest of the
/// scoring; node ids come from the platform's own registry, not from
/// viewers, so an unkeyed hash cannot be aimed at.
type NodeMap<V> = HashMap<String, V, BuildHasherDefault<NodeHasher>>;

/// A folded-multiply hash over 8-byte words (as in `foldhash`): each word
/// is mixed into the state by a 64×64→128-bit product whose halves are
/// XORed, so every input bit reaches every output bit.
#[derive(Debug, Default, Clone, Copy)]
struct NodeHasher(u64);

impl NodeHasher {
    /// Digits of π: any odd constant with mixed bits serves.
    const MULTIPLIER: u64 = 0x243f_6a88_85a3_08d3;
    const FINISH: u64 = 0x1319_8a2e_0370_7345;

    fn fold(a: u64, b: u64) -> u64 {
        let product = u128::from(a) * u128::from(b);
        (product as u64) ^ ((product >> 64) as u64)
    }

    fn add(&mut self, word: u64) {
        self.0 = NodeHasher::fold(self.0 ^ word, NodeHasher::MULTIPLIER);
    }
}

impl Hasher for NodeHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buffer = [0u8; 8];
            buffer.copy_from_slice(word);
            self.add(u64::from_le_bytes(buffer));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut buffer = [0u8; 8];
            buffer[..rest.len()].copy_from_slice(rest);
            // The length keeps "a" and "a\0" apart.
            self.add(u64::from_le_bytes(buffer) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        NodeHasher::fold(self.0, NodeHasher::FINISH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    const GBPS: u64 = 1_000_000_000;

    fn point(lat: f64, lon: f64) -> GeoPoint {
        GeoPoint::new(lat, lon).expect("valid point")
    }

    /// An idle live edge at `location` with 10 Gbit/s and 64 GiB.
    fn edge(node_id: &str, location: Option<GeoPoint>) -> EdgeState {
        EdgeState {
            node_id: node_id.into(),
            cluster_id: "cluster-1".into(),
            public_host: format!("{node_id}.edge.example.net"),
            location,
            cpu_percent: 10.0,
            memory_used_bytes: 16 << 30,
            memory_total_bytes: 64 << 30,
            bandwidth_up_bps: GBPS,
            bandwidth_limit_bps: 10 * GBPS,
            liveness: Liveness::Live,
            accepts_viewers: true,
        }
    }

    fn none(_: &str) -> u64 {
        0
    }

    /// An encoder (no stream, no cluster restriction, no draw) at `viewer`.
    fn anyone_at(viewer: Option<GeoPoint>, limit: usize) -> Demand<'static> {
        Demand {
            stream: None,
            clusters: None,
            viewer,
            estimate_bps: 0,
            limit,
        }
    }

    /// Node ids of the ranking.
    fn ranked(fleet: &Fleet, ranking: &[Ranked]) -> Vec<String> {
        ranking
            .iter()
            .map(|r| fleet.edge(r.index).expect("ranked edge").node_id.clone())
            .collect()
    }

    fn best(
        fleet: &Fleet,
        stream: Option<&str>,
        viewer: Option<GeoPoint>,
        weights: &Weights,
    ) -> Vec<String> {
        ranked(
            fleet,
            &rank(
                fleet,
                &Demand {
                    stream,
                    clusters: None,
                    viewer,
                    estimate_bps: 0,
                    limit: 10,
                },
                weights,
                &none,
            ),
        )
    }

    const AMSTERDAM: (f64, f64) = (52.37, 4.90);
    const FRANKFURT: (f64, f64) = (50.11, 8.68);
    const LONDON: (f64, f64) = (51.51, -0.13);
    const NEW_YORK: (f64, f64) = (40.71, -74.01);
    const SYDNEY: (f64, f64) = (-33.87, 151.21);

    fn at((lat, lon): (f64, f64)) -> Option<GeoPoint> {
        Some(point(lat, lon))
    }

    #[test]
    fn only_the_demands_clusters_are_eligible() {
        let mut private = edge("private-near", at(AMSTERDAM));
        private.cluster_id = "someone-elses".into();
        let fleet = Fleet::new(vec![private, edge("shared-far", at(NEW_YORK))]);
        let weights = Weights::default();
        let usable: HashSet<String> = ["cluster-1".to_owned()].into();
        let demand = |clusters| Demand {
            stream: None,
            clusters,
            viewer: at(LONDON),
            estimate_bps: 0,
            limit: 5,
        };
        assert_eq!(
            ranked(&fleet, &rank(&fleet, &demand(None), &weights, &none)),
            ["private-near", "shared-far"]
        );
        assert_eq!(
            ranked(
                &fleet,
                &rank(&fleet, &demand(Some(&usable)), &weights, &none)
            ),
            ["shared-far"]
        );
        let nothing = HashSet::new();
        assert!(rank(&fleet, &demand(Some(&nothing)), &weights, &none).is_empty());
    }

    #[test]
    fn nearer_edge_wins_with_equal_load() {
        let fleet = Fleet::new(vec![
            edge("sydney", at(SYDNEY)),
            edge("new-york", at(NEW_YORK)),
            edge("frankfurt", at(FRANKFURT)),
        ]);
        let weights = Weights::default();
        assert_eq!(
            best(&fleet, None, at(LONDON), &weights),
            ["frankfurt", "new-york", "sydney"]
        );
        assert_eq!(
            best(&fleet, None, at(SYDNEY), &weights)[0],
            "sydney".to_string()
        );
        let ranking = rank(&fleet, &anyone_at(at(LONDON), 3), &weights, &none);
        assert!(ranking.windows(2).all(|w| w[0].score > w[1].score));
        assert!(ranking.iter().all(|r| (0.0..=1.0).contains(&r.score)));
    }

    #[test]
    fn loaded_edge_loses_to_a_slightly_farther_idle_one() {
        let mut busy = edge("amsterdam", at(AMSTERDAM));
        busy.cpu_percent = 90.0;
        busy.memory_used_bytes = 60 << 30;
        busy.bandwidth_up_bps = 9 * GBPS;
        let fleet = Fleet::new(vec![busy, edge("frankfurt", at(FRANKFURT))]);
        let viewer = at(AMSTERDAM);
        assert_eq!(
            best(&fleet, None, viewer, &Weights::default()),
            ["frankfurt", "amsterdam"]
        );
        // Given only distance, the nearer one wins despite its load.
        let distance_only = Weights {
            distance: 1.0,
            cpu: 0.0,
            memory: 0.0,
            bandwidth: 0.0,
            presence: 0.0,
        };
        assert_eq!(
            best(&fleet, None, viewer, &distance_only),
            ["amsterdam", "frankfurt"]
        );
    }

    #[test]
    fn presence_decides_between_equals() {
        let mut fleet = Fleet::new(vec![
            edge("a", at(FRANKFURT)),
            edge("b", at(FRANKFURT)),
            edge("c", at(FRANKFURT)),
        ]);
        assert!(fleet.add_presence("live+show", "b"));
        assert!(fleet.add_presence("live+show", "b"), "idempotent");
        assert!(!fleet.add_presence("live+show", "unknown-node"));
        assert_eq!(fleet.presence("live+show"), [1]);
        let weights = Weights::default();
        assert_eq!(
            best(&fleet, Some("live+show"), at(LONDON), &weights),
            ["b", "a", "c"]
        );
        assert_eq!(
            best(&fleet, Some("other"), at(LONDON), &weights),
            ["a", "b", "c"]
        );
        assert_eq!(best(&fleet, None, at(LONDON), &weights), ["a", "b", "c"]);
    }

    #[test]
    fn drained_and_gone_edges_are_never_chosen() {
        let mut draining = edge("draining", at(LONDON));
        draining.accepts_viewers = false;
        let mut gone = edge("gone", at(LONDON));
        gone.liveness = Liveness::Gone;
        let mut stale_gone = edge("stale-gone", at(LONDON));
        stale_gone.liveness = Liveness::Gone;
        let mut hot = edge("hot", at(LONDON));
        hot.cpu_percent = 98.0;
        let mut unknown_cpu = edge("unknown-cpu", at(LONDON));
        unknown_cpu.cpu_percent = f64::NAN;
        let mut fleet = Fleet::new(vec![
            draining.clone(),
            gone.clone(),
            hot.clone(),
            unknown_cpu,
            edge("far", at(SYDNEY)),
        ]);
        fleet.add_presence("s", "draining");
        fleet.add_presence("s", "gone");
        let weights = Weights::default();
        assert_eq!(best(&fleet, Some("s"), at(LONDON), &weights), ["far"]);
        let nothing = Fleet::new(vec![draining, gone, stale_gone]);
        assert!(best(&nothing, None, at(LONDON), &weights).is_empty());
    }

    #[test]
    fn when_every_edge_is_over_its_limits_the_least_loaded_is_offered() {
        let mut hot = edge("hot", at(LONDON));
        hot.cpu_percent = 99.6;
        let mut hotter = edge("hotter", at(LONDON));
        hotter.cpu_percent = 99.9;
        let mut full = edge("full", at(LONDON));
        full.cpu_percent = 99.8;
        full.bandwidth_limit_bps = 10_000_000;
        full.bandwidth_up_bps = 10_000_000;
        let mut draining = edge("draining", at(LONDON));
        draining.accepts_viewers = false;
        let weights = Weights::default();
        let fleet = Fleet::new(vec![hotter.clone(), hot.clone(), full.clone(), draining]);
        assert_eq!(best(&fleet, None, at(LONDON), &weights), ["hot"]);
        let ranking = rank(&fleet, &anyone_at(at(LONDON), 3), &weights, &none);
        assert!(ranking.iter().all(|r| r.over_limits), "{ranking:?}");
        // One that has the stream goes first, however loaded.
        let mut with_stream = fleet.clone();
        with_stream.add_presence("s", "hotter");
        assert_eq!(
            best(&with_stream, Some("s"), at(LONDON), &weights),
            ["hotter"]
        );
        // An edge within its limits is always preferred, and is not degraded.
        let fleet = Fleet::new(vec![hot, edge("far", at(SYDNEY))]);
        let ranking = rank(&fleet, &anyone_at(at(LONDON), 3), &weights, &none);
        assert_eq!(ranked(&fleet, &ranking), ["far"]);
        assert!(!ranking[0].over_limits);
    }

    #[test]
    fn stale_edges_are_only_a_fallback() {
        let mut stale = edge("stale", at(LONDON));
        stale.liveness = Liveness::Stale;
        let mut hot = edge("hot", at(SYDNEY));
        hot.cpu_percent = 99.0;
        let weights = Weights::default();
        // A far live edge beats a near stale one.
        let fleet = Fleet::new(vec![stale.clone(), edge("far", at(SYDNEY))]);
        assert_eq!(best(&fleet, None, at(LONDON), &weights), ["far"]);
        // When no live edge is eligible, the stale ones are ranked.
        let mut stale_far = stale.clone();
        stale_far.node_id = "stale-far".into();
        stale_far.location = at(SYDNEY);
        let fleet = Fleet::new(vec![hot, stale_far, stale]);
        assert_eq!(
            best(&fleet, None, at(LONDON), &weights),
            ["stale", "stale-far"]
        );
    }

    #[test]
    fn full_edges_are_excluded_and_charges_count() {
        let estimate = 5_000_000;
        let mut near = edge("near", at(LONDON));
        near.bandwidth_limit_bps = 100_000_000;
        near.bandwidth_up_bps = 90_000_000;
        let fleet = Fleet::new(vec![near, edge("far", at(NEW_YORK))]);
        let weights = Weights::default();
        let rank_with = |pending: &dyn Fn(&str) -> u64, estimate| {
            ranked(
                &fleet,
                &rank(
                    &fleet,
                    &Demand {
                        stream: None,
                        clusters: None,
                        viewer: at(LONDON),
                        estimate_bps: estimate,
                        limit: 5,
                    },
                    &weights,
                    &pending,
                ),
            )
        };
        // Nearly full, `near` ranks below `far` but is still eligible.
        assert_eq!(rank_with(&none, estimate), ["far", "near"]);
        // Exactly at the limit still fits; one bit over does not.
        assert_eq!(rank_with(&none, 10_000_000), ["far", "near"]);
        assert_eq!(rank_with(&none, 10_000_001), ["far"]);
        // A viewer already sent there fills it up.
        let mut charges = Charges::new(Duration::from_secs(30));
        let now = Instant::now();
        charges.charge("near", "viewer-1".into(), estimate, now);
        let pending = |node: &str| charges.pending_bps(node, now);
        assert_eq!(rank_with(&pending, estimate), ["far", "near"]);
        charges.charge("near", "viewer-2".into(), estimate, now);
        let pending = |node: &str| charges.pending_bps(node, now);
        assert_eq!(rank_with(&pending, estimate), ["far"]);
        // An unknown limit is neither excluded nor asked about.
        let mut unknown = edge("unknown", at(LONDON));
        unknown.bandwidth_limit_bps = 0;
        unknown.bandwidth_up_bps = u64::MAX;
        let fleet = Fleet::new(vec![unknown]);
        let panics = |_: &str| -> u64 { panic!("not asked for an unknown limit") };
        let ranking = rank(
            &fleet,
            &Demand {
                stream: None,
                clusters: None,
                viewer: None,
                estimate_bps: u64::MAX,
                limit: 5,
            },
            &weights,
            &panics,
        );
        assert_eq!(ranking.len(), 1);
    }

    #[test]
    fn charges_expire_and_release() {
        let hold = Duration::from_secs(30);
        let mut charges = Charges::new(hold);
        assert_eq!(charges.hold(), hold);
        let t0 = Instant::now();
        charges.charge("a", "v1".into(), 100, t0);
        charges.charge("a", "v2".into(), 200, t0 + Duration::from_secs(10));
        charges.charge("b", "v3".into(), 50, t0 + Duration::from_secs(20));
        assert_eq!(charges.len(), 3);
        assert_eq!(charges.pending_bps("a", t0 + Duration::from_secs(10)), 300);
        assert_eq!(charges.pending_bps("c", t0), 0);
        // v1 is ignored once held for `hold`, before anyone expires it.
        assert_eq!(charges.pending_bps("a", t0 + hold), 200);
        assert_eq!(charges.len(), 3);
        assert_eq!(charges.expire(t0 + hold), 1);
        assert_eq!(charges.len(), 2);
        assert_eq!(charges.pending_bps("a", t0 + hold), 200);
        assert_eq!(charges.expire(t0 + hold + Duration::from_secs(20)), 2);
        assert!(charges.is_empty());
        assert_eq!(charges.expire(t0 + hold * 10), 0);

        // Release, and a repeated key replacing its charge.
        charges.charge("a", "v1".into(), 100, t0);
        charges.charge("a", "v1".into(), 150, t0 + Duration::from_secs(1));
        assert_eq!(charges.pending_bps("a", t0 + Duration::from_secs(1)), 150);
        assert_eq!(charges.len(), 1);
        charges.charge("a", "v2".into(), 10, t0);
        assert_eq!(charges.pending_bps("a", t0 + Duration::from_secs(1)), 160);
        assert!(!charges.release("a", "nope"));
        assert!(!charges.release("nobody", "v1"));
        assert!(charges.release("a", "v1"));
        assert!(!charges.release("a", "v1"));
        assert_eq!(charges.pending_bps("a", t0 + Duration::from_secs(1)), 10);
        // The refreshed v1 would have outlived the earlier v2.
        assert!(charges.release("a", "v2"));
        assert!(charges.is_empty());

        // Charges recorded out of order still expire by their own time.
        charges.charge("a", "late".into(), 1, t0 + Duration::from_secs(20));
        charges.charge("a", "early".into(), 2, t0);
        assert_eq!(charges.pending_bps("a", t0 + hold), 1);
        assert_eq!(charges.expire(t0 + hold), 1);
        assert_eq!(charges.pending_bps("a", t0 + hold), 1);
    }

    #[test]
    fn zero_weights_ignore_their_component() {
        let mut near_busy = edge("near-busy", at(LONDON));
        near_busy.cpu_percent = 95.0;
        let far_idle = edge("far-idle", at(SYDNEY));
        let fleet = Fleet::new(vec![near_busy, far_idle]);
        let cpu_only = Weights {
            distance: 0.0,
            cpu: 1.0,
            memory: 0.0,
            bandwidth: 0.0,
            presence: 0.0,
        };
        assert_eq!(
            best(&fleet, None, at(LONDON), &cpu_only),
            ["far-idle", "near-busy"]
        );
        let ranking = rank(&fleet, &anyone_at(at(LONDON), 2), &cpu_only, &none);
        assert!((ranking[0].score - 0.9).abs() < 1e-9);
        assert!((ranking[1].score - 0.05).abs() < 1e-9);
        let distance_only = Weights {
            cpu: 0.0,
            distance: 1.0,
            ..cpu_only
        };
        assert_eq!(
            best(&fleet, None, at(LONDON), &distance_only),
            ["near-busy", "far-idle"]
        );
        // All zero (or invalid): every edge scores 0, ordered by node id.
        let nothing = Weights {
            distance: f64::NAN,
            cpu: -1.0,
            memory: 0.0,
            bandwidth: f64::INFINITY,
            presence: 0.0,
        };
        let ranking = rank(&fleet, &anyone_at(at(LONDON), 2), &nothing, &none);
        assert!(ranking.iter().all(|r| r.score == 0.0));
        assert_eq!(ranked(&fleet, &ranking), ["far-idle", "near-busy"]);
    }

    #[test]
    fn unknown_inputs_are_neutral() {
        let mut blank = edge("blank", None);
        blank.memory_total_bytes = 0;
        blank.bandwidth_limit_bps = 0;
        blank.cpu_percent = 50.0;
        let fleet = Fleet::new(vec![blank]);
        let weights = Weights {
            presence: 0.0,
            ..Weights::default()
        };
        let ranking = rank(&fleet, &anyone_at(at(LONDON), 1), &weights, &none);
        assert!((ranking[0].score - 0.5).abs() < 1e-12, "{ranking:?}");
        // The viewer's location unknown: distance is neutral for all.
        let fleet = Fleet::new(vec![edge("b", at(SYDNEY)), edge("a", at(LONDON))]);
        assert_eq!(best(&fleet, None, None, &weights), ["a", "b"]);
    }

    #[test]
    fn limit_is_respected() {
        let edges: Vec<_> = (0..50)
            .map(|i| edge(&format!("edge-{i:02}"), at((f64::from(i), 0.0))))
            .collect();
        let fleet = Fleet::new(edges);
        let weights = Weights::default();
        let viewer = at((0.0, 0.0));
        assert!(
            rank(
                &fleet,
                &Demand {
                    stream: None,
                    clusters: None,
                    viewer,
                    estimate_bps: 0,
                    limit: 0
                },
                &weights,
                &none
            )
            .is_empty()
        );
        let top = rank(
            &fleet,
            &Demand {
                stream: None,
                clusters: None,
                viewer,
                estimate_bps: 0,
                limit: 5,
            },
            &weights,
            &none,
        );
        assert_eq!(
            ranked(&fleet, &top),
            ["edge-00", "edge-01", "edge-02", "edge-03", "edge-04"]
        );
        assert_eq!(
            rank(
                &fleet,
                &Demand {
                    stream: None,
                    clusters: None,
                    viewer,
                    estimate_bps: 0,
                    limit: 500
                },
                &weights,
                &none
            )
            .len(),
            50
        );
        assert!(
            rank(
                &Fleet::default(),
                &Demand {
                    stream: None,
                    clusters: None,
                    viewer,
                    estimate_bps: 0,
                    limit: 5
                },
                &weights,
                &none
            )
            .is_empty()
        );
    }

    /// A deterministic pseudo-random sequence (xorshift64).
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn random_fleet(random: &mut XorShift, count: usize) -> Fleet {
        let edges = (0..count)
            .map(|i| {
                let mut e = edge(
                    &format!("edge-{i:04}"),
                    GeoPoint::new(random.unit() * 180.0 - 90.0, random.unit() * 360.0 - 180.0),
                );
                // Coarse values so that ties happen.
                e.cpu_percent = (random.next() % 5) as f64 * 20.0;
                e.bandwidth_up_bps = (random.next() % 10) * GBPS;
                e.liveness = match random.next() % 10 {
                    0 => Liveness::Stale,
                    1 => Liveness::Gone,
                    _ => Liveness::Live,
                };
                if random.next().is_multiple_of(4) {
                    e.location = None;
                }
                e
            })
            .collect();
        Fleet::new(edges)
    }

    #[test]
    fn bounded_ranking_is_the_head_of_the_full_one() {
        // With `usize::MAX` nothing is ever pruned, so this also checks that
        // pruning by upper bound changes no answer.
        let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
        // Some nodes have viewers pending, some enough to be excluded.
        let pending = |node: &str| {
            let spread: u64 = node.bytes().map(u64::from).sum();
            (spread % 4) * GBPS
        };
        for round in 0..30 {
            let mut fleet = random_fleet(&mut random, 200);
            for _ in 0..20 {
                let node = format!("edge-{:04}", random.next() % 200);
                fleet.add_presence("show", &node);
            }
            let viewer = GeoPoint::new(random.unit() * 180.0 - 90.0, 0.0);
            let weights = if round % 3 == 0 {
                Weights::default()
            } else {
                Weights {
                    distance: random.unit(),
                    cpu: random.unit(),
                    memory: random.unit(),
                    bandwidth: random.unit(),
                    presence: random.unit(),
                }
            };
            let all = rank(
                &fleet,
                &Demand {
                    stream: Some("show"),
                    clusters: None,
                    viewer,
                    estimate_bps: GBPS,
                    limit: usize::MAX,
                },
                &weights,
                &pending,
            );
            assert!(all.len() > 20, "{} eligible", all.len());
            for window in all.windows(2) {
                let (a, b) = (&window[0], &window[1]);
                let node = |r: &Ranked| &fleet.edges()[r.index as usize].node_id;
                assert!(a.score > b.score || (a.score == b.score && node(a) < node(b)));
            }
            for limit in [1, 3, 5, 17] {
                let top = rank(
                    &fleet,
                    &Demand {
                        stream: Some("show"),
                        clusters: None,
                        viewer,
                        estimate_bps: GBPS,
                        limit,
                    },
                    &weights,
                    &pending,
                );
                assert_eq!(top, all[..limit.min(all.len())]);
            }
        }
    }

    #[test]
    fn node_hasher_spreads_node_ids() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<NodeHasher>::default();
        let hashes: std::collections::HashSet<u64> = (0..10_000)
            .map(|i| build.hash_one(format!("edge-{i:04}")))
            .collect();
        assert_eq!(hashes.len(), 10_000);
        // The top 7 bits pick the control byte in the map: all used.
        let tops: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert_eq!(tops.len(), 128);
        assert_ne!(build.hash_one("a"), build.hash_one("a\0"));
    }

    #[test]
    fn ties_are_broken_by_node_id_whatever_the_order() {
        let names = ["delta", "alpha", "charlie", "bravo", "echo"];
        let forward: Vec<_> = names.iter().map(|n| edge(n, at(FRANKFURT))).collect();
        let mut backward = forward.clone();
        backward.reverse();
        let weights = Weights::default();
        for edges in [forward, backward] {
            let fleet = Fleet::new(edges);
            let first = best(&fleet, None, at(LONDON), &weights);
            assert_eq!(first, ["alpha", "bravo", "charlie", "delta", "echo"]);
            assert_eq!(best(&fleet, None, at(LONDON), &weights), first);
            let two = rank(&fleet, &anyone_at(at(LONDON), 2), &weights, &none);
            assert_eq!(ranked(&fleet, &two), ["alpha", "bravo"]);
        }
    }

    #[test]
    fn fleet_accessors() {
        let fleet = Fleet::new(vec![edge("a", None), edge("b", None), edge("a", None)]);
        assert_eq!(fleet.len(), 3);
        assert!(!fleet.is_empty());
        assert_eq!(fleet.index_of("a"), Some(0));
        assert_eq!(fleet.index_of("b"), Some(1));
        assert_eq!(fleet.index_of("z"), None);
        assert_eq!(fleet.edge(1).map(|e| e.node_id.as_str()), Some("b"));
        assert!(fleet.edge(3).is_none());
        assert_eq!(fleet.edges().len(), 3);
        assert!(fleet.presence("nothing").is_empty());
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        weights: Weights,
    }

    #[test]
    fn weights_from_the_command_line() {
        let defaults = Cli::try_parse_from(["balancer"]).expect("defaults parse");
        // The environment could set them; only check when it does not.
        if std::env::vars().all(|(k, _)| !k.starts_with("FRAMEWORKS_BALANCER_WEIGHT_")) {
            assert_eq!(defaults.weights, Weights::default());
        }
        let set = Cli::try_parse_from([
            "balancer",
            "--weight-distance",
            "2",
            "--weight-cpu=0",
            "--weight-memory",
            "0.1",
            "--weight-bandwidth",
            "3.5",
            "--weight-presence",
            "1e-3",
        ])
        .expect("weights parse");
        assert_eq!(
            set.weights,
            Weights {
                distance: 2.0,
                cpu: 0.0,
                memory: 0.1,
                bandwidth: 3.5,
                presence: 0.001,
            }
        );
        for bad in ["-1", "NaN", "inf", "heavy", ""] {
            let parsed = Cli::try_parse_from(["balancer", "--weight-cpu", bad]);
            assert!(parsed.is_err(), "`{bad}` accepted");
        }
    }
}
