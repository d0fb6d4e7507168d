//! Where a viewer is: points on the globe, great-circle distances, a GeoIP
//! table loaded from MaxMind's City CSV "Blocks" files, and the locations
//! CDNs and proxies put in request headers.
//!
//! Routing only needs a rough position (which edges are near), so a point
//! is all we keep of a GeoIP row; an unknown location is not an error but a
//! neutral input the scorer knows how to treat.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::HeaderMap;

/// Mean Earth radius (IUGG), in kilometres.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// A valid position: finite latitude in [-90, 90] and longitude in
/// [-180, 180] degrees. Only [`GeoPoint::new`] makes one, so every point the
/// balancer holds gives a finite distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    lat: f64,
    lon: f64,
}

impl GeoPoint {
    /// The point at `lat`, `lon` degrees, or `None` when either is not
    /// finite or out of range.
    #[must_use]
    pub fn new(lat: f64, lon: f64) -> Option<GeoPoint> {
        let valid = lat.is_finite()
            && lon.is_finite()
            && (-90.0..=90.0).contains(&lat)
            && (-180.0..=180.0).contains(&lon);
        valid.then_some(GeoPoint { lat, lon })
    }

    /// Latitude in degrees.
    #[must_use]
    pub fn lat(&self) -> f64 {
        self.lat
    }

    /// Longitude in degrees.
    #[must_use]
    pub fn lon(&self) -> f64 {
        self.lon
    }

    /// Great-circle distance to `other` in kilometres (haversine).
    #[must_use]
    pub fn distance_km(&self, other: &GeoPoint) -> f64 {
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let half_dlat = (lat2 - lat1) / 2.0;
        let half_dlon = (other.lon - self.lon).to_radians() / 2.0;
        let a = half_dlat.sin().powi(2) + lat1.cos() * lat2.cos() * half_dlon.sin().powi(2);
        // Rounding can push `a` a hair outside [0, 1] near antipodes.
        let a = a.clamp(0.0, 1.0);
        2.0 * EARTH_RADIUS_KM * a.sqrt().atan2((1.0 - a).sqrt())
    }

    /// The point as a unit vector, so distances from one viewer to many
    /// edges cost a square root and an arcsine each instead of four
    /// trigonometric calls (see [`UnitVector::arc_km`]).
    pub(crate) fn unit_vector(&self) -> UnitVector {
        let (lat, lon) = (self.lat.to_radians(), self.lon.to_radians());
        UnitVector([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()])
    }
}

/// A point on the unit sphere; see [`GeoPoint::unit_vector`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct UnitVector([f64; 3]);

impl UnitVector {
    /// Half the straight-line distance to `other` through the Earth, on the
    /// unit sphere: the sine of half the angle between the points.
    pub(crate) fn half_chord(&self, other: &UnitVector) -> f64 {
        let [dx, dy, dz] = [
            self.0[0] - other.0[0],
            self.0[1] - other.0[1],
            self.0[2] - other.0[2],
        ];
        ((dx * dx + dy * dy + dz * dz).sqrt() / 2.0).min(1.0)
    }

    /// The great-circle distance in kilometres for a half chord: the same
    /// value as [`GeoPoint::distance_km`].
    pub(crate) fn arc_km(half_chord: f64) -> f64 {
        2.0 * EARTH_RADIUS_KM * half_chord.asin()
    }

    /// A lower bound of [`UnitVector::arc_km`] without its arcsine
    /// (asin x ≥ x), with a margin far above the arcsine's rounding error so
    /// it stays a bound in floating point.
    pub(crate) fn arc_km_at_least(half_chord: f64) -> f64 {
        2.0 * EARTH_RADIUS_KM * (half_chord * (1.0 - 1e-9))
    }
}

/// Why a GeoIP file could not be loaded. `path` is `None` when the data
/// came from a reader rather than a file.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    /// The file could not be opened or read.
    #[error("reading GeoIP data {}: {source}", Origin(path))]
    Io {
        path: Option<PathBuf>,
        #[source]
        source: std::io::Error,
    },
    /// The header line lacks a column routing needs (or there is no header).
    #[error("GeoIP data {} has no `{column}` column in its header", Origin(path))]
    Header {
        path: Option<PathBuf>,
        column: &'static str,
    },
    /// A row is malformed; `line` counts from 1, the header being line 1.
    #[error("GeoIP data {} line {line}: {message}", Origin(path))]
    Row {
        path: Option<PathBuf>,
        line: u64,
        message: String,
    },
}

