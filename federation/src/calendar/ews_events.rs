//! EWS pull notifications, sans I/O: the `Subscribe` request (a pull subscription on the
//! mailbox's calendar folder) and the `GetEvents` request with the last watermark, and the
//! readers of their answers, bounded.
//!
//! Shapes (Messages.xsd / Types.xsd): `m:Subscribe/m:PullSubscriptionRequest` with
//! `t:FolderIds/t:DistinguishedFolderId Id="calendar"` (+ `t:Mailbox`), `t:EventTypes`,
//! `t:Timeout` (minutes) → `m:SubscribeResponseMessage` with `m:SubscriptionId` and
//! `m:Watermark`; `m:GetEvents` (`m:SubscriptionId`, `m:Watermark`) →
//! `m:GetEventsResponseMessage/m:Notification` with `t:MoreEvents` and events
//! (`t:StatusEvent`, `t:CreatedEvent`, `t:ModifiedEvent`, `t:DeletedEvent`, `t:MovedEvent`,
//! `t:CopiedEvent`, `t:NewMailEvent`, `t:FreeBusyChangedEvent`), each with a `t:Watermark`.
//!
//! How the node uses them: subscribe once per user and gateway, then each poll asks
//! `GetEvents`; only a non-status event (or a lost subscription) costs a new
//! `GetUserAvailability`. A server that refuses `Subscribe` is polled.

use rxml::{Event, Parser};

use super::ews::{
    check_open, next_event, EwsError, MAX_EVENTS, MAX_TEXT, MESSAGES, SOAP, SOAP12, TYPES,
};
use super::xml_escape as escape;

/// A live pull subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// `SubscriptionId`.
    pub id: String,
    /// The last watermark read.
    pub watermark: String,
}

/// What one `GetEvents` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Events {
    /// The newest watermark (the next `GetEvents` starts there).
    pub watermark: String,
    /// Some event other than `StatusEvent`: the calendar changed.
    pub changed: bool,
    /// `MoreEvents`: the server has more to tell.
    pub more: bool,
}

fn envelope(mailbox: &str, impersonate: bool, body: &str) -> String {
    let imp = if impersonate {
        format!(
            "<t:ExchangeImpersonation><t:ConnectingSID><t:SmtpAddress>{}</t:SmtpAddress>\
             </t:ConnectingSID></t:ExchangeImpersonation>",
            escape(mailbox)
        )
    } else {
        String::new()
    };
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<soap:Envelope xmlns:soap="{soap}" xmlns:t="{t}" xmlns:m="{m}">"#,
            r#"<soap:Header><t:RequestServerVersion Version="Exchange2010_SP1"/>{imp}</soap:Header>"#,
            r#"<soap:Body>{body}</soap:Body></soap:Envelope>"#
        ),
        soap = SOAP,
        t = TYPES,
        m = MESSAGES,
        imp = imp,
        body = body
    )
}

/// The `Subscribe` request: a pull subscription on `mailbox`'s calendar folder that lapses
/// after `timeout_minutes` without a `GetEvents` (1..=1440).
pub fn subscribe_pull(mailbox: &str, impersonate: bool, timeout_minutes: u32) -> String {
    let events: String = [
        "CreatedEvent",
        "DeletedEvent",
        "ModifiedEvent",
        "MovedEvent",
        "CopiedEvent",
    ]
    .iter()
    .map(|e| format!("<t:EventType>{e}</t:EventType>"))
    .collect();
    envelope(
        mailbox,
        impersonate,
        &format!(
            "<m:Subscribe><m:PullSubscriptionRequest><t:FolderIds>\
             <t:DistinguishedFolderId Id=\"calendar\"><t:Mailbox><t:EmailAddress>{}</t:EmailAddress>\
             </t:Mailbox></t:DistinguishedFolderId></t:FolderIds><t:EventTypes>{events}</t:EventTypes>\
             <t:Timeout>{}</t:Timeout></m:PullSubscriptionRequest></m:Subscribe>",
            escape(mailbox),
            timeout_minutes.clamp(1, 1440)
        ),
    )
}

/// The `GetEvents` request for `sub`.
pub fn get_events(mailbox: &str, impersonate: bool, sub: &Subscription) -> String {
    envelope(
        mailbox,
        impersonate,
        &format!(
            "<m:GetEvents><m:SubscriptionId>{}</m:SubscriptionId><m:Watermark>{}</m:Watermark>\
             </m:GetEvents>",
            escape(&sub.id),
            escape(&sub.watermark)
        ),
    )
}

