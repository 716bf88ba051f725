//! TensorBoard event files, so `tensorboard --logdir results/<sweep>` shows
//! every run's training curves, evaluation metrics and sample grids.
//!
//! No maintained crate writes them (tensorboard-rs was abandoned in 2022 on
//! an old protobuf), and the format is small: protobuf `Event` messages
//! (`proto`, through prost's derive) framed as TFRecords (`record`). The
//! files are written by a background thread, so a training step never waits
//! on the disk; `flush` (called at checkpoints) waits until everything sent
//! so far is on disk, and reports the first write error.

mod proto;
mod record;
pub mod tags;

use proto::{Content, Event, Image, SessionLog, Summary, Value, What};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum TbError {
    #[error("writing TensorBoard events to {}: {error}; set output.tensorboard = false to go on without them", .path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{what} is not a PNG TensorBoard can show: {error}")]
    Png { what: String, error: String },
    #[error(
        "the TensorBoard writer thread stopped; set output.tensorboard = false to go on without it"
    )]
    Stopped,
}

enum Msg {
    Event(Event),
    /// Flush, then answer with the first error so far.
    Flush(mpsc::Sender<Option<String>>),
}

/// Appends events to one new event file in each of its folders.
pub struct EventWriter {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    /// The files, for error messages.
    files: Vec<PathBuf>,
}

static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

impl EventWriter {
    /// Start a new event file in each of `dirs` (made if missing). A process
    /// that resumes a run at `restart_at` marks it there, so a reader drops
    /// what a killed process wrote from that step on.
    pub fn create(dirs: &[PathBuf], restart_at: Option<u64>) -> Result<EventWriter, TbError> {
        let mut files = vec![];
        let mut writers = vec![];
        for dir in dirs {
            let (path, file) = new_event_file(dir)?;
            files.push(path);
            writers.push(BufWriter::new(file));
        }
        let (tx, rx) = mpsc::channel::<Msg>();
        let paths = files.clone();
        let thread = std::thread::Builder::new()
            .name("tensorboard".into())
            .spawn(move || write_loop(rx, writers, paths))
            .map_err(|error| TbError::Io {
                path: dirs.first().cloned().unwrap_or_default(),
                error,
            })?;
        let w = EventWriter {
            tx: Some(tx),
            thread: Some(thread),
            files,
        };
        w.send(What::FileVersion("brain.Event:2".into()), 0);
        if let Some(step) = restart_at {
            let start = SessionLog {
                status: proto::SESSION_START,
            };
            w.send(What::SessionLog(start), step);
        }
        Ok(w)
    }

