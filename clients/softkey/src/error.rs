/// Why the soft authenticator refused a request.
#[derive(Debug, thiserror::Error)]
pub enum SoftKeyError {
    #[error("the options JSON is invalid: {0}")]
    Options(#[from] tether_attestation::json::JsonError),
    #[error("none of the requested algorithms is ES256 (-7), the only one this authenticator supports")]
    UnsupportedAlgorithms,
    #[error("the origin \"{origin}\" may not use the relying party id \"{rp_id}\"")]
    OriginNotForRpId { origin: String, rp_id: String },
    #[error("this soft authenticator already holds a credential; create a new one to register again")]
    AlreadyRegistered,
    #[error("this soft authenticator holds no credential yet; register first")]
    NoCredential,
    #[error("the request is for relying party \"{requested}\", but the credential belongs to \"{registered}\"")]
    RpIdMismatch { requested: String, registered: String },
    #[error("allowCredentials does not list this authenticator's credential")]
    CredentialNotAllowed,
    #[error("the signature counter is exhausted")]
    CounterExhausted,
    #[error("key generation or signing failed: {0}")]
    Crypto(String),
    #[error("the attestation certificate could not be created: {0}")]
    Certificate(String),
    #[error("the saved authenticator state is unusable: {0}")]
    State(String),
}

impl From<ring::error::Unspecified> for SoftKeyError {
    fn from(_: ring::error::Unspecified) -> Self {
        SoftKeyError::Crypto("ring reported an unspecified error".to_owned())
    }
}

impl From<rcgen::Error> for SoftKeyError {
    fn from(e: rcgen::Error) -> Self {
        SoftKeyError::Certificate(e.to_string())
    }
}
