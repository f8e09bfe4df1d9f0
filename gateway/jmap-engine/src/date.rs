//! `Date` and `UTCDate` (RFC 8620 §1.4): RFC 3339 date-times in JMAP's normalised form.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a JMAP date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind}: {reason}")]
pub struct InvalidDate {
    pub value: String,
    pub kind: &'static str,
    pub reason: &'static str,
}

/// An RFC 3339 date-time whose offset is `Z`, e.g. `2014-10-30T06:12:00Z`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UtcDate {
    text: String,
    seconds: i64,
}

/// An RFC 3339 date-time with any offset, e.g. `2014-10-30T14:12:00+08:00`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Date {
    text: String,
    /// The instant, in seconds since 1970 UTC (fraction dropped).
    seconds: i64,
}

struct Parsed {
    utc_seconds: i64,
    offset_is_z: bool,
}

impl UtcDate {
    pub fn parse(value: &str) -> Result<Self, InvalidDate> {
        let parsed = parse(value, "UTCDate")?;
        if !parsed.offset_is_z {
            return Err(InvalidDate {
                value: value.to_owned(),
                kind: "UTCDate",
                reason: "the time-offset must be Z",
            });
        }
        Ok(UtcDate {
            text: value.to_owned(),
            seconds: parsed.utc_seconds,
        })
    }

    /// The date at `seconds` since 1970-01-01T00:00:00Z.
    pub fn from_timestamp(seconds: i64) -> Self {
        let days = seconds.div_euclid(86_400);
        let secs_of_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let text = format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs_of_day / 3600,
            secs_of_day / 60 % 60,
            secs_of_day % 60
        );
        UtcDate { text, seconds }
    }

    /// Seconds since 1970-01-01T00:00:00Z, fraction dropped; for ordering and comparisons.
    pub fn timestamp(&self) -> i64 {
        self.seconds
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Date {
    pub fn parse(value: &str) -> Result<Self, InvalidDate> {
        let parsed = parse(value, "Date")?;
        Ok(Date {
            text: value.to_owned(),
            seconds: parsed.utc_seconds,
        })
    }

    /// Seconds since 1970-01-01T00:00:00Z of the instant, fraction dropped.
    pub fn timestamp(&self) -> i64 {
        self.seconds
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn parse(value: &str, kind: &'static str) -> Result<Parsed, InvalidDate> {
    let fail = |reason| InvalidDate {
        value: value.to_owned(),
        kind,
        reason,
    };
    let b = value.as_bytes();
    if b.len() < 20 {
        return Err(fail("too short for YYYY-MM-DDTHH:MM:SSZ"));
    }
    let digits = |from: usize, len: usize| -> Result<i64, InvalidDate> {
        let part = b.get(from..from + len).ok_or_else(|| fail("truncated"))?;
        part.iter().try_fold(0i64, |acc, c| {
            if c.is_ascii_digit() {
                Ok(acc * 10 + i64::from(c - b'0'))
            } else {
                Err(fail("expected a digit"))
            }
        })
    };
    let expect = |at: usize, want: u8, reason| {
        if b.get(at) == Some(&want) {
            Ok(())
        } else {
            Err(fail(reason))
        }
    };
    let year = digits(0, 4)?;
    expect(4, b'-', "expected '-' after the year")?;
    let month = digits(5, 2)?;
    expect(7, b'-', "expected '-' after the month")?;
    let day = digits(8, 2)?;
    expect(10, b'T', "expected an uppercase 'T' between date and time")?;
    let hour = digits(11, 2)?;
    expect(13, b':', "expected ':' after the hour")?;
    let minute = digits(14, 2)?;
    expect(16, b':', "expected ':' after the minute")?;
    let second = digits(17, 2)?;
    if !(1..=12).contains(&month) {
        return Err(fail("month out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(fail("day out of range"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(fail("time out of range"));
    }
    let mut at = 19;
    if b.get(at) == Some(&b'.') {
        let start = at + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start {
            return Err(fail("empty fraction of a second"));
        }
        if b[start..end].iter().all(|c| *c == b'0') {
            return Err(fail("a zero time-secfrac must be omitted"));
        }
        at = end;
    }
    let (offset_seconds, offset_is_z) = match b.get(at) {
        Some(b'Z') if at + 1 == b.len() => (0, true),
        Some(sign @ (b'+' | b'-')) if at + 6 == b.len() => {
            let oh = digits(at + 1, 2)?;
            expect(at + 3, b':', "expected ':' in the offset")?;
            let om = digits(at + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err(fail("offset out of range"));
            }
            let magnitude = oh * 3600 + om * 60;
            (if *sign == b'+' { magnitude } else { -magnitude }, false)
        }
        _ => {
            return Err(fail(
                "expected an uppercase 'Z' or a +HH:MM offset at the end",
            ));
        }
    };
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Ok(Parsed {
        utc_seconds: local - offset_seconds,
        offset_is_z,
    })
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for UtcDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialOrd for UtcDate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for UtcDate {
    /// Chronological; same-second dates fall back to the text so the order stays total.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.seconds
            .cmp(&other.seconds)
            .then_with(|| self.text.cmp(&other.text))
    }
}

macro_rules! string_serde {
    ($ty:ident) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.text)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                $ty::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_serde!(UtcDate);
string_serde!(Date);
