//! Kubernetes resource quantities ("100m", "1.5Gi", "2e3"), as apimachinery's
//! `resource.ParseQuantity` reads them.
//!
//! Amounts are kept in nano-units (10^-9 of the base unit) in an `i128`, which is exact for every
//! quantity the API accepts with up to nine fractional digits and large enough for exabytes. The
//! scheduler sums container requests in this unit and only then rounds up, as Kubernetes sums
//! `Quantity` values exactly before calling `MilliValue()` (CPU) or `Value()` (everything else),
//! both of which round up.

use crate::Error;

/// Nano-units per base unit.
pub(crate) const NANO: i128 = 1_000_000_000;

/// The most digits a quantity's number may have: keeps every product below `i128::MAX`.
const MAX_DIGITS: usize = 30;

/// Parses a quantity string into nano-units, rounding up anything finer than a nano-unit.
pub(crate) fn parse_nanos(s: &str) -> Result<i128, Error> {
    let invalid = || Error::InvalidQuantity(s.to_owned());
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        Some(_) => (false, s),
        None => return Err(invalid()),
    };
    // The number: digits, optionally a point and more digits.
    let number_len = rest
        .bytes()
        .position(|b| !(b.is_ascii_digit() || b == b'.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty())
        || frac_part.contains('.')
        || int_part.len() + frac_part.len() > MAX_DIGITS
    {
        return Err(invalid());
    }
    let mut mantissa: i128 = 0;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa * 10 + i128::from(b - b'0');
    }
    // value = mantissa * 10^(exp10 - frac digits) * 2^exp2
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other => {
            let exponent = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .ok_or_else(invalid)?;
            let digits = exponent.trim_start_matches(['+', '-']);
            if digits.is_empty() || exponent.len() - digits.len() > 1 {
                return Err(invalid());
            }
            let e: i32 = exponent.parse().map_err(|_| invalid())?;
            if !(-40..=40).contains(&e) {
                return Err(invalid());
            }
            (e, 0)
        }
    };
    let too_large = || Error::QuantityTooLarge(s.to_owned());
    // Scale to nano-units: multiply by 10^(9 + exp10 - frac) and 2^exp2, dividing (rounding up)
    // when the power of ten is negative.
    let power = 9 + exp10 - i32::try_from(frac_part.len()).map_err(|_| invalid())?;
    let mut value = mantissa.checked_mul(1i128 << exp2).ok_or_else(too_large)?;
    if power >= 0 {
        let scale = 10i128
            .checked_pow(power.unsigned_abs())
            .ok_or_else(too_large)?;
        value = value.checked_mul(scale).ok_or_else(too_large)?;
    } else {
        let Some(scale) = 10i128.checked_pow(power.unsigned_abs()) else {
            // Smaller than a nano-unit: rounds up to one, or stays zero.
            return Ok(if value == 0 || negative { 0 } else { 1 });
        };
        let rounded_up = value / scale + i128::from(value % scale != 0);
        value = if negative { value / scale } else { rounded_up };
    }
    // Quantities above an exabyte-scale bound cannot describe a real machine.
    if value > i128::from(i64::MAX) * NANO {
        return Err(too_large());
    }
    Ok(if negative { -value } else { value })
}

/// `Quantity.Value()`: whole base units, rounded up.
pub(crate) fn nanos_to_value(nanos: i128) -> i64 {
    saturate(ceil_div(nanos, NANO))
}

/// `Quantity.MilliValue()`: thousandths of the base unit, rounded up.
pub(crate) fn nanos_to_milli(nanos: i128) -> i64 {
    saturate(ceil_div(nanos, 1_000_000))
}

fn ceil_div(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d > 0 { q + 1 } else { q }
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milli(s: &str) -> i64 {
        nanos_to_milli(parse_nanos(s).unwrap_or_else(|e| panic!("{s}: {e}")))
    }
    fn value(s: &str) -> i64 {
        nanos_to_value(parse_nanos(s).unwrap_or_else(|e| panic!("{s}: {e}")))
    }

    #[test]
    fn suffixes_and_rounding_follow_apimachinery() {
        assert_eq!(milli("100m"), 100);
        assert_eq!(milli("1"), 1000);
        assert_eq!(milli("0.5"), 500);
        assert_eq!(milli("1.5"), 1500);
        assert_eq!(milli(".5"), 500);
        assert_eq!(milli("2e3"), 2_000_000);
        assert_eq!(milli("1E-3"), 1);
        assert_eq!(milli("100u"), 1, "MilliValue rounds up");
        assert_eq!(milli("1n"), 1);
        assert_eq!(value("200Mi"), 200 * 1024 * 1024);
        assert_eq!(value("1Gi"), 1 << 30);
        assert_eq!(value("1.5Gi"), 3 << 29);
        assert_eq!(value("1k"), 1000);
        assert_eq!(value("1M"), 1_000_000);
        assert_eq!(value("500m"), 1, "Value rounds up");
        assert_eq!(value("110"), 110);
        assert_eq!(value("1Ei"), 1 << 60);
        assert_eq!(value("0"), 0);
        assert_eq!(value("-1"), -1);
        assert_eq!(value("+2"), 2);
    }

    #[test]
    fn malformed_quantities_are_errors() {
        for bad in [
            "", "m", "1.2.3", "1Qi", "abc", "1e", "1e+-3", "1 Gi", "-", "1ee3", "1e99",
        ] {
            assert!(parse_nanos(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(matches!(
            parse_nanos("999999999999999999999999Ei"),
            Err(Error::QuantityTooLarge(_))
        ));
    }
}
