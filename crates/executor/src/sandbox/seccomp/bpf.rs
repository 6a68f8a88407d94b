//! The seccomp filter compiler: per-syscall verdicts (a return value, or argument conditions
//! with a return value each) to one classic BPF program: the architecture check, then a
//! binary search over ranges of syscall numbers that return the same value, with the
//! argument checks at the leaves.

use std::collections::BTreeMap;

// Filter return values (<linux/seccomp.h>).
pub(crate) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(crate) const RET_KILL_THREAD: u32 = 0x0000_0000;
pub(crate) const RET_TRAP: u32 = 0x0003_0000;
pub(crate) const RET_ERRNO: u32 = 0x0005_0000;
pub(crate) const RET_TRACE: u32 = 0x7ff0_0000;
pub(crate) const RET_LOG: u32 = 0x7ffc_0000;
pub(crate) const RET_ALLOW: u32 = 0x7fff_0000;

// Classic BPF opcodes (<linux/bpf_common.h>) and `struct seccomp_data` offsets.
pub(crate) const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x54;
const JMP_JA: u16 = 0x05;
pub(crate) const JMP_JEQ: u16 = 0x15;
const JMP_JGT: u16 = 0x25;
const JMP_JGE: u16 = 0x35;
const JMP_JSET: u16 = 0x45;
pub(crate) const RET_K: u16 = 0x06;
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// The low 32 bits of argument `i` (little-endian).
fn arg_low(i: u8) -> u32 {
    16 + 8 * u32::from(i)
}

/// The high 32 bits of argument `i`.
fn arg_high(i: u8) -> u32 {
    arg_low(i) + 4
}

pub(crate) fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

pub(crate) fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// One condition on a syscall argument (all of a rule's conditions must hold). The first
/// four compare the low 32 bits (the built-in profile's arguments are all `int`s or flag
/// words the kernel truncates); the `*64` ones compare all 64 bits, as libseccomp does for a
/// profile file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cond {
    /// The low 32 bits of argument `.0` equal `.1`.
    Eq(u8, u64),
    Lt(u8, u64),
    Gt(u8, u64),
    /// `arg & mask == 0` on the low 32 bits.
    NoBits(u8, u64),
    Eq64(u8, u64),
    Ne64(u8, u64),
    /// `arg & .1 == .2`.
    Masked64(u8, u64, u64),
    Lt64(u8, u64),
    Le64(u8, u64),
    Gt64(u8, u64),
    Ge64(u8, u64),
}

/// What a range of syscall numbers gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Return(u32),
    /// The return value of the first alternative whose conditions all hold, else `otherwise`.
    If {
        alternatives: Vec<(Vec<Cond>, u32)>,
        otherwise: u32,
    },
}

/// Where a conditional jump of one condition goes.
#[derive(Clone, Copy)]
enum To {
    /// The next instruction.
    Next,
    /// Past this condition (it holds).
    Pass,
    /// The next alternative (it fails).
    Fail,
}

/// One condition as instructions with symbolic jumps: (code, k, true, false).
fn cond_code(c: Cond) -> Vec<(u16, u32, To, To)> {
    use To::*;
    let lo = |v: u64| v as u32;
    let hi = |v: u64| (v >> 32) as u32;
    match c {
        Cond::Eq(a, v) => vec![
            (LD_W_ABS, arg_low(a), Next, Next),
            (JMP_JEQ, lo(v), Next, Fail),
        ],
        Cond::Lt(a, v) => vec![
            (LD_W_ABS, arg_low(a), Next, Next),
            (JMP_JGE, lo(v), Fail, Next),
        ],
        Cond::Gt(a, v) => vec![
            (LD_W_ABS, arg_low(a), Next, Next),
            (JMP_JGT, lo(v), Next, Fail),
        ],
        Cond::NoBits(a, m) => {
            vec![
                (LD_W_ABS, arg_low(a), Next, Next),
                (JMP_JSET, lo(m), Fail, Next),
            ]
        }
        Cond::Eq64(a, v) => vec![
            (LD_W_ABS, arg_high(a), Next, Next),
            (JMP_JEQ, hi(v), Next, Fail),
            (LD_W_ABS, arg_low(a), Next, Next),
            (JMP_JEQ, lo(v), Next, Fail),
        ],
        Cond::Ne64(a, v) => vec![
            (LD_W_ABS, arg_high(a), Next, Next),
            (JMP_JEQ, hi(v), Next, Pass),
            (LD_W_ABS, arg_low(a), Next, Next),
            (JMP_JEQ, lo(v), Fail, Next),
        ],
        Cond::Masked64(a, m, v) => vec![
            (LD_W_ABS, arg_high(a), Next, Next),
            (ALU_AND_K, hi(m), Next, Next),
            (JMP_JEQ, hi(v), Next, Fail),
            (LD_W_ABS, arg_low(a), Next, Next),
            (ALU_AND_K, lo(m), Next, Next),
            (JMP_JEQ, lo(v), Next, Fail),
        ],
        // High words decide unless equal; then the low words do.
        Cond::Gt64(a, v) | Cond::Ge64(a, v) => vec![
            (LD_W_ABS, arg_high(a), Next, Next),
            (JMP_JGT, hi(v), Pass, Next),
            (JMP_JEQ, hi(v), Next, Fail),
            (LD_W_ABS, arg_low(a), Next, Next),
            if matches!(c, Cond::Gt64(..)) {
                (JMP_JGT, lo(v), Next, Fail)
            } else {
                (JMP_JGE, lo(v), Next, Fail)
            },
        ],
        Cond::Lt64(a, v) | Cond::Le64(a, v) => vec![
            (LD_W_ABS, arg_high(a), Next, Next),
            (JMP_JGE, hi(v), Next, Pass),
            (JMP_JGT, hi(v), Fail, Next),
            (LD_W_ABS, arg_low(a), Next, Next),
            if matches!(c, Cond::Lt64(..)) {
                (JMP_JGE, lo(v), Fail, Next)
            } else {
                (JMP_JGT, lo(v), Fail, Next)
            },
        ],
    }
}

