//! A folder of images (`data.source = "folder"`): every PNG or JPEG under
//! `data.path` (walked with walkdir, in sorted order), resized so the shorter
//! side is `data.resolution` and centre-cropped to a square, in RGB or
//! grayscale. With `data.labels`, an image's class is the name of the first
//! subfolder it sits in (classes numbered in sorted order of their names).
//! Images are decoded in parallel (rayon).

use super::error::DataError;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Colour mode of a folder source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ColorMode {
    Rgb,
    Grayscale,
}

impl ColorMode {
    pub fn channels(self) -> i64 {
        match self {
            ColorMode::Rgb => 3,
            ColorMode::Grayscale => 1,
        }
    }
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// Every image file under `root`, sorted, with its class name (first subfolder), if any.
pub fn list(root: &Path) -> Result<Vec<(PathBuf, Option<String>)>, DataError> {
    if !root.exists() {
        return Err(DataError::not_found(
            root,
            "data.path must name a folder of PNG/JPEG images",
        ));
    }
    if !root.is_dir() {
        return Err(DataError::format(
            root,
            "is not a folder: data.path must name a folder of PNG/JPEG images",
        ));
    }
    let mut out = vec![];
    // Symlinked images and class folders count (datasets are often assembled
    // from links); walkdir reports a link loop as an error.
    for entry in walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| DataError::format(root, format!("cannot walk it ({e})")))?;
        if entry.file_type().is_file() && is_image(entry.path()) {
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            let class = (rel.components().count() > 1)
                .then(|| {
                    rel.components()
                        .next()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                })
                .flatten();
            out.push((entry.path().to_path_buf(), class));
        }
    }
    if out.is_empty() {
        return Err(DataError::format(
            root,
            "holds no PNG or JPEG images (searched every subfolder)",
        ));
    }
    Ok(out)
}

/// The class names of a labelled folder, sorted.
pub fn class_names(
    files: &[(PathBuf, Option<String>)],
    root: &Path,
) -> Result<Vec<String>, DataError> {
    if let Some((p, _)) = files.iter().find(|(_, c)| c.is_none()) {
        return Err(DataError::format(
            root,
            format!("data.labels = true needs every image in a class subfolder, but {} is not; move it, or set data.labels = false", p.display()),
        ));
    }
    let mut names: Vec<String> = files.iter().filter_map(|(_, c)| c.clone()).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Decode, resize (shorter side to `res`) and centre-crop one image to bytes [C, res, res].
pub fn load_image(path: &Path, res: u32, mode: ColorMode) -> Result<Vec<u8>, DataError> {
    let img = image::open(path).map_err(|e| {
        DataError::format(
            path,
            format!("cannot decode it as an image ({e}); delete or replace it"),
        )
    })?;
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(DataError::format(path, "is an empty image"));
    }
    let scale = res as f64 / w.min(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).max(res),
        ((h as f64 * scale).round() as u32).max(res),
    );
    let resized = img.resize_exact(nw, nh, image::imageops::FilterType::Triangle);
    let cropped = resized.crop_imm((nw - res) / 2, (nh - res) / 2, res, res);
    let px = res as usize * res as usize;
    Ok(match mode {
        ColorMode::Grayscale => cropped.to_luma8().into_raw(),
        ColorMode::Rgb => {
            // Interleaved RGB → channel-major.
            let rgb = cropped.to_rgb8().into_raw();
            let mut out = vec![0u8; 3 * px];
            for (i, p) in rgb.chunks(3).enumerate() {
                for c in 0..3 {
                    out[c * px + i] = p[c];
                }
            }
            out
        }
    })
}

/// Decode every listed image in parallel: bytes [N·C·res·res].
pub fn load_all(files: &[PathBuf], res: u32, mode: ColorMode) -> Result<Vec<u8>, DataError> {
    let images: Result<Vec<Vec<u8>>, DataError> =
        files.par_iter().map(|p| load_image(p, res, mode)).collect();
    Ok(images?.concat())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Write a small labelled folder: `per_class` images of each class, of size w×h,
    /// filled with the class's colour.
    pub fn write_fake(root: &Path, classes: &[&str], per_class: usize, w: u32, h: u32) {
        for (k, class) in classes.iter().enumerate() {
            let dir = root.join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class {
                let colour = image::Rgb([(k * 100) as u8, 50, 200]);
                let img = image::RgbImage::from_pixel(w, h, colour);
                let ext = if i % 2 == 0 { "png" } else { "jpg" };
                img.save(dir.join(format!("{i:03}.{ext}"))).unwrap();
            }
        }
    }

    #[test]
    fn lists_classes_and_decodes_resized_crops() {
        let dir = tempfile::tempdir().unwrap();
        write_fake(dir.path(), &["cat", "ant"], 3, 40, 20);
        let files = list(dir.path()).unwrap();
        assert_eq!(files.len(), 6);
        assert_eq!(class_names(&files, dir.path()).unwrap(), vec!["ant", "cat"]);
        let px = load_image(&files[0].0, 8, ColorMode::Rgb).unwrap();
        assert_eq!(px.len(), 3 * 64);
        // "ant" is class 0 in sorted order but was written with colour index 1 (R = 100).
        assert_eq!((px[0], px[64], px[128]), (100, 50, 200));
        let gray = load_image(&files[0].0, 8, ColorMode::Grayscale).unwrap();
        assert_eq!(gray.len(), 64);
    }

    #[test]
    fn upper_and_mixed_case_image_extensions_count() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.PNG", "b.JpG", "c.JPEG"] {
            image::RgbImage::from_pixel(8, 8, image::Rgb([10, 20, 30]))
                .save(dir.path().join(name))
                .unwrap();
        }
        std::fs::write(dir.path().join("notes.TXT"), b"not an image").unwrap();
        let files = list(dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.PNG", "b.JpG", "c.JPEG"]);
        for (p, _) in &files {
            let px = load_image(p, 4, ColorMode::Grayscale).unwrap();
            assert_eq!(px.len(), 16, "{}", p.display());
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_images_and_class_folders_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        write_fake(&store, &["cat", "ant"], 2, 8, 8);
        let root = dir.path().join("linked");
        std::fs::create_dir_all(root.join("owl")).unwrap();
        std::os::unix::fs::symlink(store.join("cat"), root.join("cat")).unwrap();
        std::os::unix::fs::symlink(store.join("ant/000.png"), root.join("owl/a.png")).unwrap();
        let files = list(&root).unwrap();
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(class_names(&files, &root).unwrap(), vec!["cat", "owl"]);
    }

    #[test]
    fn bad_folders_and_images_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = list(dir.path()).unwrap_err().to_string();
        assert!(e.contains("holds no PNG or JPEG images"), "{e}");
        std::fs::write(dir.path().join("broken.png"), b"not a png").unwrap();
        let files = list(dir.path()).unwrap();
        let e = load_image(&files[0].0, 8, ColorMode::Rgb)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("broken.png") && e.contains("cannot decode"),
            "{e}"
        );
        let e = class_names(&files, dir.path()).unwrap_err().to_string();
        assert!(e.contains("class subfolder"), "{e}");
        let e = list(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(
            e.contains("nope: not found; data.path must name a folder"),
            "{e}"
        );
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "x").unwrap();
        let e = list(&file).unwrap_err().to_string();
        assert!(e.contains("is not a folder"), "{e}");
    }
}
