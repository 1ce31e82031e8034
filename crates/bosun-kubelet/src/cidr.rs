//! Pod address ranges: the node's `podCIDR` carved out of the cluster's range, and the
//! allocator that hands out pod IPs from it (the role CNI's `host-local` IPAM plays on a real
//! node: the network address, the gateway `.1` and the broadcast address are never given
//! out; allocation continues after the last address given, so a freed address is not reused
//! at once).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network, `10.244.3.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

/// A CIDR that does not parse, or a range that cannot hold what is asked of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `a.b.c.d/n` with n in 0..=32.
    #[error("invalid CIDR address: {0}")]
    Invalid(String),
    /// `count` subnets of `/size` do not fit in `range`.
    #[error(
        "{range} holds {available} subnets of /{size}, not {count}: give a larger --pod-cidr or a larger --node-cidr-mask-size"
    )]
    TooSmall {
        /// The range carved up.
        range: Ipv4Cidr,
        /// The subnet prefix length.
        size: u8,
        /// Subnets it holds.
        available: u64,
        /// Subnets asked for.
        count: u64,
    },
    /// A subnet prefix shorter than the range's own.
    #[error("node CIDR mask size /{size} is shorter than the range {range}")]
    MaskTooShort {
        /// The range.
        range: Ipv4Cidr,
        /// The subnet prefix length asked for.
        size: u8,
    },
}

