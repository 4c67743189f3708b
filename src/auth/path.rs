//! The path the allow-list judges: percent-decoded, `//` collapsed, `.` and `..` resolved, so
//! that `//apps` or `/health/../apps` cannot pass for a public path.

/// Normalises a request path for the public-path check. `..` never climbs above the root.
pub(crate) fn normalize_request_path(raw: &str) -> String {
    let decoded = percent_decode(raw);
    let mut parts: Vec<&str> = Vec::new();
    for part in decoded.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    let mut path = format!("/{}", parts.join("/"));
    // `/docs/` and `/docs` are the same for the allow-list, but `/` must stay `/`.
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    if trailing && !parts.is_empty() {
        path.push('/');
    }
    path
}

/// `%XX` to its byte; malformed escapes stay as they are. Invalid UTF-8 is replaced, which can
/// only make a path less likely to match a public prefix.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::normalize_request_path as n;

    #[test]
    fn collapses_resolves_and_decodes() {
        assert_eq!(n("/"), "/");
        assert_eq!(n("//apps"), "/apps");
        assert_eq!(n("/health/../apps"), "/apps");
        assert_eq!(n("/./health"), "/health");
        assert_eq!(n("/../../apps"), "/apps");
        assert_eq!(n("/%2e%2e/apps"), "/apps");
        assert_eq!(n("/health%2F..%2Fapps"), "/apps");
        assert_eq!(n("/files/blobs/ab/cd"), "/files/blobs/ab/cd");
        assert_eq!(n("/preview/x/a%20b.html"), "/preview/x/a b.html");
        assert_eq!(n("/docs/"), "/docs/");
        assert_eq!(n("/100%"), "/100%");
        assert_eq!(n("/%zz"), "/%zz");
    }
}
