//! Generated gRPC types. Only the adapters (`grpc`, `cli`) use these; the core never does.

pub mod sluice {
    pub mod v1 {
        tonic::include_proto!("sluice.v1");
    }
}

/// Descriptor set of Sluice's API and the Envoy services it serves, for server reflection.
pub const REFLECTION_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/reflection_descriptor.bin"));
