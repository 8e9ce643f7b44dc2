//! Metric names of the calendar service (labels: result, state, gateway id — never a user).

pub const POLLS: &str = "herald_calendar_polls_total";
pub const CHECKS: &str = "herald_calendar_gateway_checks_total";
pub const GATEWAY_USERS: &str = "herald_calendar_gateway_users";
pub const GATEWAY_UP: &str = "herald_calendar_gateway_up";
pub const OVERLAY_CHANGES: &str = "herald_calendar_overlay_changes_total";
pub const OVERLAY_QUEUE: &str = "herald_calendar_overlay_queue";
pub const OVERLAY_BATCH: &str = "herald_calendar_overlay_batch";
pub const TICK: &str = "herald_calendar_tick_seconds";
pub const REASSIGNMENTS: &str = "herald_calendar_reassignments_total";
pub const NOTIFICATIONS: &str = "herald_calendar_notifications_total";
pub const CALDAV_SYNC: &str = "herald_calendar_caldav_sync_total";

pub fn describe() {
    metrics::describe_counter!(
        POLLS,
        "Calendar polls of users homed on this node, by result (ok, connect, certificate, tls, auth, status, too_large, timeout, protocol, bad_xml, bad_calendar, soap_fault, ews_error)"
    );
    metrics::describe_counter!(
        CHECKS,
        "Calendar gateway checks from this node, by gateway and result"
    );
    metrics::describe_gauge!(
        GATEWAY_USERS,
        "Users homed on this node whose calendar is read through the gateway"
    );
    metrics::describe_gauge!(
        GATEWAY_UP,
        "1 when the gateway's last check from this node succeeded, else 0"
    );
    metrics::describe_counter!(
        OVERLAY_CHANGES,
        "Calendar states sent to user actors because they changed, by state (free, tentative, busy, out_of_office)"
    );
    metrics::describe_histogram!(
        TICK,
        metrics::Unit::Seconds,
        "Time one pass of the node's calendar service took (store re-read, assignment, polls started, states evaluated), on a thread that also routes messages"
    );
    metrics::describe_gauge!(
        OVERLAY_BATCH,
        "Users whose calendar state is handed to their actors per 20 ms step now (adapts to how busy the node is)"
    );
    metrics::describe_gauge!(
        OVERLAY_QUEUE,
        "Users whose changed calendar state waits to be handed to their actor (a burst is spread in batches)"
    );
    metrics::describe_counter!(
        NOTIFICATIONS,
        "EWS pull notifications, by result (subscribed, changed, unchanged, lost, refused)"
    );
    metrics::describe_counter!(
        CALDAV_SYNC,
        "CalDAV polls answered by sync-collection (RFC 6578), by result (unchanged: nothing read again; changed, refused: everything read again)"
    );
    metrics::describe_counter!(
        REASSIGNMENTS,
        "Users moved to another calendar gateway (or first assigned), by reason"
    );
}
