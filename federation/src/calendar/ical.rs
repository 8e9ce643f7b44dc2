//! iCalendar (RFC 5545) objects as a CalDAV server returns them, reduced to what presence
//! needs: the intervals in which the calendar says busy, tentative or out of office.
//!
//! Read: `VEVENT` (`DTSTART`, `DTEND` or `DURATION`, all-day `VALUE=DATE`, `TRANSP`,
//! `STATUS`, Microsoft's `X-MICROSOFT-CDO-BUSYSTATUS`, `RRULE` with `FREQ` DAILY / WEEKLY
//! (`BYDAY`) / MONTHLY / YEARLY, `INTERVAL`, `COUNT`, `UNTIL`, `EXDATE`, and `RECURRENCE-ID`
//! overrides), `VFREEBUSY` (`FREEBUSY` periods with `FBTYPE`), and `VTIMEZONE` (offsets and
//! yearly DST rules for `TZID`). A `TZID` without a `VTIMEZONE` is read as UTC unless it names
//! UTC itself; floating times and all-day dates are read as UTC (Herald does not know the
//! user's zone). Everything is bounded: line count, line length, nesting, intervals and
//! recurrence steps, each with its own error.

use std::collections::HashMap;

use super::time::{
    civil_from_days, days_from_civil, parse_duration, parse_offset, parse_weekday, parse_written,
    weekday, Observance, TimeError, Timestamp, ZoneRules,
};

/// What a calendar says about an interval, least to most restrictive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BusyKind {
    /// A tentative meeting (Table 1-1: like Free).
    Tentative,
    /// A meeting.
    Busy,
    /// Out of office (`FBTYPE=BUSY-UNAVAILABLE`, `X-MICROSOFT-CDO-BUSYSTATUS:OOF`).
    OutOfOffice,
}

/// One interval `[start, end)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BusyInterval {
    /// Start (inclusive).
    pub start: Timestamp,
    /// End (exclusive).
    pub end: Timestamp,
    /// What kind of busy.
    pub kind: BusyKind,
}

/// Bounds on one calendar object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcalLimits {
    /// Most content lines (after unfolding).
    pub max_lines: usize,
    /// Longest content line (after unfolding), bytes.
    pub max_line_bytes: usize,
    /// Deepest component nesting.
    pub max_depth: usize,
    /// Most intervals kept per call.
    pub max_intervals: usize,
    /// Most recurrence steps per recurring event.
    pub max_recurrence_steps: usize,
}

impl Default for IcalLimits {
    fn default() -> Self {
        IcalLimits {
            max_lines: 20_000,
            max_line_bytes: 16 * 1024,
            max_depth: 8,
            max_intervals: 1_000,
            max_recurrence_steps: 20_000,
        }
    }
}

/// Why a calendar object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IcalError {
    /// More lines than [`IcalLimits::max_lines`].
    #[error("more than {0} lines")]
    TooManyLines(usize),
    /// A line longer than [`IcalLimits::max_line_bytes`].
    #[error("line {0} is longer than the limit")]
    LineTooLong(usize),
    /// Nesting deeper than [`IcalLimits::max_depth`].
    #[error("components nested deeper than {0}")]
    TooDeep(usize),
    /// More busy intervals than [`IcalLimits::max_intervals`] in the window.
    #[error("more than {0} busy intervals")]
    TooManyIntervals(usize),
    /// A content line without `:` or with a bad parameter.
    #[error("line {0}: not a content line")]
    BadLine(usize),
    /// `END` without a matching `BEGIN`, or input ending inside a component.
    #[error("unbalanced BEGIN/END at line {0}")]
    Unbalanced(usize),
    /// No `VCALENDAR` at all.
    #[error("not an iCalendar object")]
    NotCalendar,
    /// A date, time, duration or offset that does not parse.
    #[error(transparent)]
    Time(#[from] TimeError),
}

/// One property: name (upper case), parameters (names upper case), value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prop {
    name: String,
    params: Vec<(String, String)>,
    value: String,
}

