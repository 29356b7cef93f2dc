//! Archive files: what retention deletes, written first gzip-compressed (`zcat` reads them)
//! when an archive folder is configured: the journal's Signals
//! ([`crate::journal::retention`]) and closed Calls ([`crate::retention`]) as JSON lines,
//! recordings ([`crate::voice::retention`]) as they are.
//!
//! [`GzFile`] writes beside the final name as `.part` (readable by its owner only: the
//! lines hold what the store held), and [`GzFile::finish`] syncs the file, renames it and
//! syncs the folder, so an archive file that exists under its name is whole and durable
//! before anything it holds is deleted. One dropped before `finish` removes its `.part`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

/// An archive file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("archive {path}: {source}")]
pub struct ArchiveError {
    /// The file or folder.
    pub path: String,
    /// The system's error.
    pub source: std::io::Error,
}

fn failed(p: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + use<> {
    let path = p.display().to_string();
    move |source| ArchiveError { path, source }
}

/// An archive file being written, gzip-compressed: JSON, one value a line, or a file's bytes.
pub struct GzFile {
    gz: Option<GzEncoder<BufWriter<File>>>,
    dir: PathBuf,
    part: PathBuf,
    path: PathBuf,
    lines: u64,
}

impl std::fmt::Debug for GzFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzFile")
            .field("path", &self.path)
            .field("lines", &self.lines)
            .finish_non_exhaustive()
    }
}

impl GzFile {
    /// Starts `dir/name` (the folder made if missing), written as `dir/name.part` until
    /// [`GzFile::finish`]; a `.part` left by an earlier attempt is replaced.
    pub fn create(dir: &Path, name: &str) -> Result<GzFile, ArchiveError> {
        std::fs::create_dir_all(dir).map_err(failed(dir))?;
        let path = dir.join(name);
        let part = dir.join(format!("{name}.part"));
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        let file = open.open(&part).map_err(failed(&part))?;
        Ok(GzFile {
            gz: Some(GzEncoder::new(BufWriter::new(file), Compression::default())),
            dir: dir.to_path_buf(),
            part,
            path,
            lines: 0,
        })
    }

    fn writing(&mut self) -> Result<&mut GzEncoder<BufWriter<File>>, ArchiveError> {
        self.gz.as_mut().ok_or_else(|| ArchiveError {
            path: self.part.display().to_string(),
            source: std::io::Error::other("already finished"),
        })
    }

    /// Appends `value` as one line of JSON.
    pub fn line<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ArchiveError> {
        let gz = self.writing()?;
        let written = serde_json::to_writer(&mut *gz, value)
            .map_err(std::io::Error::from)
            .and_then(|()| gz.write_all(b"\n"));
        written.map_err(failed(&self.part))?;
        self.lines += 1;
        Ok(())
    }

    /// Appends everything `from` reads (a file archived as it is); returns the bytes.
    pub fn copy_from(&mut self, from: &mut impl std::io::Read) -> Result<u64, ArchiveError> {
        let gz = self.writing()?;
        let copied = std::io::copy(from, gz);
        copied.map_err(failed(&self.part))
    }

    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The file's final name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ends the compressed stream, syncs the file, renames it to its name and syncs the
    /// folder. Returns the file's path.
    pub fn finish(mut self) -> Result<PathBuf, ArchiveError> {
        let Some(gz) = self.gz.take() else {
            return Err(failed(&self.part)(std::io::Error::other(
                "already finished",
            )));
        };
        let file = gz
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map_err(failed(&self.part))?;
        file.sync_all().map_err(failed(&self.part))?;
        drop(file);
        std::fs::rename(&self.part, &self.path).map_err(failed(&self.path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(failed(&self.dir))?;
        Ok(self.path.clone())
    }
}

impl Drop for GzFile {
    fn drop(&mut self) {
        // Not finished: the half-written file is not an archive.
        if self.gz.take().is_some() {
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

    use std::io::Read;

    use super::*;

    fn read(path: &Path) -> String {
        let mut s = String::new();
        flate2::read::GzDecoder::new(File::open(path).unwrap())
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn lines_are_readable_once_finished_and_a_dropped_part_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let arch = dir.path().join("arkiv");
        let mut a = GzFile::create(&arch, "a.jsonl.gz").unwrap();
        a.line(&serde_json::json!({"id": 1})).unwrap();
        a.line("två").unwrap();
        assert_eq!(a.lines(), 2);
        assert!(arch.join("a.jsonl.gz.part").exists());
        assert!(
            !arch.join("a.jsonl.gz").exists(),
            "not under its name before finish"
        );
        let path = a.finish().unwrap();
        assert_eq!(path, arch.join("a.jsonl.gz"));
        assert_eq!(read(&path), "{\"id\":1}\n\"två\"\n");
        assert!(!arch.join("a.jsonl.gz.part").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by its owner only: {mode:o}");
        }

        let mut c = GzFile::create(&arch, "c.wav.gz").unwrap();
        let bytes: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(c.copy_from(&mut bytes.as_slice()).unwrap(), 70_000);
        let path = c.finish().unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(File::open(&path).unwrap())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, bytes);

        let mut b = GzFile::create(&arch, "b.jsonl.gz").unwrap();
        b.line(&1).unwrap();
        drop(b);
        assert!(!arch.join("b.jsonl.gz.part").exists());
        assert!(!arch.join("b.jsonl.gz").exists());
    }

    #[test]
    fn a_folder_that_cannot_be_made_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let e = GzFile::create(&file.join("under"), "a.jsonl.gz").unwrap_err();
        assert!(e.path.contains("a-file"), "{e}");
    }
}
