//! iCalendar (RFC 5545) date, date-time and duration values as Unix seconds, without a time
//! zone database: UTC (`Z`), floating (read as UTC), and `TZID` through the offsets a
//! `VTIMEZONE` in the same object declares ([`ZoneRules`]).

/// Seconds since 1970-01-01T00:00:00Z.
pub type Timestamp = i64;

/// Why a value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not `YYYYMMDD`, `YYYYMMDDTHHMMSS` or `YYYYMMDDTHHMMSSZ`.
    #[error("bad date or date-time {0:?}")]
    BadDateTime(String),
    /// Not an RFC 5545 duration (`P1DT2H`, `-PT15M`, `P2W`).
    #[error("bad duration {0:?}")]
    BadDuration(String),
    /// Not a UTC offset (`+0100`, `-053000`).
    #[error("bad UTC offset {0:?}")]
    BadOffset(String),
}

/// Days from 1970-01-01 to `y-m-d` (proleptic Gregorian; H. Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day number from [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Day of the week of a day number: 0 = Monday … 6 = Sunday.
pub fn weekday(days: i64) -> u32 {
    // 1970-01-01 was a Thursday (3).
    (days + 3).rem_euclid(7) as u32
}

/// A date-time as written: local fields plus whether it ended in `Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Seconds since the epoch, reading the fields as if they were UTC.
    pub naive: Timestamp,
    /// `YYYYMMDD` only (a whole day, `VALUE=DATE`).
    pub date_only: bool,
    /// Ended in `Z`: really UTC.
    pub utc: bool,
}

fn digits(s: &str, raw: &str) -> Result<u32, TimeError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TimeError::BadDateTime(raw.to_owned()));
    }
    s.parse()
        .map_err(|_| TimeError::BadDateTime(raw.to_owned()))
}

/// Parses `YYYYMMDD`, `YYYYMMDDTHHMMSS` or `YYYYMMDDTHHMMSSZ`.
pub fn parse_written(raw: &str) -> Result<Written, TimeError> {
    let bad = || TimeError::BadDateTime(raw.to_owned());
    let s = raw.trim();
    if !s.is_ascii() || s.len() < 8 {
        return Err(bad());
    }
    let (y, m, d) = (
        digits(&s[0..4], raw)?,
        digits(&s[4..6], raw)?,
        digits(&s[6..8], raw)?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let day = days_from_civil(i64::from(y), m, d);
    if civil_from_days(day) != (i64::from(y), m, d) {
        return Err(bad()); // 20230230
    }
    let rest = &s[8..];
    if rest.is_empty() {
        return Ok(Written {
            naive: day * 86_400,
            date_only: true,
            utc: false,
        });
    }
    let (time, utc) = match rest.strip_suffix('Z') {
        Some(t) => (t, true),
        None => (rest, false),
    };
    let time = time.strip_prefix('T').ok_or_else(bad)?;
    if time.len() != 6 {
        return Err(bad());
    }
    let (hh, mm, ss) = (
        digits(&time[0..2], raw)?,
        digits(&time[2..4], raw)?,
        digits(&time[4..6], raw)?,
    );
    // 60: a leap second, read as the next minute.
    if hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    Ok(Written {
        naive: day * 86_400 + i64::from(hh * 3600 + mm * 60 + ss),
        date_only: false,
        utc,
    })
}

/// Parses an RFC 5545 DURATION into seconds (negative allowed).
pub fn parse_duration(raw: &str) -> Result<i64, TimeError> {
    let bad = || TimeError::BadDuration(raw.to_owned());
    let s = raw.trim();
    let (sign, s) = match s.as_bytes().first() {
        Some(b'-') => (-1, &s[1..]),
        Some(b'+') => (1, &s[1..]),
        _ => (1, s),
    };
    let s = s.strip_prefix('P').ok_or_else(bad)?;
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut in_time = false;
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if num.len() >= 9 {
                return Err(bad());
            }
            num.push(c);
            continue;
        }
        if c == 'T' {
            if in_time || !num.is_empty() {
                return Err(bad());
            }
            in_time = true;
            continue;
        }
        let n: i64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match (in_time, c) {
            (false, 'W') => 7 * 86_400,
            (false, 'D') => 86_400,
            (true, 'H') => 3600,
            (true, 'M') => 60,
            (true, 'S') => 1,
            _ => return Err(bad()),
        };
        total += n * unit;
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(bad());
    }
    Ok(sign * total)
}

