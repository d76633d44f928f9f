//! Property tests of the readers, sized for CI (a few seconds): arbitrary and mutated bytes give
//! Ok or Err, never a panic; valid arrays round-trip exactly. The long runs are the fuzz targets
//! (scripts/fuzz.sh, docs/reliability.md).

use bilevel::data::{read_csv_from_bytes, read_idx_from_bytes, read_labels_from_bytes};
use bilevel::limits::MemoryLimit;
use bilevel::npy::read_matrix_from_bytes;
use faer::Mat;
use proptest::prelude::*;
use std::io::Write;

fn limit() -> MemoryLimit {
    MemoryLimit::new(16 << 20)
}

fn npy_header(descr: &str, fortran: bool, rows: usize, cols: usize) -> Vec<u8> {
    let f = if fortran { "True" } else { "False" };
    let mut h =
        format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': ({rows}, {cols}), }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out
}

fn matrix() -> impl Strategy<Value = (usize, usize, Vec<f64>)> {
    (0usize..7, 1usize..7).prop_flat_map(|(r, c)| {
        (
            Just(r),
            Just(c),
            proptest::collection::vec(-1e300f64..1e300, r * c),
        )
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let l = limit();
        let _ = read_matrix_from_bytes(&bytes, "p.npy", &l);
        let _ = read_idx_from_bytes(&bytes, "p.idx", &l);
        let _ = read_csv_from_bytes(&bytes, "p.csv", &l);
        let _ = read_labels_from_bytes(&bytes, "p.csv", &l);
    }

    #[test]
    fn mutated_valid_files_never_panic(
        (r, c, vals) in matrix(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut npy = npy_header("<f8", false, r, c);
        npy.extend(vals.iter().flat_map(|x| x.to_le_bytes()));
        let mut idx = vec![0, 0, 0x08, 2];
        idx.extend_from_slice(&(r as u32).to_be_bytes());
        idx.extend_from_slice(&(c as u32).to_be_bytes());
        idx.extend((0..r * c).map(|k| k as u8));
        let gz = gzip(&idx);
        let l = limit();
        for mut b in [npy, idx, gz] {
            for (at, v) in &edits {
                let k = at.index(b.len());
                b[k] = *v;
            }
            let _ = read_matrix_from_bytes(&b, "m.npy", &l);
            let _ = read_idx_from_bytes(&b, "m.idx", &l);
            let _ = read_labels_from_bytes(&b, "m.npy", &l);
            let b = &b[..cut.index(b.len() + 1)];
            let _ = read_matrix_from_bytes(b, "m.npy", &l);
            let _ = read_idx_from_bytes(b, "m.idx", &l);
        }
    }

    #[test]
    fn npy_round_trips_in_both_orders_and_through_the_writer((r, c, vals) in matrix()) {
        let want = Mat::from_fn(r, c, |i, j| vals[i * c + j]);
        let mut cb = npy_header("<f8", false, r, c);
        cb.extend(vals.iter().flat_map(|x| x.to_le_bytes()));
        let mut fb = npy_header(">f8", true, r, c);
        for j in 0..c {
            for i in 0..r {
                fb.extend_from_slice(&want[(i, j)].to_be_bytes());
            }
        }
        prop_assert_eq!(&read_matrix_from_bytes(&cb, "c.npy", &limit()).unwrap(), &want);
        prop_assert_eq!(&read_matrix_from_bytes(&fb, "f.npy", &limit()).unwrap(), &want);
        let path = std::env::temp_dir().join(format!("bilevel-prop-{}.npy", std::process::id()));
        bilevel::npy::write_matrix(&path, &want).unwrap();
        prop_assert_eq!(&bilevel::npy::read_matrix(&path).unwrap(), &want);
    }

    #[test]
    fn csv_round_trips((r, c, vals) in matrix()) {
        prop_assume!(r > 0);
        let mut text = String::from("h1,h2\n");
        for i in 0..r {
            let row: Vec<String> = (0..c).map(|j| format!("{:?}", vals[i * c + j])).collect();
            text.push_str(&row.join(","));
            text.push('\n');
        }
        let m = read_csv_from_bytes(text.as_bytes(), "r.csv", &limit()).unwrap();
        prop_assert_eq!(m, Mat::from_fn(r, c, |i, j| vals[i * c + j]));
    }

    #[test]
    fn idx_round_trips_raw_and_gzip(
        dims in proptest::collection::vec(1u32..6, 1..4),
        seed in any::<u8>(),
    ) {
        let n: u32 = dims.iter().product();
        let mut b = vec![0, 0, 0x08, dims.len() as u8];
        for d in &dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend((0..n).map(|k| (k as u8).wrapping_mul(31).wrapping_add(seed)));
        let raw = read_idx_from_bytes(&b, "r.idx", &limit()).unwrap();
        let gz = read_idx_from_bytes(&gzip(&b), "r.idx.gz", &limit()).unwrap();
        prop_assert_eq!(&raw, &gz);
        prop_assert_eq!(&raw.dims, &dims.iter().map(|&d| d as usize).collect::<Vec<_>>());
        let vals = raw.to_f64();
        prop_assert_eq!(vals.len(), n as usize);
        prop_assert!(vals.iter().zip(&b[b.len() - n as usize..]).all(|(v, &x)| *v == f64::from(x)));
    }

    #[test]
    fn integer_and_name_labels_round_trip(labels in proptest::collection::vec(0usize..12, 1..40)) {
        let text: String = labels.iter().map(|l| format!("{l}\n")).collect();
        let (codes, names) = read_labels_from_bytes(text.as_bytes(), "y.csv", &limit()).unwrap();
        prop_assert_eq!(&codes, &labels);
        prop_assert!(names.is_none());
        let text: String = labels.iter().map(|l| format!("class {l}\n")).collect();
        let (codes, names) = read_labels_from_bytes(text.as_bytes(), "y.csv", &limit()).unwrap();
        let names = names.unwrap();
        prop_assert!(names.windows(2).all(|w| w[0] < w[1]));
        for (c, l) in codes.iter().zip(&labels) {
            prop_assert_eq!(&names[*c], &format!("class {l}"));
        }
    }
}
