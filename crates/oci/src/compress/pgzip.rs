//! Parallel gzip of one stream (pigz's scheme): fixed-size chunks are deflated on worker threads
//! and their outputs concatenated into one valid gzip member.
//!
//! Each chunk is deflated by a fresh compressor primed with the last 32 KiB of the chunk before it
//! (so matches may reach back across the boundary, as in one serial stream) and ends with a sync
//! flush: an empty stored block that leaves the output byte-aligned and without a final block.
//! The stream closes with an empty final block and the trailer (the CRC-32 of the whole input,
//! combined from the chunks' CRCs, and its length mod 2^32). Chunk boundaries are fixed offsets of
//! the input, so the bytes depend only on the input and the level: never on the thread count, on
//! timing, or on how the caller split its writes.
//!
//! Chunks that do not compress (random or already-compressed bytes, e.g. media and archives in
//! a layer) are stored instead of deflated: deflate spends four to five times longer on such data
//! than on text, only to fall back to stored blocks itself. Whether a chunk is stored is decided
//! from its own bytes (a fast deflate of eight small samples spread over it), so the output stays
//! a function of the input and the level.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Crc, FlushCompress, Status};

/// Bytes of input per chunk. Large enough that the per-chunk cost (a compressor, a dictionary, a
/// 5-byte flush marker) is negligible, small enough to keep several threads busy on a 10 MiB layer.
pub(crate) const CHUNK: usize = 1 << 20;
/// deflate's window: how much of the previous chunk primes the next one's compressor.
const DICT: usize = 32 * 1024;
/// A gzip header with no name, comment or extra field, mtime 0, no extra flags, OS "unknown":
/// nothing in it depends on when or where the layer was made.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// An empty fixed-Huffman block with the final bit set: ends the deflate stream.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// One chunk's deflate output and the CRC-32 of its input.
type Deflated = io::Result<(Vec<u8>, Crc)>;

struct Job {
    level: u32,
    dict: Vec<u8>,
    data: Vec<u8>,
    done: SyncSender<Deflated>,
}