/// One leaf element read: its parent's local name, its own, its text.
struct Leaf {
    parent: String,
    name: String,
    text: String,
}

/// Reads a SOAP answer into its leaves (bounded), turning a fault or `ResponseClass="Error"`
/// into the error; also returns the local names of the elements under `Notification`.
fn read(body: &[u8]) -> Result<(Vec<Leaf>, Vec<String>), EwsError> {
    let mut parser = Parser::new();
    let mut input = body;
    let mut path: Vec<(String, String)> = Vec::new();
    let mut text = String::new();
    let mut leaves = Vec::new();
    let mut notification_children = Vec::new();
    let mut fault = false;
    let mut error_class = false;
    loop {
        let Some(ev) = next_event(&mut parser, &mut input)? else {
            break;
        };
        match ev {
            Event::XmlDeclaration(..) => {}
            Event::StartElement(_, (ns, name), attrs) => {
                let (ns, name) = (ns.as_str().to_owned(), name.as_str().to_owned());
                check_open(path.len(), &ns, &name)?;
                if name == "Fault" && (ns == SOAP || ns == SOAP12) {
                    fault = true;
                }
                if name.ends_with("ResponseMessage")
                    && attrs.iter().any(|((ans, an), v)| {
                        ans.is_none() && an.as_str() == "ResponseClass" && v.as_str() == "Error"
                    })
                {
                    error_class = true;
                }
                if path.last().is_some_and(|(_, n)| n == "Notification") {
                    if notification_children.len() >= MAX_EVENTS {
                        return Err(EwsError::TooManyEvents);
                    }
                    notification_children.push(name.clone());
                }
                text.clear();
                path.push((ns, name));
            }
            Event::Text(_, t) => {
                if text.len() + t.len() <= MAX_TEXT {
                    text.push_str(&t);
                }
            }
            Event::EndElement(_) => {
                let Some((_, name)) = path.pop() else {
                    continue;
                };
                let parent = path.last().map(|(_, n)| n.clone()).unwrap_or_default();
                if !text.trim().is_empty() {
                    if leaves.len() >= 4 * MAX_EVENTS {
                        return Err(EwsError::TooManyEvents);
                    }
                    leaves.push(Leaf {
                        parent,
                        name,
                        text: text.trim().to_owned(),
                    });
                }
                text.clear();
            }
        }
    }
    let find = |names: &[&str]| {
        leaves
            .iter()
            .rev()
            .find(|l| names.contains(&l.name.as_str()))
            .map(|l| l.text.clone())
    };
    if fault {
        return Err(EwsError::Fault {
            code: find(&["ResponseCode", "faultcode", "Value"]).unwrap_or_default(),
            text: find(&["faultstring", "Text"]).unwrap_or_default(),
        });
    }
    if error_class {
        return Err(EwsError::Response {
            code: find(&["ResponseCode"]).unwrap_or_else(|| "(no ResponseCode)".into()),
            text: find(&["MessageText"]).unwrap_or_default(),
        });
    }
    Ok((leaves, notification_children))
}

/// Reads a `Subscribe` answer.
pub fn subscribe_response(body: &[u8]) -> Result<Subscription, EwsError> {
    let (leaves, _) = read(body)?;
    let get = |n: &str| {
        leaves
            .iter()
            .find(|l| l.name == n && l.parent == "SubscribeResponseMessage")
            .map(|l| l.text.clone())
    };
    match (get("SubscriptionId"), get("Watermark")) {
        (Some(id), Some(watermark)) => Ok(Subscription { id, watermark }),
        _ => Err(EwsError::NoAnswer),
    }
}

