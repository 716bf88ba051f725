//! Writing samples where people can look at them: image samples as a PNG
//! grid, vector samples (2-D toys, tabular rows) as CSV or Parquet in the
//! data's original units.

use crate::data::tabular::ColumnStats;
use polars::prelude::*;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The samples are not images: a caller's mistake.
    #[error("a PNG grid needs images [N, 1 or 3, H, W], got {size:?}")]
    NotImages { size: Vec<i64> },
    /// The samples are not vectors of the named columns: a caller's mistake.
    #[error("vectors [N, {columns}] expected, got {size:?}")]
    NotVectors { columns: usize, size: Vec<i64> },
    /// `--out` names a file that is neither .csv nor .parquet.
    #[error("--out {}: .{extension} is not a table format; use .csv or .parquet", .path.display())]
    NotATable { path: PathBuf, extension: String },
    /// The samples could not be copied off the device.
    #[error("writing {}: {error}", .path.display())]
    Tensor { path: PathBuf, error: tch::TchError },
    #[error("writing {}: {error}", .path.display())]
    Image {
        path: PathBuf,
        error: image::ImageError,
    },
    #[error("writing {}: {error}", .path.display())]
    Table { path: PathBuf, error: PolarsError },
    #[error("writing {}: {error}", .path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl OutputError {
    /// Whether the user's `--out` is what is wrong (exit 2); a write that
    /// fails (a full disk) is not, nor are samples of the wrong shape.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, OutputError::NotATable { .. })
    }
}

fn tensor_err(path: &Path) -> impl FnOnce(tch::TchError) -> OutputError + '_ {
    |error| OutputError::Tensor {
        path: path.to_path_buf(),
        error,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    |error| OutputError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn table_err(path: &Path) -> impl FnOnce(PolarsError) -> OutputError + '_ {
    |error| OutputError::Table {
        path: path.to_path_buf(),
        error,
    }
}