/// Parses a UTC offset (`+0100`, `-0500`, `+053000`) into seconds east of UTC.
pub fn parse_offset(raw: &str) -> Result<i64, TimeError> {
    let bad = || TimeError::BadOffset(raw.to_owned());
    let s = raw.trim();
    let sign = match s.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(bad()),
    };
    let d = &s[1..];
    if !(d.len() == 4 || d.len() == 6) || !d.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let hh: i64 = d[0..2].parse().map_err(|_| bad())?;
    let mm: i64 = d[2..4].parse().map_err(|_| bad())?;
    let ss: i64 = if d.len() == 6 {
        d[4..6].parse().map_err(|_| bad())?
    } else {
        0
    };
    if hh > 23 || mm > 59 || ss > 59 {
        return Err(bad());
    }
    Ok(sign * (hh * 3600 + mm * 60 + ss))
}

/// One observance of a `VTIMEZONE` (`STANDARD` or `DAYLIGHT`): from its onset on, local time is
/// UTC + `offset`. Yearly rules of the form `FREQ=YEARLY;BYMONTH=m;BYDAY=nDD` (every DST rule
/// in use) repeat the onset each year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observance {
    /// The local onset as written (DTSTART of the observance).
    pub onset: Timestamp,
    /// Offset in force before the onset (TZOFFSETFROM), seconds east of UTC.
    pub offset_from: i64,
    /// Offset in force from the onset (TZOFFSETTO), seconds east of UTC.
    pub offset: i64,
    /// The yearly rule (month 1–12, nth weekday: 1..=5 or -1..=-5, weekday 0 = Monday), if any.
    pub yearly: Option<(u32, i32, u32)>,
}

/// The offsets of one `TZID`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ZoneRules {
    /// Its observances.
    pub observances: Vec<Observance>,
}

impl ZoneRules {
    /// The UTC instant of local time `local` (fields read as if UTC) in this zone: the offset
    /// of the latest observance onset (in UTC) at or before that instant; with no rule, UTC.
    pub fn to_utc(&self, local: Timestamp) -> Timestamp {
        let mut best: Option<(Timestamp, i64)> = None;
        for o in &self.observances {
            for onset in self.onsets(o, local) {
                let onset_utc = onset - o.offset_from;
                if onset_utc <= local - o.offset && best.is_none_or(|(t, _)| onset_utc > t) {
                    best = Some((onset_utc, o.offset));
                }
            }
        }
        let offset = best
            .map(|(_, off)| off)
            .or_else(|| self.observances.first().map(|o| o.offset_from))
            .unwrap_or(0);
        local - offset
    }

    /// Onsets of `o` (local) that may precede `local`: its first, and for a yearly rule the
    /// one in `local`'s year and the year before.
    fn onsets(&self, o: &Observance, local: Timestamp) -> Vec<Timestamp> {
        let mut v = vec![o.onset];
        if let Some((month, nth, wd)) = o.yearly {
            let (year, _, _) = civil_from_days(local.div_euclid(86_400));
            let secs = o.onset.rem_euclid(86_400);
            for y in [year - 1, year] {
                if let Some(day) = nth_weekday(y, month, nth, wd) {
                    let t = day * 86_400 + secs;
                    if t >= o.onset {
                        v.push(t);
                    }
                }
            }
        }
        v
    }
}

/// The day number of the `nth` (1..=5 from the start, -1..=-5 from the end) weekday `wd`
/// (0 = Monday) of `month` in `year`.
pub fn nth_weekday(year: i64, month: u32, nth: i32, wd: u32) -> Option<i64> {
    if !(1..=12).contains(&month) || nth == 0 || nth.abs() > 5 || wd > 6 {
        return None;
    }
    let first = days_from_civil(year, month, 1);
    let next = if month == 12 {
        days_from_civil(year + 1, 1, 1)
    } else {
        days_from_civil(year, month + 1, 1)
    };
    if nth > 0 {
        let delta = (i64::from(wd) - i64::from(weekday(first))).rem_euclid(7);
        let day = first + delta + 7 * i64::from(nth - 1);
        (day < next).then_some(day)
    } else {
        let last = next - 1;
        let delta = (i64::from(weekday(last)) - i64::from(wd)).rem_euclid(7);
        let day = last - delta - 7 * i64::from(-nth - 1);
        (day >= first).then_some(day)
    }
}

