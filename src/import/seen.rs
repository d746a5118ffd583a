//! Which numbers an import has already given a row to send: a Bloom filter,
//! so that finding duplicates costs a fixed 16 MiB instead of an index on
//! numbers. A "no" is certain; a "maybe" holds the row back until the end
//! of the import, where one pass over the rows settles it.

/// 2^27 bits (16 MiB), 5 hashes: a clean list of a million numbers has no
/// false "maybe" 99 times in 100 (so nothing is held and the final pass is
/// skipped); after five million numbers, about 1 in 7,000 is one. A false
/// "maybe" costs time, never a wrong verdict.
const BITS_LOG2: u32 = 27;
const HASHES: u64 = 5;

/// The bits live in an anonymous mapping of their own, not on the heap: it
/// goes back to the system the moment the reader is done, where a freed
/// heap block may stay resident for a while, into the import's last pass.
pub struct SeenNumbers {
    bits: memmap2::MmapMut,
}

impl SeenNumbers {
    pub fn new() -> std::io::Result<Self> {
        Ok(SeenNumbers {
            bits: memmap2::MmapMut::map_anon(1 << (BITS_LOG2 - 3))?,
        })
    }

    /// Records `number`; true when it may have been recorded before.
    pub fn insert(&mut self, number: &str) -> bool {
        // Double hashing: HASHES positions from two independent hashes.
        let h1 = fnv1a(number.as_bytes());
        let h2 = splitmix64(h1) | 1;
        let mask = (1u64 << BITS_LOG2) - 1;
        let mut seen = true;
        for i in 0..HASHES {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) & mask;
            let (byte, offset) = ((bit >> 3) as usize, bit & 7);
            seen &= self.bits[byte] & (1 << offset) != 0;
            self.bits[byte] |= 1 << offset;
        }
        seen
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_forgets_and_rarely_imagines() {
        let mut seen = SeenNumbers::new().expect("map");
        let numbers: Vec<String> = (0..200_000).map(|i| format!("+1415{i:07}")).collect();
        let first_maybes = numbers.iter().filter(|n| seen.insert(n)).count();
        assert!(
            first_maybes < 50,
            "{first_maybes} false maybes among new numbers"
        );
        assert!(
            numbers.iter().all(|n| seen.insert(n)),
            "a seen number is always a maybe"
        );
        let false_maybes = (0..200_000)
            .filter(|i| seen.insert(&format!("+4420{i:08}")))
            .count();
        assert!(false_maybes < 100, "{false_maybes} false maybes");
    }
}
