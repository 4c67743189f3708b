//! Where an app's page lives. Real agents write the page beside a server (`frontend/` +
//! `server/`, `client/` + `server/`), so the preview looks for an `index.html` in a fixed order
//! and serves only that folder: assets resolve relative to it and server code stays private.
use crate::files::{FileMode, FileTree};

/// The folders searched for `index.html`, in order; "" is the app's root. A folder's built
/// output (`frontend/dist/`) comes before its sources, which may need a build step to run.
pub const WEB_ROOTS: &[&str] = &[
    "",
    "frontend/dist",
    "frontend",
    "client/dist",
    "client",
    "public",
    "dist",
];

/// Why a version has no preview: a user reads this as the deployment's error.
pub const NO_WEB_ROOT: &str =
    "no index.html at the root or in frontend/, client/, public/, dist/; \
     this app needs a build step or the koyeb provider";

/// The first folder of [`WEB_ROOTS`] holding a servable `index.html` (links are never served).
pub fn find(files: &FileTree) -> Option<&'static str> {
    WEB_ROOTS.iter().copied().find(|root| {
        files
            .get(&index_path(root))
            .is_some_and(|entry| entry.mode != FileMode::Symlink)
    })
}

/// The files under `root`, with paths relative to it.
pub fn files_under<'a>(
    files: &'a FileTree,
    root: &'a str,
) -> impl Iterator<Item = (&'a str, &'a crate::files::FileEntry)> + 'a {
    files.iter().filter_map(move |(path, entry)| {
        let relative = if root.is_empty() {
            Some(path.as_str())
        } else {
            path.strip_prefix(root)
                .and_then(|rest| rest.strip_prefix('/'))
        };
        relative.map(|r| (r, entry))
    })
}

fn index_path(root: &str) -> String {
    if root.is_empty() {
        "index.html".to_string()
    } else {
        format!("{root}/index.html")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::FileEntry;

    fn tree(paths: &[&str]) -> FileTree {
        paths
            .iter()
            .map(|p| {
                let entry = FileEntry {
                    content: b"x".to_vec(),
                    mode: FileMode::Regular,
                };
                (p.to_string(), entry)
            })
            .collect()
    }

    #[test]
    fn the_root_wins_then_built_output_then_sources() {
        assert_eq!(
            find(&tree(&["index.html", "frontend/index.html"])),
            Some("")
        );
        assert_eq!(
            find(&tree(&["frontend/index.html", "frontend/dist/index.html"])),
            Some("frontend/dist")
        );
        assert_eq!(
            find(&tree(&["client/index.html", "server/index.ts"])),
            Some("client")
        );
        assert_eq!(find(&tree(&["server/app.py", "README.md"])), None);
        // `frontend-old/index.html` is not `frontend/index.html`.
        assert_eq!(find(&tree(&["frontend-old/index.html"])), None);
    }

    #[test]
    fn files_under_a_root_are_relative_to_it() {
        let files = tree(&[
            "client/index.html",
            "client/a/b.js",
            "clientx/c",
            "server/s",
        ]);
        let under: Vec<&str> = files_under(&files, "client").map(|(p, _)| p).collect();
        assert_eq!(under, vec!["a/b.js", "index.html"]);
        assert_eq!(files_under(&files, "").count(), 4);
    }
}
