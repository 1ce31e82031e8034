//! `--eviction-hard`: the thresholds below which a node reports memory or disk pressure and
//! which its allocatable leaves out, parsed as the kubelet's `ParseThresholdConfig`
//! (`pkg/kubelet/eviction/helpers.go`): `signal<quantity` or `signal<percent%`, comma
//! separated; a zero threshold is no threshold; naming any signal drops the defaults of the
//! others (as the kubelet documents).

use crate::quantity::parse_units;

/// The kubelet's default: `memory.available<100Mi,nodefs.available<10%`.
pub const DEFAULT_EVICTION_HARD: &str = "memory.available<100Mi,nodefs.available<10%";

/// The signals this kubelet watches.
const SIGNALS: [&str; 2] = ["memory.available", "nodefs.available"];

/// One threshold: an absolute amount or a share of the capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// Bytes.
    Bytes(u64),
    /// A share of the capacity in millionths, in (0, 1,000,000].
    PerMillion(u32),
}

impl Threshold {
    /// The threshold in bytes for a resource of `capacity` bytes.
    pub fn bytes(self, capacity: u64) -> u64 {
        match self {
            Threshold::Bytes(b) => b,
            // Truncated, as `GetThresholdQuantity` (`int64(float64(capacity) * percent)`).
            Threshold::PerMillion(p) => {
                u64::try_from(u128::from(capacity) * u128::from(p) / 1_000_000).unwrap_or(u64::MAX)
            }
        }
    }
}

/// The hard eviction thresholds; `None`: the signal has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictionHard {
    /// `memory.available`.
    pub memory_available: Option<Threshold>,
    /// `nodefs.available`.
    pub nodefs_available: Option<Threshold>,
}

/// [`DEFAULT_EVICTION_HARD`].
impl Default for EvictionHard {
    fn default() -> Self {
        EvictionHard {
            memory_available: Some(Threshold::Bytes(100 * 1024 * 1024)),
            nodefs_available: Some(Threshold::PerMillion(100_000)),
        }
    }
}

impl EvictionHard {
    /// (memory pressure, disk pressure): what is available has fallen below a threshold.
    pub fn pressures(
        &self,
        mem_available: u64,
        mem_total: u64,
        fs_available: u64,
        fs_total: u64,
    ) -> (bool, bool) {
        let below = |t: Option<Threshold>, available: u64, total: u64| {
            t.is_some_and(|t| total > 0 && available < t.bytes(total))
        };
        (
            below(self.memory_available, mem_available, mem_total),
            below(self.nodefs_available, fs_available, fs_total),
        )
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Threshold::Bytes(b) => {
                let unit = [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)]
                    .into_iter()
                    .find(|(_, size)| b % size == 0);
                match unit {
                    Some((suffix, size)) => write!(f, "{}{suffix}", b / size),
                    None => write!(f, "{b}"),
                }
            }
            Threshold::PerMillion(p) => {
                let text = format!("{}.{:04}", p / 10_000, p % 10_000);
                write!(f, "{}%", text.trim_end_matches('0').trim_end_matches('.'))
            }
        }
    }
}

/// The flag's syntax, every signal named (`<0`: none), so that it parses back the same.
impl std::fmt::Display for EvictionHard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |t: Option<Threshold>| t.map_or_else(|| "0".to_string(), |t| t.to_string());
        write!(
            f,
            "memory.available<{},nodefs.available<{}",
            show(self.memory_available),
            show(self.nodefs_available)
        )
    }
}

/// Parses `--eviction-hard`.
pub fn parse(s: &str) -> Result<EvictionHard, String> {
    let mut out = EvictionHard {
        memory_available: None,
        nodefs_available: None,
    };
    let mut seen = Vec::new();
    for statement in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((signal, value)) = statement.split_once('<') else {
            return Err(format!(
                "invalid eviction threshold {statement:?}: write signal<value, e.g. {DEFAULT_EVICTION_HARD}"
            ));
        };
        let (signal, value) = (signal.trim(), value.trim());
        if !SIGNALS.contains(&signal) {
            return Err(format!(
                "unsupported eviction signal {signal:?} (supported: {})",
                SIGNALS.join(", ")
            ));
        }
        if seen.contains(&signal) {
            return Err(format!("eviction signal {signal:?} given twice"));
        }
        seen.push(signal);
        let threshold =
            parse_value(value).map_err(|e| format!("eviction threshold {statement:?}: {e}"))?;
        match signal {
            "memory.available" => out.memory_available = threshold,
            _ => out.nodefs_available = threshold,
        }
    }
    Ok(out)
}

