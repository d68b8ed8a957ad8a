//! The benchmark kit behind `tether-bench`: seeding large populations
//! (`seed`) and driving timed presence and access load against one or more
//! `tetherd` replicas (`load`), access decisions asked as CheckAccess or as
//! Envoy's ext_authz Check (`ext_authz`).
//!
//! Source addresses: a real population is many devices behind many home
//! routers, and tetherd's laptop-farm detector (`shared_egress`,
//! `presence_burst`) flags several workers' devices behind one address. So
//! every benchmark device gets its own stable loopback address
//! ([`Addresses`], all in 127.0.0.0/8, which Linux routes to `lo` without any
//! setup): access checks send it as `source_ip`, presence answers and
//! enrollments connect from it ([`channel_from`]), and seeded history records
//! it. Only when the open-files limit cannot hold one connection per
//! answering device do two devices share an address (and a connection):
//! two workers of one employer behind one router, below every farm threshold
//! (`shared_egress` reviews from 3 workers, `presence_burst` counts rounds from
//! 3 devices).

pub mod ext_authz;
pub mod load;
pub mod seed;

use crate::Server;
use crate::fixtures::{EnrolledDevice, Org};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use tether_proto::v1 as pb;
use tether_proto::v1::enrollment_service_client::EnrollmentServiceClient;
use tokio::net::TcpSocket;
use tonic::transport::{Channel, Endpoint, Uri};

/// Milliseconds since the Unix epoch, as the store keeps times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Addresses per value of the second octet: third octet 0–255, fourth 1–254.
const PER_BLOCK: u64 = 256 * 254;
/// Address slots in 127.1.0.1 – 127.255.255.254 (127.0.x.x, with 127.0.0.1, is never used).
pub const ADDRESS_SLOTS: u64 = 255 * PER_BLOCK;
/// Devices that may share one address: below `shared_egress`'s 3 workers and
/// `presence_burst`'s 3 devices.
pub const MAX_SHARE: u64 = 2;
/// Open files kept free of answering connections (client tasks, database, stdio, tetherd's own).
const RESERVED_FILES: u64 = 512;

/// The source address of each benchmark device: device `i` uses address slot
/// `i / share`, slot `s` being 127.(1 + s / 65024).(s / 254 % 256).(1 + s % 254).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    share: u64,
}

impl Addresses {
    /// One address per device, or two devices per address when `answering`
    /// connections (one per address) would not fit under `open_files`.
    /// Refuses populations the address range cannot hold.
    pub fn plan(population: u64, answering: u64, open_files: u64) -> anyhow::Result<Addresses> {
        let budget = open_files.saturating_sub(RESERVED_FILES).max(1);
        let share = if answering <= budget { 1 } else { MAX_SHARE };
        anyhow::ensure!(
            answering.div_ceil(share) <= budget,
            "{answering} answering devices need {} connections (one per source address, at most {MAX_SHARE} \
             devices per address), more than the open-files limit {open_files} allows (minus {RESERVED_FILES}): \
             raise `ulimit -n` or lower --answer-devices",
            answering.div_ceil(share)
        );
        let addresses = Addresses { share };
        anyhow::ensure!(
            population.div_ceil(share) <= ADDRESS_SLOTS,
            "{population} devices do not fit in 127.0.0.0/8 at {share} per address ({ADDRESS_SLOTS} addresses)"
        );
        Ok(addresses)
    }

    /// Devices per address (1, or 2 when the open-files limit asked for it).
    pub fn share(&self) -> u64 {
        self.share
    }

    /// The address slot of device `i`.
    pub fn slot(&self, i: u64) -> u64 {
        i / self.share
    }

    /// The source address of device `i`.
    pub fn of(&self, i: u64) -> Ipv4Addr {
        let slot = self.slot(i);
        // `plan` keeps populations inside ADDRESS_SLOTS, so nothing saturates.
        let octet = |v: u64| u8::try_from(v).unwrap_or(u8::MAX);
        Ipv4Addr::new(127, octet(1 + slot / PER_BLOCK), octet(slot / 254 % 256), octet(1 + slot % 254))
    }

    /// The same address as SQL text for device `index` (an integer expression),
    /// for PostgreSQL and SQLite alike. Only integers are formatted in.
    pub fn sql(&self, index: &str) -> String {
        // SQLite binds `||` tighter than arithmetic: every operand is parenthesized.
        let slot = format!("(({index}) / {})", self.share);
        format!("('127.' || (1 + {slot} / {PER_BLOCK}) || '.' || ({slot} / 254 % 256) || '.' || (1 + {slot} % 254))")
    }
}

/// The soft limit on open files of this process (`ulimit -n`), from
/// /proc/self/limits; 1024, the usual default, when it cannot be read.
pub fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            match line.trim_start_matches("Max open files").split_whitespace().next()? {
                "unlimited" => Some(u64::MAX),
                soft => soft.parse().ok(),
            }
        })
        .unwrap_or(1024)
}