/// Parses a two-letter weekday (`MO` … `SU`) into 0 = Monday … 6 = Sunday.
pub fn parse_weekday(s: &str) -> Option<u32> {
    ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
        .iter()
        .position(|d| d.eq_ignore_ascii_case(s))
        .map(|p| p as u32)
}

/// Formats `t` as an iCalendar UTC date-time (`20240102T030405Z`), as CalDAV time ranges want.
pub fn format_utc(t: Timestamp) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_round_trip_and_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(weekday(days_from_civil(2024, 3, 31)), 6, "a Sunday");
        for d in [-800_000, -1, 0, 59, 10_000, 19_800, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn written_values() {
        let t = parse_written("20240315T093000Z").unwrap();
        assert_eq!(format_utc(t.naive), "20240315T093000Z");
        assert!(t.utc && !t.date_only);
        let d = parse_written("20240315").unwrap();
        assert!(d.date_only && !d.utc);
        assert_eq!(format_utc(d.naive), "20240315T000000Z");
        let f = parse_written("20240315T093000").unwrap();
        assert!(!f.utc && !f.date_only);
        for bad in [
            "",
            "2024031",
            "20240230",
            "20241301",
            "20240315T9300Z",
            "20240315X093000",
            "20240315T250000",
            "２０２４0315",
            "20240315T093000ZZ",
        ] {
            assert!(parse_written(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        let cases = [
            ("PT1H", 3600),
            ("PT15M", 900),
            ("P1D", 86_400),
            ("P1DT2H3M4S", 93_784),
            ("-PT30M", -1800),
            ("+P2W", 1_209_600),
            ("PT0S", 0),
        ];
        for (s, want) in cases {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        for bad in [
            "",
            "P",
            "1H",
            "PT",
            "PT1",
            "P1H",
            "PT1D",
            "PTT1H",
            "P9999999999D",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+0100"), Ok(3600));
        assert_eq!(parse_offset("-0530"), Ok(-19_800));
        assert_eq!(parse_offset("+053015"), Ok(19_815));
        for bad in ["0100", "+1", "+2500", "+01:00"] {
            assert!(parse_offset(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nth_weekdays() {
        // Last Sunday of March 2024: the 31st; second Sunday of March 2024: the 10th.
        assert_eq!(
            nth_weekday(2024, 3, -1, 6),
            Some(days_from_civil(2024, 3, 31))
        );
        assert_eq!(
            nth_weekday(2024, 3, 2, 6),
            Some(days_from_civil(2024, 3, 10))
        );
        assert_eq!(nth_weekday(2024, 2, 5, 0), None, "no fifth Monday");
        assert_eq!(nth_weekday(2024, 13, 1, 0), None);
    }

    #[test]
    fn zone_rules_fixed_and_dst() {
        let fixed = ZoneRules {
            observances: vec![Observance {
                onset: 0,
                offset_from: 19_800,
                offset: 19_800,
                yearly: None,
            }],
        };
        let local = parse_written("20240601T120000").unwrap().naive;
        assert_eq!(format_utc(fixed.to_utc(local)), "20240601T063000Z");

        // Europe/Berlin as Thunderbird writes it.
        let onset = |s| parse_written(s).unwrap().naive;
        let berlin = ZoneRules {
            observances: vec![
                Observance {
                    onset: onset("19700329T020000"),
                    offset_from: 3600,
                    offset: 7200,
                    yearly: Some((3, -1, 6)),
                },
                Observance {
                    onset: onset("19701025T030000"),
                    offset_from: 7200,
                    offset: 3600,
                    yearly: Some((10, -1, 6)),
                },
            ],
        };
        let cases = [
            ("20240115T100000", "20240115T090000Z"),
            ("20240701T100000", "20240701T080000Z"),
            ("20241201T100000", "20241201T090000Z"),
            ("20240331T010000", "20240331T000000Z"),
            ("20240331T040000", "20240331T020000Z"),
        ];
        for (l, want) in cases {
            assert_eq!(format_utc(berlin.to_utc(onset(l))), want, "{l}");
        }
        assert_eq!(ZoneRules::default().to_utc(100), 100, "no rules: UTC");
    }
}
