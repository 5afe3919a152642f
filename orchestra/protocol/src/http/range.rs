//! `Range` and `If-Range` as RFC 9110 §14 reads them, for one file of a known length.
//!
//! Pure functions, so each rule is tested on its own; [`super::file`] applies them.
//! Choices the RFC leaves to the server: a Range that does not parse, or names another
//! unit, is ignored (the whole file, 200); several satisfiable ranges are answered with the
//! whole file (200) rather than `multipart/byteranges`, which players never ask for.

use std::ops::RangeInclusive;

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAnswer {
    /// Serve the whole file with 200: no Range, an ignored one, or several ranges.
    Whole,
    /// Serve these bytes with 206 and `Content-Range: bytes first-last/len`.
    Part(RangeInclusive<u64>),
    /// 416 with `Content-Range: bytes */len`: no range overlaps the file.
    Unsatisfiable,
}

/// Resolve a `Range` header value against a file of `len` bytes.
pub fn resolve(header: &str, len: u64) -> RangeAnswer {
    let Some((unit, set)) = header.trim().split_once('=') else {
        return RangeAnswer::Whole;
    };
    // Range units are case-insensitive (RFC 9110 §14.1); other units are ignored.
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeAnswer::Whole;
    }
    let mut satisfiable = Vec::new();
    let mut any = false;
    for spec in set.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            // Empty list elements are allowed by the list syntax (RFC 9110 §5.6.1).
            continue;
        }
        any = true;
        let Some(range) = parse_spec(spec) else {
            // One malformed range makes the header invalid: ignore it.
            return RangeAnswer::Whole;
        };
        if let Some(bytes) = range.clamp(len) {
            satisfiable.push(bytes);
        }
    }
    match satisfiable.len() {
        _ if !any => RangeAnswer::Whole,
        0 => RangeAnswer::Unsatisfiable,
        1 => RangeAnswer::Part(satisfiable.remove(0)),
        _ => RangeAnswer::Whole,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-last` or `first-` (last = None).
    From(u64, Option<u64>),
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

fn parse_spec(spec: &str) -> Option<Spec> {
    let (first, last) = spec.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        // Digits only: `parse` alone would take a sign.
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if first.is_empty() {
        return Some(Spec::Suffix(number(last)?));
    }
    let first = number(first)?;
    if last.is_empty() {
        return Some(Spec::From(first, None));
    }
    let last = number(last)?;
    // `last < first` is invalid syntax (RFC 9110 §14.1.1), not merely unsatisfiable.
    (last >= first).then_some(Spec::From(first, Some(last)))
}

impl Spec {
    /// The bytes of a `len`-byte file this range selects, or None when it selects none.
    fn clamp(self, len: u64) -> Option<RangeInclusive<u64>> {
        if len == 0 {
            return None;
        }
        match self {
            Spec::From(first, _) if first >= len => None,
            Spec::From(first, last) => Some(first..=last.map_or(len - 1, |l| l.min(len - 1))),
            Spec::Suffix(0) => None,
            // A suffix longer than the file selects the whole file (RFC 9110 §14.1.2).
            Spec::Suffix(n) => Some(len - n.min(len)..=len - 1),
        }
    }
}

/// Whether an `If-Range` value still names the file: an entity tag must equal the current
/// one by strong comparison (a weak tag never matches), a date must equal Last-Modified
/// exactly (RFC 9110 §13.1.5). No match: the Range is ignored and the whole file sent.
pub fn if_range_matches(value: &str, etag: &str, last_modified: &str) -> bool {
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return !value.starts_with("W/") && value == etag;
    }
    match (
        httpdate::parse_http_date(value),
        httpdate::parse_http_date(last_modified),
    ) {
        (Ok(asked), Ok(current)) => asked == current,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::RangeAnswer::{Part, Unsatisfiable, Whole};
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(resolve("bytes=0-0", 10), Part(0..=0));
        assert_eq!(resolve("bytes=2-5", 10), Part(2..=5));
        assert_eq!(resolve("bytes=2-", 10), Part(2..=9));
        assert_eq!(resolve("bytes=2-999", 10), Part(2..=9));
        assert_eq!(resolve("bytes=-3", 10), Part(7..=9));
        assert_eq!(resolve("BYTES = 1-2", 10), Part(1..=2));
        assert_eq!(resolve("bytes=1-2,", 10), Part(1..=2));
    }

    #[test]
    fn a_suffix_longer_than_the_file_is_the_whole_file() {
        assert_eq!(resolve("bytes=-999999999", 10), Part(0..=9));
        assert_eq!(resolve("bytes=-10", 10), Part(0..=9));
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(resolve("bytes=10-", 10), Unsatisfiable);
        assert_eq!(resolve("bytes=20-30", 10), Unsatisfiable);
        assert_eq!(resolve("bytes=-0", 10), Unsatisfiable);
        assert_eq!(resolve("bytes=0-", 0), Unsatisfiable);
        assert_eq!(resolve("bytes=-5", 0), Unsatisfiable);
        assert_eq!(resolve("bytes=20-30, 40-", 10), Unsatisfiable);
    }

    #[test]
    fn ignored_headers_serve_the_whole_file() {
        for header in [
            "items=0-1",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=1--2",
            "bytes=--2",
            "bytes=1-2-3",
            "bytes=-",
            "bytes=0-1, x",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(resolve(header, 10), Whole, "{header}");
        }
    }

    #[test]
    fn several_ranges_serve_the_whole_file() {
        assert_eq!(resolve("bytes=0-1,4-5", 10), Whole);
        // Only one of them overlaps the file: that one is served.
        assert_eq!(resolve("bytes=0-1,40-50", 10), Part(0..=1));
    }

    #[test]
    fn if_range() {
        let date = "Tue, 01 Dec 2026 10:00:00 GMT";
        assert!(if_range_matches("\"abc\"", "\"abc\"", date));
        assert!(!if_range_matches("\"abd\"", "\"abc\"", date));
        assert!(!if_range_matches("W/\"abc\"", "\"abc\"", date));
        assert!(if_range_matches(date, "\"abc\"", date));
        assert!(!if_range_matches(
            "Tue, 01 Dec 2026 10:00:01 GMT",
            "\"abc\"",
            date
        ));
        assert!(!if_range_matches(
            "Mon, 01 Jan 2001 00:00:00 GMT",
            "\"abc\"",
            date
        ));
        assert!(!if_range_matches("yesterday", "\"abc\"", date));
    }
}
