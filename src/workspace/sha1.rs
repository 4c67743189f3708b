//! SHA-1 of git blob objects, used only to check binary patches against the
//! full object ids in their `index` line, exactly as `git apply` does.
use sha1::{Digest, Sha1};

/// Lower-case hex id of `content` stored as a git blob.
pub fn blob_id_hex(content: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", content.len()).as_bytes());
    hasher.update(content);
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_git_blob_ids() {
        // `git hash-object` of an empty file and of "hello\n".
        assert_eq!(blob_id_hex(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
        assert_eq!(
            blob_id_hex(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // Crosses several block boundaries.
        assert_eq!(
            blob_id_hex(&[b'x'; 1000]),
            "14c7dfdd4258dec5c0e9d2e919bd249bd674be1f"
        );
    }
}
