//! `--keys FILE`: admit on a valid access token alone, without asking
//! tetherd. The token proves the device answered a presence challenge from
//! this address within its lifetime (at most an hour); revocations and flags
//! raised after it was issued are not seen until it expires. The key set
//! names this gateway's tenant; another tenant's token is refused, even for
//! a worker of the same name.

use std::path::Path;

use tether_attestation::access_token::{self, AccessTokenClaims, KeySet};
use tether_proto::v1::CheckAccessRequest;

/// The key set written by `tether gateway token-keys`, with its tenant.
pub fn load_keys(path: &Path) -> Result<KeySet, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the access-token key set {}: {e}", path.display()))?;
    let keys = access_token::parse_key_set(&text)
        .map_err(|e| format!("the access-token key set {} is unusable: {e}", path.display()))?;
    if keys.keys().is_empty() {
        return Err(format!("the access-token key set {} has no keys", path.display()));
    }
    Ok(keys)
}

/// The token's claims when it verifies at `now_ms`, belongs to the key set's
/// tenant, was issued to the request's address, and names the request's
/// worker (and device, when the certificate names one); otherwise why not.
pub fn decide(request: &CheckAccessRequest, keys: &KeySet, now_ms: i64) -> Result<AccessTokenClaims, String> {
    if request.access_token.is_empty() {
        return Err("no access token was sent, and --keys admits only on a token".into());
    }
    let claims = access_token::verify(&request.access_token, keys, now_ms, Some(&request.source_ip))
        .map_err(|e| format!("access token {}: {e}", e.code()))?;
    if claims.worker_external_id != request.worker_external_id.trim() {
        return Err(format!(
            "access token mismatch: it was issued to worker {:?}, not {:?}",
            claims.worker_external_id, request.worker_external_id
        ));
    }
    if !request.device_id.is_empty() && claims.device_id != request.device_id {
        return Err(format!(
            "access token mismatch: it was issued to device {:?}, the certificate names {:?}",
            claims.device_id, request.device_id
        ));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_attestation::access_token::{AccessTokenSigner, VerifyingKey};

    const NOW: i64 = 1_800_000_000_000;

    fn signer() -> AccessTokenSigner {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        AccessTokenSigner::from_pkcs8(&key.serialize_der()).unwrap()
    }

    /// The signer's key, for this gateway's tenant `ten_a`.
    fn key_set(signer: &AccessTokenSigner) -> KeySet {
        KeySet::new("ten_a", "tether", vec![signer.verifying_key().clone()]).unwrap()
    }

    fn token(signer: &AccessTokenSigner, worker: &str, device: &str, ip: &str) -> String {
        token_in(signer, "ten_a", worker, device, ip)
    }

    fn token_in(signer: &AccessTokenSigner, tenant: &str, worker: &str, device: &str, ip: &str) -> String {
        signer
            .sign(&AccessTokenClaims {
                issuer: "tether".into(),
                tenant_id: tenant.into(),
                worker_external_id: worker.into(),
                device_id: device.into(),
                credential_id: "cred".into(),
                source_ip: ip.into(),
                issued_at_ms: NOW - 1000,
                expires_at_ms: NOW + 60_000,
                token_id: "tok_1".into(),
                key_id: String::new(),
            })
            .unwrap()
    }

    fn request(worker: &str, device: &str, ip: &str, token: &str) -> CheckAccessRequest {
        CheckAccessRequest {
            worker_external_id: worker.into(),
            device_id: device.into(),
            source_ip: ip.into(),
            access_token: token.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_valid_token_for_this_worker_device_and_address_admits() {
        let signer = signer();
        let keys = key_set(&signer);
        let t = token(&signer, "w-alice", "dev_1", "127.0.0.1");
        let claims = decide(&request("w-alice", "dev_1", "127.0.0.1", &t), &keys, NOW).unwrap();
        assert_eq!(claims.device_id, "dev_1");
        assert!(decide(&request("w-alice", "", "127.0.0.1", &t), &keys, NOW).is_ok());
    }

    #[test]
    fn anything_else_is_refused() {
        let signer = signer();
        let keys = key_set(&signer);
        let t = token(&signer, "w-alice", "dev_1", "127.0.0.1");
        let refused = |r: CheckAccessRequest, now: i64| decide(&r, &keys, now).unwrap_err();
        assert!(refused(request("w-bob", "dev_1", "127.0.0.1", &t), NOW).contains("worker"));
        assert!(refused(request("w-alice", "dev_2", "127.0.0.1", &t), NOW).contains("device"));
        assert!(refused(request("w-alice", "dev_1", "127.0.0.2", &t), NOW).contains("wrong_source_ip"));
        assert!(refused(request("w-alice", "dev_1", "127.0.0.1", &t), NOW + 120_000).contains("expired"));
        assert!(refused(request("w-alice", "dev_1", "127.0.0.1", ""), NOW).contains("no access token"));
        let other = token(&self::signer(), "w-alice", "dev_1", "127.0.0.1");
        assert!(refused(request("w-alice", "dev_1", "127.0.0.1", &other), NOW).contains("unknown_key_id"));
        assert!(refused(request("w-alice", "dev_1", "127.0.0.1", "garbage.not-a.jwt"), NOW).contains("malformed"));
    }

    #[test]
    fn another_tenants_token_for_a_worker_of_the_same_name_is_refused() {
        let signer = signer();
        let theirs = token_in(&signer, "ten_b", "w-alice", "dev_1", "127.0.0.1");
        let why = decide(&request("w-alice", "dev_1", "127.0.0.1", &theirs), &key_set(&signer), NOW).unwrap_err();
        assert!(why.contains("wrong_tenant") && why.contains("ten_b") && why.contains("ten_a"), "{why}");
        let ignoring_common_name = request("w-alice", "", "127.0.0.1", &theirs);
        assert!(decide(&ignoring_common_name, &key_set(&signer), NOW).unwrap_err().contains("wrong_tenant"));
    }

    #[test]
    fn key_sets_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        assert!(load_keys(&path).is_err());
        std::fs::write(&path, r#"{"tenant_id": "ten_a", "issuer": "tether", "keys": []}"#).unwrap();
        assert!(load_keys(&path).unwrap_err().contains("no keys"));
        std::fs::write(&path, "not json").unwrap();
        assert!(load_keys(&path).is_err());
        let key: VerifyingKey = signer().verifying_key().clone();
        let published = key.to_jwk();
        // A set that names no tenant would admit anyone's token.
        std::fs::write(&path, format!(r#"{{"issuer": "tether", "keys": [{published}]}}"#)).unwrap();
        assert!(load_keys(&path).unwrap_err().contains("names no tenant"));
        let set = KeySet::new("ten_a", "tether", vec![key]).unwrap();
        std::fs::write(&path, set.to_json()).unwrap();
        assert_eq!(load_keys(&path).unwrap(), set);
    }
}