    /// The event files being written.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn send(&self, what: What, step: u64) {
        let event = Event {
            wall_time: now(),
            step: step as i64,
            what: Some(what),
        };
        if let Some(tx) = &self.tx {
            // A stopped thread is reported by the next flush.
            let _ = tx.send(Msg::Event(event));
        }
    }

    /// Scalars at `step`, one event holding them all. Non-finite values are
    /// written as they are (TensorBoard shows them as gaps).
    pub fn scalars(&self, step: u64, values: &[(String, f64)]) {
        if values.is_empty() {
            return;
        }
        let value = values
            .iter()
            .map(|(tag, v)| Value {
                tag: tag.clone(),
                content: Some(Content::SimpleValue(*v as f32)),
            })
            .collect();
        self.send(What::Summary(Summary { value }), step);
    }

    /// A PNG image at `step` under `tag`; `what` names it in errors.
    pub fn png(&self, step: u64, tag: &str, png: Vec<u8>, what: &str) -> Result<(), TbError> {
        let (width, height, colorspace) = png_header(&png).map_err(|error| TbError::Png {
            what: what.to_string(),
            error,
        })?;
        let image = Image {
            height,
            width,
            colorspace,
            encoded_image_string: png,
        };
        let value = vec![Value {
            tag: tag.to_string(),
            content: Some(Content::Image(image)),
        }];
        self.send(What::Summary(Summary { value }), step);
        Ok(())
    }

    /// Wait until everything sent so far is on disk; the first write error.
    pub fn flush(&self) -> Result<(), TbError> {
        let (tx, rx) = mpsc::channel();
        let sent = self.tx.as_ref().map(|t| t.send(Msg::Flush(tx)));
        if !matches!(sent, Some(Ok(()))) {
            return Err(TbError::Stopped);
        }
        match rx.recv() {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(TbError::Io {
                path: self.files.first().cloned().unwrap_or_default(),
                error: std::io::Error::other(e),
            }),
            Err(_) => Err(TbError::Stopped),
        }
    }

    /// Flush and stop the writer thread.
    pub fn close(mut self) -> Result<(), TbError> {
        let flushed = self.flush();
        self.stop();
        flushed
    }

    fn stop(&mut self) {
        self.tx = None; // the thread ends when the channel closes
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer thread: frame and append each event to every file; keep the
/// first error and stop writing after it.
fn write_loop(rx: mpsc::Receiver<Msg>, mut files: Vec<BufWriter<File>>, paths: Vec<PathBuf>) {
    use prost::Message;
    let mut error: Option<String> = None;
    for msg in rx {
        match msg {
            Msg::Event(e) if error.is_none() => {
                let framed = record::frame(&e.encode_to_vec());
                for (f, p) in files.iter_mut().zip(&paths) {
                    if let Err(e) = f.write_all(&framed) {
                        error = Some(format!("{}: {e}", p.display()));
                        break;
                    }
                }
            }
            Msg::Event(_) => {}
            Msg::Flush(answer) => {
                if error.is_none() {
                    for (f, p) in files.iter_mut().zip(&paths) {
                        if let Err(e) = f.flush() {
                            error = Some(format!("{}: {e}", p.display()));
                            break;
                        }
                    }
                }
                let _ = answer.send(error.clone());
            }
        }
    }
    for f in &mut files {
        let _ = f.flush();
    }
}

/// A new `events.out.tfevents.<secs>.<host>.<pid>.<n>` in `dir`: the name
/// TensorBoard looks for, unique per process and writer.
fn new_event_file(dir: &Path) -> Result<(PathBuf, File), TbError> {
    let io = |error| TbError::Io {
        path: dir.to_path_buf(),
        error,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let secs = now() as u64;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "localhost".to_string());
    loop {
        let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "events.out.tfevents.{secs}.{host}.{}.{n}",
            std::process::id()
        );
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(TbError::Io { path, error }),
        }
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Width, height and TensorBoard colorspace of a PNG, from its header.
fn png_header(png: &[u8]) -> Result<(i32, i32, i32), String> {
    use image::ImageDecoder;
    let d = image::codecs::png::PngDecoder::new(std::io::Cursor::new(png))
        .map_err(|e| e.to_string())?;
    let (w, h) = d.dimensions();
    let colorspace = match d.color_type().channel_count() {
        n @ 1..=4 => n as i32,
        n => return Err(format!("{n} channels")),
    };
    Ok((w as i32, h as i32, colorspace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Read an event file back: every record's CRCs checked, the events decoded.
    fn read_events(path: &Path) -> Vec<Event> {
        let bytes = std::fs::read(path).unwrap();
        let mut out = vec![];
        let mut at = 0;
        while at < bytes.len() {
            let len_bytes = &bytes[at..at + 8];
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(crc, record::masked_crc32c(len_bytes));
            let data = &bytes[at + 12..at + 12 + len];
            let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(crc, record::masked_crc32c(data));
            out.push(Event::decode(data).unwrap());
            at += 16 + len;
        }
        out
    }

    #[test]
    fn events_reach_every_folder_in_order_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = [dir.path().join("a"), dir.path().join("b")];
        let w = EventWriter::create(&dirs, Some(11)).unwrap();
        w.scalars(
            12,
            &[("train/loss".into(), 0.25), ("train/lr".into(), 1e-3)],
        );
        w.flush().unwrap();
        let files = w.files().to_vec();
        assert!(files[0].starts_with(&dirs[0]) && files[1].starts_with(&dirs[1]));
        for f in &files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("events.out.tfevents."), "{name}");
            let events = read_events(f);
            assert_eq!(events.len(), 3);
            assert_eq!(
                events[0].what,
                Some(What::FileVersion("brain.Event:2".into()))
            );
            assert_eq!(events[1].step, 11);
            assert!(matches!(
                events[1].what,
                Some(What::SessionLog(SessionLog { status: 1 }))
            ));
            let Some(What::Summary(s)) = &events[2].what else {
                panic!("{:?}", events[2]);
            };
            assert_eq!(events[2].step, 12);
            assert_eq!(s.value[0].tag, "train/loss");
            assert_eq!(s.value[0].content, Some(Content::SimpleValue(0.25)));
            assert_eq!(s.value[1].content, Some(Content::SimpleValue(1e-3f32)));
        }
    }

    #[test]
    fn an_image_carries_its_png_size_and_channels() {
        let dir = tempfile::tempdir().unwrap();
        let mut png = vec![];
        image::GrayImage::from_pixel(5, 3, image::Luma([7]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let w = EventWriter::create(&[dir.path().to_path_buf()], None).unwrap();
        w.png(4, "samples", png.clone(), "grid.png").unwrap();
        let err = w
            .png(4, "samples", b"not a png".to_vec(), "bad.png")
            .unwrap_err();
        assert!(err.to_string().starts_with("bad.png is not a PNG"), "{err}");
        let file = w.files()[0].clone();
        w.close().unwrap();
        let events = read_events(&file);
        assert_eq!(events.len(), 2);
        let Some(What::Summary(s)) = &events[1].what else {
            panic!("{:?}", events[1]);
        };
        let Some(Content::Image(img)) = &s.value[0].content else {
            panic!("{:?}", s.value[0]);
        };
        assert_eq!((img.width, img.height, img.colorspace), (5, 3, 1));
        assert_eq!(img.encoded_image_string, png);
    }

    #[test]
    fn a_folder_that_cannot_be_made_is_named_with_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let err = EventWriter::create(&[file.join("tb")], None).err().unwrap();
        let msg = err.to_string();
        assert!(msg.contains("plain/tb"), "{msg}");
        assert!(msg.contains("output.tensorboard = false"), "{msg}");
    }
}
