//! Diffs recorded from the agent (`unifiedDiff` in SSE fixtures).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use agentgate::files::FileTree;

use super::oracle::{Case, Expect};

pub(crate) fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent")
}

/// Decodes the JSON string starting at `s[0] == '"'`.
pub(crate) fn json_string(s: &str) -> Option<String> {
    let mut chars = s.strip_prefix('"')?.chars();
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex = |c: &mut std::str::Chars| -> Option<u32> {
                        u32::from_str_radix(&c.by_ref().take(4).collect::<String>(), 16).ok()
                    };
                    let mut code = hex(&mut chars)?;
                    if (0xd800..0xdc00).contains(&code) {
                        let rest = chars.as_str();
                        let low =
                            u32::from_str_radix(rest.strip_prefix("\\u")?.get(..4)?, 16).ok()?;
                        chars = rest[6..].chars();
                        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                    }
                    out.push(char::from_u32(code)?);
                }
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
}

pub(crate) fn fixture_diffs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("agent fixtures live in tests/fixtures/agent")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension() == Some(OsStr::new("sse")))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let Some(json) = line.strip_prefix("data:") else {
                continue;
            };
            let key = "\"unifiedDiff\":";
            let Some(at) = json.find(key) else {
                continue;
            };
            let value = json[at + key.len()..].trim_start();
            if let Some(diff) = json_string(value) {
                let name = format!("{}:{}", file.file_name().unwrap().to_string_lossy(), n + 1);
                out.push((name, diff));
            }
        }
    }
    out
}

pub(crate) fn fixture_cases() -> Vec<Case> {
    fixture_diffs()
        .into_iter()
        .map(|(name, diff)| Case {
            name: format!("fixture {name}"),
            seed: None,
            base: FileTree::new(),
            diff: diff.into_bytes(),
            expect: Expect::SameAsGit,
        })
        .collect()
}
