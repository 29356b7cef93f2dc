//! CRC-16/ARC, the checksum of SIA DC-09 frames (protocols.md §1.3).
//!
//! Polynomial 0x8005 processed LSB-first (reflected 0xA001), initial value 0, reflected
//! input and output, no final XOR. Also known as CRC-16/IBM or CRC-16/LHA. The check value
//! of ASCII `123456789` is `0xBB3D`. (CRC-CCITT, which some hobby code uses, is wrong for DC-09.)

/// 256-entry lookup table for the reflected polynomial 0xA001, built at compile time.
const TABLE: [u16; 256] = build_table();

const fn build_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u16;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// Computes the CRC-16/ARC of `data` (table-driven, one lookup per byte).
///
/// In DC-09 the CRC covers every byte from the opening `"` of the ID token up to the byte
/// before the closing CR, exactly as sent (for encrypted frames: the hex text of the
/// ciphertext).
#[must_use]
pub fn crc16_arc(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc = (crc >> 8) ^ TABLE[usize::from((crc ^ u16::from(b)) as u8)];
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-by-bit reference implementation to check the table against.
    fn crc16_arc_bitwise(data: &[u8]) -> u16 {
        let mut crc: u16 = 0;
        for &b in data {
            crc ^= u16::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xA001
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    #[test]
    fn check_value() {
        assert_eq!(crc16_arc(b"123456789"), 0xBB3D);
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(crc16_arc(b""), 0);
    }

    #[test]
    fn table_matches_bitwise() {
        let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for end in 0..data.len() {
            assert_eq!(crc16_arc(&data[..end]), crc16_arc_bitwise(&data[..end]));
        }
    }

    #[test]
    fn dc09_frame_bodies() {
        // protocols.md §1.10 #1 and #4.
        assert_eq!(
            crc16_arc(b"\"ADM-CID\"0078R1L0#AAAA[#00AAAA|3407 01 001]_01:59:16,09-21-2023"),
            0x7449
        );
        assert_eq!(
            crc16_arc(b"\"SIA-DCS\"0001RF3L77#1234[#1234|NRR|Atest]"),
            0xF4D2
        );
    }
}
