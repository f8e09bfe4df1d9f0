//! Id, Int, UnsignedInt, Date and UTCDate (RFC 8620 §1.2–§1.4).

use jmap_engine::{Date, Id, IdRef, Int, MAX_SAFE_INTEGER, UnsignedInt, UtcDate};
use serde_json::{Value, json};

#[test]
fn ids() {
    let longest = "a".repeat(255);
    for good in [
        "a",
        "A-z_0",
        "-leading-dash-is-legal",
        "0123",
        longest.as_str(),
    ] {
        assert!(Id::new(good).is_ok(), "{good}");
    }
    let too_long = "a".repeat(256);
    let cases = [
        ("", "an Id must not be empty"),
        (
            too_long.as_str(),
            "an Id must be at most 255 octets, this one has 256",
        ),
        ("a b", "an Id may only contain A-Z a-z 0-9 - _, found ' '"),
        ("a=", "an Id may only contain A-Z a-z 0-9 - _, found '='"),
        ("a+b", "an Id may only contain A-Z a-z 0-9 - _, found '+'"),
        ("a/b", "an Id may only contain A-Z a-z 0-9 - _, found '/'"),
        ("#k1", "an Id may only contain A-Z a-z 0-9 - _, found '#'"),
        ("é", "an Id may only contain A-Z a-z 0-9 - _, found 'é'"),
    ];
    for (bad, message) in cases {
        assert_eq!(Id::new(bad).unwrap_err().to_string(), message);
        assert!(serde_json::from_value::<Id>(json!(bad)).is_err());
    }
    assert!(serde_json::from_value::<Id>(json!(5)).is_err());
    assert_eq!(
        serde_json::to_value(Id::new("abc").unwrap()).unwrap(),
        json!("abc")
    );
}

#[test]
fn id_refs() {
    assert_eq!(
        IdRef::parse("abc").unwrap(),
        IdRef::Id(Id::new("abc").unwrap())
    );
    assert_eq!(
        IdRef::parse("#k1").unwrap(),
        IdRef::Creation(Id::new("k1").unwrap())
    );
    assert!(IdRef::parse("#").is_err());
    assert!(IdRef::parse("##k").is_err());
    assert_eq!(IdRef::parse("#k1").unwrap().to_string(), "#k1");
    assert_eq!(
        serde_json::to_value(IdRef::parse("#k1").unwrap()).unwrap(),
        json!("#k1")
    );
}

#[test]
fn ints() {
    let max = MAX_SAFE_INTEGER;
    for (value, int, unsigned) in [
        (json!(0), Some(0), Some(0)),
        (json!(max), Some(max), Some(max)),
        (json!(-max), Some(-max), None),
        (json!(max + 1), None, None),
        (json!(-max - 1), None, None),
        (json!(u64::MAX), None, None),
        (json!(-1), Some(-1), None),
        (json!(1.5), None, None),
        (json!(2.0), None, None),
        (json!("5"), None, None),
        (Value::Null, None, None),
    ] {
        assert_eq!(
            serde_json::from_value::<Int>(value.clone())
                .ok()
                .map(Int::get),
            int,
            "{value}"
        );
        assert_eq!(
            serde_json::from_value::<UnsignedInt>(value.clone())
                .ok()
                .map(|u| u.get() as i64),
            unsigned,
            "{value}"
        );
    }
    assert_eq!(
        serde_json::from_value::<UnsignedInt>(json!(-3))
            .unwrap_err()
            .to_string(),
        "-3 is negative, an UnsignedInt must be >= 0"
    );
    assert_eq!(UnsignedInt::saturating(u64::MAX).get(), max as u64);
    assert_eq!(Int::from(UnsignedInt::saturating(7)).get(), 7);
}

#[test]
fn utc_dates() {
    for (text, timestamp) in [
        ("1970-01-01T00:00:00Z", 0),
        ("2014-10-30T06:12:00Z", 1_414_649_520),
        ("2000-02-29T23:59:59Z", 951_868_799),
        ("1969-12-31T23:59:59Z", -1),
        ("2014-10-30T06:12:00.5Z", 1_414_649_520),
        ("2016-12-31T23:59:60Z", 1_483_228_800),
    ] {
        let date = UtcDate::parse(text).unwrap();
        assert_eq!(date.timestamp(), timestamp, "{text}");
        assert_eq!(date.as_str(), text);
        assert_eq!(serde_json::to_value(&date).unwrap(), json!(text));
    }
    for bad in [
        "2014-10-30T14:12:00+08:00",
        "2014-10-30t06:12:00Z",
        "2014-10-30T06:12:00z",
        "2014-10-30 06:12:00Z",
        "2014-10-30T06:12:00.000Z",
        "2014-10-30T06:12:00.Z",
        "2014-10-30T06:12Z",
        "2014-13-30T06:12:00Z",
        "2014-02-29T06:12:00Z",
        "1900-02-29T06:12:00Z",
        "2014-10-32T06:12:00Z",
        "2014-10-30T24:00:00Z",
        "2014-10-30T06:60:00Z",
        "2014-10-30T06:12:00Zjunk",
        "14-10-30T06:12:00Z",
        "",
    ] {
        assert!(UtcDate::parse(bad).is_err(), "{bad}");
        assert!(
            serde_json::from_value::<UtcDate>(json!(bad)).is_err(),
            "{bad}"
        );
    }
    assert_eq!(
        UtcDate::from_timestamp(1_414_649_520).as_str(),
        "2014-10-30T06:12:00Z"
    );
    assert_eq!(UtcDate::from_timestamp(-1).as_str(), "1969-12-31T23:59:59Z");
    assert_eq!(
        UtcDate::from_timestamp(951_868_799).as_str(),
        "2000-02-29T23:59:59Z"
    );
    assert!(
        UtcDate::parse("2014-10-30T06:12:00Z").unwrap()
            < UtcDate::parse("2014-10-30T06:12:01Z").unwrap()
    );
}

#[test]
fn dates_with_offsets() {
    let date = Date::parse("2014-10-30T14:12:00+08:00").unwrap();
    assert_eq!(
        date.timestamp(),
        UtcDate::parse("2014-10-30T06:12:00Z").unwrap().timestamp()
    );
    assert_eq!(
        Date::parse("2014-10-30T00:12:00-05:30")
            .unwrap()
            .timestamp(),
        1_414_649_520 - 1_800
    );
    for bad in [
        "2014-10-30T14:12:00+0800",
        "2014-10-30T14:12:00+24:00",
        "2014-10-30T14:12:00+08:60",
        "2014-10-30T14:12:00",
    ] {
        assert!(Date::parse(bad).is_err(), "{bad}");
    }
    assert!(Date::parse("2014-10-30T06:12:00Z").is_ok());
}
