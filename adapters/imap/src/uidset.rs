//! Sets of UIDs as sorted, disjoint ranges: the sequence-set syntax `1:5,7,9:12` on the wire
//! and in sync cursors, so a mailbox of 100k messages with few holes stays a few bytes.

use std::fmt;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct UidSet {
    /// Sorted, disjoint, non-adjacent inclusive ranges.
    ranges: Vec<(u32, u32)>,
}

impl fmt::Debug for UidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UidSet({self})")
    }
}

impl fmt::Display for UidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, b)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}:{b}")?;
            }
        }
        Ok(())
    }
}

impl UidSet {
    pub fn new() -> UidSet {
        UidSet::default()
    }

    pub fn from_sorted_uids(uids: impl IntoIterator<Item = u32>) -> UidSet {
        let mut s = UidSet::new();
        for u in uids {
            s.insert(u);
        }
        s
    }

    /// Parses `1:5,7` (`*` is not allowed: a set in a response or cursor is concrete).
    pub fn parse(s: &str) -> Option<UidSet> {
        let mut set = UidSet::new();
        if s.is_empty() {
            return Some(set);
        }
        for part in s.split(',') {
            let (a, b) = match part.split_once(':') {
                Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
                None => {
                    let n = part.parse::<u32>().ok()?;
                    (n, n)
                }
            };
            set.insert_range(a.min(b), a.max(b));
        }
        Some(set)
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(a, b)| u64::from(b - a) + 1).sum()
    }

    pub fn max(&self) -> Option<u32> {
        self.ranges.last().map(|r| r.1)
    }

    pub fn contains(&self, u: u32) -> bool {
        match self.ranges.binary_search_by(|&(a, _)| a.cmp(&u)) {
            Ok(_) => true,
            Err(0) => false,
            Err(i) => self.ranges[i - 1].1 >= u,
        }
    }

    pub fn insert(&mut self, u: u32) {
        // Fast path for ascending inserts.
        if let Some(last) = self.ranges.last_mut() {
            if u == last.1.wrapping_add(1) && u > last.1 {
                last.1 = u;
                return;
            }
            if u > last.1 {
                self.ranges.push((u, u));
                return;
            }
        }
        self.insert_range(u, u);
    }

    pub fn insert_range(&mut self, a: u32, b: u32) {
        let mut merged = (a, b);
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let mut placed = false;
        for &(x, y) in &self.ranges {
            if u64::from(y) + 1 < u64::from(merged.0) {
                out.push((x, y));
            } else if u64::from(merged.1) + 1 < u64::from(x) {
                if !placed {
                    out.push(merged);
                    placed = true;
                }
                out.push((x, y));
            } else {
                merged = (merged.0.min(x), merged.1.max(y));
            }
        }
        if !placed {
            out.push(merged);
        }
        out.sort_unstable();
        self.ranges = out;
    }

    pub fn union(&self, other: &UidSet) -> UidSet {
        let mut s = self.clone();
        for &(a, b) in &other.ranges {
            s.insert_range(a, b);
        }
        s
    }

    /// The UIDs of `self` not in `other`.
    pub fn difference(&self, other: &UidSet) -> UidSet {
        let mut out = UidSet::new();
        for &(a, b) in &self.ranges {
            let mut start = u64::from(a);
            let end = u64::from(b);
            for &(x, y) in &other.ranges {
                let (x, y) = (u64::from(x), u64::from(y));
                if y < start || x > end {
                    continue;
                }
                if x > start {
                    out.ranges.push((start as u32, (x - 1) as u32));
                }
                start = y + 1;
                if start > end {
                    break;
                }
            }
            if start <= end {
                out.ranges.push((start as u32, end as u32));
            }
        }
        out
    }

    /// The UIDs below `limit`.
    pub fn below(&self, limit: u32) -> UidSet {
        let mut out = UidSet::new();
        for &(a, b) in &self.ranges {
            if a >= limit {
                break;
            }
            out.ranges.push((a, b.min(limit - 1)));
        }
        out
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|&(a, b)| a..=b)
    }

    /// Up to `n` of the highest UIDs below `limit`, highest first.
    pub fn highest_below(&self, limit: u32, n: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(n.min(4096));
        for &(a, b) in self.ranges.iter().rev() {
            if a >= limit {
                continue;
            }
            let mut u = b.min(limit.saturating_sub(1));
            loop {
                if out.len() == n {
                    return out;
                }
                out.push(u);
                if u == a {
                    break;
                }
                u -= 1;
            }
        }
        out
    }
}

/// A sequence set for a command from a list of UIDs (any order).
pub fn seq_set(uids: &[u32]) -> String {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    UidSet::from_sorted_uids(v).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_format_and_set_algebra() {
        let s = UidSet::parse("1:5,7,9:12").unwrap();
        assert_eq!(s.to_string(), "1:5,7,9:12");
        assert_eq!(s.len(), 10);
        assert!(s.contains(7) && !s.contains(8) && s.contains(12) && !s.contains(13));
        let t = UidSet::parse("3,7,10:20").unwrap();
        assert_eq!(s.difference(&t).to_string(), "1:2,4:5,9");
        assert_eq!(s.union(&t).to_string(), "1:5,7,9:20");
        assert_eq!(s.below(10).to_string(), "1:5,7,9");
        assert_eq!(s.highest_below(10, 3), vec![9, 7, 5]);
        assert_eq!(s.highest_below(100, 2), vec![12, 11]);
        let mut u = UidSet::new();
        for x in [5, 1, 2, 3, 9, 4] {
            u.insert(x);
        }
        assert_eq!(u.to_string(), "1:5,9");
        assert_eq!(seq_set(&[9, 3, 4, 3]), "3:4,9");
        assert_eq!(UidSet::parse("").unwrap(), UidSet::new());
        assert!(UidSet::parse("1:*").is_none());
        assert_eq!(UidSet::parse("5:3").unwrap().to_string(), "3:5");
    }
}
