//! A tiny MaxMind DB writer for tests: enough of the public format
//! (<https://maxmind.github.io/MaxMind-DB/>) to build GeoIP2-City and
//! GeoLite2-ASN shaped files that the `maxminddb` crate reads.
//!
//! A file is a binary search tree over 128-bit addresses (ip_version 6; IPv4
//! networks live under `::/96` as in MaxMind's own files, and
//! [`Writer::alias_ipv4_mapped`] also points `::ffff:0:0/96` at them), 16 zero
//! bytes, the data section, then `\xAB\xCD\xEFMaxMind.com` and the metadata map.
//!
//! Integer widths matter: readers see the stored type, and a value too wide for
//! its type is a different (corrupt) file. As MaxMind does, [`city`] stores
//! `geoname_id` as uint32 and `accuracy_radius` as uint16, and [`asn`] stores
//! `autonomous_system_number` as uint32.
//!
//! This file has no dependencies besides `std`, so the service's own tests can
//! include it with `#[path]` (the e2e crate depends on tetherd, not the reverse).

use std::net::IpAddr;

/// A data-section value, typed as the format types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Double(f64),
    U16(u16),
    U32(u32),
    U64(u64),
    Bool(bool),
    Array(Vec<Value>),
    /// Keys in the order given (the format does not sort them).
    Map(Vec<(String, Value)>),
}

impl Value {
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn str(text: &str) -> Value {
        Value::Str(text.to_string())
    }
}

/// A GeoIP2-City record: `city.{geoname_id, names.en}`, `country.{iso_code, names.en}`,
/// `location.{latitude, longitude, accuracy_radius}`.
pub fn city(lat: f64, lon: f64, accuracy_km: u16, country: &str, city_name: &str, geoname_id: u32) -> Value {
    Value::map([
        (
            "city",
            Value::map([
                ("geoname_id", Value::U32(geoname_id)),
                ("names", Value::map([("en", Value::str(city_name))])),
            ]),
        ),
        (
            "country",
            Value::map([("iso_code", Value::str(country)), ("names", Value::map([("en", Value::str(country))]))]),
        ),
        (
            "location",
            Value::map([
                ("accuracy_radius", Value::U16(accuracy_km)),
                ("latitude", Value::Double(lat)),
                ("longitude", Value::Double(lon)),
            ]),
        ),
    ])
}

/// A GeoLite2-ASN record.
pub fn asn(number: u32, organization: &str) -> Value {
    Value::map([
        ("autonomous_system_number", Value::U32(number)),
        ("autonomous_system_organization", Value::str(organization)),
    ])
}

const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";

/// One half of a tree node.
#[derive(Debug, Clone, Copy)]
enum Record {
    Empty,
    Node(usize),
    /// Offset into the data section.
    Data(usize),
}

/// Builds one database in memory. Networks are inserted with their records;
/// a network inserted later replaces whatever it covers.
pub struct Writer {
    database_type: String,
    record_size: u16,
    nodes: Vec<[Record; 2]>,
    data: Vec<u8>,
}

impl Writer {
    /// An empty IPv6 database (record size 28) of this `database_type`
    /// (e.g. "GeoIP2-City", "GeoLite2-ASN").
    pub fn new(database_type: &str) -> Writer {
        Writer {
            database_type: database_type.into(),
            record_size: 28,
            nodes: vec![[Record::Empty; 2]],
            data: Vec::new(),
        }
    }

    /// 24, 28 or 32 bits per tree record.
    pub fn record_size(mut self, bits: u16) -> Writer {
        assert!(matches!(bits, 24 | 28 | 32), "record size {bits} is not 24, 28 or 32");
        self.record_size = bits;
        self
    }

    /// Maps a network such as "127.0.1.0/24" or "2001:db8::/32" (IPv4 under `::/96`) to `value`.
    pub fn insert(&mut self, cidr: &str, value: &Value) -> &mut Writer {
        let (bits, len) = parse_cidr(cidr);
        assert!(len > 0, "{cidr}: a /0 network is not supported");
        let offset = self.data.len();
        encode(value, &mut self.data);
        let parent = self.node_at(bits, len - 1);
        self.nodes[parent][bit(bits, len - 1)] = Record::Data(offset);
        self
    }

