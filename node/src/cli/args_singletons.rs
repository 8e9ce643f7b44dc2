//! Command-line definitions of `cluster` and of the singleton objects: XMPP federation
//! settings and policy, email federation, routing node and federation routing.

use clap::{Subcommand, ValueEnum};
use herald_grpc::config::{PolicyAction, PolicyDirection, XmppSecurityMode};

/// `herald cluster ...`
#[derive(Subcommand, Debug, Clone)]
pub enum ClusterCmd {
    /// Shows members, leader, applied indexes and config digests.
    Status,
    /// Adds a voter; start the new node with --join afterwards.
    AddNode {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// HOST:PORT of the new node's node-to-node listener.
        #[arg(long)]
        address: String,
    },
    /// Removes a voter.
    RemoveNode {
        /// The node's id.
        #[arg(long)]
        id: u64,
    },
    /// Re-reads TLS certificate files (node certificate and --tls-cert-dir) on every member,
    /// without a restart, and lists the certificates in force.
    ReloadCerts {
        /// Only the node the command talks to.
        #[arg(long)]
        this_node_only: bool,
    },
}

/// XMPP s2s security mode on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityModeArg {
    /// No TLS.
    None,
    /// TLS when the peer offers it.
    Optional,
    /// TLS always.
    Required,
}

impl From<SecurityModeArg> for XmppSecurityMode {
    fn from(a: SecurityModeArg) -> Self {
        match a {
            SecurityModeArg::None => XmppSecurityMode::NoTls,
            SecurityModeArg::Optional => XmppSecurityMode::TlsOptional,
            SecurityModeArg::Required => XmppSecurityMode::TlsRequired,
        }
    }
}

/// `herald xmpp-federation ...`
#[derive(Subcommand, Debug, Clone)]
pub enum XmppFederationCmd {
    /// Shows the XMPP federation settings.
    Show,
    /// Changes the given XMPP federation settings.
    Set {
        /// TLS security mode of s2s connections.
        #[arg(long, value_enum)]
        security_mode: Option<SecurityModeArg>,
        /// Require client certificates from inbound peers.
        #[arg(long, value_name = "true|false")]
        require_client_certs: Option<bool>,
        /// Offer SASL EXTERNAL on inbound connections.
        #[arg(long, value_name = "true|false")]
        sasl_external_inbound: Option<bool>,
        /// Use SASL on outbound connections.
        #[arg(long, value_name = "true|false")]
        sasl_outbound: Option<bool>,
        /// Dialback secret (the same on every node and peered cluster).
        #[arg(long)]
        dialback_secret: Option<String>,
        /// Enable XMPP federation on this node id (repeatable).
        #[arg(long = "enable-node", value_name = "N")]
        enable_node: Vec<u64>,
        /// Disable XMPP federation on this node id (repeatable).
        #[arg(long = "disable-node", value_name = "N")]
        disable_node: Vec<u64>,
        /// Expected revision (default: the one read).
        #[arg(long)]
        revision: Option<u64>,
    },
}

/// Default policy action on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyActionArg {
    /// Allow federation with every domain except the exceptions.
    Allow,
    /// Deny federation with every domain except the exceptions.
    Deny,
}

impl From<PolicyActionArg> for PolicyAction {
    fn from(a: PolicyActionArg) -> Self {
        match a {
            PolicyActionArg::Allow => PolicyAction::Allow,
            PolicyActionArg::Deny => PolicyAction::Deny,
        }
    }
}

/// Policy exception direction on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyDirectionArg {
    /// Both directions.
    All,
    /// Inbound only.
    Inbound,
    /// Outbound only.
    Outbound,
}

impl From<PolicyDirectionArg> for PolicyDirection {
    fn from(a: PolicyDirectionArg) -> Self {
        match a {
            PolicyDirectionArg::All => PolicyDirection::All,
            PolicyDirectionArg::Inbound => PolicyDirection::Inbound,
            PolicyDirectionArg::Outbound => PolicyDirection::Outbound,
        }
    }
}

