//! Resource quantities (`500m`, `2`, `256Gi`, `1e3`) as integers, the way the kubelet's
//! admission compares them: CPU in millicores, everything else in whole units (bytes),
//! rounded up as Kubernetes' `MilliValue` and `Value` round.

/// A quantity in thousandths of its unit, rounded up; `None` when it does not parse or does
/// not fit.
pub fn parse_milli(s: &str) -> Option<i128> {
    let s = s.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    let (negative, digits) = match num.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 18
        || int.len() > 20
    {
        return None;
    }
    // value = mantissa / 10^frac_len, in units of the suffix.
    let mantissa: i128 = format!("{int}{frac}").parse().ok()?;
    let frac_len = u32::try_from(frac.len()).ok()?;
    // (multiplier numerator, power of ten) of the suffix, relative to a thousandth.
    let (mult, pow10): (i128, i32) = match suffix {
        "" => (1, 3),
        "n" => (1, -6),
        "u" => (1, -3),
        "m" => (1, 0),
        "k" => (1, 6),
        "M" => (1, 9),
        "G" => (1, 12),
        "T" => (1, 15),
        "P" => (1, 18),
        "E" => (1, 21),
        "Ki" => (1 << 10, 3),
        "Mi" => (1 << 20, 3),
        "Gi" => (1 << 30, 3),
        "Ti" => (1 << 40, 3),
        "Pi" => (1 << 50, 3),
        "Ei" => (1 << 60, 3),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().ok()?;
            if !(-30..=30).contains(&exp) {
                return None;
            }
            (1, exp + 3)
        }
        _ => return None,
    };
    let exp = pow10 - i32::try_from(frac_len).ok()?;
    let scaled = mantissa.checked_mul(mult)?;
    let value = if exp >= 0 {
        scaled.checked_mul(10i128.checked_pow(u32::try_from(exp).ok()?)?)?
    } else {
        let d = 10i128.checked_pow(u32::try_from(-exp).ok()?)?;
        // Round up, as Kubernetes does when a quantity is read at a coarser scale.
        (scaled + d - 1) / d
    };
    Some(if negative { -value } else { value })
}

/// A quantity in whole units (bytes for memory), rounded up.
pub fn parse_units(s: &str) -> Option<i128> {
    parse_milli(s).map(|m| (m + 999).div_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_as_kubernetes_reads_them() {
        assert_eq!(parse_milli("500m"), Some(500));
        assert_eq!(parse_milli("2"), Some(2000));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_milli("1.0005"), Some(1001), "rounded up");
        assert_eq!(parse_milli("100n"), Some(1));
        assert_eq!(parse_milli("1e3"), Some(1_000_000));
        assert_eq!(parse_units("256Gi"), Some(256 << 30));
        assert_eq!(parse_units("1k"), Some(1000));
        assert_eq!(parse_units("1.5Ki"), Some(1536));
        assert_eq!(parse_units("128974848"), Some(128_974_848));
        assert_eq!(parse_units("129e6"), Some(129_000_000));
        assert_eq!(
            parse_units("1m"),
            Some(1),
            "a thousandth of a byte is a byte"
        );
        assert_eq!(parse_milli("-1"), Some(-1000));
        for bad in [
            "",
            "m",
            "1x",
            "1.2.3",
            "Gi",
            "1e99",
            "1 Gi",
            "99999999999999999999999Ei",
        ] {
            assert_eq!(parse_milli(bad), None, "{bad:?}");
        }
    }
}
