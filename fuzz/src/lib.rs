//! Helpers shared by the fuzz targets in `fuzz_targets/` (see docs/fuzzing.md).
//!
//! - [`Splitter`]: cuts the input into chunks of fuzzer-chosen sizes, as the network would.
//! - [`CountingAlloc`]: a global allocator that tracks live and peak heap bytes, so a target
//!   can assert that memory stays bounded by the size of its input.
//! - [`check_smtp_replies`]: the wire syntax of SMTP replies.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Deterministic chunk sizes derived from a seed (xorshift), so that a crash reproduces.
pub struct Splitter {
    state: u64,
    max: usize,
}

impl Splitter {
    /// `seed` picks the chunk sizes; chunks are 1..=`max` bytes (`max` at least 1).
    pub fn new(seed: u64, max: usize) -> Splitter {
        Splitter {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
            max: max.max(1),
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

    /// Splits `data` into consecutive non-empty chunks.
    pub fn split<'a>(&mut self, data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let n = (self.next() as usize % self.max + 1).min(rest.len());
            out.push(&rest[..n]);
            rest = &rest[n..];
        }
        out
    }
}

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live and peak bytes. Install it with
/// `#[global_allocator] static A: CountingAlloc = CountingAlloc;` in a target.
pub struct CountingAlloc;

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

/// Resets the peak to the current live bytes and returns them (the baseline).
pub fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// The highest live byte count since [`reset_peak`].
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Checks that `out` is a sequence of well-formed SMTP reply lines (RFC 5321 §4.2): each is
/// three digits (2xx-5xx), then `-` (more lines follow) or ` ` (last line), then text without
/// CR, LF or other control bytes, then CRLF; the lines of one multi-line reply share one code;
/// and the output ends with a last line, never in the middle of a reply.
pub fn check_smtp_replies(out: &[u8]) {
    let mut rest = out;
    let mut open_code: Option<&[u8]> = None;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "reply line without CRLF: {:?}",
                    String::from_utf8_lossy(rest)
                )
            });
        let line = &rest[..end];
        rest = &rest[end + 2..];
        assert!(
            line.len() >= 4,
            "reply line too short: {:?}",
            String::from_utf8_lossy(line)
        );
        let code = &line[..3];
        assert!(
            (b'2'..=b'5').contains(&code[0])
                && code[1].is_ascii_digit()
                && code[2].is_ascii_digit(),
            "bad reply code: {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            line[3] == b' ' || line[3] == b'-',
            "bad separator: {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            !line[4..].iter().any(|&b| b < 0x20 || b == 0x7f),
            "control byte in reply text: {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            std::str::from_utf8(line).is_ok(),
            "reply is not UTF-8: {line:?}"
        );
        if let Some(c) = open_code {
            assert_eq!(c, code, "code changes inside a multi-line reply");
        }
        open_code = if line[3] == b'-' { Some(code) } else { None };
    }
    assert!(open_code.is_none(), "output ends inside a multi-line reply");
}
