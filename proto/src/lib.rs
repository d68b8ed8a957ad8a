//! The `tether.v1` gRPC contract: messages, clients and servers generated
//! from `proto/tether/v1/*.proto`.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("tether.v1");

    /// The encoded `FileDescriptorSet` for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tether_descriptor");
}

/// The encoded `FileDescriptorSet` of `envoy.service.auth.v3` (Envoy external
/// authorization) and its imports, for reflection; the types are `envoy-types`'.
pub const ENVOY_EXT_AUTHZ_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("envoy_ext_authz_descriptor");
