//! The database becomes unreachable: calls fail UNAVAILABLE (a gateway
//! denies), health reports NOT_SERVING, and when the database returns the
//! service recovers by itself. PostgreSQL only, reached through a TCP proxy
//! on loopback that the test cuts and restores.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether_e2e::fixtures::Org;
use tether_e2e::{Server, authed, fresh_postgres_database};
use tether_proto::v1 as pb;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// Forwards 127.0.0.1:<port> to the database until cut.
struct Proxy {
    port: u16,
    upstream: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy { port, upstream: upstream.to_string(), tasks: Arc::new(Mutex::new(Vec::new())) };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (tasks, upstream) = (Arc::clone(&self.tasks), self.upstream.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Drops the listener and every open connection.
    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    async fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }
}

async fn health(server: &Server) -> Option<i32> {
    let channel = tonic::transport::Channel::from_shared(server.url.clone()).ok()?.connect().await.ok()?;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let request = tonic_health::pb::HealthCheckRequest { service: "tether.v1.AccessService".into() };
    client.check(request).await.ok().map(|r| r.into_inner().status)
}

async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// Multi-threaded: the proxy must keep serving while the test kit blocks
// starting processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_closed_and_recovers_by_itself() {
    let Ok(base) = std::env::var("TETHER_TEST_POSTGRES_URL") else {
        eprintln!("NOTICE: TETHER_TEST_POSTGRES_URL is not set; skipping the database-outage test");
        return;
    };
    let direct = fresh_postgres_database(&base);
    // postgres://user@host:port/name → route host:port through the proxy.
    let (scheme_user, rest) = direct.split_once('@').unwrap();
    let (host_port, name) = rest.split_once('/').unwrap();
    let proxy = Proxy::start(host_port).await;
    let through_proxy = format!("{scheme_user}@127.0.0.1:{}/{name}", proxy.port);
    let server = Server::start_on(&through_proxy, &["--db-acquire-timeout", "1s", "--db-statement-timeout", "2s"]);
    let org = Org::create(&server, "acme").await;
    let request = || pb::CheckAccessRequest {
        worker_external_id: "w".into(),
        device_id: "dev_x".into(),
        credential_id: String::new(),
        source_ip: "127.0.0.1".into(),
        gateway_id: "vpn".into(),
        ..Default::default()
    };
    let mut access = server.access().await;
    access.check_access(authed(&org.gateway_key, request())).await.unwrap();
    assert_eq!(health(&server).await, Some(ServingStatus::Serving as i32));

    proxy.cut();
    eventually("access checks fail UNAVAILABLE", || {
        let mut access = access.clone();
        let key = org.gateway_key.clone();
        async move {
            matches!(access.check_access(authed(&key, request())).await, Err(status) if status.code() == Code::Unavailable)
        }
    })
    .await;
    eventually("health reports NOT_SERVING", || async {
        health(&server).await == Some(ServingStatus::NotServing as i32)
    })
    .await;
    // The gateway command fails closed: exit 2, never 0.
    let gateway = [("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", org.gateway_key.as_str())];
    let out = tether_e2e::run_bin(
        "tether",
        &["gateway", "check", "--worker", "w", "--device", "dev_x", "--source-ip", "127.0.0.1", "--gateway", "vpn"],
        &gateway,
    );
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));

    proxy.restore().await;
    eventually("health returns to SERVING", || async { health(&server).await == Some(ServingStatus::Serving as i32) })
        .await;
    eventually("access checks are answered again", || {
        let mut access = access.clone();
        let key = org.gateway_key.clone();
        async move { access.check_access(authed(&key, request())).await.is_ok() }
    })
    .await;
}
