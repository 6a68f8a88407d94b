//! COPY/ADD `--chmod` values: octal (`0644`, at most `07777`) or symbolic (`u=rw,g=r,o=`, `a+X`,
//! `go-w`), applied the way `chmod(1)` would to a file or directory.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
pub struct ChmodError(pub String);

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

/// One comma-separated clause of a symbolic mode, such as `ug+rwX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    who: u32,
    ops: Vec<(char, Perm)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Perm {
    Bits { bits: u32, cond_x: bool },
    Copy(char),
}

impl Chmod {
    pub fn parse(value: &str) -> Result<Chmod, ChmodError> {
        let bad = || ChmodError(value.to_string());
        if value.is_empty() {
            return Err(bad());
        }
        if value.chars().all(|c| c.is_ascii_digit()) {
            let mode = u32::from_str_radix(value, 8).map_err(|_| bad())?;
            return if mode <= 0o7777 {
                Ok(Chmod::Octal(mode))
            } else {
                Err(bad())
            };
        }
        let mut clauses = Vec::new();
        for clause in value.split(',') {
            let mut chars = clause.chars().peekable();
            let mut who = 0;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => break,
                };
                chars.next();
            }
            let mut ops = Vec::new();
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(bad());
                }
                let mut bits = 0;
                let mut cond_x = false;
                let mut copy = None;
                while let Some(&c) = chars.peek() {
                    match c {
                        'r' => bits |= 0o444,
                        'w' => bits |= 0o222,
                        'x' => bits |= 0o111,
                        'X' => cond_x = true,
                        's' => bits |= 0o6000,
                        't' => bits |= 0o1000,
                        'u' | 'g' | 'o' if bits == 0 && !cond_x => copy = Some(c),
                        '+' | '-' | '=' => break,
                        _ => return Err(bad()),
                    }
                    chars.next();
                }
                ops.push((
                    op,
                    match copy {
                        Some(c) => Perm::Copy(c),
                        None => Perm::Bits { bits, cond_x },
                    },
                ));
            }
            if ops.is_empty() {
                return Err(bad());
            }
            clauses.push(Clause { who, ops });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The permission bits (07777 mask) a file with `current` mode gets.
    pub fn apply(&self, current: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(mode) => *mode,
            Chmod::Symbolic(clauses) => {
                let mut mode = current & 0o7777;
                for clause in clauses {
                    // No who letter means "a" (chmod(1) with a zero umask, as BuildKit applies it).
                    let who = if clause.who == 0 { 0o7777 } else { clause.who };
                    for (op, perm) in &clause.ops {
                        let bits = match perm {
                            Perm::Bits { bits, cond_x } => {
                                let x = if *cond_x && (is_dir || mode & 0o111 != 0) {
                                    0o111
                                } else {
                                    0
                                };
                                (bits | x) & who
                            }
                            Perm::Copy(from) => {
                                let src = match from {
                                    'u' => (mode >> 6) & 7,
                                    'g' => (mode >> 3) & 7,
                                    _ => mode & 7,
                                };
                                (src << 6 | src << 3 | src) & who & 0o777
                            }
                        };
                        mode = match op {
                            '+' => mode | bits,
                            '-' => mode & !bits,
                            _ => (mode & !who) | bits,
                        };
                    }
                }
                mode & 0o7777
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_values_are_validated() {
        assert_eq!(Chmod::parse("0644"), Ok(Chmod::Octal(0o644)));
        assert_eq!(Chmod::parse("777"), Ok(Chmod::Octal(0o777)));
        assert_eq!(Chmod::parse("0"), Ok(Chmod::Octal(0)));
        for bad in ["64a", "10000", "", "u+q", "u"] {
            let err = Chmod::parse(bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid chmod parameter: '{bad}'. it should be octal string and between 0 and 07777"
                )
            );
        }
    }

    #[test]
    fn symbolic_modes_match_chmod() {
        let apply = |m: &str, cur: u32, dir: bool| Chmod::parse(m).unwrap().apply(cur, dir);
        assert_eq!(apply("go-w", 0o666, false), 0o644);
        assert_eq!(apply("u=rw,g=r,o=r", 0o777, false), 0o644);
        assert_eq!(apply("a+X", 0o644, false), 0o644);
        assert_eq!(apply("a+X", 0o644, true), 0o755);
        assert_eq!(apply("a+X", 0o744, false), 0o755);
        assert_eq!(apply("u+rw,g+r,o-x,o+w", 0o701, true), 0o742);
        assert_eq!(apply("g=u", 0o750, false), 0o770);
    }
}