/// Worker threads that deflate chunks; started on the first full chunk, so a small layer never
/// starts a thread.
struct Pool {
    jobs: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn start(threads: usize) -> io::Result<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let worker = std::thread::Builder::new()
                .name(format!("kiln-gzip-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job, never while
                        // deflating.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let out = deflate_chunk(job.level, &job.dict, &job.data);
                        // The writer may have gone away after an error; nothing to report to.
                        let _ = job.done.send(out);
                    }
                })?;
            workers.push(worker);
        }
        Ok(Pool {
            jobs: Some(tx),
            workers,
        })
    }

    fn submit(&self, job: Job) -> io::Result<()> {
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or_else(|| io::Error::other("the gzip worker threads stopped"))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends every worker's loop once it finishes its current chunk.
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Bytes in each sample that `incompressible` deflates, and how many samples it takes.
const PROBE: usize = 8 * 1024;
const PROBES: usize = 8;

/// Whether `data` looks like it will not shrink: every sample, deflated on its own at level 1,
/// keeps more than 97% of its size. Mixed chunks (some text among random bytes) are deflated as
/// soon as one sample compresses.
fn incompressible(data: &[u8]) -> bool {
    if data.len() < PROBE * PROBES {
        // Small chunks (the tail of a stream) cost little to deflate anyway.
        return false;
    }
    let stride = data.len() / PROBES;
    let mut c = Compress::new(flate2::Compression::fast(), false);
    let mut out = Vec::with_capacity(PROBE + PROBE / 8);
    (0..PROBES).all(|i| {
        let sample = &data[i * stride..i * stride + PROBE];
        c.reset();
        out.clear();
        match c.compress_vec(sample, &mut out, FlushCompress::Finish) {
            // Output that did not even fit in the buffer did not shrink.
            Ok(Status::StreamEnd) => out.len() * 100 > sample.len() * 97,
            Ok(_) => true,
            Err(_) => false,
        }
    })
}

/// Deflates `data` as a continuation of `dict`, ending with a sync flush (byte-aligned, not final).
pub(crate) fn deflate_chunk(level: u32, dict: &[u8], data: &[u8]) -> Deflated {
    let level = if level > 0 && incompressible(data) {
        0
    } else {
        level
    };
    let mut c = Compress::new(flate2::Compression::new(level), false);
    // Stored blocks refer to nothing: a dictionary would only cost its hashing.
    if level > 0 && !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    // Deflate never grows data by more than about 5 bytes per 16 KiB stored block.
    let mut out = Vec::with_capacity(data.len() + data.len() / 1000 + 64);
    loop {
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        // The flush is complete once all input is in and the compressor left output space unused.
        if c.total_in() as usize == data.len()
            && out.len() < out.capacity()
            && status != Status::BufError
        {
            break;
        }
        out.reserve(64 * 1024);
    }
    let mut crc = Crc::new();
    crc.update(data);
    Ok((out, crc))
}

/// A gzip writer that deflates `CHUNK`-sized pieces of its input on up to `threads` threads.
pub(crate) struct ParGzEncoder<W: Write> {
    out: W,
    level: u32,
    threads: usize,
    /// The chunk being filled.
    pending: Vec<u8>,
    /// The tail of the last submitted chunk: the next chunk's dictionary.
    dict: Vec<u8>,
    /// Submitted chunks, in input order, not yet written out.
    in_flight: VecDeque<Receiver<Deflated>>,
    pool: Option<Pool>,
    crc: Crc,
    header_written: bool,
}

impl<W: Write> ParGzEncoder<W> {
    pub(crate) fn new(out: W, level: u32, threads: usize) -> ParGzEncoder<W> {
        ParGzEncoder {
            out,
            level: level.min(9),
            threads: threads.max(1),
            pending: Vec::new(),
            dict: Vec::new(),
            in_flight: VecDeque::new(),
            pool: None,
            crc: Crc::new(),
            header_written: false,
        }
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.out.write_all(&HEADER)?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Hands the full pending chunk to the workers, writing out finished chunks first when enough
    /// are in flight (which bounds memory at about four chunks per thread).
    fn submit_pending(&mut self) -> io::Result<()> {
        while self.in_flight.len() >= 2 * self.threads {
            self.write_oldest()?;
        }
        let data = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
        let dict = std::mem::take(&mut self.dict);
        self.dict = data[data.len().saturating_sub(DICT)..].to_vec();
        let pool = match self.pool.take() {
            Some(pool) => pool,
            None => Pool::start(self.threads)?,
        };
        let (done, result) = mpsc::sync_channel(1);
        let job = Job {
            level: self.level,
            dict,
            data,
            done,
        };
        let submitted = pool.submit(job);
        self.pool = Some(pool);
        submitted?;
        self.in_flight.push_back(result);
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(next) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let (bytes, crc) = next
            .recv()
            .map_err(|_| io::Error::other("a gzip worker thread stopped"))??;
        self.write_deflated(&bytes, &crc)
    }

    fn write_deflated(&mut self, bytes: &[u8], crc: &Crc) -> io::Result<()> {
        self.write_header()?;
        self.out.write_all(bytes)?;
        self.crc.combine(crc);
        Ok(())
    }

    /// Deflates what is left, ends the stream and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if !self.pending.is_empty() {
            if self.pool.is_none() {
                // The whole input fit in one chunk: no thread was started and none is needed.
                let (bytes, crc) = deflate_chunk(self.level, &self.dict, &self.pending)?;
                self.write_deflated(&bytes, &crc)?;
                self.pending.clear();
            } else {
                self.submit_pending()?;
            }
        }
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        self.write_header()?;
        self.out.write_all(&FINAL_BLOCK)?;
        self.out.write_all(&self.crc.sum().to_le_bytes())?;
        self.out.write_all(&self.crc.amount().to_le_bytes())?;
        self.pool = None;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            if self.pending.capacity() < CHUNK {
                self.pending.reserve_exact(CHUNK - self.pending.len());
            }
            let take = rest.len().min(CHUNK - self.pending.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == CHUNK {
                self.submit_pending()?;
            }
        }
        Ok(buf.len())
    }

    /// Does nothing: the chunking, not the caller's flushes, decides where blocks end.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use proptest::prelude::*;

    use super::*;

    /// Bytes that compress somewhat: text-like runs mixed with pseudo-random noise.
    fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state.is_multiple_of(4) {
                out.extend_from_slice(&state.to_le_bytes());
            } else {
                out.extend_from_slice(format!("line {} of {}\n", state % 97, seed).as_bytes());
            }
        }
        out.truncate(len);
        out
    }

    /// Writes `data` in pieces of `split` bytes.
    fn encode(data: &[u8], level: u32, threads: usize, split: usize) -> Vec<u8> {
        let mut enc = ParGzEncoder::new(Vec::new(), level, threads);
        for piece in data.chunks(split.max(1)) {
            enc.write_all(piece).unwrap();
            enc.flush().unwrap();
        }
        enc.finish().unwrap()
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        // A single-member decoder: the output must be one gzip member, not several.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn output_does_not_depend_on_threads_or_write_sizes() {
        let data = sample(3 * CHUNK + 12_345, 7);
        let one = encode(&data, 6, 1, CHUNK);
        // `assert!` rather than `assert_eq!`: a failure should not print megabytes.
        assert!(one == encode(&data, 6, 4, 4096));
        assert!(one == encode(&data, 6, 2, 1_000_003));
        assert!(one != encode(&data, 5, 2, 1_000_003), "the level matters");
        assert!(gunzip(&one) == data);
        assert!(one.len() < data.len() / 2, "the sample should compress");
    }

    #[test]
    fn empty_input_is_a_valid_empty_gzip() {
        let gz = encode(&[], 6, 4, 1);
        assert_eq!(gz, [&HEADER[..], &FINAL_BLOCK, &[0; 8]].concat());
        assert!(gunzip(&gz).is_empty());
    }

    #[test]
    fn chunk_boundaries_round_trip() {
        for len in [1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK] {
            let data = sample(len, len as u64);
            let gz = encode(&data, 6, 3, 65_536);
            assert!(gunzip(&gz) == data, "length {len}");
            assert!(gz == encode(&data, 6, 1, len), "length {len}");
        }
    }

    #[test]
    fn random_chunks_are_stored_and_text_is_deflated() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = Vec::with_capacity(2 * CHUNK);
        while random.len() < 2 * CHUNK {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            random.extend_from_slice(&state.to_le_bytes());
        }
        assert!(incompressible(&random[..CHUNK]));
        let gz = encode(&random, 6, 2, 100_000);
        assert!(gunzip(&gz) == random);
        // Stored blocks: 5 bytes of framing per 64 KiB at most, plus header, flushes and trailer.
        assert!(
            gz.len() <= random.len() + random.len() / 10_000 + 64,
            "{}",
            gz.len()
        );

        let text = sample(CHUNK, 11);
        assert!(!incompressible(&text));
        // A chunk that is mostly random but has text in one sample's reach is still deflated.
        let mut mixed = random[..CHUNK].to_vec();
        mixed[CHUNK / 2..CHUNK / 2 + 16 * 1024].copy_from_slice(&text[..16 * 1024]);
        assert!(!incompressible(&mixed));
        let gz = encode(&mixed, 6, 1, CHUNK);
        assert!(gunzip(&gz) == mixed);
        assert!(gz.len() < mixed.len() - 8 * 1024, "{}", gz.len());
    }

    /// The gzip tool is what users and other builders decompress with; run it when installed.
    #[test]
    fn gzip_tool_decompresses_the_output() {
        let data = sample(2 * CHUNK + 99, 3);
        let gz = encode(&data, 9, 2, 10_000);
        let mut child = match std::process::Command::new("gzip")
            .args(["-d", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                println!("skipped: gzip is not installed ({e})");
                return;
            }
        };
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&gz).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success());
        assert!(out.stdout == data);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_input_round_trips_the_same_for_any_thread_count(
            len in prop_oneof![0usize..5000, (CHUNK - 40)..(CHUNK + 40), 0usize..(3 * CHUNK)],
            seed in any::<u64>(),
            level in 0u32..=9,
            split in 1usize..300_000,
        ) {
            let data = sample(len, seed);
            let gz = encode(&data, level, 3, split);
            prop_assert!(gunzip(&gz) == data);
            prop_assert!(gz == encode(&data, level, 1, CHUNK));
        }
    }
}
