//! Checks and applies parsed file patches against a base tree, in memory,
//! with the bookkeeping `git apply` uses for multi-file patches: a later
//! patch to a path sees an earlier patch's result, renames and copies read
//! the original tree, and paths freed by a deletion or rename may be reused.

use std::collections::{HashMap, HashSet};

use super::binary::{apply_binary, BinaryError};
use super::error::shown;
use super::image::{apply_hunk, Image};
use super::limits::Budget;
use super::parse::{Body, FilePatch};
use super::paths::normalize_path;
use super::{tree, FileEntry, FileMode, FileTree, PatchError};

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;
const S_IFGITLINK: u32 = 0o160000;
const REGULAR: u32 = 0o100644;

/// A file patch with its names checked and normalised.
struct Patch {
    old_name: Option<String>,
    new_name: Option<String>,
    is_new: i8,
    is_delete: i8,
    is_rename: bool,
    is_copy: bool,
    old_mode: u32,
    new_mode: u32,
    old_id: Vec<u8>,
    new_id: Vec<u8>,
    body: Body,
    result: Vec<u8>,
}

/// What earlier patches in the set did to a path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Holds the result of this patch.
    Patched(usize),
    /// Removed (deleted or renamed away) by an earlier patch.
    WasDeleted,
    /// Will be removed by a later patch, so creating it is fine.
    ToBeDeleted,
}

/// What a path is in the base tree, as `lstat` would say.
enum Stat<'a> {
    Missing,
    /// A leading component is a regular file.
    NotDir,
    /// A leading component is a symlink.
    BeyondSymlink,
    Dir,
    File(&'a FileEntry),
}

fn lstat<'a>(base: &'a FileTree, path: &str) -> Stat<'a> {
    for (i, _) in path.match_indices('/') {
        if let Some(entry) = base.get(&path[..i]) {
            return if entry.mode == FileMode::Symlink {
                Stat::BeyondSymlink
            } else {
                Stat::NotDir
            };
        }
    }
    if let Some(entry) = base.get(path) {
        return Stat::File(entry);
    }
    let dir = format!("{path}/");
    match base.range(dir.clone()..).next() {
        Some((key, _)) if key.starts_with(&dir) => Stat::Dir,
        _ => Stat::Missing,
    }
}

/// Checks names, applies every patch and builds the new tree.
pub(crate) fn apply_patches(
    base: &FileTree,
    diff: &[u8],
    parsed: Vec<FilePatch>,
    budget: &mut Budget,
) -> Result<FileTree, PatchError> {
    let mut patches = parsed
        .into_iter()
        .map(checked_names)
        .collect::<Result<Vec<_>, _>>()?;
    let mut state = State::new(base, &patches, budget);
    for i in 0..patches.len() {
        state.check_patch(&mut patches, i, diff)?;
    }
    let result = write_out(base, patches)?;
    tree::validate(&result)?;
    Ok(result)
}

fn checked_name(raw: Option<Vec<u8>>) -> Result<Option<String>, PatchError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = String::from_utf8(raw).map_err(|e| PatchError::UnsafePath {
        path: shown(e.as_bytes()),
        reason: "not valid UTF-8".into(),
    })?;
    let clean = normalize_path(&text)?;
    // Git refuses `.` components and empty ones; so do we, rather than guess.
    if clean != text {
        return Err(PatchError::UnsafePath {
            path: shown(text.as_bytes()),
            reason: format!(
                "not a canonical path (did you mean {}?)",
                shown(clean.as_bytes())
            ),
        });
    }
    Ok(Some(clean))
}

fn checked_names(p: FilePatch) -> Result<Patch, PatchError> {
    Ok(Patch {
        old_name: checked_name(p.old_name)?,
        new_name: checked_name(p.new_name)?,
        is_new: p.is_new,
        is_delete: p.is_delete,
        is_rename: p.is_rename,
        is_copy: p.is_copy,
        old_mode: p.old_mode,
        new_mode: p.new_mode,
        old_id: p.old_id,
        new_id: p.new_id,
        body: p.body,
        result: Vec::new(),
    })
}

struct State<'a> {
    base: &'a FileTree,
    budget: &'a mut Budget,
    slots: HashMap<String, Slot>,
    kept_symlinks: HashSet<String>,
    removed_symlinks: HashSet<String>,
}

impl<'a> State<'a> {
    fn new(base: &'a FileTree, patches: &[Patch], budget: &'a mut Budget) -> Self {
        let mut state = State {
            base,
            budget,
            slots: HashMap::new(),
            kept_symlinks: HashSet::new(),
            removed_symlinks: HashSet::new(),
        };
        // Symlink bookkeeping uses the modes the headers state, as git does.
        for p in patches {
            if let Some(old) = &p.old_name {
                if p.old_mode & S_IFMT == S_IFLNK && (p.is_rename || p.is_delete != 0) {
                    state.removed_symlinks.insert(old.clone());
                }
            }
            if let Some(new) = &p.new_name {
                if p.new_mode & S_IFMT == S_IFLNK {
                    state.kept_symlinks.insert(new.clone());
                }
            }
        }
        for p in patches {
            if p.new_name.is_none() || p.is_rename {
                if let Some(old) = &p.old_name {
                    state.slots.insert(old.clone(), Slot::ToBeDeleted);
                }
            }
        }
        state
    }