impl GeoIpError {
    fn with_path(mut self, file: &Path) -> GeoIpError {
        let (GeoIpError::Io { path, .. }
        | GeoIpError::Header { path, .. }
        | GeoIpError::Row { path, .. }) = &mut self;
        *path = Some(file.to_path_buf());
        self
    }
}

/// Displays an optional path for error messages.
struct Origin<'a>(&'a Option<PathBuf>);

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "{}", path.display()),
            None => f.write_str("(reader)"),
        }
    }
}

/// One address range and its location: `start..=end`.
type Range<A> = (A, A, GeoPoint);

/// A GeoIP database: address ranges to points, looked up by binary search.
///
/// Loaded from MaxMind's GeoLite2/GeoIP2 City CSV "Blocks" files (IPv4 and
/// IPv6 alike; give both). Rows may nest, as when an operator's own file
/// places private ranges: the most specific network wins, and between
/// identical networks the one loaded last. The table is flattened into
/// disjoint sorted ranges when loaded, so a lookup is O(log n).
#[derive(Debug, Clone, Default)]
pub struct GeoIpTable {
    v4: Vec<Range<u32>>,
    v6: Vec<Range<u128>>,
}

impl GeoIpTable {
    /// Loads one Blocks CSV file.
    pub fn from_csv_path(path: impl AsRef<Path>) -> Result<GeoIpTable, GeoIpError> {
        GeoIpTable::from_csv_paths([path])
    }

    /// Loads several Blocks CSV files (typically the IPv4 and the IPv6
    /// one) into one table.
    pub fn from_csv_paths(
        paths: impl IntoIterator<Item = impl AsRef<Path>>,
    ) -> Result<GeoIpTable, GeoIpError> {
        let mut rows = Rows::default();
        for path in paths {
            let path = path.as_ref();
            let file = File::open(path).map_err(|source| GeoIpError::Io {
                path: Some(path.to_path_buf()),
                source,
            })?;
            rows.read(BufReader::with_capacity(1 << 16, file))
                .map_err(|e| e.with_path(path))?;
        }
        Ok(rows.finish())
    }

    /// Loads Blocks CSV data from a reader.
    pub fn from_csv_reader(reader: impl BufRead) -> Result<GeoIpTable, GeoIpError> {
        GeoIpTable::from_csv_readers([reader])
    }

    /// Loads several Blocks CSV inputs, each with its own header.
    pub fn from_csv_readers(
        readers: impl IntoIterator<Item = impl BufRead>,
    ) -> Result<GeoIpTable, GeoIpError> {
        let mut rows = Rows::default();
        for reader in readers {
            rows.read(reader)?;
        }
        Ok(rows.finish())
    }

    /// Where `ip` is, if the table knows. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`) are looked up as the IPv4 address they carry.
    #[must_use]
    pub fn lookup(&self, ip: IpAddr) -> Option<GeoPoint> {
        match ip {
            IpAddr::V4(v4) => find(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => {
                    find(&self.v4, u32::from(v4)).or_else(|| find(&self.v6, u128::from(v6)))
                }
                None => find(&self.v6, u128::from(v6)),
            },
        }
    }

