//! Line-level edit scripts (the input of unified diff hunks).
//!
//! Common prefix/suffix are trimmed first; the middle uses an LCS table.
//! Generated files are small, and huge middles fall back to
//! "delete all, insert all", which is still a correct patch.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equal,
    Delete,
    Insert,
}

/// Largest LCS table (cells) computed before falling back to replace-all.
const MAX_CELLS: usize = 4_000_000;

/// One op per line turning `old` into `new`; deletions precede insertions
/// inside every changed run, as in git's output.
pub fn diff_lines(old: &[&str], new: &[&str]) -> Vec<Op> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let a = &old[prefix..old.len() - suffix];
    let b = &new[prefix..new.len() - suffix];

    let mut ops = vec![Op::Equal; prefix];
    ops.extend(middle_ops(a, b));
    ops.extend(std::iter::repeat_n(Op::Equal, suffix));
    deletes_first(&mut ops);
    ops
}

fn middle_ops(a: &[&str], b: &[&str]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 || n.saturating_mul(m) > MAX_CELLS {
        let mut ops = vec![Op::Delete; n];
        ops.extend(std::iter::repeat_n(Op::Insert, m));
        return ops;
    }
    // lcs[i * (m + 1) + j] = LCS length of a[i..] and b[j..].
    let width = m + 1;
    let mut lcs = vec![0u32; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i * width + j] = if a[i] == b[j] {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }
    let mut ops = Vec::with_capacity(n + m);
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            ops.push(Op::Equal);
            i += 1;
            j += 1;
        } else if lcs[(i + 1) * width + j] >= lcs[i * width + j + 1] {
            ops.push(Op::Delete);
            i += 1;
        } else {
            ops.push(Op::Insert);
            j += 1;
        }
    }
    ops.extend(std::iter::repeat_n(Op::Delete, n - i));
    ops.extend(std::iter::repeat_n(Op::Insert, m - j));
    ops
}

/// Reorders each run of changes to "all deletions, then all insertions";
/// the run still covers the same consecutive lines on both sides.
fn deletes_first(ops: &mut [Op]) {
    let mut start = 0;
    while start < ops.len() {
        if ops[start] == Op::Equal {
            start += 1;
            continue;
        }
        let end = ops[start..]
            .iter()
            .position(|op| *op == Op::Equal)
            .map_or(ops.len(), |p| start + p);
        let deletes = ops[start..end]
            .iter()
            .filter(|op| **op == Op::Delete)
            .count();
        for (k, op) in ops[start..end].iter_mut().enumerate() {
            *op = if k < deletes { Op::Delete } else { Op::Insert };
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays ops and checks they really turn `old` into `new`.
    fn replay(old: &[&str], new: &[&str], ops: &[Op]) -> bool {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Equal => {
                    if old.get(i) != new.get(j) {
                        return false;
                    }
                    out.push(old[i]);
                    i += 1;
                    j += 1;
                }
                Op::Delete => i += 1,
                Op::Insert => {
                    out.push(new[j]);
                    j += 1;
                }
            }
        }
        i == old.len() && j == new.len() && out == new
    }

    #[test]
    fn scripts_are_valid_and_minimal_for_simple_cases() {
        let cases: [(&[&str], &[&str], usize); 5] = [
            (&["a", "b", "c"], &["a", "x", "c"], 2),
            (&[], &["a", "b"], 2),
            (&["a", "b"], &[], 2),
            (&["a", "b", "c", "d"], &["a", "c", "d", "e"], 2),
            (&["x", "a", "y", "b"], &["a", "z", "b", "w"], 4),
        ];
        for (old, new, changes) in cases {
            let ops = diff_lines(old, new);
            assert!(replay(old, new, &ops), "{old:?} -> {new:?}: {ops:?}");
            assert_eq!(ops.iter().filter(|o| **o != Op::Equal).count(), changes);
        }
    }

    #[test]
    fn deletions_come_first_in_a_run() {
        let ops = diff_lines(&["a", "b", "c"], &["a", "x", "y", "c"]);
        assert_eq!(
            ops,
            vec![Op::Equal, Op::Delete, Op::Insert, Op::Insert, Op::Equal]
        );
    }
}
