//! Hand-written cases: offsets, failures, modes, names, unsafe paths.

use agentgate::files::{FileEntry, FileMode, FileTree};

use super::oracle::{Case, Expect};

pub(crate) fn files(entries: &[(&str, &str)]) -> FileTree {
    entries
        .iter()
        .map(|(p, c)| {
            (
                p.to_string(),
                FileEntry {
                    content: c.as_bytes().to_vec(),
                    mode: FileMode::Regular,
                },
            )
        })
        .collect()
}

pub(crate) fn with(mut tree: FileTree, path: &str, content: &str, mode: FileMode) -> FileTree {
    tree.insert(
        path.to_string(),
        FileEntry {
            content: content.as_bytes().to_vec(),
            mode,
        },
    );
    tree
}

pub(crate) fn edge(name: &str, base: FileTree, diff: &str, expect: Expect) -> Case {
    Case {
        name: format!("edge {name}"),
        seed: None,
        base,
        diff: diff.as_bytes().to_vec(),
        expect,
    }
}

pub(crate) const SAME: Expect = Expect::SameAsGit;
pub(crate) const UNSAFE: Expect = Expect::Reject("unsafe_path");

pub(crate) fn edge_cases() -> Vec<Case> {
    let abc = files(&[("f.txt", "a\nb\nc\nd\ne\n")]);
    let long = files(&[("f.txt", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n")]);
    let repeated = files(&[("f.txt", "x\ny\nz\nx\ny\nz\nx\ny\nz\n")]);
    let modify = |name: &str| {
        format!("diff --git a/{name} b/{name}\n--- a/{name}\n+++ b/{name}\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n")
    };
    vec![
        edge("modify", abc.clone(), &modify("f.txt"), SAME),
        edge("wrong context", files(&[("f.txt", "a\nb\nX\nd\ne\n")]), &modify("f.txt"), SAME),
        edge(
            "offset forward",
            long.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -2,3 +2,3 @@\n 7\n-8\n+eight\n 9\n",
            SAME,
        ),
        edge(
            "offset backward",
            long.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -9,3 +9,3 @@\n 3\n-4\n+four\n 5\n",
            SAME,
        ),
        edge(
            "ambiguous repeated context picks nearest",
            repeated.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -5,2 +5,2 @@\n y\n-z\n+Z\n x\n",
            SAME,
        ),
        edge(
            "hunk stated past the end",
            long.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -90,3 +90,3 @@\n 5\n-6\n+six\n 7\n",
            SAME,
        ),
        edge(
            "second hunk fails so nothing applies",
            long.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -2,3 +2,3 @@\n 2\n-3\n+three\n 4\n@@ -8,3 +8,3 @@\n 8\n-NOPE\n+nine\n 10\n",
            SAME,
        ),
        edge(
            "second file fails so nothing applies",
            with(abc.clone(), "g.txt", "1\n2\n", FileMode::Regular),
            &(modify("f.txt") + "diff --git a/g.txt b/g.txt\n--- a/g.txt\n+++ b/g.txt\n@@ -1,2 +1,2 @@\n-9\n+1\n 2\n"),
            SAME,
        ),
        edge(
            "delete missing file",
            abc.clone(),
            "diff --git a/nope.txt b/nope.txt\ndeleted file mode 100644\nindex 1234567..0000000\n--- a/nope.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n",
            SAME,
        ),
        edge("modify missing file", FileTree::new(), &modify("f.txt"), SAME),
        edge(
            "create existing file",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\nnew file mode 100644\n--- /dev/null\n+++ b/f.txt\n@@ -0,0 +1 @@\n+new\n",
            SAME,
        ),
        edge(
            "delete with mismatching content",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\ndeleted file mode 100644\n--- a/f.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n",
            SAME,
        ),
        edge(
            "delete",
            files(&[("f.txt", "a\nb\n"), ("g", "x\n")]),
            "diff --git a/f.txt b/f.txt\ndeleted file mode 100644\n--- a/f.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n",
            SAME,
        ),
        edge(
            "rename to existing file",
            with(abc.clone(), "g.txt", "g\n", FileMode::Regular),
            "diff --git a/f.txt b/g.txt\nsimilarity index 100%\nrename from f.txt\nrename to g.txt\n",
            SAME,
        ),
        edge(
            "rename and modify",
            abc.clone(),
            "diff --git a/f.txt b/dir/g.txt\nsimilarity index 80%\nrename from f.txt\nrename to dir/g.txt\n--- a/f.txt\n+++ b/dir/g.txt\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n",
            SAME,
        ),
        edge(
            "swap two files by renames",
            files(&[("x", "one\n"), ("y", "two\n")]),
            "diff --git a/x b/y\nrename from x\nrename to y\ndiff --git a/y b/x\nrename from y\nrename to x\n",
            SAME,
        ),
        edge(
            "copy",
            abc.clone(),
            "diff --git a/f.txt b/copy.txt\nsimilarity index 100%\ncopy from f.txt\ncopy to copy.txt\n",
            SAME,
        ),
        edge(
            "mode change only",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\nold mode 100644\nnew mode 100755\n",
            SAME,
        ),
        edge(
            "exec bit with content",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\nold mode 100644\nnew mode 100755\n--- a/f.txt\n+++ b/f.txt\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n",
            SAME,
        ),
        edge(
            "index line mode disagrees with file",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\nindex 1111111..2222222 100755\n--- a/f.txt\n+++ b/f.txt\n@@ -1 +1 @@\n-a\n+A\n b\n",
            SAME,
        ),
        edge(
            "binary files differ without data",
            files(&[("i.png", "\0png")]),
            "diff --git a/i.png b/i.png\nindex 1111111..2222222 100644\nBinary files a/i.png and b/i.png differ\n",
            SAME,
        ),
        edge(
            "remove trailing newline",
            files(&[("f", "a\nb\n")]),
            "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n\\ No newline at end of file\n",
            SAME,
        ),
        edge(
            "add trailing newline",
            files(&[("f", "a\nb")]),
            "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n",
            SAME,
        ),
        edge(
            "no-newline context applied to a file with newline",
            files(&[("f", "a\nb\n")]),
            "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n-a\n+A\n b\n\\ No newline at end of file\n",
            SAME,
        ),
        edge(
            "crlf lines kept byte exact",
            files(&[("w.txt", "one\r\ntwo\r\nthree\r\n")]),
            "--- a/w.txt\n+++ b/w.txt\n@@ -1,3 +1,3 @@\n one\r\n-two\r\n+TWO\r\n three\r\n",
            SAME,
        ),
        edge(
            "crlf diff against lf file",
            files(&[("w.txt", "one\ntwo\nthree\n")]),
            "--- a/w.txt\r\n+++ b/w.txt\r\n@@ -1,3 +1,3 @@\r\n one\r\n-two\r\n+TWO\r\n three\r\n",
            SAME,
        ),
        edge(
            "plain unified diff creating a file",
            FileTree::new(),
            "--- /dev/null\n+++ b/src/new.rs\n@@ -0,0 +1,2 @@\n+fn main() {}\n+// end\n",
            SAME,
        ),
        edge(
            "plain unified diff with timestamps",
            abc.clone(),
            "--- a/f.txt\t2024-05-01 10:00:00.000000000 +0200\n+++ b/f.txt\t2024-05-01 10:05:00.000000000 +0200\n@@ -1,2 +1,2 @@\n-a\n+A\n b\n",
            SAME,
        ),
        edge(
            "plain unified diff to missing file becomes creation",
            FileTree::new(),
            "--- a/n.txt\n+++ b/n.txt\n@@ -0,0 +1 @@\n+hello\n",
            SAME,
        ),
        edge(
            "garbage around patches",
            abc.clone(),
            &format!("Here is the change:\n\n{}\nThanks!\n", modify("f.txt")),
            SAME,
        ),
        edge(
            "hunk counts larger than the hunk",
            abc.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -2,4 +2,4 @@\n b\n-c\n+C\n d\n",
            SAME,
        ),
        edge(
            "diff without final newline",
            abc.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -1 +1 @@\n-a\n+A",
            SAME,
        ),
        edge("empty diff", abc.clone(), "", SAME),
        edge("note marker", abc.clone(), "# Note: no changes were needed\n", SAME),
        edge(
            "error marker",
            abc.clone(),
            "# ERROR GENERATING DIFF: timeout\n",
            SAME,
        ),
        edge(
            "zero-context hunk in the middle",
            abc.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -3 +3 @@\n-c\n+C\n",
            SAME,
        ),
        edge(
            "empty new file",
            FileTree::new(),
            "diff --git a/empty b/empty\nnew file mode 100644\nindex 0000000..e69de29\n",
            SAME,
        ),
        edge(
            "delete empty file",
            files(&[("empty", ""), ("keep", "k\n")]),
            "diff --git a/empty b/empty\ndeleted file mode 100644\nindex e69de29..0000000\n",
            SAME,
        ),
        edge(
            "delete non-empty file without hunks",
            files(&[("full", "x\n")]),
            "diff --git a/full b/full\ndeleted file mode 100644\nindex e69de29..0000000\n",
            SAME,
        ),
        edge(
            "quoted names with tab, quote and octal utf-8",
            FileTree::new(),
            "diff --git \"a/with \\\"quote\\\" and\\ttab.txt\" \"b/with \\\"quote\\\" and\\ttab.txt\"\nnew file mode 100644\n--- /dev/null\n+++ \"b/with \\\"quote\\\" and\\ttab.txt\"\n@@ -0,0 +1 @@\n+q\ndiff --git \"a/caf\\303\\251.txt\" \"b/caf\\303\\251.txt\"\nnew file mode 100755\n--- /dev/null\n+++ \"b/caf\\303\\251.txt\"\n@@ -0,0 +1 @@\n+c\n",
            SAME,
        ),
        edge(
            "spaces in names with rename",
            files(&[("my dir/old name.txt", "1\n2\n")]),
            "diff --git a/my dir/old name.txt b/my dir/new name.txt\nsimilarity index 60%\nrename from my dir/old name.txt\nrename to my dir/new name.txt\n--- a/my dir/old name.txt\n+++ b/my dir/new name.txt\n@@ -1,2 +1,2 @@\n 1\n-2\n+two\n",
            SAME,
        ),
        edge(
            "mode change on a name with spaces",
            files(&[("my dir/run me.sh", "echo\n")]),
            "diff --git a/my dir/run me.sh b/my dir/run me.sh\nold mode 100644\nnew mode 100755\n",
            SAME,
        ),
        edge(
            "inner a and b directories are kept",
            files(&[("lib/a/b.txt", "x\n"), ("a/b/c.txt", "y\n")]),
            "diff --git a/lib/a/b.txt b/lib/a/b.txt\n--- a/lib/a/b.txt\n+++ b/lib/a/b.txt\n@@ -1 +1 @@\n-x\n+X\ndiff --git a/a/b/c.txt b/a/b/c.txt\n--- a/a/b/c.txt\n+++ b/a/b/c.txt\n@@ -1 +1 @@\n-y\n+Y\n",
            SAME,
        ),
        edge(
            "file where a directory is needed",
            files(&[("a", "file\n")]),
            "diff --git a/a/b b/a/b\nnew file mode 100644\n--- /dev/null\n+++ b/a/b\n@@ -0,0 +1 @@\n+x\n",
            SAME,
        ),
        edge(
            "directory where a file is needed",
            files(&[("d/x", "file\n")]),
            "diff --git a/d b/d\nnew file mode 100644\n--- /dev/null\n+++ b/d\n@@ -0,0 +1 @@\n+x\n",
            SAME,
        ),
        edge(
            "replace file by directory in one patch",
            files(&[("a", "file\n")]),
            "diff --git a/a b/a\ndeleted file mode 100644\n--- a/a\n+++ /dev/null\n@@ -1 +0,0 @@\n-file\ndiff --git a/a/b b/a/b\nnew file mode 100644\n--- /dev/null\n+++ b/a/b\n@@ -0,0 +1 @@\n+x\n",
            SAME,
        ),
        edge(
            "file becomes symlink",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\ndeleted file mode 100644\n--- a/f.txt\n+++ /dev/null\n@@ -1,5 +0,0 @@\n-a\n-b\n-c\n-d\n-e\ndiff --git a/f.txt b/f.txt\nnew file mode 120000\n--- /dev/null\n+++ b/f.txt\n@@ -0,0 +1 @@\n+other\n\\ No newline at end of file\n",
            SAME,
        ),
        edge(
            "type change in one patch is refused",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\nold mode 100644\nnew mode 120000\n",
            SAME,
        ),
        edge(
            "write through a symlinked directory",
            with(files(&[("d/x", "1\n")]), "l", "d", FileMode::Symlink),
            "diff --git a/l/x b/l/x\n--- a/l/x\n+++ b/l/x\n@@ -1 +1 @@\n-1\n+2\n",
            SAME,
        ),
        edge(
            "create beside a new symlink",
            files(&[("d/x", "1\n")]),
            "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+d\n\\ No newline at end of file\ndiff --git a/l/y b/l/y\nnew file mode 100644\n--- /dev/null\n+++ b/l/y\n@@ -0,0 +1 @@\n+y\n",
            SAME,
        ),
        edge(
            "same file patched twice",
            abc.clone(),
            "--- a/f.txt\n+++ b/f.txt\n@@ -1,2 +1,2 @@\n-a\n+A\n b\n--- a/f.txt\n+++ b/f.txt\n@@ -1,2 +1,2 @@\n-A\n+AA\n b\n",
            SAME,
        ),
        edge(
            "delete then recreate",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\ndeleted file mode 100644\n--- a/f.txt\n+++ /dev/null\n@@ -1,5 +0,0 @@\n-a\n-b\n-c\n-d\n-e\ndiff --git a/f.txt b/f.txt\nnew file mode 100755\n--- /dev/null\n+++ b/f.txt\n@@ -0,0 +1 @@\n+fresh\n",
            SAME,
        ),
        edge(
            "patch a deleted file",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\ndeleted file mode 100644\n--- a/f.txt\n+++ /dev/null\n@@ -1,5 +0,0 @@\n-a\n-b\n-c\n-d\n-e\n--- a/f.txt\n+++ b/f.txt\n@@ -1 +1 @@\n-a\n+b\n",
            SAME,
        ),
        edge(
            "blank context line without a space",
            files(&[("f", "a\n\nb\n")]),
            "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n-a\n+A\n\n b\n",
            SAME,
        ),
        edge(
            "fragment without header",
            abc.clone(),
            "@@ -1 +1 @@\n-a\n+A\n",
            SAME,
        ),
        edge(
            "inconsistent header lines",
            abc.clone(),
            "diff --git a/f.txt b/f.txt\nnew file mode 100644\ndeleted file mode 100644\n",
            SAME,
        ),
        edge(
            "dot component in a name",
            FileTree::new(),
            "diff --git a/./x b/./x\nnew file mode 100644\n--- /dev/null\n+++ b/./x\n@@ -0,0 +1 @@\n+x\n",
            SAME,
        ),
        edge(
            "repeated slashes are squashed",
            files(&[("d/x", "1\n")]),
            "--- a/d//x\n+++ b/d//x\n@@ -1 +1 @@\n-1\n+2\n",
            SAME,
        ),
        // Unsafe paths: rejected whatever git does.
        edge(
            "traversal in new file",
            FileTree::new(),
            "diff --git a/../x b/../x\nnew file mode 100644\n--- /dev/null\n+++ b/../x\n@@ -0,0 +1 @@\n+x\n",
            UNSAFE,
        ),
        edge(
            "traversal inside path",
            FileTree::new(),
            "--- /dev/null\n+++ b/a/../../x\n@@ -0,0 +1 @@\n+x\n",
            UNSAFE,
        ),
        edge(
            "deep traversal",
            FileTree::new(),
            "--- /dev/null\n+++ b/../../../../tmp/pwned\n@@ -0,0 +1 @@\n+x\n",
            UNSAFE,
        ),
        edge(
            "absolute path",
            FileTree::new(),
            "--- /dev/null\n+++ /etc/passwd\n@@ -0,0 +1 @@\n+root::0:0::/:/bin/sh\n",
            UNSAFE,
        ),
        edge(
            "git config",
            FileTree::new(),
            "diff --git a/.git/config b/.git/config\nnew file mode 100644\n--- /dev/null\n+++ b/.git/config\n@@ -0,0 +1 @@\n+[core]\n",
            UNSAFE,
        ),
        edge(
            "nested git hooks",
            FileTree::new(),
            "diff --git a/x/.git/hooks/y b/x/.git/hooks/y\nnew file mode 100755\n--- /dev/null\n+++ b/x/.git/hooks/y\n@@ -0,0 +1 @@\n+boom\n",
            UNSAFE,
        ),
        edge(
            "rename out of the tree",
            abc.clone(),
            "diff --git a/f.txt b/../f.txt\nrename from f.txt\nrename to ../f.txt\n",
            UNSAFE,
        ),
        edge(
            "copy from outside the tree",
            FileTree::new(),
            "diff --git a/../../etc/passwd b/p\ncopy from ../../etc/passwd\ncopy to p\n",
            UNSAFE,
        ),
        edge(
            "nul byte in quoted name",
            FileTree::new(),
            "--- /dev/null\n+++ \"b/foo\\000bar\"\n@@ -0,0 +1 @@\n+x\n",
            UNSAFE,
        ),
        edge(
            "symlink out of the tree",
            FileTree::new(),
            "diff --git a/up b/up\nnew file mode 120000\n--- /dev/null\n+++ b/up\n@@ -0,0 +1 @@\n+../../etc\n\\ No newline at end of file\n",
            UNSAFE,
        ),
        edge(
            "absolute symlink",
            FileTree::new(),
            "diff --git a/abs b/abs\nnew file mode 120000\n--- /dev/null\n+++ b/abs\n@@ -0,0 +1 @@\n+/etc/passwd\n\\ No newline at end of file\n",
            UNSAFE,
        ),
        edge(
            "symlink retargeted outside",
            with(FileTree::new(), "l", "inside", FileMode::Symlink),
            "diff --git a/l b/l\n--- a/l\n+++ b/l\n@@ -1 +1 @@\n-inside\n\\ No newline at end of file\n+../outside\n\\ No newline at end of file\n",
            UNSAFE,
        ),
    ]
}
