//! Durations as Kubernetes' and etcd's flags take them: Go's `time.ParseDuration`, with its
//! error texts. A number needs a unit (`10s`, `500ms`, `1m30s`, `1.5h`); only `0` stands
//! alone. Durations here are never negative.

use std::time::Duration;

/// Nanoseconds per unit, as Go spells the units.
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go's largest duration: `i64::MAX` nanoseconds (about 292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses `text` as Go's `time.ParseDuration` does, refusing negative durations.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let quoted = format!("{text:?}");
    let invalid = || format!("time: invalid duration {quoted}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => a.split_at(a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len())),
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {quoted}"));
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!("time: unknown unit {unit:?} in duration {quoted}"));
        };
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| invalid())?
        };
        let mut nanos = whole.checked_mul(scale).ok_or_else(invalid)?;
        // The fraction's digits beyond what the unit can resolve are dropped, as Go does.
        let mut place = scale;
        for d in frac.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            nanos += u128::from(d - b'0') * place;
        }
        total = total.checked_add(nanos).ok_or_else(invalid)?;
        if total > MAX_NANOS {
            return Err(invalid());
        }
        rest = after;
    }
    if negative && total > 0 {
        return Err(format!("invalid duration {quoted}: must not be negative"));
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| invalid())?;
    let sub = u32::try_from(total % 1_000_000_000).map_err(|_| invalid())?;
    Ok(Duration::new(secs, sub))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn takes_what_go_takes() {
        let ok = |s: &str, d: Duration| assert_eq!(parse_duration(s), Ok(d), "{s}");
        ok("0", Duration::ZERO);
        ok("+0", Duration::ZERO);
        ok("-0", Duration::ZERO);
        ok("0s", Duration::ZERO);
        ok("15s", Duration::from_secs(15));
        ok("500ms", Duration::from_millis(500));
        ok("2m", Duration::from_secs(120));
        ok("1m30s", Duration::from_secs(90));
        ok("1.5s", Duration::from_millis(1500));
        ok(".5s", Duration::from_millis(500));
        ok("5.s", Duration::from_secs(5));
        ok("1.5h", Duration::from_secs(5400));
        ok("10us", Duration::from_micros(10));
        ok("10µs", Duration::from_micros(10));
        ok("3ns", Duration::from_nanos(3));
        ok("1h2m3s4ms", Duration::from_millis(3_723_004));
        ok("0.0000000019s", Duration::from_nanos(1));
    }

    #[test]
    fn refuses_what_go_refuses_with_its_text() {
        let err = |s: &str| parse_duration(s).err().unwrap_or_default();
        assert_eq!(err("3"), "time: missing unit in duration \"3\"");
        assert_eq!(err("3d"), "time: unknown unit \"d\" in duration \"3d\"");
        assert_eq!(err(""), "time: invalid duration \"\"");
        assert_eq!(err("s"), "time: invalid duration \"s\"");
        assert_eq!(err("."), "time: invalid duration \".\"");
        assert_eq!(err("1s "), "time: unknown unit \"s \" in duration \"1s \"");
        assert_eq!(err("3000000h"), "time: invalid duration \"3000000h\"");
        assert_eq!(
            err("5 parsecs"),
            "time: unknown unit \" parsecs\" in duration \"5 parsecs\""
        );
        assert!(err("-1s").contains("must not be negative"));
    }
}
