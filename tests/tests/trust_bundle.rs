//! `tether trust add --bundle tpm` against a real tetherd: the shipped TPM manufacturer CAs
//! become the tenant's trust anchors, whole or per vendor, and only for that tenant.

use tether_e2e::{Server, run_bin};

fn anchors(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    json["anchors"].as_array().expect("anchors").clone()
}

#[test]
fn the_tpm_bundle_is_added_per_vendor_or_whole() {
    let server = Server::start();
    let acme = server.init_tenant("acme", "acme.example", "https://acme.example");
    let other = server.init_tenant("globex", "globex.example", "https://globex.example");
    let as_admin = |key: &str, args: &[&str]| {
        run_bin(
            "tether",
            &[&["--output", "json"], args].concat(),
            &[("TETHER_SERVER", server.url.as_str()), ("TETHER_API_KEY", key)],
        )
    };
    let stm = anchors(&as_admin(&acme.admin_key, &["trust", "add", "--bundle", "tpm", "--vendor", "stm"]));
    assert_eq!(stm.len(), 9, "{stm:?}");
    assert!(stm.iter().all(|a| a["name"] == "TPM bundle: stm"), "{stm:?}");
    let total = tether_attestation::tpm::bundle::certificates().len();
    let all = anchors(&as_admin(&acme.admin_key, &["trust", "add", "--bundle", "tpm"]));
    assert_eq!(all.len(), total, "already trusted certificates are returned once, not duplicated");
    assert_eq!(anchors(&as_admin(&acme.admin_key, &["trust", "list"])).len(), total);
    assert!(anchors(&as_admin(&other.admin_key, &["trust", "list"])).is_empty(), "another tenant is untouched");

    let unknown = as_admin(&acme.admin_key, &["trust", "add", "--bundle", "tpm", "--vendor", "acme"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown TPM vendor"));
    let both = as_admin(&acme.admin_key, &["trust", "add", "x.pem", "--bundle", "tpm"]);
    assert_eq!(both.status.code(), Some(2), "a file and a bundle at once is a usage error");
}
