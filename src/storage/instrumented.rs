//! Wraps any store to record per-operation counts, errors and latency.
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectStore, SharedStore, StorageError};
use crate::metrics::metrics;

pub struct Instrumented(pub SharedStore);

async fn timed<T>(
    op: &str,
    call: impl std::future::Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    let started = Instant::now();
    let result = call.await;
    metrics().storage_call(op, result.is_ok(), started.elapsed());
    result
}

#[async_trait]
impl ObjectStore for Instrumented {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StorageError> {
        timed("put", self.0.put(key, body, content_type)).await
    }

    async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        timed("exists", self.0.exists(key)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        timed("get", self.0.get(key)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        timed("delete", self.0.delete(key)).await
    }

    async fn presign_get(
        &self,
        key: &str,
        ttl: Duration,
        download_name: Option<&str>,
    ) -> Result<String, StorageError> {
        timed("presign", self.0.presign_get(key, ttl, download_name)).await
    }

    async fn check(&self) -> Result<(), StorageError> {
        timed("check", self.0.check()).await
    }
}