impl Ipv4Cidr {
    /// The network with host bits cleared (as Go's `net.ParseCIDR` returns it).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Ipv4Cidr {
            network: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// Number of addresses in the range.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.network
    }

    /// The `index`-th subnet of prefix length `size` (0 is the first), if it fits.
    pub fn subnet(&self, size: u8, index: u64) -> Option<Ipv4Cidr> {
        if size < self.prefix || size > 32 {
            return None;
        }
        let count = 1u64 << (size - self.prefix);
        if index >= count {
            return None;
        }
        let step = 1u64 << (32 - u32::from(size));
        let start = u64::from(self.network) + index * step;
        Some(Ipv4Cidr {
            network: u32::try_from(start).ok()?,
            prefix: size,
        })
    }

    /// `count` consecutive subnets of prefix length `size`, one per node.
    pub fn subnets(&self, size: u8, count: u64) -> Result<Vec<Ipv4Cidr>, CidrError> {
        if size < self.prefix || size > 32 {
            return Err(CidrError::MaskTooShort { range: *self, size });
        }
        let available = 1u64 << (size - self.prefix);
        if count > available {
            return Err(CidrError::TooSmall {
                range: *self,
                size,
                available,
                count,
            });
        }
        Ok((0..count).filter_map(|i| self.subnet(size, i)).collect())
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let bad = || CidrError::Invalid(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Ipv4Cidr::new(addr, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// Hands out the addresses of one node's pod range, one per pod.
#[derive(Debug, Clone)]
pub struct IpAllocator {
    range: Ipv4Cidr,
    /// One bit per address of the range; reserved addresses are set from the start.
    used: Vec<u64>,
    /// Where the next search starts (after the last address given).
    next: u32,
    free: u32,
}

impl IpAllocator {
    /// An allocator over `range`; `None` when it has no address to give (a /31 or /32 has
    /// none once the network, gateway and broadcast addresses are set aside).
    pub fn new(range: Ipv4Cidr) -> Option<Self> {
        let size = u32::try_from(range.size()).ok()?;
        if size < 4 {
            return None;
        }
        let words = usize::try_from(size.div_ceil(64)).ok()?;
        let mut a = IpAllocator {
            range,
            used: vec![0; words],
            next: 2,
            free: size,
        };
        // Network, gateway (.1), broadcast.
        for off in [0, 1, size - 1] {
            a.set(off);
        }
        Some(a)
    }

    /// The range.
    pub fn range(&self) -> Ipv4Cidr {
        self.range
    }

    /// Addresses still free.
    pub fn available(&self) -> u32 {
        self.free
    }

    fn size(&self) -> u32 {
        u32::try_from(self.range.size()).unwrap_or(u32::MAX)
    }

    fn is_set(&self, off: u32) -> bool {
        let (w, b) = (off as usize / 64, off % 64);
        self.used.get(w).is_some_and(|x| x & (1 << b) != 0)
    }

    fn set(&mut self, off: u32) -> bool {
        let (w, b) = (off as usize / 64, off % 64);
        match self.used.get_mut(w) {
            Some(x) if *x & (1 << b) == 0 => {
                *x |= 1 << b;
                self.free -= 1;
                true
            }
            _ => false,
        }
    }

    /// The next free address, or `None` when the range is full.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let size = self.size();
        for i in 0..size {
            let off = (self.next + i) % size;
            if !self.is_set(off) {
                self.set(off);
                self.next = (off + 1) % size;
                return Some(Ipv4Addr::from(self.range.network + off));
            }
        }
        None
    }

    /// Marks `ip` as taken (a pod found running with it); false when it is outside the
    /// range, reserved or already taken.
    pub fn reserve(&mut self, ip: Ipv4Addr) -> bool {
        if !self.range.contains(ip) {
            return false;
        }
        let off = u32::from(ip) - self.range.network;
        if off == 0 || off == 1 || off == self.size() - 1 {
            return false;
        }
        self.set(off)
    }

    /// Gives `ip` back; false when it was not taken (or is reserved, or outside).
    pub fn release(&mut self, ip: Ipv4Addr) -> bool {
        if !self.range.contains(ip) {
            return false;
        }
        let off = u32::from(ip) - self.range.network;
        if off == 0 || off == 1 || off == self.size() - 1 || !self.is_set(off) {
            return false;
        }
        let (w, b) = (off as usize / 64, off % 64);
        self.used[w] &= !(1 << b);
        self.free += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_masks_like_go() {
        assert_eq!(cidr("10.244.3.7/24").to_string(), "10.244.3.0/24");
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "10.0.0.0/",
            "x/8",
            "10.0.0.0/+8",
        ] {
            assert_eq!(
                bad.parse::<Ipv4Cidr>(),
                Err(CidrError::Invalid(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn subnets_are_carved_in_order() {
        let r = cidr("10.244.0.0/16");
        let s = r.subnets(24, 3).unwrap();
        let s: Vec<String> = s.iter().map(ToString::to_string).collect();
        assert_eq!(s, ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]);
        assert_eq!(r.subnets(16, 1).unwrap(), vec![r]);
        assert_eq!(
            r.subnets(24, 257).unwrap_err().to_string(),
            "10.244.0.0/16 holds 256 subnets of /24, not 257: give a larger --pod-cidr or a larger --node-cidr-mask-size"
        );
        assert!(matches!(
            r.subnets(8, 1),
            Err(CidrError::MaskTooShort { .. })
        ));
        assert_eq!(r.subnet(24, 255).unwrap().to_string(), "10.244.255.0/24");
        assert_eq!(r.subnet(24, 256), None);
    }

    #[test]
    fn allocation_skips_network_gateway_and_broadcast() {
        let mut a = IpAllocator::new(cidr("10.1.2.0/24")).unwrap();
        assert_eq!(a.available(), 253);
        assert_eq!(a.allocate(), Some(Ipv4Addr::new(10, 1, 2, 2)));
        assert_eq!(a.allocate(), Some(Ipv4Addr::new(10, 1, 2, 3)));
        // A freed address is not handed out again at once.
        assert!(a.release(Ipv4Addr::new(10, 1, 2, 2)));
        assert!(!a.release(Ipv4Addr::new(10, 1, 2, 2)), "double free");
        assert_eq!(a.allocate(), Some(Ipv4Addr::new(10, 1, 2, 4)));
        let mut got = HashSet::new();
        while let Some(ip) = a.allocate() {
            assert!(got.insert(ip), "{ip} twice");
        }
        assert_eq!(a.available(), 0);
        assert!(!got.contains(&Ipv4Addr::new(10, 1, 2, 0)));
        assert!(!got.contains(&Ipv4Addr::new(10, 1, 2, 1)));
        assert!(!got.contains(&Ipv4Addr::new(10, 1, 2, 255)));
        assert!(got.contains(&Ipv4Addr::new(10, 1, 2, 2)), "wrapped around");
        assert!(!a.reserve(Ipv4Addr::new(10, 1, 3, 5)), "outside");
        assert!(!a.release(Ipv4Addr::new(10, 1, 2, 1)), "gateway");
        assert!(IpAllocator::new(cidr("10.0.0.0/31")).is_none());
        assert_eq!(
            IpAllocator::new(cidr("10.0.0.0/30")).unwrap().available(),
            1
        );
    }

    #[test]
    fn reserve_takes_an_address_found_in_use() {
        let mut a = IpAllocator::new(cidr("10.1.2.0/29")).unwrap();
        assert!(a.reserve(Ipv4Addr::new(10, 1, 2, 2)));
        assert!(!a.reserve(Ipv4Addr::new(10, 1, 2, 2)));
        assert_eq!(a.allocate(), Some(Ipv4Addr::new(10, 1, 2, 3)));
    }

    proptest! {
        /// Whatever the order of allocations and releases, no address is held twice, every
        /// address given is a usable one of the range, and the count of free ones is exact.
        #[test]
        fn never_gives_an_address_twice(prefix in 24u8..=30, ops in proptest::collection::vec(any::<(bool, u8)>(), 0..600)) {
            let range = Ipv4Cidr::new(Ipv4Addr::new(10, 9, 8, 0), prefix).unwrap();
            let mut a = IpAllocator::new(range).unwrap();
            let usable = u32::try_from(range.size()).unwrap() - 3;
            let mut held: Vec<Ipv4Addr> = Vec::new();
            for (alloc, pick) in ops {
                if alloc || held.is_empty() {
                    match a.allocate() {
                        Some(ip) => {
                            prop_assert!(range.contains(ip));
                            prop_assert!(!held.contains(&ip));
                            let off = u32::from(ip) - u32::from(range.network());
                            prop_assert!(off >= 2 && off < usable + 2);
                            held.push(ip);
                        }
                        None => prop_assert_eq!(held.len(), usable as usize),
                    }
                } else {
                    let ip = held.swap_remove(usize::from(pick) % held.len());
                    prop_assert!(a.release(ip));
                }
                prop_assert_eq!(a.available() as usize, usable as usize - held.len());
            }
        }
    }
}
