//! Assembles the gRPC server: the tether.v1 services, standard health and
//! reflection, message-size and HTTP/2 stream limits, and graceful shutdown.

use crate::domain::app::App;
use crate::process::{health, scheduler};
use crate::transport::deadline::DeadlineLayer;
use crate::transport::rpc::{
    access::AccessApi, admin::AdminApi, device::EnrollmentApi, device::PresenceApi, report::ReportApi,
};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tether_proto::v1::{
    access_service_server::AccessServiceServer, admin_service_server::AdminServiceServer,
    enrollment_service_server::EnrollmentServiceServer, presence_service_server::PresenceServiceServer,
    report_service_server::ReportServiceServer,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Server, ServerTlsConfig};

/// Requests carry at most one attestation with its certificate chain.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// An unanswered keepalive ping closes the connection after this long.
const HTTP2_KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// h2's own default, stated so a dependency update cannot loosen it.
const MAX_PENDING_RESETS: usize = 20;

/// Serves until `shutdown` resolves, then lets in-flight calls finish.
/// With `tls`, the listener speaks TLS (and verifies client certificates
/// when the configuration names a client CA).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let local: SocketAddr = listener.local_addr()?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health::set_all(&health_reporter, tonic_health::ServingStatus::Serving).await;
    let health_watch =
        tokio::spawn(health::watch(Arc::clone(&app), health_reporter.clone(), app.settings.scheduler_tick));

    // Both reflection versions: grpcio-reflection (Python), older grpcurl, Postman and evans
    // speak only v1alpha.
    let reflection = reflection_builder().build_v1()?;
    let reflection_v1alpha = reflection_builder().build_v1alpha()?;

    let scheduler = tokio::spawn(scheduler::run(Arc::clone(&app), app.stopping.subscribe()));
    let checkpoints = app.store.spawn_checkpoints(app.stopping.subscribe());
    let siem = tokio::spawn(crate::domain::siem::delivery::run(Arc::clone(&app), app.stopping.subscribe()));
    let stopping = app.stopping.clone();
    let shutdown = async move {
        shutdown.await;
        let _ = stopping.send(true);
    };

    tracing::info!(%local, "tetherd listening");
    let streams = app.settings.streams;
    let mut builder = Server::builder()
        // Unset, tonic lets one connection open any number of streams.
        .max_concurrent_streams(streams.http2_max_concurrent_streams)
        .http2_keepalive_interval(Some(streams.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        // A client that opens and resets streams faster than they are accepted
        // ("rapid reset") loses its connection.
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    crate::telemetry::watch_pool(app.store.pool());
    let router = builder
        // Outermost, so calls the deadline layer ends are counted too.
        .layer(crate::telemetry::RpcLayer)
        .layer(DeadlineLayer::new(app.settings.request_timeout))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(
            AdminServiceServer::new(AdminApi { app: Arc::clone(&app) }).max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            EnrollmentServiceServer::new(EnrollmentApi { app: Arc::clone(&app) })
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            PresenceServiceServer::new(PresenceApi {
                app: Arc::clone(&app),
                streams: crate::transport::rpc::streams::StreamSlots::new(streams),
            })
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            AccessServiceServer::new(AccessApi { app: Arc::clone(&app) }).max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            ReportServiceServer::new(ReportApi { app: Arc::clone(&app) }).max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            envoy_types::ext_authz::v3::pb::AuthorizationServer::new(crate::transport::rpc::ext_authz::ExtAuthzApi {
                app: Arc::clone(&app),
            })
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        );
    let result = router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown).await;
    let _ = app.stopping.send(true);
    let _ = scheduler.await;
    if let Some(checkpoints) = checkpoints {
        let _ = checkpoints.await;
    }
    // Cut a delivery run short: at least once means the next start resends what it left unconfirmed.
    siem.abort();
    let _ = siem.await;
    let _ = health_watch.await;
    health::set_all(&health_reporter, tonic_health::ServingStatus::NotServing).await;
    app.store.close().await;
    tracing::info!("tetherd stopped");
    Ok(result?)
}

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tether_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tether_proto::ENVOY_EXT_AUTHZ_FILE_DESCRIPTOR_SET)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received; finishing in-flight calls"),
        _ = terminate => tracing::info!("SIGTERM received; finishing in-flight calls"),
    }
}
