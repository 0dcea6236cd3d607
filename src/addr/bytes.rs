//! [`Bytes`]: human-readable byte counts (`4 KiB`, `255.4 GiB`), integer arithmetic only.

use core::fmt;

const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// A byte count that displays in binary units: exact multiples without a fraction
/// (`256 GiB`), everything else rounded to one decimal (`255.4 GiB`).
///
/// ```
/// use tdmr::addr::Bytes;
/// assert_eq!(Bytes(4096).to_string(), "4 KiB");
/// assert_eq!(Bytes(274_212_126_720).to_string(), "255.4 GiB");
/// assert_eq!(Bytes(1000).to_string(), "1000 B");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n < 1024 {
            return write!(f, "{n} B");
        }
        // Largest unit not above n: 1024^u with u = floor(log2(n) / 10).
        let mut u = ((63 - n.leading_zeros()) / 10) as usize;
        let unit = |u: usize| 1u128 << (10 * u);
        if u128::from(n).is_multiple_of(unit(u)) {
            return write!(f, "{} {}", u128::from(n) / unit(u), UNITS[u]);
        }
        let mut tenths = (u128::from(n) * 10 + unit(u) / 2) / unit(u);
        // 1023.96 KiB rounds to 1024.0 KiB: say 1.0 MiB instead.
        if tenths >= 10240 && u + 1 < UNITS.len() {
            u += 1;
            tenths = (u128::from(n) * 10 + unit(u) / 2) / unit(u);
        }
        write!(f, "{}.{} {}", tenths / 10, tenths % 10, UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn units_and_rounding() {
        assert_eq!(Bytes(0).to_string(), "0 B");
        assert_eq!(Bytes(1023).to_string(), "1023 B");
        assert_eq!(Bytes(1024).to_string(), "1 KiB");
        assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
        assert_eq!(Bytes(256 << 30).to_string(), "256 GiB");
        // 1050644 KiB: Linux's PAMT total on the EMR map.
        assert_eq!(Bytes(1_050_644 * 1024).to_string(), "1.0 GiB");
        // Just under 1 MiB rounds up into the next unit rather than printing 1024.0 KiB.
        assert_eq!(Bytes((1 << 20) - 1).to_string(), "1.0 MiB");
        assert_eq!(Bytes(16 << 40).to_string(), "16 TiB");
        assert_eq!(Bytes(u64::MAX).to_string(), "16.0 EiB");
        assert_eq!(Bytes(3 << 60).to_string(), "3 EiB");
    }
}
