//! Git blob ids (SHA-1 of `blob <len>\0<content>`) for `index` diff lines.
use sha1::{Digest, Sha1};

/// The full 40-hex-digit git blob id of `content`.
pub fn blob_id(content: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", content.len()).as_bytes());
    hasher.update(content);
    hex::encode(hasher.finalize())
}

/// The 7-digit abbreviation git prints in `index` lines.
pub fn short_blob_id(content: &[u8]) -> String {
    let mut id = blob_id(content);
    id.truncate(7);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_git_blob_ids() {
        // `git hash-object` of an empty file and of "hello world\n".
        assert_eq!(blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
        assert_eq!(
            blob_id(b"hello world\n"),
            "3b18e512dba79e4c8300dd08aeb37f8e728b8dad"
        );
        assert_eq!(short_blob_id(b""), "e69de29");
    }

    #[test]
    fn matches_git_hash_object_across_block_sizes() {
        let dir = tempfile::tempdir().unwrap();
        for len in [55usize, 56, 63, 64, 65, 119, 1000] {
            let content: Vec<u8> = (0..len).map(|i| b"abcdefg\n"[i % 8]).collect();
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &content).unwrap();
            let out = std::process::Command::new("git")
                .arg("hash-object")
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success());
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                blob_id(&content),
                "len {len}"
            );
        }
    }
}