    /// Makes `::ffff:0:0/96` (IPv4-mapped IPv6) lead to the IPv4 networks, as
    /// MaxMind's files do. Without it only `::a.b.c.d` and plain IPv4 lookups find them.
    pub fn alias_ipv4_mapped(&mut self) -> &mut Writer {
        let ipv4_root = self.node_at(0, 96);
        let mapped = 0xffff_u128 << 32;
        let parent = self.node_at(mapped, 95);
        self.nodes[parent][bit(mapped, 95)] = Record::Node(ipv4_root);
        self
    }

    /// The node reached after the first `depth` bits of `bits`, creating nodes on
    /// the way; a node that splits a record inherits it on both sides.
    fn node_at(&mut self, bits: u128, depth: u8) -> usize {
        let mut node = 0;
        for d in 0..depth {
            let side = bit(bits, d);
            node = match self.nodes[node][side] {
                Record::Node(next) => next,
                inherited => {
                    self.nodes.push([inherited; 2]);
                    let next = self.nodes.len() - 1;
                    self.nodes[node][side] = Record::Node(next);
                    next
                }
            };
        }
        node
    }

    /// The whole file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let node_count = self.nodes.len();
        let limit = 1_u64 << self.record_size;
        let number = |record: Record| {
            let n = match record {
                Record::Empty => node_count,
                Record::Node(i) => i,
                Record::Data(offset) => node_count + 16 + offset,
            } as u64;
            assert!(n < limit, "record value {n} does not fit in {} bits", self.record_size);
            n
        };
        let mut out = Vec::new();
        for [left, right] in &self.nodes {
            let (l, r) = (number(*left), number(*right));
            match self.record_size {
                24 => {
                    out.extend_from_slice(&l.to_be_bytes()[5..]);
                    out.extend_from_slice(&r.to_be_bytes()[5..]);
                }
                28 => {
                    // Left bits 23..0, then a byte holding left 27..24 and right 27..24, then right 23..0.
                    out.extend_from_slice(&l.to_be_bytes()[5..]);
                    out.push((((l >> 24) as u8) << 4) | (r >> 24) as u8);
                    out.extend_from_slice(&r.to_be_bytes()[5..]);
                }
                _ => {
                    out.extend_from_slice(&l.to_be_bytes()[4..]);
                    out.extend_from_slice(&r.to_be_bytes()[4..]);
                }
            }
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(METADATA_MARKER);
        let build_epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let metadata = Value::map([
            ("binary_format_major_version", Value::U16(2)),
            ("binary_format_minor_version", Value::U16(0)),
            ("build_epoch", Value::U64(build_epoch)),
            ("database_type", Value::str(&self.database_type)),
            ("description", Value::map([("en", Value::str("Tether test database"))])),
            ("ip_version", Value::U16(6)),
            ("languages", Value::Array(vec![Value::str("en")])),
            ("node_count", Value::U32(u32::try_from(node_count).expect("node count fits uint32"))),
            ("record_size", Value::U16(self.record_size)),
        ]);
        encode(&metadata, &mut out);
        out
    }

