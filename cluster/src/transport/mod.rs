//! How Raft messages leave a node. The owner loop only calls [`Transport::send`], which must not
//! block: implementations queue per peer and drop on overflow (Raft tolerates loss and retries).
//!
//! - [`grpc::GrpcTransport`]: the real one, over the node-to-node gRPC `Raft` stream.
//! - [`mem::MemHub`]: in-process delivery with drop and partition knobs, for simulated clusters.

pub mod grpc;
pub mod mem;

use raft::eraftpb::Message;

pub trait Transport: Send + Sync + 'static {
    /// Queues one message for `msg.to`.
    fn send(&self, msg: Message);
    /// Records (or updates) where a peer's node-to-node API listens.
    fn learn_address(&self, node_id: u64, address: &str);
    /// Forgets a removed peer.
    fn forget(&self, node_id: u64);
}
