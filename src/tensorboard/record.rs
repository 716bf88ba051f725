//! TFRecord framing, the container of an event file: each record is its
//! length (u64, little-endian), the masked CRC-32C of those 8 bytes, the
//! data, and the masked CRC-32C of the data. Readers check both CRCs and
//! stop at the first record that fails, so a record is written whole or
//! the reader never sees it.

/// CRC-32C (Castagnoli), masked as TFRecord masks it so that a CRC of data
/// that holds CRCs stays well distributed.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// `data` framed as one record.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CRC-32C check value of "123456789" (RFC 3720, appendix B.4),
    /// masked by hand: ((crc >> 15) | (crc << 17)) + 0xa282ead8 mod 2^32.
    #[test]
    fn the_crc_is_crc32c_masked_as_tfrecord_masks_it() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let crc: u64 = 0xE306_9283;
        let rotated = ((crc >> 15) | (crc << 17)) & 0xffff_ffff;
        let masked = ((rotated + 0xa282_ead8) & 0xffff_ffff) as u32;
        assert_eq!(masked_crc32c(b"123456789"), masked);
    }

    #[test]
    fn a_frame_is_length_crc_data_crc() {
        let f = frame(b"abc");
        assert_eq!(f.len(), 8 + 4 + 3 + 4);
        assert_eq!(&f[..8], &3u64.to_le_bytes());
        assert_eq!(&f[8..12], &masked_crc32c(&3u64.to_le_bytes()).to_le_bytes());
        assert_eq!(&f[12..15], b"abc");
        assert_eq!(&f[15..], &masked_crc32c(b"abc").to_le_bytes());
    }
}
