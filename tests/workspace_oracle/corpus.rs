//! Seeded random trees and edits, turned into diffs by `git diff`.

use std::sync::OnceLock;

use agentgate::files::{FileEntry, FileMode, FileTree};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::git::git_diff;
use super::oracle::{Case, Expect};
use super::{base_seed, generated_count};

pub(crate) const DIRS: &[&str] = &[
    "",
    "",
    "src/",
    "src/util/",
    "frontend/",
    "dir with space/",
    "unicodé/",
    "lib/a/",
    "a/",
    "b/",
    "qu\"ote dir/",
    "deep/er/path/",
];
pub(crate) const STEMS: &[&str] = &[
    "main",
    "app",
    "README",
    "notes",
    "file name",
    "tab\tname",
    "qu\"ote",
    "café",
    "файл",
    "index",
    "b",
    "a",
    "x y z",
    "run",
];
pub(crate) const EXTS: &[&str] = &[
    ".rs", ".js", ".md", ".txt", "", ".py", ".bin", ".png", ".sh",
];
pub(crate) const WORDS: &[&str] = &[
    "let", "x", "=", "fn", "return", "{", "}", "foo", "bar", "baz", "// note", "if", "0", "1",
    "\"s\"", "é", "日本",
];

pub(crate) fn is_binary_path(path: &str) -> bool {
    path.ends_with(".bin") || path.ends_with(".png")
}

pub(crate) fn random_path(rng: &mut StdRng) -> String {
    format!(
        "{}{}{}",
        DIRS.choose(rng).unwrap(),
        STEMS.choose(rng).unwrap(),
        EXTS.choose(rng).unwrap()
    )
}

pub(crate) fn can_add(tree: &FileTree, path: &str) -> bool {
    if tree.contains_key(path) {
        return false;
    }
    if path
        .match_indices('/')
        .any(|(i, _)| tree.contains_key(&path[..i]))
    {
        return false;
    }
    let dir = format!("{path}/");
    !tree
        .range(dir.clone()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(&dir))
}

pub(crate) fn random_line(rng: &mut StdRng) -> String {
    let indent = ["", "", "    ", "\t"].choose(rng).unwrap().to_string();
    let words: Vec<&str> = (0..rng.gen_range(0..4))
        .map(|_| *WORDS.choose(rng).unwrap())
        .collect();
    indent + &words.join(" ")
}

pub(crate) fn random_text(rng: &mut StdRng) -> Vec<u8> {
    let crlf = rng.gen_bool(0.15);
    let mut out = String::new();
    for _ in 0..rng.gen_range(0..40) {
        out.push_str(&random_line(rng));
        out.push_str(if crlf && rng.gen_bool(0.6) {
            "\r\n"
        } else {
            "\n"
        });
    }
    if !out.is_empty() && rng.gen_bool(0.2) {
        out.pop();
    }
    out.into_bytes()
}

pub(crate) fn random_binary(rng: &mut StdRng) -> Vec<u8> {
    let len = if rng.gen_bool(0.2) {
        rng.gen_range(4000..20000)
    } else {
        rng.gen_range(1..1500)
    };
    let mut data: Vec<u8> = (0..len).map(|_| rng.gen_range(0..8u8) * 31).collect();
    data[0] = 0;
    data
}

pub(crate) fn split_lines(content: &[u8]) -> Vec<Vec<u8>> {
    content
        .split_inclusive(|&c| c == b'\n')
        .map(|l| l.to_vec())
        .collect()
}

pub(crate) fn mutate_text(rng: &mut StdRng, content: &[u8]) -> Vec<u8> {
    let mut lines = split_lines(content);
    for _ in 0..rng.gen_range(1..4) {
        let at = rng.gen_range(0..=lines.len());
        match rng.gen_range(0..5) {
            0 => {
                for _ in 0..rng.gen_range(1..4) {
                    lines.insert(at, format!("{}\n", random_line(rng)).into_bytes());
                }
            }
            1 if !lines.is_empty() => {
                let at = at.min(lines.len() - 1);
                let n = rng.gen_range(1..4).min(lines.len() - at);
                lines.drain(at..at + n);
            }
            2 if !lines.is_empty() => {
                let at = at.min(lines.len() - 1);
                lines[at] = format!("{}\n", random_line(rng)).into_bytes();
            }
            3 => {
                if let Some(last) = lines.last_mut() {
                    if last.ends_with(b"\n") {
                        last.pop();
                    } else {
                        last.push(b'\n');
                    }
                }
            }
            _ if !lines.is_empty() => {
                let at = at.min(lines.len() - 1);
                let line = &mut lines[at];
                if line.ends_with(b"\r\n") {
                    line.remove(line.len() - 2);
                } else if line.ends_with(b"\n") {
                    line.insert(line.len() - 1, b'\r');
                }
            }
            _ => {}
        }
    }
    // Only the last line may lack its newline.
    let n = lines.len();
    for line in lines.iter_mut().take(n.saturating_sub(1)) {
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
    }
    lines.concat()
}

