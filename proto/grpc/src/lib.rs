//! Herald's wire contracts: protobuf messages and gRPC services.
//!
//! - [`config`]: the config objects of the replicated store, the [`config::Command`]s that
//!   change them, and their outcomes.
//! - [`admin`]: the operator-facing admin API served on every node.
//! - [`cluster`]: the node-to-node API (Raft transport, forwarded writes, joins, status).
//!
//! [`objects`] gives every [`config::ConfigObject`] its kind and key, and [`status`] is the one
//! mapping from our error classes to gRPC status codes.

/// Generated code, nested as the protobuf packages are (cross-package references need it).
pub mod herald {
    pub mod config {
        pub mod v1 {
            tonic::include_proto!("herald.config.v1");
        }
    }
    pub mod admin {
        pub mod v1 {
            tonic::include_proto!("herald.admin.v1");
        }
    }
    pub mod cluster {
        pub mod v1 {
            tonic::include_proto!("herald.cluster.v1");
        }
    }
}

pub use herald::admin::v1 as admin;
pub use herald::cluster::v1 as cluster;
pub use herald::config::v1 as config;

pub mod objects;
pub mod status;
