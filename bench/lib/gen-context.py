#!/usr/bin/env python3
"""Generates a deterministic build context of many files (the big-context workloads).

    gen-context.py DEST --files N --mib M [--seed S] [--dockerfile PATH]

Same parameters, same tree: names, bytes, modes (0644/0755) and mtimes (2021-01-01) are
fixed, so every tool and every run sees identical input. Most files are small source-like
text (100 B .. 32 KiB, compressible); one in a hundred is a large asset (half random
bytes, half text) sized so that the total reaches M MiB. A stamp next to DEST records the
parameters: when it matches, the tree is left alone (regenerating 500 MiB takes seconds).
"""

import argparse
import os
import random
import shutil

MTIME = 1609459200  # 2021-01-01T00:00:00Z
FORMAT = 2


def build_corpus(rng, size):
    """Pseudo source code made of a fixed vocabulary: compresses like real text."""
    words = ["".join(rng.choice("etaoinshrdlucmfwyp_") for _ in range(rng.randint(2, 9)))
             for _ in range(2000)]
    syms = ["{", "}", "(", ")", ";", "=", "=>", "::", ",", "&", "->"]
    parts, n = [], 0
    while n < size:
        indent = "  " * rng.randint(0, 4)
        line = indent + " ".join(rng.choice(words) if rng.random() < 0.75 else rng.choice(syms)
                                 for _ in range(rng.randint(2, 12))) + "\n"
        parts.append(line)
        n += len(line)
    return "".join(parts).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dest")
    ap.add_argument("--files", type=int, required=True)
    ap.add_argument("--mib", type=int, required=True)
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--dockerfile")
    args = ap.parse_args()

    dest = os.path.abspath(args.dest)
    stamp_path = dest + ".stamp"
    stamp = f"format={FORMAT} files={args.files} mib={args.mib} seed={args.seed}\n"
    if os.path.isdir(dest) and os.path.exists(stamp_path) and open(stamp_path).read() == stamp:
        if args.dockerfile:
            install_dockerfile(args.dockerfile, dest)
        print(f"{dest}: up to date")
        return
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)

    rng = random.Random(args.seed)
    corpus = build_corpus(rng, 2 << 20)
    n_assets = max(1, args.files // 100)
    n_small = args.files - n_assets
    total = args.mib << 20
    made_dirs = set()
    written = 0

    def put(rel, data, mode=0o644):
        nonlocal written
        path = os.path.join(dest, rel)
        parent = os.path.dirname(path)
        if parent not in made_dirs:
            os.makedirs(parent, exist_ok=True)
            made_dirs.add(parent)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        os.utime(path, (MTIME, MTIME))
        written += len(data)

    def text(n, header):
        head = f"// {header}\n".encode()
        out, left = [head], max(0, n - len(head))
        while left > 0:
            at = rng.randrange(len(corpus) - 1)
            piece = corpus[at:at + min(left, 64 << 10)]
            out.append(piece)
            left -= len(piece)
        return b"".join(out)[:max(n, len(head))]

    exts = ["go", "rs", "py", "js", "c", "h", "md", "json", "yaml", "txt"]
    for i in range(n_small):
        # log-uniform sizes: many tiny files, a few tens of KiB
        size = int(100 * (327.68 ** rng.random()))
        rel = f"src/m{i % 25:02d}/p{(i // 25) % 16:02d}/f{i:05d}.{exts[i % len(exts)]}"
        put(rel, text(size, rel), 0o755 if i % 97 == 0 else 0o644)

    left = total - written
    if left <= 0:
        raise SystemExit(f"--mib {args.mib} is too small for {args.files} files")
    weights = [2 ** rng.uniform(0, 7) for _ in range(n_assets)]
    scale = left / sum(weights)
    sizes = [int(w * scale) for w in weights]
    sizes[-1] += left - sum(sizes)
    for i, size in enumerate(sizes):
        if i % 2:
            put(f"assets/a{i % 6}/blob{i:03d}.dat", text(size, f"asset {i}"))
        else:
            put(f"assets/a{i % 6}/blob{i:03d}.bin", rng.randbytes(size))

    if args.dockerfile:
        install_dockerfile(args.dockerfile, dest)
    for d in sorted(made_dirs | {dest}, key=len, reverse=True):
        while d.startswith(dest):
            os.chmod(d, 0o755)
            os.utime(d, (MTIME, MTIME))
            if d == dest:
                break
            d = os.path.dirname(d)
    with open(stamp_path, "w") as f:
        f.write(stamp)
    print(f"{dest}: {args.files} files, {written / 2**20:.1f} MiB")


def install_dockerfile(src, dest):
    target = os.path.join(dest, "Dockerfile")
    data = open(src, "rb").read()
    # rewriting an unchanged file would still change its ctime and miss stat caches
    if not os.path.exists(target) or open(target, "rb").read() != data:
        with open(target, "wb") as f:
            f.write(data)
        os.utime(target, (MTIME, MTIME))


if __name__ == "__main__":
    main()
