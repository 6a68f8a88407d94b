//! A small deterministic mutator for the corpus replay: bit flips, interesting bytes and
//! numbers, inserted, deleted, duplicated and spliced ranges, and, for tar inputs, repaired
//! header checksums. Not coverage guided (libFuzzer is, in the long runs); its job is to push
//! CI past the seeds in a bounded, repeatable way.

/// A xorshift-driven mutator; the same seed gives the same inputs on every machine.
#[derive(Debug, Clone)]
pub struct Mutator {
    state: u64,
}

/// Bytes that tend to matter to parsers: JSON, YAML, tar and path punctuation, extremes.
const BYTES: &[u8] = b"\x00\xff\x7f\x80\"{}[]:,./\\\n\r\t -0123456789eE+'#*&!%|>$";

/// Numbers that tend to matter: sizes, offsets, lengths and counts at their limits.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "255",
    "4096",
    "65535",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "1e308",
    "77777777777",
];

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        Mutator {
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A new input from `input`, with `other` (another corpus entry) for splicing; at most
    /// `max_len` bytes.
    pub fn mutate(&mut self, input: &[u8], other: &[u8], max_len: usize, tar: bool) -> Vec<u8> {
        let mut out = input.to_vec();
        let rounds = 1 + self.below(4);
        for _ in 0..rounds {
            self.once(&mut out, other);
        }
        out.truncate(max_len);
        if tar {
            fix_tar_checksums(&mut out);
        }
        out
    }

    fn once(&mut self, out: &mut Vec<u8>, other: &[u8]) {
        let len = out.len();
        match self.below(10) {
            0 if len > 0 => {
                let i = self.below(len);
                out[i] ^= 1 << self.below(8);
            }
            1 if len > 0 => {
                let i = self.below(len);
                out[i] = BYTES[self.below(BYTES.len())];
            }
            2 => {
                let i = self.below(len + 1);
                let n = 1 + self.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| self.next() as u8).collect();
                out.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = self.below(len);
                let n = 1 + self.below((len - i).min(64));
                out.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = self.below(len);
                let n = 1 + self.below((len - i).min(256));
                let chunk = out[i..i + n].to_vec();
                let at = self.below(len + 1);
                out.splice(at..at, chunk);
            }
            5 if !other.is_empty() => {
                let i = self.below(other.len());
                let n = 1 + self.below((other.len() - i).min(256));
                let at = self.below(len + 1);
                let end = (at + self.below(64)).min(len);
                out.splice(at..end, other[i..i + n].iter().copied());
            }
            6 => {
                // Replace a run of digits (or insert at random) with an interesting number.
                let number = NUMBERS[self.below(NUMBERS.len())].as_bytes().to_vec();
                let starts: Vec<usize> = (0..len)
                    .filter(|&i| {
                        out[i].is_ascii_digit() && (i == 0 || !out[i - 1].is_ascii_digit())
                    })
                    .collect();
                if starts.is_empty() {
                    let at = self.below(len + 1);
                    out.splice(at..at, number);
                } else {
                    let s = starts[self.below(starts.len())];
                    let e = (s..len).find(|&i| !out[i].is_ascii_digit()).unwrap_or(len);
                    out.splice(s..e, number);
                }
            }
            7 if len >= 8 => {
                let i = self.below(len - 7);
                let v: u64 = match self.below(4) {
                    0 => u64::MAX,
                    1 => 1 << (self.below(63)),
                    2 => 0,
                    _ => self.next(),
                };
                out[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            8 if len > 0 => {
                let at = self.below(len);
                out.truncate(at);
            }
            _ => {
                // Swap two bytes.
                if len > 1 {
                    let (a, b) = (self.below(len), self.below(len));
                    out.swap(a, b);
                }
            }
        }
    }
}

/// Recomputes the checksum of every 512-byte block that looks like a tar header (the `ustar`
/// magic at offset 257), so a mutated header is read instead of refused outright.
pub fn fix_tar_checksums(data: &mut [u8]) {
    let mut off = 0;
    while off + 512 <= data.len() {
        let block = &mut data[off..off + 512];
        if &block[257..262] == b"ustar" {
            block[148..156].fill(b' ');
            let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
            let text = format!("{sum:06o}\0 ");
            block[148..156].copy_from_slice(text.as_bytes());
        }
        off += 512;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_and_bounded() {
        let seed = b"{\"schemaVersion\":2,\"size\":123}".to_vec();
        let a: Vec<Vec<u8>> = {
            let mut m = Mutator::new(1);
            (0..100)
                .map(|_| m.mutate(&seed, b"xyz", 64, false))
                .collect()
        };
        let b: Vec<Vec<u8>> = {
            let mut m = Mutator::new(1);
            (0..100)
                .map(|_| m.mutate(&seed, b"xyz", 64, false))
                .collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|x| x.len() <= 64));
        assert!(a.iter().any(|x| x != &seed));
    }

    #[test]
    fn repairs_tar_checksums() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "a", &b"x"[..]).unwrap();
        let mut data = b.into_inner().unwrap();
        data[0] = b'b';
        fix_tar_checksums(&mut data);
        let mut archive = tar::Archive::new(&data[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["b"]);
    }
}