    /// The earlier patch whose result a patch reads, if any; renames and
    /// copies always read the base tree. Errors when the path is gone.
    fn previous(&self, p: &Patch) -> Result<Option<usize>, PatchError> {
        if p.is_copy || p.is_rename {
            return Ok(None);
        }
        let Some(old) = &p.old_name else {
            return Ok(None);
        };
        match self.slots.get(old) {
            Some(Slot::Patched(j)) => Ok(Some(*j)),
            Some(Slot::WasDeleted) => Err(PatchError::FileNotFound {
                path: format!(
                    "{} (already deleted or renamed by this diff)",
                    shown(old.as_bytes())
                ),
            }),
            Some(Slot::ToBeDeleted) | None => Ok(None),
        }
    }

    fn check_preimage(&self, patches: &mut [Patch], i: usize) -> Result<(), PatchError> {
        let Some(old) = patches[i].old_name.clone() else {
            return Ok(());
        };
        let shown_old = shown(old.as_bytes());
        let st_mode = match self.previous(&patches[i])? {
            Some(j) => patches[j].new_mode,
            None => match lstat(self.base, &old) {
                Stat::File(entry) => entry.mode.git_octal(),
                Stat::Missing if patches[i].is_new < 0 => {
                    // A traditional diff against a missing file creates it.
                    let p = &mut patches[i];
                    p.is_new = 1;
                    p.is_delete = 0;
                    p.old_name = None;
                    return Ok(());
                }
                Stat::Missing | Stat::NotDir => {
                    return Err(PatchError::FileNotFound { path: shown_old })
                }
                Stat::BeyondSymlink => {
                    return Err(PatchError::PathConflict {
                        path: shown_old,
                        reason: "is beyond a symbolic link".into(),
                    })
                }
                Stat::Dir => {
                    return Err(PatchError::PathConflict {
                        path: shown_old,
                        reason: "is a directory, not a file".into(),
                    })
                }
            },
        };
        let p = &mut patches[i];
        if p.is_new < 0 {
            p.is_new = 0;
        }
        if p.old_mode == 0 {
            p.old_mode = st_mode;
        }
        if (st_mode ^ p.old_mode) & S_IFMT != 0 {
            return Err(PatchError::Mode {
                path: shown_old,
                reason: format!(
                    "wrong type: the patch expects mode {:o}, the file has {st_mode:o}",
                    p.old_mode
                ),
            });
        }
        if p.new_mode == 0 && p.is_delete == 0 {
            p.new_mode = st_mode;
        }
        Ok(())
    }

    fn check_to_create(&self, new: &str, ok_if_exists: bool) -> Result<(), PatchError> {
        let exists = || PatchError::FileExists {
            path: shown(new.as_bytes()),
        };
        // Stricter than git, which lets the later creation win.
        if let Some(Slot::Patched(_)) = self.slots.get(new) {
            return Err(exists());
        }
        match lstat(self.base, new) {
            Stat::File(_) if !ok_if_exists => Err(exists()),
            _ => Ok(()),
        }
    }

    /// A path written through a symlink could land anywhere.
    fn beyond_symlink(&self, name: &str) -> bool {
        let mut prefixes: Vec<&str> = name.match_indices('/').map(|(i, _)| &name[..i]).collect();
        prefixes.reverse();
        for dir in prefixes {
            if self.kept_symlinks.contains(dir) {
                return true;
            }
            if self.removed_symlinks.contains(dir) {
                continue;
            }
            if self
                .base
                .get(dir)
                .is_some_and(|e| e.mode == FileMode::Symlink)
            {
                return true;
            }
        }
        false
    }

    fn check_patch(
        &mut self,
        patches: &mut [Patch],
        i: usize,
        diff: &[u8],
    ) -> Result<(), PatchError> {
        self.check_preimage(patches, i)?;
        let p = &patches[i];
        if let Some(new) = &p.new_name {
            if p.is_new > 0 || p.is_rename || p.is_copy {
                let ok_if_exists = matches!(
                    self.slots.get(new),
                    Some(Slot::WasDeleted | Slot::ToBeDeleted)
                );
                self.check_to_create(new, ok_if_exists)?;
                let p = &mut patches[i];
                if p.new_mode == 0 {
                    p.new_mode = if p.is_new > 0 { REGULAR } else { p.old_mode };
                }
            }
        }
        let p = &mut patches[i];
        if let (Some(new), Some(_)) = (&p.new_name, &p.old_name) {
            if p.new_mode == 0 {
                p.new_mode = p.old_mode;
            }
            if (p.old_mode ^ p.new_mode) & S_IFMT != 0 {
                return Err(PatchError::Mode {
                    path: shown(new.as_bytes()),
                    reason: format!(
                        "new mode {:o} changes the file type of mode {:o}",
                        p.new_mode, p.old_mode
                    ),
                });
            }
        }
        if p.is_delete == 0 {
            if let Some(new) = &p.new_name {
                if self.beyond_symlink(new) {
                    return Err(PatchError::PathConflict {
                        path: shown(new.as_bytes()),
                        reason: "is beyond a symbolic link".into(),
                    });
                }
            }
        }
        self.apply_data(patches, i, diff)
    }