    /// Number of disjoint ranges held (IPv4 and IPv6).
    #[must_use]
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the table knows no address at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The range holding `address` in disjoint ranges sorted by start.
fn find<A: Copy + Ord>(ranges: &[Range<A>], address: A) -> Option<GeoPoint> {
    let after = ranges.partition_point(|&(start, _, _)| start <= address);
    let &(_, end, point) = ranges.get(after.checked_sub(1)?)?;
    (address <= end).then_some(point)
}

/// An address width the loader works with.
trait Address: Copy + Ord + fmt::Debug {
    fn next(self) -> Option<Self>;
    fn prev(self) -> Option<Self>;
}

impl Address for u32 {
    fn next(self) -> Option<u32> {
        self.checked_add(1)
    }
    fn prev(self) -> Option<u32> {
        self.checked_sub(1)
    }
}

impl Address for u128 {
    fn next(self) -> Option<u128> {
        self.checked_add(1)
    }
    fn prev(self) -> Option<u128> {
        self.checked_sub(1)
    }
}

/// Rows read so far, as CIDR ranges in load order.
#[derive(Debug, Default)]
struct Rows {
    v4: Vec<Range<u32>>,
    v6: Vec<Range<u128>>,
}

/// Columns of the Blocks header that routing reads.
struct Columns {
    count: usize,
    network: usize,
    latitude: usize,
    longitude: usize,
}

impl Rows {
    fn read(&mut self, mut reader: impl BufRead) -> Result<(), GeoIpError> {
        let io = |source| GeoIpError::Io { path: None, source };
        let mut line = String::new();
        let header_missing = |column| GeoIpError::Header { path: None, column };
        if reader.read_line(&mut line).map_err(io)? == 0 {
            return Err(header_missing("network"));
        }
        let columns = header(&line).map_err(header_missing)?;
        let mut number = 1u64;
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(io)? == 0 {
                return Ok(());
            }
            number += 1;
            let row = line.trim_end_matches(['\r', '\n']);
            if row.is_empty() {
                continue;
            }
            self.row(row, &columns).map_err(|message| GeoIpError::Row {
                path: None,
                line: number,
                message,
            })?;
        }
    }

    fn row(&mut self, row: &str, columns: &Columns) -> Result<(), String> {
        let (mut network, mut latitude, mut longitude) = ("", "", "");
        let mut count = 0;
        for (index, field) in row.split(',').enumerate() {
            count += 1;
            if index == columns.network {
                network = unquote(field);
            } else if index == columns.latitude {
                latitude = unquote(field);
            } else if index == columns.longitude {
                longitude = unquote(field);
            }
        }
        if count != columns.count {
            // Also what a quoted field holding a comma looks like: refusing
            // it beats reading the wrong column.
            return Err(format!(
                "{count} columns where the header has {}",
                columns.count
            ));
        }
        if latitude.is_empty() || longitude.is_empty() {
            // MaxMind leaves the location of some networks unknown.
            return Ok(());
        }
        let lat: f64 = latitude
            .parse()
            .map_err(|_| format!("latitude `{latitude}` is not a number"))?;
        let lon: f64 = longitude
            .parse()
            .map_err(|_| format!("longitude `{longitude}` is not a number"))?;
        let point = GeoPoint::new(lat, lon)
            .ok_or_else(|| format!("coordinates {latitude},{longitude} are out of range"))?;
        match parse_network(network)? {
            Network::V4(start, end) => self.v4.push((start, end, point)),
            Network::V6(start, end) => self.v6.push((start, end, point)),
        }
        Ok(())
    }

    fn finish(self) -> GeoIpTable {
        GeoIpTable {
            v4: flatten(self.v4),
            v6: flatten(self.v6),
        }
    }
}

/// Finds the columns routing reads in a header line.
fn header(line: &str) -> Result<Columns, &'static str> {
    let line = line
        .trim_start_matches('\u{feff}')
        .trim_end_matches(['\r', '\n']);
    let (mut network, mut latitude, mut longitude) = (None, None, None);
    let mut count = 0;
    for (index, name) in line.split(',').enumerate() {
        count += 1;
        match unquote(name) {
            "network" => network = Some(index),
            "latitude" => latitude = Some(index),
            "longitude" => longitude = Some(index),
            _ => {}
        }
    }
    Ok(Columns {
        count,
        network: network.ok_or("network")?,
        latitude: latitude.ok_or("latitude")?,
        longitude: longitude.ok_or("longitude")?,
    })
}

/// A field without surrounding blanks and double quotes.
fn unquote(field: &str) -> &str {
    let field = field.trim();
    field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(field)
}

enum Network {
    V4(u32, u32),
    V6(u128, u128),
}