pub(crate) fn mutate_binary(rng: &mut StdRng, content: &[u8]) -> Vec<u8> {
    if content.is_empty() {
        return random_binary(rng);
    }
    let mut data = content.to_vec();
    match rng.gen_range(0..4) {
        0 => {
            for _ in 0..rng.gen_range(1..10) {
                let at = rng.gen_range(0..data.len());
                data[at] = rng.gen();
            }
        }
        1 => data.extend((0..rng.gen_range(1..300)).map(|_| rng.gen::<u8>())),
        2 => data.truncate(rng.gen_range(1..=data.len())),
        _ => data = random_binary(rng),
    }
    data[0] = 0;
    data
}

pub(crate) fn relative_target(link: &str, target: &str) -> String {
    let ups = link.matches('/').count();
    format!("{}{target}", "../".repeat(ups))
}

pub(crate) fn random_tree(rng: &mut StdRng) -> FileTree {
    let mut tree = FileTree::new();
    for _ in 0..rng.gen_range(1..9) {
        let path = random_path(rng);
        if !can_add(&tree, &path) {
            continue;
        }
        let entry = if is_binary_path(&path) {
            FileEntry {
                content: random_binary(rng),
                mode: FileMode::Regular,
            }
        } else {
            let mode = if rng.gen_bool(0.15) {
                FileMode::Executable
            } else {
                FileMode::Regular
            };
            FileEntry {
                content: random_text(rng),
                mode,
            }
        };
        tree.insert(path, entry);
    }
    if rng.gen_bool(0.15) {
        add_symlink(rng, &mut tree);
    }
    tree
}

pub(crate) fn add_symlink(rng: &mut StdRng, tree: &mut FileTree) {
    let link = random_path(rng);
    if !can_add(tree, &link) {
        return;
    }
    let target = match tree.keys().collect::<Vec<_>>().choose(rng) {
        Some(t) if rng.gen_bool(0.8) => relative_target(&link, t),
        _ => "missing/target.txt".to_string(),
    };
    tree.insert(
        link,
        FileEntry {
            content: target.into_bytes(),
            mode: FileMode::Symlink,
        },
    );
}

pub(crate) fn pick_key(
    rng: &mut StdRng,
    tree: &FileTree,
    want: impl Fn(&FileEntry) -> bool,
) -> Option<String> {
    let keys: Vec<&String> = tree
        .iter()
        .filter(|(_, e)| want(e))
        .map(|(k, _)| k)
        .collect();
    keys.choose(rng).map(|k| k.to_string())
}

pub(crate) fn mutate_tree(rng: &mut StdRng, base: &FileTree) -> FileTree {
    let mut tree = base.clone();
    let regular = |e: &FileEntry| e.mode != FileMode::Symlink;
    for _ in 0..rng.gen_range(1..6) {
        match rng.gen_range(0..11) {
            0..=2 => {
                if let Some(k) = pick_key(rng, &tree, regular) {
                    let e = tree.get_mut(&k).unwrap();
                    e.content = if is_binary_path(&k) {
                        mutate_binary(rng, &e.content)
                    } else {
                        mutate_text(rng, &e.content)
                    };
                }
            }
            3 => {
                if let Some(k) = pick_key(rng, &tree, |_| true) {
                    tree.remove(&k);
                }
            }
            4 => {
                let path = random_path(rng);
                if can_add(&tree, &path) {
                    let content = if is_binary_path(&path) {
                        random_binary(rng)
                    } else {
                        random_text(rng)
                    };
                    tree.insert(
                        path,
                        FileEntry {
                            content,
                            mode: FileMode::Regular,
                        },
                    );
                }
            }
            5 | 6 => {
                // Rename, sometimes with an edit, sometimes as a copy.
                let Some(k) = pick_key(rng, &tree, regular) else {
                    continue;
                };
                let path = random_path(rng);
                let mut entry = tree[&k].clone();
                if rng.gen_bool(0.7) {
                    tree.remove(&k);
                }
                if !can_add(&tree, &path) {
                    tree.insert(k, entry);
                    continue;
                }
                if rng.gen_bool(0.4) && !is_binary_path(&k) {
                    entry.content = mutate_text(rng, &entry.content);
                }
                tree.insert(path, entry);
            }
            7 => {
                if let Some(k) = pick_key(rng, &tree, regular) {
                    let e = tree.get_mut(&k).unwrap();
                    e.mode = match e.mode {
                        FileMode::Regular => FileMode::Executable,
                        _ => FileMode::Regular,
                    };
                }
            }
            8 => add_symlink(rng, &mut tree),
            9 => {
                // Type change: a file becomes a symlink or the reverse.
                if let Some(k) = pick_key(rng, &tree, |_| true) {
                    let e = tree.get_mut(&k).unwrap();
                    if e.mode == FileMode::Symlink {
                        *e = FileEntry {
                            content: b"was a link\n".to_vec(),
                            mode: FileMode::Regular,
                        };
                    } else {
                        *e = FileEntry {
                            content: b"README.md".to_vec(),
                            mode: FileMode::Symlink,
                        };
                    }
                }
            }
            _ => {
                if let Some(k) = pick_key(rng, &tree, regular) {
                    tree.get_mut(&k).unwrap().content.clear();
                }
            }
        }
    }
    tree
}

