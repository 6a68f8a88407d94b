//! Wildcard matching for COPY/ADD sources: Go's `filepath.Match` syntax (`*`, `?`, `[...]`
//! with `^` negation and ranges, `\` escapes), where no wildcard matches a `/`. BuildKit gives
//! `**` no meaning of its own in sources: it is two `*`, matching within one component.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid wildcard pattern {pattern:?}: {reason}")]
pub struct GlobError {
    pub pattern: String,
    pub reason: &'static str,
}

/// True when `pattern` contains an unescaped wildcard character.
pub fn has_wildcard(pattern: &str) -> bool {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Matches `name` against `pattern` as Go's `filepath.Match` does: wildcards never match `/`,
/// so a pattern of several components matches a path of as many.
pub fn match_component(pattern: &str, name: &str) -> Result<bool, GlobError> {
    let err = |reason| GlobError {
        pattern: pattern.to_string(),
        reason,
    };
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with backtracking on the last `*`, linear in practice.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() && n[ni] != '/' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    let (matched, next) = match_class(&p, pi, n.get(ni).copied())
                        .ok_or_else(|| err("unterminated or malformed character class"))?;
                    if matched && ni < n.len() {
                        pi = next;
                        ni += 1;
                        continue;
                    }
                }
                '\\' => {
                    let Some(&lit) = p.get(pi + 1) else {
                        return Err(err("trailing escape character"));
                    };
                    if n.get(ni) == Some(&lit) {
                        pi += 2;
                        ni += 1;
                        continue;
                    }
                }
                c if n.get(ni) == Some(&c) => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return Ok(true);
        }
        // Mismatch: let the last star swallow one more character, or fail.
        match star {
            // `*` never crosses a separator.
            Some((sp, sn)) if sn < n.len() && n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            _ => {
                // Validate the rest of the pattern so malformed patterns always error.
                validate(&p[pi.min(p.len())..]).map_err(err)?;
                return Ok(false);
            }
        }
    }
}

fn validate(rest: &[char]) -> Result<(), &'static str> {
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            '\\' if i + 1 >= rest.len() => return Err("trailing escape character"),
            '\\' => i += 2,
            '[' => {
                i = match_class(rest, i, None)
                    .ok_or("unterminated or malformed character class")?
                    .1
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Parses the class starting at `p[start] == '['`; returns whether `c` is in it and the index
/// after the closing `]`, or None when the class is malformed.
fn match_class(p: &[char], start: usize, c: Option<char>) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if ch == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            ch
        };
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&x| x != ']') {
            i += 1;
            hi = if p[i] == '\\' {
                i += 1;
                *p.get(i)?
            } else {
                p[i]
            };
            i += 1;
            if hi < lo {
                return None;
            }
        }
        if let Some(c) = c
            && lo <= c
            && c <= hi
        {
            matched = true;
        }
    }
    Some((matched != negated, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_match_like_go_filepath_match() {
        let cases = [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*", "axbxcxdxe", true),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("*x", "xxx", true),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                match_component(pattern, name),
                Ok(want),
                "{pattern} vs {name}"
            );
        }
    }

    #[test]
    fn malformed_patterns_are_errors() {
        for pattern in ["[", "a[", "[^", "a\\", "[a-", "[z-a]"] {
            assert!(match_component(pattern, "a").is_err(), "{pattern}");
        }
    }

    #[test]
    fn double_star_is_two_stars_within_one_component() {
        assert_eq!(match_component("**/*.txt", "d/a.txt"), Ok(true));
        assert_eq!(match_component("**/*.txt", "a.txt"), Ok(false));
        assert_eq!(match_component("**/*.txt", "d/e/a.txt"), Ok(false));
        assert_eq!(
            match_component("e/**/*sub/*.txt", "e/x/asub/f.txt"),
            Ok(true)
        );
        assert_eq!(match_component("sub/*", "sub/a/b"), Ok(false));
    }

    #[test]
    fn wildcard_detection_respects_escapes() {
        assert!(has_wildcard("*.go"));
        assert!(!has_wildcard("a\\*b"));
    }
}