/// Instructions that check argument conditions and return the first matching
/// alternative's value, else `otherwise`.
fn conditions(
    alternatives: &[(Vec<Cond>, u32)],
    otherwise: u32,
) -> Result<Vec<libc::sock_filter>, String> {
    let mut out = Vec::new();
    for (conds, ret) in alternatives {
        let codes: Vec<_> = conds.iter().map(|c| cond_code(*c)).collect();
        let lens: Vec<usize> = codes.iter().map(Vec::len).collect();
        for (j, code) in codes.iter().enumerate() {
            let after: usize = lens[j + 1..].iter().sum();
            for (i, &(op, k, t, f)) in code.iter().enumerate() {
                let rest = code.len() - i - 1;
                let off = |to: To| -> Result<u8, String> {
                    let n = match to {
                        To::Next => 0,
                        To::Pass => rest,
                        // Past this condition, the ones after it and the alternative's return.
                        To::Fail => rest + after + 1,
                    };
                    u8::try_from(n).map_err(|_| "too many conditions on one syscall".to_string())
                };
                out.push(jump(op, k, off(t)?, off(f)?));
            }
        }
        out.push(stmt(RET_K, *ret));
    }
    out.push(stmt(RET_K, otherwise));
    Ok(out)
}

/// A binary search over `ranges` (sorted by first syscall number, covering 0..=u32::MAX)
/// with the syscall number loaded: `log2(ranges)` comparisons per syscall, which also keeps
/// the kernel's per-syscall cache preparation and the JIT cheap at install time.
fn search(ranges: &[(u32, Verdict)]) -> Result<Vec<libc::sock_filter>, String> {
    if let [(_, verdict)] = ranges {
        return match verdict {
            Verdict::Return(ret) => Ok(vec![stmt(RET_K, *ret)]),
            // The argument loads replace the syscall number in the accumulator; nothing
            // after a leaf needs it (every leaf ends in a return).
            Verdict::If {
                alternatives,
                otherwise,
            } => conditions(alternatives, *otherwise),
        };
    }
    let mid = ranges.len() / 2;
    let left = search(&ranges[..mid])?;
    let right = search(&ranges[mid..])?;
    let first = ranges[mid].0;
    let mut out = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        Ok(skip) => out.push(jump(JMP_JGE, first, skip, 0)),
        Err(_) => {
            // Conditional jumps reach 255 instructions; an unconditional one goes further.
            out.push(jump(JMP_JGE, first, 0, 1));
            out.push(stmt(JMP_JA, left.len() as u32));
        }
    }
    out.extend(left);
    out.extend(right);
    Ok(out)
}

/// Appends a range starting at `first`, merged into the previous one when both return the
/// same value (ranges with conditions are never merged).
fn push_range(ranges: &mut Vec<(u32, Verdict)>, first: u32, v: Verdict) {
    if let (Some((_, Verdict::Return(prev))), Verdict::Return(ret)) = (ranges.last(), &v)
        && prev == ret
    {
        return;
    }
    ranges.push((first, v));
}

/// The whole program: syscalls of another audit architecture get `bad_arch`, each listed
/// number its verdict, every other number (gaps and everything above the last one, x32's
/// bit-30 numbers included) `default`.
pub(crate) fn assemble(
    arch: u32,
    by_nr: BTreeMap<u32, Verdict>,
    default: u32,
    bad_arch: u32,
) -> Result<Vec<libc::sock_filter>, String> {
    let mut ranges: Vec<(u32, Verdict)> = Vec::new();
    let mut next = 0u32;
    for (nr, v) in by_nr {
        if nr > next {
            push_range(&mut ranges, next, Verdict::Return(default));
        }
        push_range(&mut ranges, nr, v);
        next = nr + 1;
    }
    push_range(&mut ranges, next, Verdict::Return(default));
    let mut prog = vec![
        stmt(LD_W_ABS, DATA_ARCH),
        // Another calling convention (i386 through int 0x80) numbers syscalls differently.
        jump(JMP_JEQ, arch, 1, 0),
        stmt(RET_K, bad_arch),
        stmt(LD_W_ABS, DATA_NR),
    ];
    prog.extend(search(&ranges)?);
    if prog.len() > 4096 {
        return Err(format!(
            "{} instructions, the kernel takes 4096",
            prog.len()
        ));
    }
    Ok(prog)
}