/// Shifts a text file the diff touches, so hunks land at an offset or miss.
pub(crate) fn perturb(rng: &mut StdRng, base: &FileTree, diff: &[u8]) -> FileTree {
    let mut tree = base.clone();
    let touched = |k: &str| {
        let needle = format!("a/{k}");
        diff.windows(needle.len()).any(|w| w == needle.as_bytes())
    };
    let candidates: Vec<String> = tree
        .iter()
        .filter(|(k, e)| e.mode != FileMode::Symlink && !is_binary_path(k) && touched(k))
        .map(|(k, _)| k.clone())
        .collect();
    let Some(k) = candidates.choose(rng) else {
        return tree;
    };
    let e = tree.get_mut(k).unwrap();
    let mut lines = split_lines(&e.content);
    match rng.gen_range(0..4) {
        0 => {
            for _ in 0..rng.gen_range(1..6) {
                lines.insert(0, format!("{}\n", random_line(rng)).into_bytes());
            }
        }
        1 if lines.len() > 1 => {
            lines.remove(0);
        }
        2 if !lines.is_empty() => {
            let at = rng.gen_range(0..lines.len());
            let copy = lines[at..(at + 3).min(lines.len())].to_vec();
            let end = lines.len() - usize::from(!lines[lines.len() - 1].ends_with(b"\n"));
            let end = end.max(at);
            lines.splice(end..end, copy.into_iter().filter(|l| l.ends_with(b"\n")));
        }
        _ => {
            let at = rng.gen_range(0..=lines.len());
            let at = at.min(lines.len().saturating_sub(1));
            lines.insert(at, b"inserted line\n".to_vec());
        }
    }
    e.content = lines.concat();
    tree
}

pub(crate) const DIFF_FLAGS: &[&[&str]] = &[
    &[],
    &["-M"],
    &["-M"],
    &["-M", "-C", "-C"],
    &["-U0"],
    &["-U1"],
    &["-U5"],
    &["--no-renames"],
    &["-B", "-M"],
];

pub(crate) fn generated_corpus() -> &'static [Case] {
    static CORPUS: OnceLock<Vec<Case>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let seed = base_seed();
        let make = |i: usize| {
            let case_seed = seed.wrapping_add(i as u64);
            let mut rng = StdRng::seed_from_u64(case_seed);
            let old = random_tree(&mut rng);
            let new = mutate_tree(&mut rng, &old);
            let flags = DIFF_FLAGS.choose(&mut rng).unwrap();
            let diff = git_diff(&old, &new, flags);
            let base = if rng.gen_bool(0.3) {
                perturb(&mut rng, &old, &diff)
            } else {
                old
            };
            Case {
                name: format!("generated-{i} {flags:?}"),
                seed: Some(case_seed),
                base,
                diff,
                expect: if flags.contains(&"-U0") {
                    Expect::SameAsGitOrNoContext
                } else {
                    Expect::SameAsGit
                },
            }
        };
        std::thread::scope(|s| {
            let count = generated_count();
            let half = count / 2;
            let a = s.spawn(move || (0..half).map(make).collect::<Vec<_>>());
            let b = s.spawn(move || (half..count).map(make).collect::<Vec<_>>());
            let mut all = a.join().unwrap();
            all.extend(b.join().unwrap());
            all
        })
    })
}
