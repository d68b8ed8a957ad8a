//! Compiles the tether.v1 protos with protox (pure Rust), so building needs
//! no system `protoc`.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "tether/v1/common.proto",
    "tether/v1/admin.proto",
    "tether/v1/device.proto",
    "tether/v1/access.proto",
    "tether/v1/report.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let file_descriptors = protox::compile(PROTOS, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("tether_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&file_descriptors))?;
    tonic_prost_build::configure().compile_fds(file_descriptors)?;

    // Envoy's ext_authz protos: a descriptor set for reflection only (the
    // types come from the envoy-types crate; see third_party/envoy/README.md).
    println!("cargo:rerun-if-changed=third_party/envoy");
    let envoy = protox::compile(["envoy/service/auth/v3/external_auth.proto"], ["third_party/envoy"])?;
    std::fs::write(out_dir.join("envoy_ext_authz_descriptor.bin"), prost::Message::encode_to_vec(&envoy))?;
    Ok(())
}
