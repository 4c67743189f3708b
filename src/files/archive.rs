//! The downloadable archive of a version: a deterministic tar.gz (sorted paths, fixed times),
//! so the same files always give the same bytes.
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::files::{FileMode, FileTree};

pub const ARCHIVE_CONTENT_TYPE: &str = "application/gzip";

pub fn tar_gz(tree: &FileTree) -> std::io::Result<Vec<u8>> {
    let encoder = GzEncoder::new(Vec::new(), Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    builder.mode(tar::HeaderMode::Deterministic);
    for (path, entry) in tree {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match entry.mode {
            FileMode::Symlink => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                let target = String::from_utf8_lossy(&entry.content).into_owned();
                builder.append_link(&mut header, path, target)?;
            }
            mode => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if mode == FileMode::Executable {
                    0o755
                } else {
                    0o644
                });
                header.set_size(entry.content.len() as u64);
                builder.append_data(&mut header, path, entry.content.as_slice())?;
            }
        }
    }
    builder.into_inner()?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::FileEntry;
    use std::io::Read;

    #[test]
    fn archive_holds_every_file_with_its_mode() {
        let mut tree = FileTree::new();
        tree.insert(
            "run.sh".into(),
            FileEntry {
                content: b"#!/bin/sh\n".to_vec(),
                mode: FileMode::Executable,
            },
        );
        tree.insert(
            "dir/a.txt".into(),
            FileEntry {
                content: b"a".to_vec(),
                mode: FileMode::Regular,
            },
        );
        let bytes = tar_gz(&tree).expect("archive");
        assert_eq!(bytes, tar_gz(&tree).expect("archive"), "deterministic");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").display().to_string();
            let mode = entry.header().mode().expect("mode");
            let mut content = Vec::new();
            entry.read_to_end(&mut content).expect("read");
            seen.push((path, mode, content));
        }
        assert_eq!(seen[0], ("dir/a.txt".to_string(), 0o644, b"a".to_vec()));
        assert_eq!(
            seen[1],
            ("run.sh".to_string(), 0o755, b"#!/bin/sh\n".to_vec())
        );
    }
}