impl Prop {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct Component {
    name: String,
    props: Vec<Prop>,
    children: Vec<Component>,
}

impl Component {
    fn prop(&self, name: &str) -> Option<&Prop> {
        self.props.iter().find(|p| p.name == name)
    }
    fn value(&self, name: &str) -> Option<&str> {
        self.prop(name).map(|p| p.value.trim())
    }
}

/// Unfolds content lines (RFC 5545 §3.1): CRLF or LF followed by a space or tab continues.
fn unfold(text: &str, limits: &IcalLimits) -> Result<Vec<String>, IcalError> {
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(cont) = raw.strip_prefix([' ', '\t']) {
            if let Some(last) = lines.last_mut() {
                if last.len() + cont.len() > limits.max_line_bytes {
                    return Err(IcalError::LineTooLong(lines.len()));
                }
                last.push_str(cont);
                continue;
            }
        }
        if raw.is_empty() {
            continue;
        }
        if raw.len() > limits.max_line_bytes {
            return Err(IcalError::LineTooLong(lines.len() + 1));
        }
        if lines.len() >= limits.max_lines {
            return Err(IcalError::TooManyLines(limits.max_lines));
        }
        lines.push(raw.to_owned());
    }
    Ok(lines)
}

/// Splits `NAME;P=V;P="a:b":value`.
fn parse_line(line: &str, n: usize) -> Result<Prop, IcalError> {
    let bad = || IcalError::BadLine(n);
    let mut in_quotes = false;
    let mut colon = None;
    let mut cuts = Vec::new();
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => cuts.push(i),
            ':' if !in_quotes => {
                colon = Some(i);
                break;
            }
            _ => {}
        }
    }
    let colon = colon.ok_or_else(bad)?;
    let head = &line[..colon];
    let value = line[colon + 1..].to_owned();
    let mut parts = Vec::new();
    let mut start = 0;
    for &c in &cuts {
        parts.push(&head[start..c]);
        start = c + 1;
    }
    parts.push(&head[start..]);
    let name = parts[0].trim().to_ascii_uppercase();
    if name.is_empty() {
        return Err(bad());
    }
    let mut params = Vec::new();
    for p in &parts[1..] {
        let (k, v) = p.split_once('=').ok_or_else(bad)?;
        params.push((
            k.trim().to_ascii_uppercase(),
            v.trim().trim_matches('"').to_owned(),
        ));
    }
    Ok(Prop {
        name,
        params,
        value,
    })
}

fn parse_components(text: &str, limits: &IcalLimits) -> Result<Vec<Component>, IcalError> {
    let lines = unfold(text, limits)?;
    let mut stack: Vec<Component> = vec![Component::default()];
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        let prop = parse_line(line, n)?;
        match prop.name.as_str() {
            "BEGIN" => {
                if stack.len() > limits.max_depth {
                    return Err(IcalError::TooDeep(limits.max_depth));
                }
                stack.push(Component {
                    name: prop.value.trim().to_ascii_uppercase(),
                    ..Default::default()
                });
            }
            "END" => {
                if stack.len() < 2
                    || !stack
                        .last()
                        .is_some_and(|c| c.name.eq_ignore_ascii_case(prop.value.trim()))
                {
                    return Err(IcalError::Unbalanced(n));
                }
                let done = stack.pop().unwrap_or_default();
                if let Some(parent) = stack.last_mut() {
                    parent.children.push(done);
                }
            }
            _ => {
                if let Some(c) = stack.last_mut() {
                    c.props.push(prop);
                }
            }
        }
    }
    if stack.len() != 1 {
        return Err(IcalError::Unbalanced(lines.len()));
    }
    Ok(stack.pop().unwrap_or_default().children)
}

/// Reads a `VTIMEZONE`.
fn zone_rules(tz: &Component) -> Result<ZoneRules, IcalError> {
    let mut rules = ZoneRules::default();
    for o in tz
        .children
        .iter()
        .filter(|c| c.name == "STANDARD" || c.name == "DAYLIGHT")
    {
        let onset = o
            .value("DTSTART")
            .map(parse_written)
            .transpose()?
            .map_or(0, |w| w.naive);
        let offset = parse_offset(o.value("TZOFFSETTO").unwrap_or("+0000"))?;
        let offset_from = o
            .value("TZOFFSETFROM")
            .map(parse_offset)
            .transpose()?
            .unwrap_or(offset);
        let yearly = o.value("RRULE").and_then(yearly_rule);
        rules.observances.push(Observance {
            onset,
            offset_from,
            offset,
            yearly,
        });
    }
    Ok(rules)
}