/// One value: `10%` or a quantity; zero is no threshold.
fn parse_value(value: &str) -> Result<Option<Threshold>, String> {
    if let Some(p) = value.strip_suffix('%') {
        let percent: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("invalid percentage {value:?}"))?;
        if !(0.0..=100.0).contains(&percent) {
            return Err(format!("percentage {value:?} must be between 0% and 100%"));
        }
        // Millionths: a percentage's first four decimals.
        let ppm = (percent * 10_000.0).round() as u32;
        return Ok((ppm > 0).then_some(Threshold::PerMillion(ppm)));
    }
    let bytes = parse_units(value).ok_or_else(|| format!("invalid quantity {value:?}"))?;
    if bytes < 0 {
        return Err(format!("quantity {value:?} must not be negative"));
    }
    let bytes = u64::try_from(bytes).map_err(|_| format!("quantity {value:?} is too large"))?;
    Ok((bytes > 0).then_some(Threshold::Bytes(bytes)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const MI: u64 = 1024 * 1024;

    #[test]
    fn the_default_is_the_kubelets() {
        let d = EvictionHard::default();
        assert_eq!(parse(DEFAULT_EVICTION_HARD).unwrap(), d);
        assert_eq!(d.memory_available, Some(Threshold::Bytes(100 * MI)));
        assert_eq!(d.nodefs_available, Some(Threshold::PerMillion(100_000)));
        assert_eq!(d.pressures(100 * MI, 1 << 40, 50, 100), (false, false));
        assert_eq!(d.pressures(100 * MI - 1, 1 << 40, 50, 100), (true, false));
        assert_eq!(d.pressures(200 * MI, 1 << 40, 10, 100), (false, false));
        assert_eq!(d.pressures(200 * MI, 1 << 40, 9, 100), (false, true));
    }

    #[test]
    fn naming_one_signal_drops_the_others_and_zero_is_none() {
        let e = parse("nodefs.available<1%").unwrap();
        assert_eq!(e.memory_available, None);
        assert_eq!(e.nodefs_available, Some(Threshold::PerMillion(10_000)));
        assert_eq!(e.pressures(0, 1 << 30, 2, 100), (false, false));
        assert_eq!(e.pressures(0, 1 << 30, 0, 100), (false, true));
        let e = parse("memory.available<1Gi, nodefs.available<0%").unwrap();
        assert_eq!(e.memory_available, Some(Threshold::Bytes(1 << 30)));
        assert_eq!(e.nodefs_available, None);
        assert_eq!(e.pressures(1 << 20, 1 << 34, 0, 100), (true, false));
        assert_eq!(parse("memory.available<0").unwrap().memory_available, None);
        assert_eq!(
            parse("memory.available<5%")
                .unwrap()
                .memory_available
                .unwrap()
                .bytes(1000),
            50
        );
    }

    #[test]
    fn shown_as_the_flag_and_parsed_back() {
        for (input, shown) in [
            (DEFAULT_EVICTION_HARD, DEFAULT_EVICTION_HARD),
            (
                "nodefs.available<0%",
                "memory.available<0,nodefs.available<0",
            ),
            (
                "memory.available<1500,nodefs.available<2.5%",
                "memory.available<1500,nodefs.available<2.5%",
            ),
            (
                "memory.available<2Gi,nodefs.available<0.0125%",
                "memory.available<2Gi,nodefs.available<0.0125%",
            ),
        ] {
            let e = parse(input).unwrap();
            assert_eq!(e.to_string(), shown);
            assert_eq!(parse(shown).unwrap(), e);
        }
    }

    #[test]
    fn bad_thresholds_say_why() {
        for (input, want) in [
            ("memory.available=1Gi", "write signal<value"),
            (
                "imagefs.available<10%",
                "unsupported eviction signal \"imagefs.available\"",
            ),
            ("nodefs.available<150%", "between 0% and 100%"),
            ("nodefs.available<x%", "invalid percentage"),
            ("memory.available<1Gx", "invalid quantity"),
            ("memory.available<-1Gi", "must not be negative"),
            ("memory.available<1Gi,memory.available<2Gi", "given twice"),
        ] {
            let err = parse(input).unwrap_err();
            assert!(err.contains(want), "{input}: {err}");
        }
    }
}