    pub fn write(&self, path: &std::path::Path) {
        std::fs::write(path, self.to_bytes()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// Bit `depth` (0 = most significant) of a 128-bit address.
fn bit(bits: u128, depth: u8) -> usize {
    ((bits >> (127 - u32::from(depth))) & 1) as usize
}

/// "a.b.c.d/n" → (`::a.b.c.d`, 96 + n); "v6/n" → (v6, n).
fn parse_cidr(cidr: &str) -> (u128, u8) {
    let (addr, len) = cidr.split_once('/').unwrap_or_else(|| panic!("{cidr}: expected address/prefix"));
    let len: u8 = len.parse().unwrap_or_else(|_| panic!("{cidr}: bad prefix length"));
    let (bits, len) = match addr.parse::<IpAddr>().unwrap_or_else(|_| panic!("{cidr}: bad address")) {
        IpAddr::V4(v4) if len <= 32 => (u128::from(u32::from(v4)), 96 + len),
        IpAddr::V6(v6) if len <= 128 => (u128::from(v6), len),
        _ => panic!("{cidr}: prefix length out of range"),
    };
    let host_bits = 128 - u32::from(len);
    let mask = if host_bits == 128 { 0 } else { u128::MAX << host_bits };
    assert_eq!(bits & !mask, 0, "{cidr}: host bits are set");
    (bits, len)
}

// Type numbers of the data section.
const STRING: u8 = 2;
const DOUBLE: u8 = 3;
const UINT16: u8 = 5;
const UINT32: u8 = 6;
const MAP: u8 = 7;
const UINT64: u8 = 9;
const ARRAY: u8 = 11;
const BOOLEAN: u8 = 14;

fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Str(s) => {
            control(out, STRING, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Double(x) => {
            control(out, DOUBLE, 8);
            out.extend_from_slice(&x.to_be_bytes());
        }
        Value::U16(n) => unsigned(out, UINT16, u64::from(*n)),
        Value::U32(n) => unsigned(out, UINT32, u64::from(*n)),
        Value::U64(n) => unsigned(out, UINT64, *n),
        Value::Bool(b) => control(out, BOOLEAN, usize::from(*b)),
        Value::Array(items) => {
            control(out, ARRAY, items.len());
            items.iter().for_each(|item| encode(item, out));
        }
        Value::Map(entries) => {
            control(out, MAP, entries.len());
            for (key, item) in entries {
                control(out, STRING, key.len());
                out.extend_from_slice(key.as_bytes());
                encode(item, out);
            }
        }
    }
}

/// Unsigned integers are big-endian without leading zero bytes; the size is the byte count.
fn unsigned(out: &mut Vec<u8>, type_num: u8, n: u64) {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, type_num, bytes.len() - skip);
    out.extend_from_slice(&bytes[skip..]);
}

/// Control byte: type in the top 3 bits (0 plus an extra byte `type - 7` for
/// extended types), size in the low 5 (29, 30, 31: 1, 2, 3 more size bytes follow).
fn control(out: &mut Vec<u8>, type_num: u8, size: usize) {
    let (size_bits, extra): (u8, Vec<u8>) = match size {
        0..29 => (size as u8, Vec::new()),
        29..285 => (29, vec![(size - 29) as u8]),
        285..65_821 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => {
            let rest = u32::try_from(size - 65_821).ok().filter(|r| *r < 1 << 24).expect("value too large");
            (31, rest.to_be_bytes()[1..].to_vec())
        }
    };
    if type_num <= 7 {
        out.push((type_num << 5) | size_bits);
    } else {
        out.push(size_bits);
        out.push(type_num - 7);
    }
    out.extend_from_slice(&extra);
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxminddb::{Reader, geoip2};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn sample(record_size: u16) -> Reader<Vec<u8>> {
        let mut w = Writer::new("GeoIP2-City").record_size(record_size);
        w.insert("127.0.0.0/8", &city(0.0, 0.0, 1000, "ZZ", "Nowhere", 1))
            .insert("127.0.1.0/24", &city(40.71, -74.01, 20, "US", "New York", 5_128_581))
            .insert("127.0.2.0/24", &city(6.45, 3.39, 50, "NG", "Lagos", 2_332_459))
            .insert("2001:db8::/32", &city(51.51, -0.13, 5, "GB", "London", 2_643_743));
        Reader::from_source(w.to_bytes()).expect("the maxminddb crate reads what we wrote")
    }

    #[test]
    fn city_records_read_back_with_every_record_size() {
        for size in [24, 28, 32] {
            let reader = sample(size);
            assert_eq!(reader.metadata().record_size, size);
            assert_eq!(reader.metadata().ip_version, 6);
            assert_eq!(reader.metadata().database_type, "GeoIP2-City");
            let ny = reader.lookup(ip("127.0.1.9")).unwrap().decode::<geoip2::City>().unwrap().expect("New York");
            assert_eq!(ny.city.names.english, Some("New York"));
            assert_eq!(ny.city.geoname_id, Some(5_128_581));
            assert_eq!(ny.country.iso_code, Some("US"));
            assert_eq!((ny.location.latitude, ny.location.longitude), (Some(40.71), Some(-74.01)));
            assert_eq!(ny.location.accuracy_radius, Some(20));
            let lagos = reader.lookup(ip("127.0.2.200")).unwrap().decode::<geoip2::City>().unwrap().expect("Lagos");
            assert_eq!(lagos.country.iso_code, Some("NG"));
            // The /8 stays around the more specific /24s inserted after it.
            let rest = reader.lookup(ip("127.9.9.9")).unwrap().decode::<geoip2::City>().unwrap().expect("/8");
            assert_eq!(rest.city.names.english, Some("Nowhere"));
            let london = reader.lookup(ip("2001:db8::1")).unwrap().decode::<geoip2::City>().unwrap().expect("London");
            assert_eq!(london.country.iso_code, Some("GB"));
            assert!(!reader.lookup(ip("10.0.0.1")).unwrap().has_data());
            assert!(!reader.lookup(ip("2001:db9::1")).unwrap().has_data());
            let network = reader.lookup(ip("127.0.1.9")).unwrap().network().unwrap();
            assert_eq!(network.to_string(), "127.0.1.0/24");
        }
    }

    #[test]
    fn asn_records_keep_their_uint32_width() {
        let mut w = Writer::new("GeoLite2-ASN");
        w.insert("127.0.3.0/24", &asn(4_200_000_001, "Example Hosting"));
        let bytes = w.to_bytes();
        let reader = Reader::from_source(bytes).unwrap();
        let found = reader.lookup(ip("127.0.3.3")).unwrap().decode::<geoip2::Asn>().unwrap().expect("ASN");
        assert_eq!(found.autonomous_system_number, Some(4_200_000_001));
        assert_eq!(found.autonomous_system_organization, Some("Example Hosting"));
        // uint32 (type 6) with 4 payload bytes, as MaxMind stores it.
        let mut expected = Vec::new();
        encode(&Value::U32(4_200_000_001), &mut expected);
        assert_eq!(expected, [0xc4, 0xfa, 0x56, 0xea, 0x01]);
    }

    #[test]
    fn ipv4_mapped_addresses_need_the_alias() {
        let mut w = Writer::new("GeoLite2-ASN");
        w.insert("127.0.3.0/24", &asn(64_500, "Example"));
        let plain = Reader::from_source(w.to_bytes()).unwrap();
        assert!(plain.lookup(ip("::127.0.3.1")).unwrap().has_data());
        assert!(!plain.lookup(ip("::ffff:127.0.3.1")).unwrap().has_data(), "no alias: the mapped form misses");
        w.alias_ipv4_mapped();
        let aliased = Reader::from_source(w.to_bytes()).unwrap();
        let found = aliased.lookup(ip("::ffff:127.0.3.1")).unwrap().decode::<geoip2::Asn>().unwrap().expect("alias");
        assert_eq!(found.autonomous_system_number, Some(64_500));
        assert!(aliased.lookup(ip("127.0.3.1")).unwrap().has_data());
    }

    #[test]
    fn long_strings_arrays_and_booleans_decode() {
        let long = "x".repeat(70_000);
        let value = Value::map([
            ("a", Value::str(&"y".repeat(100))),
            ("b", Value::str(&"z".repeat(300))),
            ("c", Value::str(&long)),
            ("list", Value::Array(vec![Value::U16(7), Value::Bool(true), Value::U64(1 << 40)])),
        ]);
        let mut w = Writer::new("Test");
        w.insert("::1/128", &value);
        let reader = Reader::from_source(w.to_bytes()).unwrap();
        let got = reader.lookup(ip("::1")).unwrap().decode::<serde_json::Value>().unwrap().expect("record");
        let len = |key: &str| got[key].as_str().map(str::len);
        assert_eq!((len("a"), len("b"), len("c")), (Some(100), Some(300), Some(70_000)));
        assert_eq!(got["list"], serde_json::json!([7, true, 1_u64 << 40]));
    }
}