/// Images [N, C, H, W] in [−1, 1] (C = 1 or 3) as a grid of `cols` columns
/// with a 2-pixel border, written atomically to a PNG.
pub fn write_png_grid(images: &Tensor, cols: usize, path: &Path) -> Result<(), OutputError> {
    let size = images.size();
    if size.len() != 4 || !(size[1] == 1 || size[1] == 3) {
        return Err(OutputError::NotImages { size });
    }
    let (n, c, h, w) = (
        size[0] as usize,
        size[1] as usize,
        size[2] as usize,
        size[3] as usize,
    );
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols);
    let pad = 2;
    let (gw, gh) = (cols * (w + pad) + pad, rows * (h + pad) + pad);
    // [−1, 1] → [0, 255], rounded, on the CPU.
    let bytes: Vec<u8> = Vec::try_from(
        ((images.to_device(tch::Device::Cpu).to_kind(Kind::Float) + 1.0) * 127.5)
            .round()
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8)
            .contiguous()
            .flatten(0, -1),
    )
    .map_err(tensor_err(path))?;
    let mut img = image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([255, 255, 255]));
    for i in 0..n {
        let (r, col) = (i / cols, i % cols);
        let (ox, oy) = (pad + col * (w + pad), pad + r * (h + pad));
        for y in 0..h {
            for x in 0..w {
                let px = |ch: usize| bytes[((i * c + ch) * h + y) * w + x];
                let rgb = if c == 1 {
                    [px(0); 3]
                } else {
                    [px(0), px(1), px(2)]
                };
                img.put_pixel((ox + x) as u32, (oy + y) as u32, image::Rgb(rgb));
            }
        }
    }
    let tmp = path.with_extension("png.tmp");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|error| OutputError::Image {
            path: path.to_path_buf(),
            error,
        })?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Vectors [N, D] as a table, mapped back through `stats` (a tabular source's
/// scaling, one per column) when given; extra columns (e.g. the class label)
/// are appended. CSV or Parquet by the file's extension.
pub fn write_vectors(
    samples: &Tensor,
    names: &[String],
    stats: Option<&[ColumnStats]>,
    extra: &[(String, Vec<i64>)],
    path: &Path,
) -> Result<(), OutputError> {
    let size = samples.size();
    if size.len() != 2 || size[1] as usize != names.len() {
        return Err(OutputError::NotVectors {
            columns: names.len(),
            size,
        });
    }
    let d = names.len();
    let values: Vec<f64> = Vec::try_from(
        samples
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Double)
            .contiguous()
            .flatten(0, -1),
    )
    .map_err(tensor_err(path))?;
    let mut columns: Vec<Column> = (0..d)
        .map(|j| {
            let col: Vec<f64> = values
                .iter()
                .skip(j)
                .step_by(d)
                .map(|&v| stats.and_then(|s| s.get(j)).map_or(v, |s| s.invert(v)))
                .collect();
            Column::new(names[j].as_str().into(), col)
        })
        .collect();
    for (name, v) in extra {
        columns.push(Column::new(name.as_str().into(), v.clone()));
    }
    let mut df = DataFrame::new(size[0] as usize, columns).map_err(table_err(path))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let tmp = path.with_extension(format!("{ext}.tmp"));
    let file = std::fs::File::create(&tmp).map_err(io_err(path))?;
    match ext.as_str() {
        "csv" => CsvWriter::new(file)
            .finish(&mut df)
            .map_err(table_err(path))?,
        "parquet" => {
            ParquetWriter::new(file)
                .finish(&mut df)
                .map_err(table_err(path))?;
        }
        other => {
            let _ = std::fs::remove_file(&tmp);
            return Err(OutputError::NotATable {
                path: path.to_path_buf(),
                extension: other.to_string(),
            });
        }
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_places_each_image_and_maps_minus_one_to_black() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        // Three 2×2 gray images: black, white, mid-gray.
        let imgs = Tensor::cat(
            &[
                Tensor::from_slice(&[-1.0f32; 4]),
                Tensor::from_slice(&[1.0f32; 4]),
                Tensor::from_slice(&[0.0f32; 4]),
            ],
            0,
        )
        .reshape([3, 1, 2, 2]);
        write_png_grid(&imgs, 2, &p).unwrap();
        let g = image::open(&p).unwrap().to_rgb8();
        assert_eq!((g.width(), g.height()), (2 * 4 + 2, 2 * 4 + 2));
        assert_eq!(g.get_pixel(2, 2).0, [0, 0, 0]);
        assert_eq!(g.get_pixel(6, 2).0, [255, 255, 255]);
        assert_eq!(g.get_pixel(2, 6).0, [128, 128, 128]);
        assert_eq!(g.get_pixel(0, 0).0, [255, 255, 255], "the border");
        let e = write_png_grid(
            &Tensor::zeros([2, 2], (Kind::Float, tch::Device::Cpu)),
            2,
            &p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs images [N, 1 or 3, H, W]"), "{e}");
    }

    #[test]
    fn vectors_go_back_to_original_units() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.csv");
        let x = Tensor::from_slice(&[0.0f32, 1.0, -1.0, 0.5]).reshape([2, 2]);
        let stats = vec![
            ColumnStats::fit(
                "a",
                crate::data::tabular::Scaling::Standardize,
                &[9.0, 11.0],
            ),
            ColumnStats::fit("b", crate::data::tabular::Scaling::Minmax, &[0.0, 4.0]),
        ];
        write_vectors(
            &x,
            &["a".into(), "b".into()],
            Some(&stats),
            &[("label".into(), vec![3, 4])],
            &p,
        )
        .unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        // a: mean 10, std 1 → 10, 9; b: centre 2, half-range 2 → 4, 3.
        assert_eq!(text, "a,b,label\n10.0,4.0,3\n9.0,3.0,4\n");
        let e = write_vectors(
            &x,
            &["a".into(), "b".into()],
            None,
            &[],
            &dir.path().join("v.txt"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("use .csv or .parquet"), "{e}");
    }

    #[test]
    fn a_wrong_out_extension_is_bad_input_and_a_failed_write_is_not() {
        let table = OutputError::NotATable {
            path: "s.txt".into(),
            extension: "txt".into(),
        };
        assert!(table.is_bad_input(), "{table}");
        assert_eq!(
            table.to_string(),
            "--out s.txt: .txt is not a table format; use .csv or .parquet"
        );
        let io = OutputError::Io {
            path: "s.csv".into(),
            error: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        assert!(!io.is_bad_input(), "{io}");
        assert!(io.to_string().starts_with("writing s.csv: "), "{io}");
        // A write into a folder that is not there: an I/O failure, typed.
        let dir = tempfile::tempdir().unwrap();
        let x = Tensor::zeros([2, 2], (Kind::Float, tch::Device::Cpu));
        let e = write_vectors(
            &x,
            &["a".into(), "b".into()],
            None,
            &[],
            &dir.path().join("no/such/v.csv"),
        )
        .unwrap_err();
        assert!(matches!(e, OutputError::Io { .. }), "{e:?}");
        assert!(!e.is_bad_input(), "{e}");
    }
}
