//! The sending numbers of a campaign (`--from`, repeated) and which of them
//! texts each recipient.
//!
//! A recipient must hear from the same number on every try, every resume and
//! every campaign: replies and opt-outs go back to the number that texted.
//! Rendezvous (highest-random-weight) hashing gives that without storing
//! anything: each number scores the recipient and the highest score wins,
//! so adding a number moves only the recipients it now wins, and removing
//! one moves only the recipients it had. The score is a hash written out
//! here (FNV-1a, then the murmur3 finaliser), not `std`'s `DefaultHasher`,
//! whose output may change with any Rust release: a pick must stay the same
//! forever, across versions, platforms and runs. The test
//! `picks_are_frozen` pins it.
//!
//! This module decides nothing about rates (see [`crate::pacing`]) and does
//! no I/O.

use crate::domain::phone::E164;

/// The numbers a campaign sends from: at least one, each once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderPool {
    /// In the order the operator gave them, duplicates dropped. The order
    /// changes no pick.
    senders: Vec<E164>,
}

/// Why a list of numbers is not a pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("no sending number was given: give at least one --from number")]
    Empty,
}

impl SenderPool {
    /// A pool of `senders`, in their order; a number given twice counts
    /// once (it would win the same recipients either way).
    pub fn new(senders: impl IntoIterator<Item = E164>) -> Result<SenderPool, PoolError> {
        let mut unique: Vec<E164> = Vec::new();
        for sender in senders {
            if !unique.contains(&sender) {
                unique.push(sender);
            }
        }
        if unique.is_empty() {
            return Err(PoolError::Empty);
        }
        Ok(SenderPool { senders: unique })
    }

    /// A pool of one number: every recipient gets it.
    pub fn single(sender: E164) -> SenderPool {
        SenderPool {
            senders: vec![sender],
        }
    }

    /// The number that texts `recipient`: the highest score, a tie (which
    /// takes two equal 64-bit hashes) going to the lower number.
    pub fn pick(&self, recipient: &E164) -> &E164 {
        let mut senders = self.senders.iter();
        // `new` and `single` never build an empty pool.
        let Some(mut best) = senders.next() else {
            unreachable!("a sender pool holds at least one number")
        };
        let mut best_score = rendezvous_score(best, recipient);
        for sender in senders {
            let score = rendezvous_score(sender, recipient);
            if score > best_score || (score == best_score && sender < best) {
                best = sender;
                best_score = score;
            }
        }
        best
    }

    /// The numbers, in the order given, each once.
    pub fn senders(&self) -> &[E164] {
        &self.senders
    }

    /// How many numbers the pool has (at least one).
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Always false: a pool has at least one number. Here for the
    /// convention that goes with `len`.
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    pub fn contains(&self, sender: &E164) -> bool {
        self.senders.contains(sender)
    }
}

/// The 64-bit FNV-1a offset basis and prime (Fowler, Noll, Vo).
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Between the two numbers, so that sender `1` with recipient `23` and
/// sender `12` with recipient `3` hash apart. Not a digit.
const SEPARATOR: u8 = b'>';

/// How much `sender` wants `recipient`: FNV-1a over the sender's digits, a
/// separator and the recipient's digits, then murmur3's finaliser, which
/// spreads FNV's weak low bits over the whole word (without it, numbers
/// that differ in their last digit score alike). Frozen: changing it moves
/// recipients to other numbers.
fn rendezvous_score(sender: &E164, recipient: &E164) -> u64 {
    let bytes = sender
        .digits()
        .bytes()
        .chain([SEPARATOR])
        .chain(recipient.digits().bytes());
    let hash = bytes.fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    });
    murmur3_fmix64(hash)
}

