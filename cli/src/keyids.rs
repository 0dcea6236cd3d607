//! The private KeyIDs a kernel log names, as the module and the mock take them.

use tdmr::sysinfo::{KeyIdRangeError, PrivateKeyIds};

/// The KeyID bits (`IA32_TME_ACTIVATE.MK_TME_KEYID_BITS`) of a machine whose KeyIDs end at
/// `end`: the fewest bits that number KeyIDs `0..end`.
pub fn keyid_bits(end: u32) -> u32 {
    u32::BITS - end.saturating_sub(1).leading_zeros()
}

/// `BIOS enabled: private KeyID range [first, end)` as private KeyIDs and KeyID bits.
pub fn from_range(r: std::ops::Range<u32>) -> Result<(PrivateKeyIds, u32), KeyIdRangeError> {
    Ok((PrivateKeyIds::try_from(r.clone())?, keyid_bits(r.end)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keyid_bits_number_every_keyid() {
        for (end, bits) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (64, 6),
            (65, 7),
            (128, 7),
            (65536, 16),
        ] {
            assert_eq!(super::keyid_bits(end), bits, "{end}");
            assert!(1u64 << bits >= u64::from(end) && 1u64 << (bits - 1) < u64::from(end));
        }
    }
}