/// `FREQ=YEARLY;BYMONTH=m;BYDAY=nDD` → (m, n, weekday).
fn yearly_rule(rrule: &str) -> Option<(u32, i32, u32)> {
    let r = rule_parts(rrule);
    if r.get("FREQ").map(String::as_str) != Some("YEARLY") {
        return None;
    }
    let month: u32 = r.get("BYMONTH")?.parse().ok()?;
    let byday = r.get("BYDAY")?;
    // The weekday is the last two bytes; a server's text may put a multi-byte character
    // there, which is no weekday (and must not be split inside).
    let split = byday.len().checked_sub(2)?;
    let (n, d) = byday.split_at_checked(split)?;
    let n: i32 = if n.is_empty() { 1 } else { n.parse().ok()? };
    Some((month, n, parse_weekday(d)?))
}

fn rule_parts(rule: &str) -> HashMap<String, String> {
    rule.split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_uppercase(), v.trim().to_ascii_uppercase()))
        .collect()
}

/// Time zones by TZID, and how to read a date-time property.
struct Zones(HashMap<String, ZoneRules>);

impl Zones {
    /// The UTC instant of a DTSTART/DTEND/RECURRENCE-ID/EXDATE-style property value.
    fn instant(&self, value: &str, tzid: Option<&str>) -> Result<(Timestamp, bool), IcalError> {
        let w = parse_written(value)?;
        if w.utc || w.date_only {
            return Ok((w.naive, w.date_only));
        }
        Ok((self.local_to_utc(w.naive, tzid), false))
    }

    fn local_to_utc(&self, local: Timestamp, tzid: Option<&str>) -> Timestamp {
        match tzid.and_then(|z| self.0.get(z)) {
            Some(rules) => rules.to_utc(local),
            None => local,
        }
    }
}

/// Collects what `text` (one `VCALENDAR`, or several back to back) says is busy, tentative or
/// out of office and overlaps `[from, to)`, into `out` (at most `limits.max_intervals` in all).
pub fn busy_intervals(
    text: &str,
    from: Timestamp,
    to: Timestamp,
    limits: &IcalLimits,
    out: &mut Vec<BusyInterval>,
) -> Result<(), IcalError> {
    let top = parse_components(text, limits)?;
    let cals: Vec<&Component> = top.iter().filter(|c| c.name == "VCALENDAR").collect();
    if cals.is_empty() {
        return Err(IcalError::NotCalendar);
    }
    for cal in cals {
        let mut zones = HashMap::new();
        for tz in cal.children.iter().filter(|c| c.name == "VTIMEZONE") {
            if let Some(id) = tz.value("TZID") {
                zones.insert(id.to_owned(), zone_rules(tz)?);
            }
        }
        let zones = Zones(zones);
        let events: Vec<&Component> = cal.children.iter().filter(|c| c.name == "VEVENT").collect();
        // RECURRENCE-ID overrides, by UID: the original starts they replace.
        let mut overridden: HashMap<&str, Vec<Timestamp>> = HashMap::new();
        for e in &events {
            if let (Some(uid), Some(rid)) = (e.value("UID"), e.prop("RECURRENCE-ID")) {
                let (t, _) = zones.instant(&rid.value, rid.param("TZID"))?;
                overridden.entry(uid).or_default().push(t);
            }
        }
        for e in &events {
            let skip = e
                .value("UID")
                .and_then(|u| overridden.get(u))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let skip = if e.prop("RECURRENCE-ID").is_some() {
                &[][..]
            } else {
                skip
            };
            event_intervals(e, &zones, skip, from, to, limits, out)?;
        }
        for fb in cal.children.iter().filter(|c| c.name == "VFREEBUSY") {
            freebusy_intervals(fb, from, to, limits, out)?;
        }
    }
    Ok(())
}