/// Parses a CIDR network into its first and last address. Host bits set in
/// the address are ignored. IPv6 networks inside `::ffff:0:0/96` become the
/// IPv4 networks they map, so both spellings land in the IPv4 table.
fn parse_network(network: &str) -> Result<Network, String> {
    let invalid = || format!("network `{network}` is not a CIDR network");
    let (address, prefix) = network.split_once('/').ok_or_else(invalid)?;
    let prefix: u32 = prefix.parse().map_err(|_| invalid())?;
    match address.parse::<IpAddr>().map_err(|_| invalid())? {
        IpAddr::V4(v4) if prefix <= 32 => Ok(v4_range(v4, prefix)),
        IpAddr::V6(v6) if prefix <= 128 => match v6.to_ipv4_mapped() {
            Some(v4) if prefix >= 96 => Ok(v4_range(v4, prefix - 96)),
            _ => {
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                let start = u128::from(v6) & mask;
                Ok(Network::V6(start, start | !mask))
            }
        },
        _ => Err(format!(
            "network `{network}` has a prefix length out of range"
        )),
    }
}

fn v4_range(address: Ipv4Addr, prefix: u32) -> Network {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    let start = u32::from(address) & mask;
    Network::V4(start, start | !mask)
}

/// Turns CIDR ranges (each pair nested or disjoint) into disjoint ranges
/// sorted by start, the most specific range owning each address and, among
/// identical ranges, the last loaded. Neighbours with the same point merge.
fn flatten<A: Address>(mut ranges: Vec<Range<A>>) -> Vec<Range<A>> {
    // Widest first among equal starts, so containers come before contents;
    // the sort is stable, so identical ranges keep their load order.
    ranges.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out: Vec<Range<A>> = Vec::with_capacity(ranges.len());
    let mut emit = |start: A, end: A, point: GeoPoint| match out.last_mut() {
        Some(last) if last.2 == point && last.1.next() == Some(start) => last.1 = end,
        _ => out.push((start, end, point)),
    };
    // The ranges containing the current one, innermost last, and the first
    // address not yet given to any range (`None` once the space is done).
    let mut open: Vec<Range<A>> = Vec::new();
    let mut cursor = ranges.first().map(|r| r.0);
    for range in ranges {
        while let Some(&(_, end, point)) = open.last() {
            if end >= range.0 {
                break;
            }
            open.pop();
            if let Some(from) = cursor.filter(|&c| c <= end) {
                emit(from, end, point);
            }
            cursor = end.next();
        }
        if let Some(&(_, _, point)) = open.last()
            && let Some(from) = cursor.filter(|&c| c < range.0)
            && let Some(to) = range.0.prev()
        {
            emit(from, to, point);
        }
        if cursor.is_none_or(|c| c < range.0) {
            cursor = Some(range.0);
        }
        open.push(range);
    }
    while let Some((_, end, point)) = open.pop() {
        if let Some(from) = cursor.filter(|&c| c <= end) {
            emit(from, end, point);
        }
        cursor = end.next();
    }
    out.shrink_to_fit();
    out
}

/// Request headers CDNs and proxies use for the viewer's position, in the
/// order they are trusted: CloudFront, Cloudflare, then generic.
const HEADER_PAIRS: [(&str, &str); 3] = [
    ("cloudfront-viewer-latitude", "cloudfront-viewer-longitude"),
    ("cf-iplatitude", "cf-iplongitude"),
    ("x-latitude", "x-longitude"),
];

/// The viewer's position as a CDN or proxy gave it in request headers: the
/// first pair that is present and valid.
#[must_use]
pub fn from_headers(headers: &HeaderMap) -> Option<GeoPoint> {
    let coordinate =
        |name: &str| -> Option<f64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    HEADER_PAIRS
        .iter()
        .find_map(|&(lat, lon)| GeoPoint::new(coordinate(lat)?, coordinate(lon)?))
}

/// Where a viewer's location came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationSource {
    /// The GeoIP database knew the address.
    GeoIp,
    /// A CDN or proxy header.
    Headers,
    /// Nothing: routing treats distance as neutral.
    Unknown,
}

/// A viewer's location and its source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Located {
    pub point: Option<GeoPoint>,
    pub source: LocationSource,
}

