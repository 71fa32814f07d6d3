//! MD5 of four equal-length messages at once, one message per 32-bit SIMD lane.
//!
//! Why: MD5 is a strict chain inside one message, but the protocol wants the MD5 of
//! every part, and parts are independent. Hashing four parts side by side turns the
//! chain into 4-wide vector work. Inside wasmtime this runs about 2.6x faster than the
//! `md-5` crate's one-message code (whose wasm32 build is its portable one), and MD5 is
//! about half of the component's hashing pass. See the `hash` case of `host-sim bench`.
//!
//! On wasm32 the lanes are `simd128` vectors (every Spin runtime is wasmtime, where SIMD
//! is on by default; a host without it refuses the module at load, it cannot run it
//! wrongly). Elsewhere they are plain `[u32; 4]`, which the compiler may vectorize; both
//! run the same round code, checked against the `md-5` crate by the tests here, natively,
//! and by `hashbench check` inside wasm.

/// Messages hashed together.
pub const LANES: usize = 4;

#[cfg(target_arch = "wasm32")]
mod lanes {
    use core::arch::wasm32::*;

    /// Four 32-bit lanes.
    #[derive(Clone, Copy)]
    pub struct V(v128);

    impl V {
        #[inline(always)]
        pub fn lanes(self) -> [u32; 4] {
            [
                u32x4_extract_lane::<0>(self.0),
                u32x4_extract_lane::<1>(self.0),
                u32x4_extract_lane::<2>(self.0),
                u32x4_extract_lane::<3>(self.0),
            ]
        }
        #[inline(always)]
        pub fn splat(x: u32) -> V {
            V(u32x4_splat(x))
        }
        #[inline(always)]
        pub fn add(self, o: V) -> V {
            V(i32x4_add(self.0, o.0))
        }
        #[inline(always)]
        pub fn xor(self, o: V) -> V {
            V(v128_xor(self.0, o.0))
        }
        #[inline(always)]
        pub fn and(self, o: V) -> V {
            V(v128_and(self.0, o.0))
        }
        /// `self | !o`
        #[inline(always)]
        pub fn or_not(self, o: V) -> V {
            V(v128_or(self.0, v128_not(o.0)))
        }
        #[inline(always)]
        pub fn rotl(self, n: u32) -> V {
            V(v128_or(i32x4_shl(self.0, n), u32x4_shr(self.0, 32 - n)))
        }
        /// Words `4g..4g+4` of each lane's 64-byte block, transposed so that result `k`
        /// holds word `4g+k` of every lane.
        #[inline(always)]
        pub fn load_transposed(blocks: [&[u8; 64]; 4], g: usize) -> [V; 4] {
            // SAFETY: each block has 64 bytes; `g < 4` selects one of its four 16-byte
            // rows; v128_load has no alignment requirement.
            let r: [v128; 4] = core::array::from_fn(|j| unsafe { v128_load(blocks[j].as_ptr().add(16 * g) as *const v128) });
            let t0 = i32x4_shuffle::<0, 4, 1, 5>(r[0], r[1]);
            let t1 = i32x4_shuffle::<2, 6, 3, 7>(r[0], r[1]);
            let t2 = i32x4_shuffle::<0, 4, 1, 5>(r[2], r[3]);
            let t3 = i32x4_shuffle::<2, 6, 3, 7>(r[2], r[3]);
            [
                V(i32x4_shuffle::<0, 1, 4, 5>(t0, t2)),
                V(i32x4_shuffle::<2, 3, 6, 7>(t0, t2)),
                V(i32x4_shuffle::<0, 1, 4, 5>(t1, t3)),
                V(i32x4_shuffle::<2, 3, 6, 7>(t1, t3)),
            ]
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod lanes {
    /// Four 32-bit lanes.
    #[derive(Clone, Copy)]
    pub struct V([u32; 4]);

    impl V {
        #[inline(always)]
        pub fn lanes(self) -> [u32; 4] {
            self.0
        }
        #[inline(always)]
        pub fn splat(x: u32) -> V {
            V([x; 4])
        }
        #[inline(always)]
        fn map2(self, o: V, f: impl Fn(u32, u32) -> u32) -> V {
            V([f(self.0[0], o.0[0]), f(self.0[1], o.0[1]), f(self.0[2], o.0[2]), f(self.0[3], o.0[3])])
        }
        #[inline(always)]
        pub fn add(self, o: V) -> V {
            self.map2(o, u32::wrapping_add)
        }
        #[inline(always)]
        pub fn xor(self, o: V) -> V {
            self.map2(o, |a, b| a ^ b)
        }
        #[inline(always)]
        pub fn and(self, o: V) -> V {
            self.map2(o, |a, b| a & b)
        }
        /// `self | !o`
        #[inline(always)]
        pub fn or_not(self, o: V) -> V {
            self.map2(o, |a, b| a | !b)
        }
        #[inline(always)]
        pub fn rotl(self, n: u32) -> V {
            V(self.0.map(|x| x.rotate_left(n)))
        }
        /// Words `4g..4g+4` of each lane's 64-byte block, transposed so that result `k`
        /// holds word `4g+k` of every lane.
        #[inline(always)]
        pub fn load_transposed(blocks: [&[u8; 64]; 4], g: usize) -> [V; 4] {
            core::array::from_fn(|k| {
                let at = 4 * (4 * g + k);
                V(blocks.map(|b| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])))
            })
        }
    }
}

use lanes::V;

const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// The four lanes' states, `a b c d` of every lane.
struct State([V; 4]);

macro_rules! step {
    ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
        $a = $a.add($f($b, $c, $d)).add($m.add(V::splat($k))).rotl($s).add($b);
    };
}