/// Reads a `GetEvents` answer.
pub fn get_events_response(body: &[u8]) -> Result<Events, EwsError> {
    let (leaves, children) = read(body)?;
    let is_event = |n: &str| n.ends_with("Event");
    if !children.iter().any(|c| is_event(c)) {
        return Err(EwsError::NoAnswer);
    }
    let watermark = leaves
        .iter()
        .rev()
        .find(|l| l.name == "Watermark" && is_event(&l.parent))
        .map(|l| l.text.clone())
        .ok_or(EwsError::NoAnswer)?;
    Ok(Events {
        watermark,
        changed: children.iter().any(|c| is_event(c) && c != "StatusEvent"),
        more: leaves
            .iter()
            .any(|l| l.name == "MoreEvents" && l.text == "true"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(inner: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP}"><s:Body>{inner}</s:Body></s:Envelope>"#
        )
    }

    #[test]
    fn subscribe_round_trip() {
        let req = subscribe_pull("a@b.c", true, 5000);
        assert!(req.contains("<t:Timeout>1440</t:Timeout>"));
        assert!(req.contains("<t:SmtpAddress>a@b.c</t:SmtpAddress>"));
        assert!(req.contains(r#"<t:DistinguishedFolderId Id="calendar">"#));
        let ok = answer(&format!(
            r#"<m:SubscribeResponse xmlns:m="{MESSAGES}"><m:ResponseMessages><m:SubscribeResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:SubscriptionId>JgBk</m:SubscriptionId><m:Watermark>AQAAAA==</m:Watermark></m:SubscribeResponseMessage></m:ResponseMessages></m:SubscribeResponse>"#
        ));
        assert_eq!(
            subscribe_response(ok.as_bytes()),
            Ok(Subscription {
                id: "JgBk".into(),
                watermark: "AQAAAA==".into()
            })
        );
        let refused = answer(&format!(
            r#"<m:SubscribeResponse xmlns:m="{MESSAGES}"><m:ResponseMessages><m:SubscribeResponseMessage ResponseClass="Error"><m:MessageText>no</m:MessageText><m:ResponseCode>ErrorInvalidRequest</m:ResponseCode></m:SubscribeResponseMessage></m:ResponseMessages></m:SubscribeResponse>"#
        ));
        assert!(matches!(
            subscribe_response(refused.as_bytes()),
            Err(EwsError::Response { code, .. }) if code == "ErrorInvalidRequest"
        ));
        assert!(subscribe_response(b"garbage").is_err());
        assert_eq!(
            subscribe_response(answer("").as_bytes()),
            Err(EwsError::NoAnswer)
        );
    }

    fn events(inner: &str, more: bool) -> String {
        answer(&format!(
            r#"<m:GetEventsResponse xmlns:m="{MESSAGES}" xmlns:t="{TYPES}"><m:ResponseMessages><m:GetEventsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Notification><t:SubscriptionId>JgBk</t:SubscriptionId><t:PreviousWatermark>AQ==</t:PreviousWatermark><t:MoreEvents>{more}</t:MoreEvents>{inner}</m:Notification></m:GetEventsResponseMessage></m:ResponseMessages></m:GetEventsResponse>"#
        ))
    }

    #[test]
    fn get_events_answers() {
        let sub = Subscription {
            id: "JgBk".into(),
            watermark: "AQ==".into(),
        };
        assert!(get_events("a@b.c", false, &sub).contains("<m:Watermark>AQ==</m:Watermark>"));
        let status = events(
            "<t:StatusEvent><t:Watermark>Ag==</t:Watermark></t:StatusEvent>",
            false,
        );
        assert_eq!(
            get_events_response(status.as_bytes()),
            Ok(Events {
                watermark: "Ag==".into(),
                changed: false,
                more: false
            })
        );
        let created = events(
            "<t:CreatedEvent><t:Watermark>Aw==</t:Watermark><t:TimeStamp>2026-12-06T09:00:00Z</t:TimeStamp><t:ItemId Id=\"x\" ChangeKey=\"y\"/><t:ParentFolderId Id=\"c\"/></t:CreatedEvent>\
             <t:DeletedEvent><t:Watermark>BA==</t:Watermark><t:TimeStamp>2026-12-06T09:00:01Z</t:TimeStamp><t:ItemId Id=\"z\"/><t:ParentFolderId Id=\"c\"/></t:DeletedEvent>",
            true,
        );
        assert_eq!(
            get_events_response(created.as_bytes()),
            Ok(Events {
                watermark: "BA==".into(),
                changed: true,
                more: true
            })
        );
        let lost = answer(&format!(
            r#"<m:GetEventsResponse xmlns:m="{MESSAGES}"><m:ResponseMessages><m:GetEventsResponseMessage ResponseClass="Error"><m:MessageText>gone</m:MessageText><m:ResponseCode>ErrorSubscriptionNotFound</m:ResponseCode></m:GetEventsResponseMessage></m:ResponseMessages></m:GetEventsResponse>"#
        ));
        assert!(matches!(
            get_events_response(lost.as_bytes()),
            Err(EwsError::Response { code, .. }) if code == "ErrorSubscriptionNotFound"
        ));
        assert_eq!(
            get_events_response(events("", false).as_bytes()),
            Err(EwsError::NoAnswer)
        );
        let many = events(
            &"<t:StatusEvent><t:Watermark>Ag==</t:Watermark></t:StatusEvent>"
                .repeat(MAX_EVENTS + 1),
            false,
        );
        assert_eq!(
            get_events_response(many.as_bytes()),
            Err(EwsError::TooManyEvents)
        );
    }
}
