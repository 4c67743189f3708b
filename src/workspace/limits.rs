//! How many bytes one patch set may make. Binary hunks are zlib data that
//! inflates ~1000:1, and one 8-byte delta command copies up to 16 MB, so a
//! diff of a few hundred KB could otherwise ask for tens of GB. Every byte a
//! patch set materialises is charged to one [`Budget`] before it is
//! allocated: inflated binary hunks (forward and reverse), delta results and
//! the new content of every text patch (a copy, or another patch to a path
//! already patched, duplicates a whole file).

/// Size limits for [`apply_patch_set_with_limits`](super::apply_patch_set_with_limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyLimits {
    /// Largest file one binary hunk may produce, inflated or by delta.
    pub max_binary_file_bytes: u64,
    /// Most bytes the whole patch set may produce.
    pub max_patch_set_bytes: u64,
}

impl ApplyLimits {
    /// 64 MiB: far above any asset a web app ships, far below what hurts.
    pub const DEFAULT_MAX_BINARY_FILE_BYTES: u64 = 64 << 20;
    /// 256 MiB: several maximal binary files, or a rewrite of a large app.
    pub const DEFAULT_MAX_PATCH_SET_BYTES: u64 = 256 << 20;
}

impl Default for ApplyLimits {
    fn default() -> Self {
        ApplyLimits {
            max_binary_file_bytes: Self::DEFAULT_MAX_BINARY_FILE_BYTES,
            max_patch_set_bytes: Self::DEFAULT_MAX_PATCH_SET_BYTES,
        }
    }
}

/// What one patch set has produced so far, against its [`ApplyLimits`].
#[derive(Debug)]
pub(crate) struct Budget {
    limits: ApplyLimits,
    used: u64,
}

impl Budget {
    pub(crate) fn new(limits: ApplyLimits) -> Self {
        Budget { limits, used: 0 }
    }

    fn remaining(&self) -> u64 {
        self.limits.max_patch_set_bytes.saturating_sub(self.used)
    }

    /// Why `bytes` more would be too many for the patch set, if they would.
    pub(crate) fn refuse(&self, bytes: u64) -> Option<String> {
        (bytes > self.remaining()).then(|| {
            format!(
                "the diff would produce more than {} of file content (the limit per diff)",
                size(self.limits.max_patch_set_bytes)
            )
        })
    }

    /// Charges `bytes` of content, or says why they are refused.
    pub(crate) fn charge(&mut self, bytes: u64) -> Result<(), String> {
        match self.refuse(bytes) {
            Some(reason) => Err(reason),
            None => {
                self.used += bytes;
                Ok(())
            }
        }
    }

    /// Charges one binary hunk's claimed output, checking the per-file
    /// limit first; call it before allocating anything of that size.
    pub(crate) fn charge_binary(&mut self, bytes: u64) -> Result<(), String> {
        let max = self.limits.max_binary_file_bytes;
        if bytes > max {
            return Err(format!(
                "binary patch would produce {bytes} bytes, over the limit of {} per file",
                size(max)
            ));
        }
        self.charge(bytes)
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(ApplyLimits::default())
    }
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_until_the_patch_set_limit() {
        let mut budget = Budget::new(ApplyLimits {
            max_binary_file_bytes: 10,
            max_patch_set_bytes: 25,
        });
        assert!(budget.charge_binary(10).is_ok());
        assert!(budget
            .charge_binary(11)
            .unwrap_err()
            .contains("over the limit of 10 bytes per file"));
        assert!(budget.charge(15).is_ok());
        assert!(budget.refuse(0).is_none());
        let err = budget.charge_binary(1).unwrap_err();
        assert!(err.contains("more than 25 bytes"), "{err}");
        assert_eq!(budget.used, 25, "a refused charge is not counted");
    }

    #[test]
    fn default_limits_read_in_mib() {
        let budget = Budget::default();
        let err = budget.refuse(u64::MAX).unwrap();
        assert!(err.contains("256 MiB"), "{err}");
    }
}
