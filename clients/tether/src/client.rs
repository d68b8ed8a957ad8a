//! The gRPC channel and the `authorization: Bearer <key>` interceptor.

use std::time::Duration;

use anyhow::{Context, bail};
use tether_proto::v1::access_service_client::AccessServiceClient;
use tether_proto::v1::admin_service_client::AdminServiceClient;
use tether_proto::v1::report_service_client::ReportServiceClient;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// The server URL used when neither `--server` nor `TETHER_SERVER` is set.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// Adds the API key to every call, when one was given.
#[derive(Clone)]
pub struct ApiKeyAuth {
    header: Option<AsciiMetadataValue>,
}

impl ApiKeyAuth {
    /// The interceptor for `api_key` (`None`: send no authorization header).
    pub fn new(api_key: Option<&str>) -> anyhow::Result<Self> {
        let header = match api_key.map(str::trim) {
            None => None,
            Some("") => bail!("the API key is empty"),
            Some(key) => {
                let mut value: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {key}"))
                    .map_err(|_| anyhow::anyhow!("the API key contains characters not allowed in a header"))?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Self { header })
    }
}

impl Interceptor for ApiKeyAuth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// A channel with the API key attached.
pub type Authed = InterceptedService<Channel, ApiKeyAuth>;

/// An open connection to tetherd.
#[derive(Clone)]
pub struct Connection {
    channel: Channel,
    auth: ApiKeyAuth,
}

impl Connection {
    /// Connect now (so an unreachable server is reported as such, not as a
    /// failed call). `timeout` bounds connecting and each call.
    pub async fn open(server: &str, api_key: Option<&str>, timeout: Duration) -> anyhow::Result<Self> {
        let auth = ApiKeyAuth::new(api_key)?;
        let endpoint = Endpoint::from_shared(server.to_string())
            .with_context(|| format!("invalid server URL {server:?}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true);
        let channel = endpoint.connect().await.with_context(|| format!("cannot connect to {server}"))?;
        Ok(Self { channel, auth })
    }

    pub fn admin(&self) -> AdminServiceClient<Authed> {
        AdminServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn access(&self) -> AccessServiceClient<Authed> {
        AccessServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn report(&self) -> ReportServiceClient<Authed> {
        ReportServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }
}

/// The text after `error: ` for a failed command: the server's message for a
/// gRPC status, otherwise the error with its causes.
pub fn error_message(error: &anyhow::Error, api_key_given: bool) -> String {
    if let Some(status) = error.downcast_ref::<tonic::Status>() {
        let mut message =
            if status.message().is_empty() { format!("{:?}", status.code()) } else { status.message().to_string() };
        if status.code() == tonic::Code::Unauthenticated && !api_key_given {
            message.push_str(" (no API key given: use --api-key or TETHER_API_KEY)");
        }
        return crate::output::clean(&message);
    }
    // The error and its causes, skipping a cause that repeats what is already
    // said (hyper and tonic both prefix "tcp connect error").
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    crate::output::clean(&message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_is_added() {
        let mut auth = ApiKeyAuth::new(Some("tk_abc")).unwrap();
        let request = auth.call(tonic::Request::new(())).unwrap();
        assert_eq!(request.metadata().get("authorization").unwrap().to_str().unwrap(), "Bearer tk_abc");
    }

    #[test]
    fn no_key_no_header() {
        let mut auth = ApiKeyAuth::new(None).unwrap();
        let request = auth.call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(ApiKeyAuth::new(Some("")).is_err());
        assert!(ApiKeyAuth::new(Some("line\nbreak")).is_err());
    }

    #[test]
    fn status_errors_show_the_server_message() {
        let error = anyhow::Error::from(tonic::Status::not_found("device dev_9 not found"));
        assert_eq!(error_message(&error, true), "device dev_9 not found");
        let error = anyhow::Error::from(tonic::Status::unauthenticated("missing API key"));
        assert!(error_message(&error, false).contains("--api-key"));
        let error = anyhow::anyhow!("io").context("cannot read cert.pem");
        assert_eq!(error_message(&error, true), "cannot read cert.pem: io");
        let error = anyhow::anyhow!("refused").context("tcp connect error: refused").context("cannot connect");
        assert_eq!(error_message(&error, true), "cannot connect: tcp connect error: refused");
    }
}