fn push(
    out: &mut Vec<BusyInterval>,
    limits: &IcalLimits,
    iv: BusyInterval,
) -> Result<(), IcalError> {
    if out.len() >= limits.max_intervals {
        return Err(IcalError::TooManyIntervals(limits.max_intervals));
    }
    out.push(iv);
    Ok(())
}

/// The kind of busy an event means, or None when it does not block time.
fn event_kind(e: &Component) -> Option<BusyKind> {
    let status = e.value("STATUS").map(str::to_ascii_uppercase);
    if status.as_deref() == Some("CANCELLED") {
        return None;
    }
    if let Some(ms) = e.value("X-MICROSOFT-CDO-BUSYSTATUS") {
        return match ms.to_ascii_uppercase().as_str() {
            "FREE" | "WORKINGELSEWHERE" => None,
            "TENTATIVE" => Some(BusyKind::Tentative),
            "OOF" => Some(BusyKind::OutOfOffice),
            _ => Some(BusyKind::Busy),
        };
    }
    if e.value("TRANSP")
        .is_some_and(|t| t.eq_ignore_ascii_case("TRANSPARENT"))
    {
        return None;
    }
    if status.as_deref() == Some("TENTATIVE") {
        return Some(BusyKind::Tentative);
    }
    Some(BusyKind::Busy)
}

fn event_intervals(
    e: &Component,
    zones: &Zones,
    skip: &[Timestamp],
    from: Timestamp,
    to: Timestamp,
    limits: &IcalLimits,
    out: &mut Vec<BusyInterval>,
) -> Result<(), IcalError> {
    let Some(kind) = event_kind(e) else {
        return Ok(());
    };
    let Some(dtstart) = e.prop("DTSTART") else {
        return Ok(());
    };
    let tzid = dtstart.param("TZID");
    let w = parse_written(&dtstart.value)?;
    let (start, date_only) = zones.instant(&dtstart.value, tzid)?;
    let length = if let Some(end) = e.prop("DTEND") {
        let (end, _) = zones.instant(&end.value, end.param("TZID"))?;
        end - start
    } else if let Some(d) = e.value("DURATION") {
        parse_duration(d)?
    } else if date_only {
        86_400
    } else {
        0
    };
    if length <= 0 {
        return Ok(());
    }
    let Some(rrule) = e.value("RRULE") else {
        if start < to && start + length > from {
            push(
                out,
                limits,
                BusyInterval {
                    start,
                    end: start + length,
                    kind,
                },
            )?;
        }
        return Ok(());
    };
    let mut excluded: Vec<Timestamp> = skip.to_vec();
    for ex in e.props.iter().filter(|p| p.name == "EXDATE") {
        for v in ex.value.split(',') {
            excluded.push(zones.instant(v, ex.param("TZID"))?.0);
        }
    }
    // Occurrences step in local time (so 09:00 stays 09:00 across DST), then convert.
    let local_tz = if w.utc || date_only { None } else { tzid };
    let rule = Recurrence::parse(rrule, w.naive, zones, local_tz)?;
    let steps = rule.occurrences().take(limits.max_recurrence_steps);
    for (n, local) in (1u64..).zip(steps) {
        let s = zones.local_to_utc(local, local_tz);
        if rule.until.is_some_and(|u| s > u) || s >= to {
            break;
        }
        if rule.count.is_some_and(|c| n > c) {
            break;
        }
        if s + length > from && !excluded.contains(&s) {
            push(
                out,
                limits,
                BusyInterval {
                    start: s,
                    end: s + length,
                    kind,
                },
            )?;
        }
    }
    Ok(())
}