#[inline(always)]
fn f(b: V, c: V, d: V) -> V {
    d.xor(b.and(c.xor(d)))
}
#[inline(always)]
fn g(b: V, c: V, d: V) -> V {
    c.xor(d.and(b.xor(c)))
}
#[inline(always)]
fn h(b: V, c: V, d: V) -> V {
    b.xor(c).xor(d)
}
#[inline(always)]
fn i(b: V, c: V, d: V) -> V {
    c.xor(b.or_not(d))
}

/// One 64-byte block of every lane. The 64 steps are written out (RFC 1321's table)
/// so that every shift and constant is an immediate: loops here cost wasmtime's code
/// generator a spilled table lookup per step.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn compress(state: &mut State, blocks: [&[u8; 64]; 4]) {
    let [m0, m1, m2, m3] = V::load_transposed(blocks, 0);
    let [m4, m5, m6, m7] = V::load_transposed(blocks, 1);
    let [m8, m9, m10, m11] = V::load_transposed(blocks, 2);
    let [m12, m13, m14, m15] = V::load_transposed(blocks, 3);
    let [mut a, mut b, mut c, mut d] = state.0;

    step!(f, a, b, c, d, m0, 0xd76a_a478, 7);
    step!(f, d, a, b, c, m1, 0xe8c7_b756, 12);
    step!(f, c, d, a, b, m2, 0x2420_70db, 17);
    step!(f, b, c, d, a, m3, 0xc1bd_ceee, 22);
    step!(f, a, b, c, d, m4, 0xf57c_0faf, 7);
    step!(f, d, a, b, c, m5, 0x4787_c62a, 12);
    step!(f, c, d, a, b, m6, 0xa830_4613, 17);
    step!(f, b, c, d, a, m7, 0xfd46_9501, 22);
    step!(f, a, b, c, d, m8, 0x6980_98d8, 7);
    step!(f, d, a, b, c, m9, 0x8b44_f7af, 12);
    step!(f, c, d, a, b, m10, 0xffff_5bb1, 17);
    step!(f, b, c, d, a, m11, 0x895c_d7be, 22);
    step!(f, a, b, c, d, m12, 0x6b90_1122, 7);
    step!(f, d, a, b, c, m13, 0xfd98_7193, 12);
    step!(f, c, d, a, b, m14, 0xa679_438e, 17);
    step!(f, b, c, d, a, m15, 0x49b4_0821, 22);

    step!(g, a, b, c, d, m1, 0xf61e_2562, 5);
    step!(g, d, a, b, c, m6, 0xc040_b340, 9);
    step!(g, c, d, a, b, m11, 0x265e_5a51, 14);
    step!(g, b, c, d, a, m0, 0xe9b6_c7aa, 20);
    step!(g, a, b, c, d, m5, 0xd62f_105d, 5);
    step!(g, d, a, b, c, m10, 0x0244_1453, 9);
    step!(g, c, d, a, b, m15, 0xd8a1_e681, 14);
    step!(g, b, c, d, a, m4, 0xe7d3_fbc8, 20);
    step!(g, a, b, c, d, m9, 0x21e1_cde6, 5);
    step!(g, d, a, b, c, m14, 0xc337_07d6, 9);
    step!(g, c, d, a, b, m3, 0xf4d5_0d87, 14);
    step!(g, b, c, d, a, m8, 0x455a_14ed, 20);
    step!(g, a, b, c, d, m13, 0xa9e3_e905, 5);
    step!(g, d, a, b, c, m2, 0xfcef_a3f8, 9);
    step!(g, c, d, a, b, m7, 0x676f_02d9, 14);
    step!(g, b, c, d, a, m12, 0x8d2a_4c8a, 20);

    step!(h, a, b, c, d, m5, 0xfffa_3942, 4);
    step!(h, d, a, b, c, m8, 0x8771_f681, 11);
    step!(h, c, d, a, b, m11, 0x6d9d_6122, 16);
    step!(h, b, c, d, a, m14, 0xfde5_380c, 23);
    step!(h, a, b, c, d, m1, 0xa4be_ea44, 4);
    step!(h, d, a, b, c, m4, 0x4bde_cfa9, 11);
    step!(h, c, d, a, b, m7, 0xf6bb_4b60, 16);
    step!(h, b, c, d, a, m10, 0xbebf_bc70, 23);
    step!(h, a, b, c, d, m13, 0x289b_7ec6, 4);
    step!(h, d, a, b, c, m0, 0xeaa1_27fa, 11);
    step!(h, c, d, a, b, m3, 0xd4ef_3085, 16);
    step!(h, b, c, d, a, m6, 0x0488_1d05, 23);
    step!(h, a, b, c, d, m9, 0xd9d4_d039, 4);
    step!(h, d, a, b, c, m12, 0xe6db_99e5, 11);
    step!(h, c, d, a, b, m15, 0x1fa2_7cf8, 16);
    step!(h, b, c, d, a, m2, 0xc4ac_5665, 23);

    step!(i, a, b, c, d, m0, 0xf429_2244, 6);
    step!(i, d, a, b, c, m7, 0x432a_ff97, 10);
    step!(i, c, d, a, b, m14, 0xab94_23a7, 15);
    step!(i, b, c, d, a, m5, 0xfc93_a039, 21);
    step!(i, a, b, c, d, m12, 0x655b_59c3, 6);
    step!(i, d, a, b, c, m3, 0x8f0c_cc92, 10);
    step!(i, c, d, a, b, m10, 0xffef_f47d, 15);
    step!(i, b, c, d, a, m1, 0x8584_5dd1, 21);
    step!(i, a, b, c, d, m8, 0x6fa8_7e4f, 6);
    step!(i, d, a, b, c, m15, 0xfe2c_e6e0, 10);
    step!(i, c, d, a, b, m6, 0xa301_4314, 15);
    step!(i, b, c, d, a, m13, 0x4e08_11a1, 21);
    step!(i, a, b, c, d, m4, 0xf753_7e82, 6);
    step!(i, d, a, b, c, m11, 0xbd3a_f235, 10);
    step!(i, c, d, a, b, m2, 0x2ad7_d2bb, 15);
    step!(i, b, c, d, a, m9, 0xeb86_d391, 21);

    let s = &mut state.0;
    s[0] = s[0].add(a);
    s[1] = s[1].add(b);
    s[2] = s[2].add(c);
    s[3] = s[3].add(d);
}