/// The 64-bit finaliser of MurmurHash3 (Appleby): every input bit flips
/// each output bit with a probability close to one half.
fn murmur3_fmix64(mut key: u64) -> u64 {
    key ^= key >> 33;
    key = key.wrapping_mul(0xff51_afd7_ed55_8ccd);
    key ^= key >> 33;
    key = key.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    key ^= key >> 33;
    key
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn number(text: &str) -> E164 {
        E164::from_stored(text).expect("a well-shaped test number")
    }

    fn pool(numbers: &[&str]) -> SenderPool {
        SenderPool::new(numbers.iter().map(|text| number(text))).expect("a non-empty pool")
    }

    /// Sequential recipients, the hardest case for a weak hash.
    fn recipients(count: u64) -> impl Iterator<Item = E164> {
        (0..count).map(|i| number(&format!("+1212{:07}", 5_550_000 + i)))
    }

    const FOUR: [&str; 4] = [
        "+16505550100",
        "+16505550101",
        "+16505550102",
        "+16505550103",
    ];
    const FIFTH: &str = "+442071838750";

    #[test]
    fn picks_are_frozen() {
        // Pinned once: if one of these changes, recipients of running
        // campaigns would hear from another number. Do not update them.
        assert_eq!(
            rendezvous_score(&number("+16505550100"), &number("+14155550101")),
            0xb336_d5c2_5016_6c6f
        );
        assert_eq!(murmur3_fmix64(0), 0);
        assert_eq!(murmur3_fmix64(1), 0xb456_bcfc_34c2_cb2c);
        let four = pool(&FOUR);
        let expected = [
            ("+14155550101", "+16505550100"),
            ("+14155550102", "+16505550102"),
            ("+14155550104", "+16505550101"),
            ("+14155550105", "+16505550103"),
            ("+447700900123", "+16505550100"),
            ("+33612345678", "+16505550102"),
            ("+61412345678", "+16505550103"),
            ("+819012345678", "+16505550101"),
        ];
        let picks: Vec<(&str, &str)> = expected
            .iter()
            .map(|&(recipient, _)| (recipient, four.pick(&number(recipient)).as_str()))
            .collect();
        assert_eq!(picks, expected);
    }

    #[test]
    fn a_recipient_always_gets_the_same_number() {
        let four = pool(&FOUR);
        let again = pool(&FOUR);
        for recipient in recipients(1000) {
            let first = four.pick(&recipient);
            assert_eq!(four.pick(&recipient), first);
            assert_eq!(again.pick(&recipient), first);
        }
    }

    #[test]
    fn recipients_spread_evenly_over_the_numbers() {
        let four = pool(&FOUR);
        let mut shares: HashMap<&E164, u32> = HashMap::new();
        for recipient in recipients(100_000) {
            *shares.entry(four.pick(&recipient)).or_default() += 1;
        }
        assert_eq!(shares.len(), 4);
        for (sender, count) in shares {
            // 25,000 each, within 3 % of that.
            assert!(
                (24_250..=25_750).contains(&count),
                "{sender} got {count} of 100000"
            );
        }
    }

    #[test]
    fn a_new_number_takes_recipients_only_for_itself() {
        let four = pool(&FOUR);
        let five = pool(&[FOUR[0], FOUR[1], FOUR[2], FOUR[3], FIFTH]);
        let fifth = number(FIFTH);
        let mut moved = 0u32;
        for recipient in recipients(100_000) {
            let before = four.pick(&recipient);
            let after = five.pick(&recipient);
            if before != after {
                assert_eq!(after, &fifth, "{recipient} moved to another old number");
                moved += 1;
            }
        }
        // A fifth of them, within 3 % of that.
        assert!((19_400..=20_600).contains(&moved), "{moved} moved");
    }

    #[test]
    fn a_removed_number_gives_up_only_its_own_recipients() {
        let four = pool(&FOUR);
        let three = pool(&[FOUR[0], FOUR[2], FOUR[3]]);
        let removed = number(FOUR[1]);
        let mut moved = 0u32;
        for recipient in recipients(100_000) {
            let before = four.pick(&recipient);
            let after = three.pick(&recipient);
            if before == &removed {
                moved += 1;
            } else {
                assert_eq!(before, after, "{recipient} moved but its number stayed");
            }
        }
        assert!((24_250..=25_750).contains(&moved), "{moved} moved");
    }

    #[test]
    fn the_order_of_the_numbers_changes_no_pick() {
        let forward = pool(&FOUR);
        let backward = pool(&[FOUR[3], FOUR[2], FOUR[1], FOUR[0]]);
        let shuffled = pool(&[FOUR[2], FOUR[0], FOUR[3], FOUR[1]]);
        for recipient in recipients(10_000) {
            let pick = forward.pick(&recipient);
            assert_eq!(backward.pick(&recipient), pick);
            assert_eq!(shuffled.pick(&recipient), pick);
        }
    }

    #[test]
    fn a_pool_has_each_number_once_and_at_least_one() {
        assert_eq!(SenderPool::new(Vec::new()), Err(PoolError::Empty));
        let twice = pool(&[FOUR[1], FOUR[0], FOUR[1]]);
        assert_eq!(twice.senders(), &[number(FOUR[1]), number(FOUR[0])]);
        assert_eq!(twice.len(), 2);
        assert!(!twice.is_empty());
        assert!(twice.contains(&number(FOUR[0])));
        assert!(!twice.contains(&number(FOUR[2])));
        let one = SenderPool::single(number(FIFTH));
        assert_eq!(one.pick(&number("+14155550101")), &number(FIFTH));
        assert_eq!(
            PoolError::Empty.to_string(),
            "no sending number was given: give at least one --from number"
        );
    }
}
