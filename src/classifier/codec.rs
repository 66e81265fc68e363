//! Sorted feature indices, stored compactly: each index as the LEB128
//! varint of its gap to the previous one. A message's few thousand indices
//! in a 2^22 space take about two bytes each instead of four, which is what
//! lets the model keep 100,000 samples.

/// Appends the encoding of `sorted` (ascending, distinct) to `out`.
pub fn encode(sorted: &[u32], out: &mut Vec<u8>) {
    let mut previous = 0u32;
    for (i, &index) in sorted.iter().enumerate() {
        let mut gap = if i == 0 {
            index
        } else {
            index.wrapping_sub(previous)
        };
        previous = index;
        loop {
            let byte = (gap & 0x7f) as u8;
            gap >>= 7;
            if gap == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
}

/// Decodes `count` indices from `bytes`, appending them to `out`; returns
/// the bytes used. `None` if the bytes run out or a varint is longer than a
/// `u32` allows (a damaged file); what was decoded before stays in `out`.
pub fn decode(bytes: &[u8], count: usize, out: &mut Vec<u32>) -> Option<usize> {
    let mut at = 0usize;
    let mut previous = 0u32;
    for i in 0..count {
        let mut gap = 0u32;
        let mut shift = 0u32;
        loop {
            let byte = *bytes.get(at)?;
            at += 1;
            if shift > 28 {
                return None;
            }
            gap |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let index = if i == 0 {
            gap
        } else {
            previous.wrapping_add(gap)
        };
        out.push(index);
        previous = index;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn round_trip(mut indices in proptest::collection::vec(0u32..(1 << 22), 0..2000)) {
            indices.sort_unstable();
            indices.dedup();
            let mut bytes = Vec::new();
            encode(&indices, &mut bytes);
            let mut back = Vec::new();
            proptest::prop_assert!(decode(&bytes, indices.len(), &mut back).is_some());
            proptest::prop_assert_eq!(back, indices);
        }

        #[test]
        fn any_bytes_decode_or_refuse(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64), count in 0usize..100) {
            let mut out = Vec::new();
            let _ = decode(&bytes, count, &mut out);
            proptest::prop_assert!(out.len() <= count);
        }
    }
}
