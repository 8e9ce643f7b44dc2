//! Metric names of the cluster crate (Prometheus conventions; no unbounded labels).

pub const TERM: &str = "herald_raft_term";
pub const COMMIT_INDEX: &str = "herald_raft_commit_index";
pub const APPLIED_INDEX: &str = "herald_raft_applied_index";
pub const IS_LEADER: &str = "herald_raft_is_leader";
pub const VOTERS: &str = "herald_raft_voters";
pub const LEARNERS: &str = "herald_raft_learners";
pub const LEADER_CHANGES: &str = "herald_raft_leader_changes_total";
pub const PROPOSAL_DURATION: &str = "herald_raft_proposal_duration_seconds";
/// Label `reason`: not_leader, dropped, timeout, forward_failed, no_leader.
pub const PROPOSALS_FAILED: &str = "herald_raft_proposals_failed_total";
/// Durable (fsynced) writes of the Raft store.
pub const FSYNCS: &str = "herald_raft_fsyncs_total";
/// ReadIndex rounds issued; each serves every linearizable read that waited for it.
pub const READ_INDEX_ROUNDS: &str = "herald_raft_read_index_rounds_total";
/// Linearizable read barriers served by those rounds.
pub const LINEARIZABLE_READS: &str = "herald_raft_linearizable_reads_total";
pub const SNAPSHOTS_TAKEN: &str = "herald_raft_snapshots_taken_total";
pub const SNAPSHOT_FAILURES: &str = "herald_raft_snapshot_failures_total";
/// Snapshots sent to followers over InstallSnapshot.
pub const SNAPSHOTS_SENT: &str = "herald_raft_snapshots_sent_total";
pub const SNAPSHOTS_INSTALLED: &str = "herald_raft_snapshots_installed_total";
/// Label `direction`: out (queue full or peer unreachable), in (inbox full).
pub const MESSAGES_DROPPED: &str = "herald_raft_messages_dropped_total";
pub const MESSAGES_SENT: &str = "herald_raft_messages_sent_total";
pub const MESSAGES_RECEIVED: &str = "herald_raft_messages_received_total";
pub const PEER_CONNECT_FAILURES: &str = "herald_cluster_peer_connect_failures_total";
pub const FORWARDED_WRITES: &str = "herald_cluster_forwarded_writes_total";
/// Audit records appended to the replicated store, as applied on this node.
pub const AUDIT_RECORDS: &str = "herald_audit_records_written_total";
/// The placement epoch this node has applied (see `crate::ownership`).
pub const PLACEMENT_EPOCH: &str = "herald_placement_epoch";
/// Placement views the leader committed (this node while it led).
pub const PLACEMENT_CHANGES: &str = "herald_placement_changes_total";
/// Times this node started or stopped serving as a home (lease held / lost), by `serving`.
pub const LEASE_CHANGES: &str = "herald_placement_lease_changes_total";

/// Registers descriptions so that `/metrics` explains each series.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(PLACEMENT_EPOCH, "Placement view epoch applied on this node");
    describe_counter!(
        PLACEMENT_CHANGES,
        "Placement views committed by this node as the Raft leader"
    );
    describe_counter!(
        LEASE_CHANGES,
        "Times this node's right to serve as a home began (serving=yes) or lapsed (serving=no)"
    );
    metrics::counter!(PLACEMENT_CHANGES).absolute(0);
    describe_gauge!(TERM, "Current Raft term on this node");
    describe_gauge!(COMMIT_INDEX, "Highest Raft log index known committed");
    describe_gauge!(
        APPLIED_INDEX,
        "Highest Raft log index applied to the config state"
    );
    describe_gauge!(IS_LEADER, "1 when this node is the Raft leader");
    describe_gauge!(VOTERS, "Number of voters in the Raft configuration");
    describe_gauge!(
        LEARNERS,
        "Number of learners (joined members still catching up, not voting yet)"
    );
    describe_counter!(LEADER_CHANGES, "Times this node saw a new Raft leader");
    describe_histogram!(
        PROPOSAL_DURATION,
        Unit::Seconds,
        "Time from proposing a write on the leader to applying it"
    );
    describe_counter!(
        PROPOSALS_FAILED,
        "Writes that could not be applied, by reason"
    );
    describe_counter!(
        FSYNCS,
        "Durable (fsynced) writes of the Raft store: entries, term/vote, conf state, snapshots"
    );
    describe_counter!(
        READ_INDEX_ROUNDS,
        "ReadIndex rounds issued (reads waiting at the same time share one)"
    );
    describe_counter!(
        LINEARIZABLE_READS,
        "Linearizable read barriers asked of Raft"
    );
    describe_counter!(SNAPSHOTS_TAKEN, "Snapshots taken to compact the Raft log");
    describe_counter!(
        SNAPSHOT_FAILURES,
        "Snapshots that could not be written to their file (disk full, permissions); retried"
    );
    describe_counter!(
        SNAPSHOTS_SENT,
        "Snapshots sent to followers in chunks (InstallSnapshot)"
    );
    describe_counter!(
        SNAPSHOTS_INSTALLED,
        "Snapshots received from a leader and installed"
    );
    describe_counter!(MESSAGES_DROPPED, "Raft messages dropped, by direction");
    describe_counter!(MESSAGES_SENT, "Raft messages sent to peers");
    describe_counter!(MESSAGES_RECEIVED, "Raft messages received from peers");
    describe_counter!(PEER_CONNECT_FAILURES, "Failed connections to peer nodes");
    describe_counter!(FORWARDED_WRITES, "Writes forwarded to the leader");
    describe_counter!(
        AUDIT_RECORDS,
        "Audit records of admin changes appended to the replicated store (applied on this node)"
    );
    metrics::counter!(AUDIT_RECORDS).absolute(0);
    describe_counter!(
        crate::routing::ROUTED,
        "Stanzas and session events routed between nodes, by direction"
    );
    describe_counter!(
        crate::routing::ROUTE_DROPPED,
        "Routed items dropped, by reason (peer unreachable, queue full, receiver full)"
    );
    describe_gauge!(
        crate::routing::LIVE_NODES,
        "Cluster members this node currently sees alive (itself included)"
    );
    describe_counter!(
        crate::service::IDENTITY_REFUSALS,
        "Node-to-node calls refused: the caller's certificate does not back what it claims, or names no member"
    );
    // Exported from the start (at 0), so that a scrape can tell "none" from "not exported".
    metrics::counter!(crate::routing::NODES_DECLARED_DEAD).absolute(0);
    for reason in ["peer_unreachable", "queue_full", "receiver_full"] {
        metrics::counter!(crate::routing::ROUTE_DROPPED, "reason" => reason).absolute(0);
    }
    describe_counter!(
        crate::routing::NODES_DECLARED_DEAD,
        "Times this node saw a peer go from live to dead (liveness pings unanswered or a routed item lost)"
    );
}