    /// A copy of the content patch `i` starts from. Copies are checked
    /// against the budget first: patching one path again and again, or
    /// copying one file many times, duplicates it each time.
    fn load_preimage(
        &self,
        patches: &[Patch],
        i: usize,
        path: &str,
    ) -> Result<Vec<u8>, PatchError> {
        let content = if let Some(j) = self.previous(&patches[i])? {
            &patches[j].result
        } else if let Some(old) = &patches[i].old_name {
            match lstat(self.base, old) {
                Stat::File(entry) => &entry.content,
                _ => {
                    return Err(PatchError::FileNotFound {
                        path: shown(old.as_bytes()),
                    })
                }
            }
        } else {
            return Ok(Vec::new());
        };
        if let Some(reason) = self.budget.refuse(content.len() as u64) {
            return Err(PatchError::TooLarge {
                path: path.to_string(),
                reason,
            });
        }
        Ok(content.clone())
    }

    fn apply_data(
        &mut self,
        patches: &mut [Patch],
        i: usize,
        diff: &[u8],
    ) -> Result<(), PatchError> {
        let p = &patches[i];
        let name = p.old_name.as_ref().or(p.new_name.as_ref());
        let path = name.map(|n| shown(n.as_bytes())).unwrap_or_default();
        let old = self.load_preimage(patches, i, &path)?;
        let too_large = |reason| PatchError::TooLarge {
            path: path.clone(),
            reason,
        };
        let p = &mut patches[i];
        // The body is used once; taking it moves a literal's data into the
        // result instead of copying it.
        p.result = match std::mem::replace(&mut p.body, Body::Text(Vec::new())) {
            Body::Binary(hunk) => apply_binary(
                &p.old_id,
                &p.new_id,
                p.old_name.is_some(),
                &old,
                hunk,
                self.budget,
            )
            .map_err(|e| match e {
                BinaryError::Invalid(reason) => PatchError::Binary {
                    path: path.clone(),
                    reason,
                },
                BinaryError::TooLarge(reason) => too_large(reason),
            })?,
            Body::Text(hunks) => {
                let mut img = Image::new(old);
                for (n, hunk) in hunks.iter().enumerate() {
                    apply_hunk(&mut img, diff, hunk).map_err(|reason| PatchError::HunkFailed {
                        path: path.clone(),
                        hunk: n + 1,
                        header: hunk.header.clone(),
                        reason,
                    })?;
                }
                let result = img.into_bytes();
                self.budget.charge(result.len() as u64).map_err(too_large)?;
                result
            }
        };
        if let Some(new) = &p.new_name {
            self.slots.insert(new.clone(), Slot::Patched(i));
        }
        if p.new_name.is_none() || p.is_rename {
            if let Some(old) = &p.old_name {
                self.slots.insert(old.clone(), Slot::WasDeleted);
            }
        }
        if p.is_delete > 0 && !p.result.is_empty() {
            return Err(PatchError::DeleteMismatch { path });
        }
        Ok(())
    }
}

/// Removals first, then creations, like git's two write-out phases.
fn write_out(base: &FileTree, patches: Vec<Patch>) -> Result<FileTree, PatchError> {
    let mut tree = base.clone();
    for p in &patches {
        let keeps_old = p.is_delete <= 0 && (p.is_new > 0 || p.is_copy);
        if !keeps_old {
            if let Some(old) = &p.old_name {
                tree.remove(old);
            }
        }
    }
    for p in patches {
        if p.is_delete > 0 {
            continue;
        }
        let Some(new) = p.new_name else {
            continue;
        };
        let mode = match p.new_mode {
            0 => REGULAR,
            m => m,
        };
        let mode = match mode & S_IFMT {
            // git cannot create a symlink with an empty target (or one cut
            // short by a NUL), even if a later patch would replace it.
            S_IFLNK if p.result.is_empty() || p.result.contains(&0) => {
                return Err(PatchError::UnsafeSymlink {
                    path: shown(new.as_bytes()),
                    target: shown(&p.result),
                    reason: "empty target or NUL byte".into(),
                })
            }
            S_IFLNK => FileMode::Symlink,
            S_IFGITLINK => {
                return Err(PatchError::Mode {
                    path: shown(new.as_bytes()),
                    reason: "submodules (mode 160000) are not supported".into(),
                })
            }
            _ if mode & 0o100 != 0 => FileMode::Executable,
            _ => FileMode::Regular,
        };
        tree.insert(
            new,
            FileEntry {
                content: p.result,
                mode,
            },
        );
    }
    Ok(tree)
}