/// Every full 64-byte block of four byte runs of the same length.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn compress_all(state: &mut State, data: [&[u8]; LANES]) {
    for k in 0..data[0].len() / 64 {
        let block = |lane: usize| -> &[u8; 64] { data[lane][64 * k..64 * (k + 1)].try_into().expect("64 bytes") };
        compress(state, [block(0), block(1), block(2), block(3)]);
    }
}

/// The MD5 digests of four messages of the same length.
///
/// # Panics
/// When the lengths differ: a caller's bug, never input-dependent (callers pass parts
/// of one layout).
pub fn digest4(messages: [&[u8]; LANES]) -> [[u8; 16]; LANES] {
    let len = messages[0].len();
    assert!(messages.iter().all(|m| m.len() == len), "md5x4::digest4 needs messages of equal length");
    let mut state = State(INIT.map(V::splat));
    let full = len - len % 64;
    compress_all(&mut state, messages.map(|m| &m[..full]));
    // The padding: 0x80, zeros to 56 mod 64, the bit length (little-endian). Same
    // layout in every lane; only the message bytes differ.
    let tail = len - full;
    let pad_len = if tail < 56 { 64 } else { 128 };
    let mut pads = [[0u8; 128]; LANES];
    for (pad, m) in pads.iter_mut().zip(messages) {
        pad[..tail].copy_from_slice(&m[full..]);
        pad[tail] = 0x80;
        pad[pad_len - 8..pad_len].copy_from_slice(&((len as u64).wrapping_mul(8)).to_le_bytes());
    }
    compress_all(&mut state, [&pads[0][..pad_len], &pads[1][..pad_len], &pads[2][..pad_len], &pads[3][..pad_len]]);
    let words = state.0.map(V::lanes);
    core::array::from_fn(|lane| {
        let mut out = [0u8; 16];
        for (w, chunk) in out.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&words[w][lane].to_le_bytes());
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};
    use proptest::prelude::*;

    fn reference(m: &[u8]) -> [u8; 16] {
        Md5::digest(m).into()
    }

    #[test]
    fn rfc_1321_vectors_in_every_lane() {
        let same = |m: &[u8]| digest4([m, m, m, m]);
        assert_eq!(crate::hex::encode(&same(b"")[2]), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(crate::hex::encode(&same(b"abc")[3]), "900150983cd24fb0d6963f7d28e17f72");
        let long = b"12345678901234567890123456789012345678901234567890123456789012345678901234567890";
        assert_eq!(crate::hex::encode(&same(long)[0]), "57edf4a22be3c955ac49da2e2107b67a");
    }

    #[test]
    fn padding_boundaries() {
        // Around 55/56 (one or two padding blocks) and 64 (no tail) bytes.
        for len in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1 << 20] {
            let m: Vec<Vec<u8>> = (0..4).map(|l| (0..len).map(|i| (i * 7 + l * 13) as u8).collect()).collect();
            let got = digest4([&m[0], &m[1], &m[2], &m[3]]);
            for l in 0..4 {
                assert_eq!(got[l], reference(&m[l]), "length {len}, lane {l}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "equal length")]
    fn unequal_lengths_are_a_bug() {
        digest4([b"a", b"a", b"a", b"ab"]);
    }

    proptest! {
        /// Every lane equals the `md-5` crate on random messages of any length.
        #[test]
        fn matches_the_md5_crate(len in 0usize..1000, seed in any::<[u8; 4]>()) {
            let m: Vec<Vec<u8>> = (0..4).map(|l| (0..len).map(|i| (i as u8).wrapping_mul(seed[l] | 1) ^ seed[l]).collect()).collect();
            let got = digest4([&m[0], &m[1], &m[2], &m[3]]);
            for l in 0..4 {
                prop_assert_eq!(got[l], reference(&m[l]));
            }
        }
    }
}
