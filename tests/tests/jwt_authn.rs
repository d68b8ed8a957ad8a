//! Access tokens as a stock JWT verifier sees them: the shipped Envoy `jwt_authn`
//! configuration (deploy/envoy/jwt-authn.yaml) parses and verifies locally with the
//! remote JWKS, and a real token issued by tetherd verifies with the JWKS that
//! GetAccessTokenKeys returns, checked by `jsonwebtoken`'s own JWK parsing (not
//! Tether's) under the issuer and audience that configuration names.

use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_yaml_ng::Value;
use tether_e2e::fixtures::{EnrolledDevice, Org, next_challenge, sign};
use tether_e2e::{Server, authed, run_bin};
use tether_proto::v1 as pb;

const ISSUER: &str = "https://tether.test.example";

fn config() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/envoy/jwt-authn.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The jwt_authn filter's `tether` provider, after checking the filter chain around it.
fn provider(config: &Value) -> Value {
    let hcm = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let filters = hcm["http_filters"].as_sequence().unwrap();
    let names: Vec<&str> = filters.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(
        names,
        ["envoy.filters.http.header_mutation", "envoy.filters.http.jwt_authn", "envoy.filters.http.router"],
        "identity headers are stripped, then the JWT is verified; nothing asks tetherd per request"
    );
    let removed: Vec<&str> = filters[0]["typed_config"]["mutations"]["request_mutations"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|m| m["remove"].as_str())
        .collect();
    assert_eq!(removed, ["x-tether-worker", "x-tether-device"]);
    let jwt = &filters[1]["typed_config"];
    assert_eq!(
        jwt["@type"].as_str(),
        Some("type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication")
    );
    let rule = &jwt["rules"][0];
    assert_eq!(
        (rule["match"]["prefix"].as_str(), rule["requires"]["provider_name"].as_str()),
        (Some("/"), Some("tether"))
    );
    jwt["providers"]["tether"].clone()
}

fn new_key(dir: &Path, algorithm: &str) -> PathBuf {
    let path = dir.join(format!("{algorithm}.pem"));
    let out = run_bin(
        "tether",
        &["gateway", "new-token-key", "--algorithm", algorithm, "--out", path.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

async fn issue_token(server: &Server, device: &mut EnrolledDevice) -> String {
    let challenge = next_challenge(server, &device.credential_id).await;
    let json = sign(&challenge, &mut device.auth);
    let request = pb::AnswerChallengeRequest {
        challenge_id: challenge.challenge_id,
        assertion_response_json: json,
        request_access_token: true,
        ..Default::default()
    };
    server.presence().await.answer_challenge(request).await.unwrap().into_inner().access_token
}

/// `GET path` over plain HTTP/1.1: (status line and headers, body).
fn http_get(base: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// What Envoy does with a token: pick the JWK by `kid`, take the algorithm from
/// the JWK, check the signature, issuer, audience and expiry.
fn consume(jwks: &JwkSet, token: &str, issuer: &str, audience: &str) -> Result<serde_json::Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or("unknown kid")?;
    let alg = jwk.common.key_algorithm.ok_or("the JWK names no alg")?;
    let alg: jsonwebtoken::Algorithm = alg.to_string().parse().map_err(|_| "unusable alg")?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.leeway = 5;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| format!("{:?}", e.kind()))
}

#[tokio::test]
async fn envoy_jwt_authn_config_verifies_real_tokens_with_the_published_jwks() {
    let config = config();
    let provider = provider(&config);
    assert_eq!(provider["issuer"].as_str(), Some("TETHER_ISSUER"), "a placeholder the operator replaces");
    assert_eq!(provider["audiences"][0].as_str(), Some("TETHER_TENANT_ID"));
    assert_eq!(provider["forward"], Value::Bool(false), "the bearer token must not reach the upstream");
    let headers: Vec<(&str, Option<&str>)> = provider["from_headers"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|h| (h["name"].as_str().unwrap(), h["value_prefix"].as_str()))
        .collect();
    assert_eq!(headers, [("x-tether-access-token", None), ("authorization", Some("Tether "))]);
    let remote = &provider["remote_jwks"];
    let uri = remote["http_uri"]["uri"].as_str().unwrap();
    assert!(uri.starts_with("https://") && uri.ends_with("/.well-known/jwks.json"), "{uri}");
    let cluster = remote["http_uri"]["cluster"].as_str().unwrap();
    let clusters = config["static_resources"]["clusters"].as_sequence().unwrap();
    let jwks_cluster = clusters.iter().find(|c| c["name"].as_str() == Some(cluster)).expect("the JWKS cluster");
    assert!(jwks_cluster["transport_socket"]["name"].as_str() == Some("envoy.transport_sockets.tls"), "JWKS over TLS");
    assert!(remote["cache_duration"].as_str().is_some());
    let claims: Vec<&str> =
        provider["claim_to_headers"].as_sequence().unwrap().iter().filter_map(|c| c["claim_name"].as_str()).collect();
    assert_eq!(claims, ["sub", "dev"]);

    let dir = tempfile::tempdir().unwrap();
    for algorithm in ["eddsa", "es256"] {
        let key = new_key(dir.path(), algorithm);
        let server = Server::start_with_args(&[
            "--access-token-key",
            key.to_str().unwrap(),
            "--access-token-issuer",
            ISSUER,
            "--web-listen",
            "127.0.0.1:0",
        ]);
        let acme = Org::create(&server, "acme").await;
        let globex = Org::create(&server, "globex").await;
        let mut alice = acme.enrolled_device(&server, "alice").await;
        let mut mallory = globex.enrolled_device(&server, "alice").await;
        let token = issue_token(&server, &mut alice).await;
        let theirs = issue_token(&server, &mut mallory).await;

        let mut access = server.access().await;
        let published = access
            .get_access_token_keys(authed(&acme.gateway_key, pb::GetAccessTokenKeysRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(published.issuer, ISSUER);
        // What Envoy's remote_jwks fetches: the same set, on the web listener, without a key.
        let (head, served) = http_get(&server.web_url, "/.well-known/jwks.json");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/jwk-set+json"), "{head}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&served).unwrap(),
            serde_json::from_str::<serde_json::Value>(&published.jwks_json).unwrap()
        );
        let jwks: JwkSet = serde_json::from_str(&served).unwrap();
        assert_eq!(jwks.keys.len(), 1);
        let raw: serde_json::Value = serde_json::from_str(&published.jwks_json).unwrap();
        let expected_kty = if algorithm == "eddsa" { "OKP" } else { "EC" };
        assert_eq!(raw["keys"][0]["kty"], expected_kty, "{raw}");
        assert!(raw["keys"][0].get("d").is_none(), "no private member is ever published: {raw}");

        // The configuration with its placeholders filled in, as acme's operator would.
        let audience = acme.keys.tenant_id.as_str();
        let claims = consume(&jwks, &token, ISSUER, audience).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["dev"], alice.device_id.as_str());
        assert_eq!(claims["aud"], audience);
        assert_eq!(claims["ip"], "127.0.0.1");
        assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());

        // Globex's token for a namesake worker: same key, other audience.
        assert_eq!(consume(&jwks, &theirs, ISSUER, audience).unwrap_err(), "InvalidAudience");
        assert_eq!(consume(&jwks, &token, "https://other.example", audience).unwrap_err(), "InvalidIssuer");
        let mut tampered = token.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'Q' } else { 'A' });
        assert!(consume(&jwks, &tampered, ISSUER, audience).is_err());
    }
}
