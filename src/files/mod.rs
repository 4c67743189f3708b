//! An app's files over time: manifests, the local blob cache, archives, versions and the diffs
//! between them.
pub mod archive;
pub mod blob_cache;
pub mod diff;
pub mod manifest;
pub mod mime;
pub mod tree;
pub mod versions;

pub use blob_cache::BlobCache;
pub use manifest::{Manifest, ManifestEntry};
pub use tree::{FileEntry, FileMode, FileTree};
pub use versions::FileVersions;
