//! A gap buffer: a vector with a movable hole, so that replacing a run of
//! elements costs the size of the run plus the distance from the previous
//! edit. Hunks arrive in file order, so patching a file with many hunks
//! stays linear instead of shifting the whole tail on every hunk.

pub(crate) struct GapVec<T> {
    buf: Vec<T>,
    gap_start: usize,
    gap_end: usize,
}

impl<T: Copy + Default> GapVec<T> {
    pub(crate) fn from_vec(buf: Vec<T>) -> Self {
        let len = buf.len();
        GapVec {
            buf,
            gap_start: len,
            gap_end: len,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len() - (self.gap_end - self.gap_start)
    }

    pub(crate) fn get(&self, i: usize) -> T {
        if i < self.gap_start {
            self.buf[i]
        } else {
            self.buf[i + self.gap_end - self.gap_start]
        }
    }

    /// Elements in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.buf[..self.gap_start]
            .iter()
            .chain(&self.buf[self.gap_end..])
    }

    fn move_gap(&mut self, to: usize) {
        if to < self.gap_start {
            let n = self.gap_start - to;
            self.buf.copy_within(to..self.gap_start, self.gap_end - n);
            self.gap_start = to;
            self.gap_end -= n;
        } else if to > self.gap_start {
            let n = to - self.gap_start;
            self.buf
                .copy_within(self.gap_end..self.gap_end + n, self.gap_start);
            self.gap_start = to;
            self.gap_end += n;
        }
    }

    /// Replaces `remove` elements starting at `at` with `items`.
    pub(crate) fn replace(&mut self, at: usize, remove: usize, items: &[T]) {
        self.move_gap(at);
        self.gap_end += remove;
        if self.gap_end - self.gap_start < items.len() {
            // Grow the gap geometrically so insertions stay amortised O(1).
            let extra = items.len().max(self.len());
            let tail = self.buf.split_off(self.gap_end);
            self.buf.truncate(self.gap_start);
            self.buf.resize(self.gap_start + extra, T::default());
            self.gap_end = self.buf.len();
            self.buf.extend_from_slice(&tail);
        }
        self.buf[self.gap_start..self.gap_start + items.len()].copy_from_slice(items);
        self.gap_start += items.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_anywhere_matches_vec_splice() {
        let mut gap = GapVec::from_vec((0..10).collect::<Vec<u32>>());
        let mut plain: Vec<u32> = (0..10).collect();
        let edits: &[(usize, usize, &[u32])] = &[
            (2, 1, &[20, 21, 22]),
            (8, 2, &[]),
            (0, 0, &[30]),
            (5, 3, &[40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50]),
            (1, 0, &[60]),
            (19, 0, &[70]),
        ];
        for &(at, remove, items) in edits {
            gap.replace(at, remove, items);
            plain.splice(at..at + remove, items.iter().copied());
            assert_eq!(gap.iter().copied().collect::<Vec<_>>(), plain);
            assert_eq!(gap.len(), plain.len());
            for (i, v) in plain.iter().enumerate() {
                assert_eq!(gap.get(i), *v);
            }
        }
    }
}
