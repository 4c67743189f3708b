//! A real S3-compatible server (s3s-fs) in-process, with SigV4 authentication on, so presigned
//! URLs and wrong signatures are checked by a real implementation. It can be stopped and started
//! again on the same port to simulate a storage outage.
use std::net::SocketAddr;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::task::JoinHandle;

pub const ACCESS_KEY: &str = "AKIDAGENTGATETEST";
pub const SECRET_KEY: &str = "agentgate-test-secret-key";
pub const BUCKET: &str = "agentgate-test";

pub struct S3Server {
    pub url: String,
    addr: SocketAddr,
    root: tempfile::TempDir,
    task: Option<JoinHandle<()>>,
}

impl S3Server {
    pub async fn start() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join(BUCKET)).expect("bucket dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut server = Self {
            url: format!("http://{addr}"),
            addr,
            root,
            task: None,
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let fs = s3s_fs::FileSystem::new(self.root.path()).expect("s3s-fs");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        self.task = Some(tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                connections.spawn(async move {
                    let _ = conn.await;
                });
            }
        }));
    }

    /// Storage outage: refuse connections until `resume`.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Serves again on the same port. Another socket may hold the port for a moment (an
    /// outgoing connection can get it as its local port once it is free), so binding is
    /// retried for a while.
    pub async fn resume(&mut self) {
        let mut attempts = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) if attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// TOML for the gateway's `[storage]` section pointing here.
    pub fn config(&self) -> String {
        format!(
            "[storage]\nkind = \"s3\"\nbucket = {BUCKET:?}\nregion = \"us-east-1\"\nendpoint = {:?}\npath_style = true\naccess_key_id = {ACCESS_KEY:?}\nsecret_access_key = {SECRET_KEY:?}\nmax_attempts = 2\nretry_interval_secs = 1\n",
            self.url
        )
    }

    /// Objects stored under a key prefix (s3s-fs keeps them as files).
    pub fn object_count(&self, prefix: &str) -> usize {
        fn walk(dir: &std::path::Path, out: &mut usize) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        walk(&path, out);
                    } else if !entry.file_name().to_string_lossy().starts_with('.') {
                        *out += 1;
                    }
                }
            }
        }
        let mut count = 0;
        walk(&self.root.path().join(BUCKET).join(prefix), &mut count);
        count
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