/// `herald xmpp-policy ...`
#[derive(Subcommand, Debug, Clone)]
pub enum XmppPolicyCmd {
    /// Shows the default action and the exceptions.
    Show,
    /// Sets the default action.
    Set {
        /// Default action.
        #[arg(long = "default", value_enum)]
        default_action: PolicyActionArg,
        /// Expected revision (default: the one read).
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Policy exceptions.
    #[command(subcommand)]
    Exception(PolicyExceptionCmd),
}

/// `herald xmpp-policy exception ...`
#[derive(Subcommand, Debug, Clone)]
pub enum PolicyExceptionCmd {
    /// Adds an exception.
    Add {
        /// `example.com`, `host.example.com` or `*.example.com`.
        pattern: String,
        /// Direction the exception applies to.
        #[arg(long, value_enum, default_value_t = PolicyDirectionArg::All)]
        direction: PolicyDirectionArg,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Removes an exception.
    Remove {
        /// The exception's pattern.
        pattern: String,
    },
    /// Lists the exceptions.
    List,
}

/// `herald email-federation ...`
#[derive(Subcommand, Debug, Clone)]
pub enum EmailFederationCmd {
    /// Shows whether email for federation is on.
    Show,
    /// Turns email for federation on.
    Enable {
        /// Confirm the change (it affects every federated contact).
        #[arg(long)]
        confirm: bool,
        /// Expected revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Turns email for federation off.
    Disable {
        /// Confirm the change (it affects every federated contact).
        #[arg(long)]
        confirm: bool,
        /// Expected revision.
        #[arg(long)]
        revision: Option<u64>,
    },
}

/// `herald routing-node ...`
#[derive(Subcommand, Debug, Clone)]
pub enum RoutingNodeCmd {
    /// Shows the routing node order.
    Show,
    /// Sets the designated routing node and its ordered fallbacks.
    Set {
        /// The designated routing node.
        node_id: u64,
        /// Fallback nodes, in order.
        fallbacks: Vec<u64>,
        /// Expected revision (default: the one read).
        #[arg(long)]
        revision: Option<u64>,
    },
}

/// `herald federation-routing ...`
#[derive(Subcommand, Debug, Clone)]
pub enum FederationRoutingCmd {
    /// Shows the federation routing parameters.
    Show,
    /// Changes the given federation routing parameters.
    Set {
        /// Federation routing FQDN.
        #[arg(long)]
        fqdn: Option<String>,
        /// Default federation routing domain (AOL-type domains).
        #[arg(long)]
        default_routing_domain: Option<String>,
        /// Load balancer virtual IP address.
        #[arg(long)]
        virtual_ip: Option<String>,
        /// Load balancer server name.
        #[arg(long)]
        server_name: Option<String>,
        /// Expected revision (default: the one read).
        #[arg(long)]
        revision: Option<u64>,
    },
}

/// `herald log ...`: the log filter of the node the CLI talks to, or of every node.
#[derive(Subcommand, Debug, Clone)]
pub enum LogCmd {
    /// Shows the log filter in force.
    Show {
        /// Every member, not only the node the CLI talks to.
        #[arg(long)]
        all_nodes: bool,
    },
    /// Merges directives into the log filter, e.g. `federation=debug,cluster=info` or `debug`
    /// (components: cluster, federation, node, xmpp, im, admin, tls, http, raft; any other
    /// tracing target as written).
    Set {
        /// Comma-separated COMPONENT=LEVEL or LEVEL directives.
        directives: String,
        /// Every member, not only the node the CLI talks to.
        #[arg(long)]
        all_nodes: bool,
    },
    /// Goes back to the filter the node started with.
    Reset {
        /// Every member, not only the node the CLI talks to.
        #[arg(long)]
        all_nodes: bool,
    },
}
