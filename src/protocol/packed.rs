//! Predictions on the wire, packed: numbers as one `bin` of little-endian `f64`, classes as
//! their names once and one `u32` code per row. Decoding a batch's answer is then a pass over
//! its bytes, not a value per row. Used as `#[serde(with = "packed")]` on the `preds` of
//! `Response::Predictions` and `Response::Ensemble`.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ml::Predictions;

#[derive(Serialize, Deserialize)]
enum Packed {
    Regression(Bytes),
    Classification { classes: Vec<String>, codes: Bytes },
}

pub fn serialize<S: Serializer>(preds: &Predictions, s: S) -> Result<S::Ok, S::Error> {
    let packed = match preds {
        Predictions::Regression(v) => {
            let mut b = Vec::with_capacity(8 * v.len());
            for x in v {
                b.extend_from_slice(&x.to_le_bytes());
            }
            Packed::Regression(Bytes::from(b))
        }
        Predictions::Classification(v) => {
            let mut classes: Vec<String> = Vec::new();
            let mut codes = Vec::with_capacity(4 * v.len());
            for c in v {
                let code = match classes.iter().position(|k| k == c) {
                    Some(at) => at,
                    None => {
                        classes.push(c.clone());
                        classes.len() - 1
                    }
                };
                codes.extend_from_slice(&(code as u32).to_le_bytes());
            }
            Packed::Classification {
                classes,
                codes: Bytes::from(codes),
            }
        }
    };
    packed.serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Predictions, D::Error> {
    use serde::de::Error;
    match Packed::deserialize(d)? {
        Packed::Regression(b) => regression(&b),
        Packed::Classification { classes, codes } => classification(&classes, &codes),
    }
    .map_err(D::Error::custom)
}

/// Numbers from their packed bytes.
pub(super) fn regression(b: &[u8]) -> Result<Predictions, &'static str> {
    if !b.len().is_multiple_of(8) {
        return Err("predictions: a partial number");
    }
    Ok(Predictions::Regression(
        b.chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
    ))
}

/// Classes from their names and packed codes.
pub(super) fn classification(
    classes: &[impl AsRef<str>],
    codes: &[u8],
) -> Result<Predictions, &'static str> {
    if !codes.len().is_multiple_of(4) {
        return Err("predictions: a partial class code");
    }
    codes
        .chunks_exact(4)
        .map(|c| {
            let code = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize;
            classes
                .get(code)
                .map(|k| k.as_ref().to_owned())
                .ok_or("predictions: a class code out of range")
        })
        .collect::<Result<Vec<String>, _>>()
        .map(Predictions::Classification)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        #[serde(with = "super")]
        preds: Predictions,
    }

    #[test]
    fn both_kinds_round_trip_in_a_few_bytes() {
        for preds in [
            Predictions::Regression((0..1000).map(|i| i as f64 * 0.37 - 5.0).collect()),
            Predictions::Classification((0..1000).map(|i| ["b", "a"][i % 2].into()).collect()),
        ] {
            let h = Holder { preds };
            let bytes = rmp_serde::to_vec_named(&h).expect("encodes");
            assert!(bytes.len() < 8 * 1000 + 64, "{} bytes", bytes.len());
            let back: Holder = rmp_serde::from_slice(&bytes).expect("decodes");
            assert_eq!(back, h);
        }
    }

    #[test]
    fn a_code_beyond_the_classes_is_an_error() {
        let bad = Packed::Classification {
            classes: vec!["a".into()],
            codes: Bytes::from(7u32.to_le_bytes().to_vec()),
        };
        #[derive(Serialize)]
        struct Out {
            preds: Packed,
        }
        let bytes = rmp_serde::to_vec_named(&Out { preds: bad }).expect("encodes");
        assert!(rmp_serde::from_slice::<Holder>(&bytes).is_err());
    }
}