/// A channel to `url` whose TCP connection is made from `source` (port 0: any
/// free port), so tetherd sees `source` as the peer address — as it would see
/// a device's home router. `url` must name the server by IP (`http://IP:PORT`).
pub async fn channel_from(url: &str, source: Ipv4Addr) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_string())?;
    let server: SocketAddr = endpoint
        .uri()
        .authority()
        .map(|a| a.as_str())
        .unwrap_or_default()
        .parse()
        .map_err(|e| anyhow::anyhow!("server URL {url} does not name an IP and port: {e}"))?;
    let connector = tower::service_fn(move |_: Uri| async move {
        let socket = if server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.bind(SocketAddr::new(source.into(), 0))?;
        let stream = socket.connect(server).await?;
        // As tonic's own connector does.
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| anyhow::anyhow!("connect to {url} from {source}: {e:?}"))
}

/// Registers a device for `worker` and enrolls an attested soft authenticator
/// for it as `Org::enrolled_device` does, but over a connection made from
/// `source`, so tetherd records the enrollment at the device's own address.
pub async fn enroll_from(server: &Server, org: &Org, worker: &str, source: Ipv4Addr) -> EnrolledDevice {
    let serial = format!("SN-{}", uuid::Uuid::new_v4().simple());
    let device_id = org.register_device(server, worker, &serial).await;
    let token = org.token(server, &device_id).await;
    let mut auth = org.attested_authenticator();
    let channel = channel_from(&server.url, source).await.unwrap_or_else(|e| panic!("{e}"));
    let mut client = EnrollmentServiceClient::new(channel);
    let begun = client
        .begin_enrollment(pb::BeginEnrollmentRequest { token: token.clone() })
        .await
        .unwrap_or_else(|s| panic!("begin enrollment of {worker} from {source}: {s:?}"))
        .into_inner();
    let json = auth
        .make_credential(&begun.creation_options_json, &begun.origin)
        .unwrap_or_else(|e| panic!("soft authenticator: {e}"));
    let request =
        pb::FinishEnrollmentRequest { enrollment_id: begun.enrollment_id, token, registration_response_json: json };
    let done = client
        .finish_enrollment(request)
        .await
        .unwrap_or_else(|s| panic!("finish enrollment of {worker} from {source}: {s:?}"))
        .into_inner();
    assert!(done.attested, "bench enrollment must be attested: {}", done.attestation_reason);
    EnrolledDevice { device_id, credential_id: done.credential_id, worker: worker.into(), auth }
}

/// Flags in the database by (kind, severity), to tell what tetherd raised
/// while the benchmark ran.
pub async fn flag_counts(database_url: &str) -> anyhow::Result<BTreeMap<(String, String), i64>> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database_url).await?;
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT kind, severity, COUNT(*) FROM flags GROUP BY kind, severity")
            .fetch_all(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("counting flags: {e}"))?;
    pool.close().await;
    Ok(rows.into_iter().map(|(kind, severity, n)| ((kind, severity), n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_device_gets_its_own_loopback_address_unless_files_run_short() {
        let one = Addresses::plan(1_000_000, 1000, 20_000).unwrap();
        assert_eq!(one.share(), 1);
        assert_eq!(one.of(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(one.of(253), Ipv4Addr::new(127, 1, 0, 254));
        assert_eq!(one.of(254), Ipv4Addr::new(127, 1, 1, 1));
        assert_eq!(one.of(PER_BLOCK), Ipv4Addr::new(127, 2, 0, 1));
        assert_eq!(one.of(ADDRESS_SLOTS - 1), Ipv4Addr::new(127, 255, 255, 254));
        let all: std::collections::HashSet<Ipv4Addr> = (0..200_000).map(|i| one.of(i)).collect();
        assert_eq!(all.len(), 200_000);
        assert!(all.iter().all(|a| a.is_loopback() && a.octets()[1] >= 1 && !matches!(a.octets()[3], 0 | 255)));

        // 1000 answering devices under the common 1024 default: two per address.
        let two = Addresses::plan(10_000, 1000, 1024).unwrap();
        assert_eq!(two.share(), 2);
        assert_eq!(two.of(6), two.of(7));
        assert_ne!(two.of(7), two.of(8));
        assert!(Addresses::plan(10_000, 2000, 1024).is_err());
        assert!(Addresses::plan(ADDRESS_SLOTS + 1, 10, 20_000).is_err());
    }

    #[tokio::test]
    async fn the_sql_expression_computes_the_same_addresses() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect("sqlite::memory:").await.unwrap();
        for share in [1, 2] {
            let addresses = Addresses { share };
            for i in [0, 1, 253, 254, 255, 65_023, 65_024, 65_025, 999_999, 2 * ADDRESS_SLOTS - 1] {
                let sql = format!("SELECT {}", addresses.sql(&i.to_string()));
                let got: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.unwrap();
                if addresses.slot(i) < ADDRESS_SLOTS {
                    assert_eq!(got, addresses.of(i).to_string(), "device {i}, share {share}");
                }
            }
        }
    }
}