/// Locates viewers: the GeoIP database first (when configured), since it
/// reads the connecting address itself, then request headers.
#[derive(Debug, Clone, Default)]
pub struct ViewerLocator {
    pub geoip: Option<Arc<GeoIpTable>>,
}

impl ViewerLocator {
    /// Where the viewer at `ip` (the connecting address, if known) is.
    #[must_use]
    pub fn locate(&self, ip: Option<IpAddr>, headers: &HeaderMap) -> Located {
        if let (Some(table), Some(ip)) = (&self.geoip, ip)
            && let Some(point) = table.lookup(ip)
        {
            return Located {
                point: Some(point),
                source: LocationSource::GeoIp,
            };
        }
        match from_headers(headers) {
            Some(point) => Located {
                point: Some(point),
                source: LocationSource::Headers,
            },
            None => Located {
                point: None,
                source: LocationSource::Unknown,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn point(lat: f64, lon: f64) -> GeoPoint {
        GeoPoint::new(lat, lon).expect("valid point")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    /// `::ffff:a.b.c.d` for an IPv4 address: what dual-stack sockets report.
    fn mapped(v4: Ipv4Addr) -> IpAddr {
        IpAddr::V6(v4.to_ipv6_mapped())
    }

    #[test]
    fn points_refuse_invalid_coordinates() {
        assert!(GeoPoint::new(90.0, 180.0).is_some());
        assert!(GeoPoint::new(-90.0, -180.0).is_some());
        assert!(GeoPoint::new(90.1, 0.0).is_none());
        assert!(GeoPoint::new(0.0, -180.5).is_none());
        assert!(GeoPoint::new(f64::NAN, 0.0).is_none());
        assert!(GeoPoint::new(0.0, f64::INFINITY).is_none());
        let p = point(51.5, -0.12);
        assert_eq!((p.lat(), p.lon()), (51.5, -0.12));
    }

    #[test]
    fn known_distances() {
        let london = point(51.5074, -0.1278);
        let new_york = point(40.7128, -74.0060);
        let d = london.distance_km(&new_york);
        assert!((d - 5570.0).abs() <= 15.0, "London–New York {d} km");
        assert_eq!(london.distance_km(&london), 0.0);
        let antipode = point(-51.5074, 179.8722);
        let d = london.distance_km(&antipode);
        assert!((d - 20015.1).abs() < 1.0, "antipodes {d} km");
        assert!((point(0.0, 0.0).distance_km(&point(0.0, 180.0)) - 20015.1).abs() < 1.0);
    }

    #[test]
    fn unit_vectors_agree_with_haversine() {
        let places = [
            point(51.5074, -0.1278),
            point(40.7128, -74.0060),
            point(-33.8688, 151.2093),
            point(35.6762, 139.6503),
            point(-51.5074, 179.8722),
            point(90.0, 0.0),
            point(0.0, -180.0),
            point(0.0, 180.0),
        ];
        for a in &places {
            for b in &places {
                let haversine = a.distance_km(b);
                let (u, v) = (a.unit_vector(), b.unit_vector());
                let half = u.half_chord(&v);
                let chord = UnitVector::arc_km(half);
                assert!((haversine - chord).abs() < 1e-3, "{a:?} {b:?}");
                assert!(UnitVector::arc_km_at_least(half) <= chord);
                assert!(UnitVector::arc_km_at_least(half) >= chord * 0.6);
            }
        }
    }

    const SAMPLE: &str = "\u{feff}network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider,postal_code,latitude,longitude,accuracy_radius,is_anycast\r
1.0.0.0/24,2077456,2077456,,0,0,,-33.4940,143.2104,1000,\r
1.0.1.0/24,1814991,1814991,,0,0,,34.7732,113.7220,1000,\r
1.0.4.0/22,2147714,2077456,,0,0,3000,-37.8159,144.9669,1000,\r
1.0.8.0/21,,,,0,0,,,,,\r
2001:200::/32,1861060,1861060,,0,0,,35.6900,139.6900,100,\r
2001:218:4000::/34,,,,0,0,,,,,\r
2a02:c7c::/32,2635167,2635167,,0,0,,52.4,-1.5,200,\r
::ffff:9.9.9.0/120,2643743,2643743,,0,0,,51.5,-0.12,50,\r
\r
";

    #[test]
    fn loads_ipv4_and_ipv6_blocks() {
        let table = GeoIpTable::from_csv_reader(SAMPLE.as_bytes()).expect("sample loads");
        let sydney_ish = point(-33.4940, 143.2104);
        let melbourne = point(-37.8159, 144.9669);
        let tokyo = point(35.69, 139.69);
        // Inside and at both boundaries.
        assert_eq!(table.lookup(ip("1.0.0.0")), Some(sydney_ish));
        assert_eq!(table.lookup(ip("1.0.0.77")), Some(sydney_ish));
        assert_eq!(table.lookup(ip("1.0.0.255")), Some(sydney_ish));
        assert_eq!(table.lookup(ip("1.0.1.0")), Some(point(34.7732, 113.7220)));
        assert_eq!(table.lookup(ip("1.0.4.0")), Some(melbourne));
        assert_eq!(table.lookup(ip("1.0.7.255")), Some(melbourne));
        // Outside: before, in a gap, a row without location, after.
        assert_eq!(table.lookup(ip("0.255.255.255")), None);
        assert_eq!(table.lookup(ip("1.0.2.0")), None);
        assert_eq!(table.lookup(ip("1.0.8.1")), None);
        assert_eq!(table.lookup(ip("255.255.255.255")), None);
        // IPv6 and mapped IPv4.
        assert_eq!(table.lookup(ip("2001:200::1")), Some(tokyo));
        assert_eq!(
            table.lookup(ip("2001:200:ffff:ffff:ffff:ffff:ffff:ffff")),
            Some(tokyo)
        );
        assert_eq!(table.lookup(ip("2001:201::")), None);
        assert_eq!(table.lookup(ip("2001:218:4000::1")), None);
        assert_eq!(table.lookup(ip("2a02:c7c:1::")), Some(point(52.4, -1.5)));
        assert_eq!(table.lookup(ip("::")), None);
        assert_eq!(
            table.lookup(mapped(Ipv4Addr::new(1, 0, 0, 9))),
            Some(sydney_ish)
        );
        assert_eq!(table.lookup(mapped(Ipv4Addr::new(1, 0, 2, 9))), None);
        // A mapped network in the IPv6 file answers for IPv4 too.
        assert_eq!(table.lookup(ip("9.9.9.9")), Some(point(51.5, -0.12)));
        assert_eq!(
            table.lookup(ip("::ffff:9.9.9.255")),
            Some(point(51.5, -0.12))
        );
        assert_eq!(table.lookup(ip("9.9.10.0")), None);
    }

    #[test]
    fn loads_several_files() {
        let dir = std::env::temp_dir().join(format!("fw-geoip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let v4 = dir.join("v4.csv");
        let v6 = dir.join("v6.csv");
        std::fs::write(&v4, "network,latitude,longitude\n10.0.0.0/8,1,2\n").expect("write");
        std::fs::write(&v6, "network,latitude,longitude\nfd00::/8,3,4\n").expect("write");
        let table = GeoIpTable::from_csv_paths([&v4, &v6]).expect("both load");
        assert_eq!(table.lookup(ip("10.1.2.3")), Some(point(1.0, 2.0)));
        assert_eq!(table.lookup(ip("fd12::1")), Some(point(3.0, 4.0)));
        assert_eq!(table.len(), 2);
        let missing = dir.join("missing.csv");
        match GeoIpTable::from_csv_path(&missing) {
            Err(GeoIpError::Io { path, .. }) => assert_eq!(path, Some(missing)),
            other => panic!("expected an Io error, got {other:?}"),
        }
        std::fs::write(&v6, "network,latitude,longitude\nfd00::/8,3\n").expect("write");
        match GeoIpTable::from_csv_paths([&v4, &v6]) {
            Err(GeoIpError::Row { path, line: 2, .. }) => assert_eq!(path, Some(v6.clone())),
            other => panic!("expected a Row error, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nested_networks_most_specific_wins() {
        let data = "network,latitude,longitude
10.0.0.0/8,1,1
10.1.0.0/16,2,2
10.1.2.0/24,3,3
10.1.2.0/24,4,4
10.200.0.0/16,5,5
0.0.0.0/0,6,6
255.255.255.255/32,7,7
";
        let table = GeoIpTable::from_csv_reader(data.as_bytes()).expect("loads");
        let at = |s| table.lookup(ip(s)).map(|p| p.lat());
        assert_eq!(at("9.255.255.255"), Some(6.0));
        assert_eq!(at("10.0.0.0"), Some(1.0));
        assert_eq!(at("10.0.255.255"), Some(1.0));
        assert_eq!(at("10.1.0.0"), Some(2.0));
        assert_eq!(at("10.1.1.255"), Some(2.0));
        assert_eq!(at("10.1.2.0"), Some(4.0));
        assert_eq!(at("10.1.2.255"), Some(4.0));
        assert_eq!(at("10.1.3.0"), Some(2.0));
        assert_eq!(at("10.2.0.0"), Some(1.0));
        assert_eq!(at("10.200.9.9"), Some(5.0));
        assert_eq!(at("10.201.0.0"), Some(1.0));
        assert_eq!(at("11.0.0.0"), Some(6.0));
        assert_eq!(at("255.255.255.254"), Some(6.0));
        assert_eq!(at("255.255.255.255"), Some(7.0));
        assert_eq!(at("0.0.0.0"), Some(6.0));
        // Disjoint pieces: 0/0 split around 10/8 and the last address.
        assert_eq!(table.len(), 10);
        let w = table.v4.windows(2).all(|w| w[0].1 < w[1].0);
        assert!(w, "ranges disjoint and sorted");
    }

    #[test]
    fn adjacent_ranges_with_one_point_merge() {
        let data = "network,latitude,longitude\n1.0.0.0/24,1,1\n1.0.1.0/24,1,1\n1.0.2.0/24,2,2\n";
        let table = GeoIpTable::from_csv_reader(data.as_bytes()).expect("loads");
        assert_eq!(table.len(), 2);
        assert_eq!(table.lookup(ip("1.0.1.200")), Some(point(1.0, 1.0)));
    }

    fn row_error(data: &str) -> (u64, String) {
        match GeoIpTable::from_csv_reader(data.as_bytes()) {
            Err(GeoIpError::Row {
                path: None,
                line,
                message,
            }) => (line, message),
            other => panic!("expected a Row error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_rows_name_their_line() {
        let head = "network,latitude,longitude,accuracy_radius\n1.0.0.0/24,1,1,5\n";
        let (line, message) = row_error(&format!("{head}1.0.1.0,1,1,5\n"));
        assert_eq!(line, 3);
        assert!(message.contains("1.0.1.0"), "{message}");
        assert_eq!(row_error(&format!("{head}1.0.1.0/33,1,1,5\n")).0, 3);
        assert_eq!(row_error(&format!("{head}\n2001::/129,1,1,5\n")).0, 4);
        assert_eq!(row_error(&format!("{head}banana/8,1,1,5\n")).0, 3);
        assert_eq!(row_error(&format!("{head}1.0.1.0/24,north,1,5\n")).0, 3);
        assert_eq!(row_error(&format!("{head}1.0.1.0/24,91,1,5\n")).0, 3);
        assert_eq!(row_error(&format!("{head}1.0.1.0/24,1,NaN,5\n")).0, 3);
        assert_eq!(row_error(&format!("{head}1.0.1.0/24,1,1\n")).0, 3);
        // A quoted comma shifts the columns: refused, not misread.
        let (line, message) = row_error(&format!("{head}1.0.1.0/24,1,1,\"5,6\"\n"));
        assert_eq!(line, 3);
        assert!(message.contains("columns"), "{message}");
        // Quotes around fields we read are fine.
        let quoted = "network,latitude,longitude\n\"1.0.0.0/24\",\"1.5\",\"2.5\"\n";
        let table = GeoIpTable::from_csv_reader(quoted.as_bytes()).expect("loads");
        assert_eq!(table.lookup(ip("1.0.0.1")), Some(point(1.5, 2.5)));
    }

    #[test]
    fn headers_must_name_the_columns() {
        for (data, missing) in [
            ("", "network"),
            ("net,latitude,longitude\n", "network"),
            ("network,lat,longitude\n", "latitude"),
            ("network,latitude\n", "longitude"),
        ] {
            match GeoIpTable::from_csv_reader(data.as_bytes()) {
                Err(GeoIpError::Header { column, .. }) => assert_eq!(column, missing),
                other => panic!("expected a Header error, got {other:?}"),
            }
        }
        let empty = GeoIpTable::from_csv_reader("network,latitude,longitude\n".as_bytes());
        assert!(empty.expect("header only").is_empty());
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for &(name, value) in pairs {
            map.insert(name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn header_precedence() {
        let all = headers(&[
            ("x-latitude", "3"),
            ("x-longitude", "3"),
            ("cf-iplatitude", "2"),
            ("cf-iplongitude", "2"),
            ("cloudfront-viewer-latitude", "1"),
            ("cloudfront-viewer-longitude", "1"),
        ]);
        assert_eq!(from_headers(&all), Some(point(1.0, 1.0)));
        let cloudflare = headers(&[
            ("x-latitude", "3"),
            ("x-longitude", "3"),
            ("CF-IPLatitude", " 2.5 "),
            ("CF-IPLongitude", "-2"),
        ]);
        assert_eq!(from_headers(&cloudflare), Some(point(2.5, -2.0)));
        let generic = headers(&[("X-Latitude", "3"), ("X-Longitude", "4")]);
        assert_eq!(from_headers(&generic), Some(point(3.0, 4.0)));
        assert_eq!(from_headers(&HeaderMap::new()), None);
    }

    #[test]
    fn invalid_or_partial_header_pairs_are_ignored() {
        // CloudFront half present, Cloudflare out of range: generic wins.
        let map = headers(&[
            ("cloudfront-viewer-latitude", "10"),
            ("cf-iplatitude", "100"),
            ("cf-iplongitude", "5"),
            ("x-latitude", "-12.5"),
            ("x-longitude", "130"),
        ]);
        assert_eq!(from_headers(&map), Some(point(-12.5, 130.0)));
        for (lat, lon) in [("nan", "1"), ("1", "inf"), ("north", "1"), ("", "1")] {
            let mut map = HeaderMap::new();
            map.insert("x-latitude", HeaderValue::from_str(lat).expect("value"));
            map.insert("x-longitude", HeaderValue::from_str(lon).expect("value"));
            assert_eq!(from_headers(&map), None, "{lat},{lon}");
        }
        let mut opaque = HeaderMap::new();
        opaque.insert(
            "x-latitude",
            HeaderValue::from_bytes(b"\xff1").expect("value"),
        );
        opaque.insert("x-longitude", HeaderValue::from_static("1"));
        assert_eq!(from_headers(&opaque), None);
    }

    #[test]
    fn locator_prefers_geoip_then_headers() {
        let table = GeoIpTable::from_csv_reader(SAMPLE.as_bytes()).expect("sample loads");
        let located = ViewerLocator {
            geoip: Some(Arc::new(table)),
        };
        let with_headers = headers(&[("x-latitude", "3"), ("x-longitude", "4")]);
        let known = located.locate(Some(ip("1.0.0.1")), &with_headers);
        assert_eq!(known.source, LocationSource::GeoIp);
        assert_eq!(known.point, Some(point(-33.4940, 143.2104)));
        let unknown_ip = located.locate(Some(ip("8.8.8.8")), &with_headers);
        assert_eq!(unknown_ip.source, LocationSource::Headers);
        assert_eq!(unknown_ip.point, Some(point(3.0, 4.0)));
        let no_ip = located.locate(None, &HeaderMap::new());
        assert_eq!(
            no_ip,
            Located {
                point: None,
                source: LocationSource::Unknown
            }
        );
        let without_table = ViewerLocator::default();
        let h = without_table.locate(Some(ip("1.0.0.1")), &with_headers);
        assert_eq!(h.source, LocationSource::Headers);
        let n = without_table.locate(Some(ip("1.0.0.1")), &HeaderMap::new());
        assert_eq!(n.source, LocationSource::Unknown);
    }
}
