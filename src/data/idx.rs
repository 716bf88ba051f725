//! The IDX format of the MNIST files (LeCun et al.): a magic number
//! `0x00 0x00 <type> <ndim>`, `ndim` big-endian u32 sizes, then the data.
//! Read plain or gzip-compressed (detected by the gzip magic, whatever the file
//! name), checked against its header; written plain.

use super::error::DataError;
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// The only element type we read or write: unsigned bytes.
pub const UBYTE: u8 = 0x08;

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Read an IDX file (plain or gzip) and check that it has `ndim` dimensions.
pub fn read(path: &Path, ndim: usize) -> Result<IdxArray, DataError> {
    let raw = std::fs::read(path).map_err(DataError::io(path))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = vec![];
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                DataError::format(
                    path,
                    format!("not a valid gzip file ({e}); re-download or decompress it"),
                )
            })?;
        out
    } else {
        raw
    };
    parse(&bytes, ndim).map_err(|what| DataError::format(path, what))
}

fn parse(bytes: &[u8], ndim: usize) -> Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "{} bytes is too short for an IDX file (a 4-byte magic number comes first)",
            bytes.len()
        ));
    }
    let magic = &bytes[..4];
    if magic[0] != 0 || magic[1] != 0 || magic[2] != UBYTE || magic[3] as usize != ndim {
        return Err(format!(
            "wrong magic number {:02x}{:02x}{:02x}{:02x}: expected 000008{:02x} (an IDX file of unsigned bytes with {ndim} dimensions)",
            magic[0], magic[1], magic[2], magic[3], ndim
        ));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(format!(
            "truncated header: {} bytes, the header alone needs {header}",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        }) // ok: slice of 4
        .collect();
    let n: usize = dims.iter().product();
    if bytes.len() != header + n {
        return Err(format!(
            "the header says {dims:?} ({n} values) but the file holds {} bytes of data: truncated or not an IDX file",
            bytes.len() - header
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// The bytes of an IDX file of unsigned bytes.
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, UBYTE, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&(*d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    #[test]
    fn gzip_idx_equals_plain_idx() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        let bytes = encode(&[2, 3, 4], &data);
        std::fs::write(dir.path().join("a"), &bytes).unwrap();
        let mut gz = GzEncoder::new(vec![], flate2::Compression::default());
        gz.write_all(&bytes).unwrap();
        std::fs::write(dir.path().join("a.gz"), gz.finish().unwrap()).unwrap();
        let plain = read(&dir.path().join("a"), 3).unwrap();
        let zipped = read(&dir.path().join("a.gz"), 3).unwrap();
        assert_eq!(plain, zipped);
        assert_eq!(plain.dims, vec![2, 3, 4]);
        assert_eq!(plain.data, data);
    }

    #[test]
    fn bad_files_get_errors_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, encode(&[5], &[1, 2, 3, 4, 5])).unwrap();
        let e = read(&p, 3).unwrap_err().to_string();
        assert!(
            e.contains(&p.display().to_string()) && e.contains("wrong magic number 00000801"),
            "{e}"
        );
        std::fs::write(&p, &encode(&[5], &[1, 2, 3, 4, 5])[..10]).unwrap();
        let e = read(&p, 1).unwrap_err().to_string();
        assert!(
            e.contains("the header says [5]") && e.contains("truncated"),
            "{e}"
        );
        let e = read(&dir.path().join("missing"), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read it"), "{e}");
        std::fs::write(&p, [0x1f, 0x8b, 0, 0]).unwrap();
        let e = read(&p, 1).unwrap_err().to_string();
        assert!(e.contains("not a valid gzip file"), "{e}");
    }
}