/// The part of RRULE Herald expands.
struct Recurrence {
    freq: Freq,
    interval: i64,
    count: Option<u64>,
    until: Option<Timestamp>,
    /// Weekdays (0 = Monday) for WEEKLY;BYDAY.
    byday: Vec<u32>,
    start: Timestamp,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Freq {
    Daily,
    Weekly,
    Monthly,
    Yearly,
    /// Anything else: the first occurrence only.
    Once,
}

impl Recurrence {
    fn parse(
        rrule: &str,
        start: Timestamp,
        zones: &Zones,
        tzid: Option<&str>,
    ) -> Result<Recurrence, IcalError> {
        let r = rule_parts(rrule);
        let freq = match r.get("FREQ").map(String::as_str) {
            Some("DAILY") => Freq::Daily,
            Some("WEEKLY") => Freq::Weekly,
            Some("MONTHLY") => Freq::Monthly,
            Some("YEARLY") => Freq::Yearly,
            _ => Freq::Once,
        };
        let interval = r
            .get("INTERVAL")
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|&i| (1..=1000).contains(&i))
            .unwrap_or(1);
        let count = r.get("COUNT").and_then(|v| v.parse().ok());
        let until = match r.get("UNTIL") {
            Some(u) => Some(zones.instant(u, tzid)?.0),
            None => None,
        };
        let mut byday: Vec<u32> = r
            .get("BYDAY")
            .map(|v| v.split(',').filter_map(parse_weekday).collect())
            .unwrap_or_default();
        byday.sort_unstable();
        byday.dedup();
        Ok(Recurrence {
            freq,
            interval,
            count,
            until,
            byday,
            start,
        })
    }

    /// Local start times, in order, from the first; unbounded (the caller stops).
    fn occurrences(&self) -> Box<dyn Iterator<Item = Timestamp> + '_> {
        let start = self.start;
        let day0 = start.div_euclid(86_400);
        let secs = start.rem_euclid(86_400);
        let step = self.interval;
        match self.freq {
            Freq::Once => Box::new(std::iter::once(start)),
            Freq::Daily => Box::new((0..).map(move |i: i64| start + i * step * 86_400)),
            Freq::Weekly if self.byday.is_empty() => {
                Box::new((0..).map(move |i: i64| start + i * step * 7 * 86_400))
            }
            Freq::Weekly => {
                // Weeks start on Monday (WKST default); occurrences before DTSTART are skipped.
                let monday = day0 - i64::from(weekday(day0));
                Box::new(
                    (0..)
                        .flat_map(move |w: i64| {
                            self.byday
                                .iter()
                                .map(move |&d| (monday + w * step * 7 + i64::from(d)) * 86_400)
                        })
                        .map(move |t| t + secs)
                        .filter(move |&t| t >= start),
                )
            }
            Freq::Monthly | Freq::Yearly => {
                let (y, m, d) = civil_from_days(day0);
                let months = if self.freq == Freq::Yearly { 12 } else { 1 } * step;
                Box::new((0..).filter_map(move |i: i64| {
                    let total = (y * 12 + i64::from(m) - 1) + i * months;
                    let (yy, mm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
                    let day = days_from_civil(yy, mm, d);
                    // 31st in a short month: no occurrence (RFC 5545 §3.3.10).
                    (civil_from_days(day) == (yy, mm, d)).then_some(day * 86_400 + secs)
                }))
            }
        }
    }
}

fn freebusy_intervals(
    fb: &Component,
    from: Timestamp,
    to: Timestamp,
    limits: &IcalLimits,
    out: &mut Vec<BusyInterval>,
) -> Result<(), IcalError> {
    for p in fb.props.iter().filter(|p| p.name == "FREEBUSY") {
        let kind = match p
            .param("FBTYPE")
            .map(str::to_ascii_uppercase)
            .as_deref()
            .unwrap_or("BUSY")
        {
            "FREE" => continue,
            "BUSY-TENTATIVE" => BusyKind::Tentative,
            "BUSY-UNAVAILABLE" => BusyKind::OutOfOffice,
            _ => BusyKind::Busy,
        };
        for period in p.value.split(',') {
            let (s, e) = period
                .split_once('/')
                .ok_or_else(|| TimeError::BadDateTime(period.to_owned()))?;
            let start = parse_written(s)?.naive;
            let end = if e.trim_start().starts_with(['P', '+', '-']) {
                start + parse_duration(e)?
            } else {
                parse_written(e)?.naive
            };
            if end > start && start < to && end > from {
                push(out, limits, BusyInterval { start, end, kind })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "ical_tests.rs"]
mod tests;
