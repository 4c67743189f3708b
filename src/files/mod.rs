//! An app's files over time: manifests, the local blob cache, archives, versions and the diff
//! sink that turns agent diffs into versions.
pub mod archive;
pub mod blob_cache;
pub mod manifest;
pub mod mime;
pub mod sink;
pub mod versions;

pub use blob_cache::BlobCache;
pub use manifest::{Manifest, ManifestEntry};
pub use sink::{VersionHook, WorkspaceSink};
pub use versions::FileVersions;
