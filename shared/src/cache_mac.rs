//! The cache's entries are authenticated (issue 27): each row of
//! `match_cache` and `embedding_cache` carries an HMAC-SHA256 over its key
//! and everything a reader relies on, keyed by a secret that is not a
//! database credential (`CACHE_MAC_KEY`, or the Secrets Manager secret
//! `CACHE_MAC_KEY_ARN` names). The functions' database role may write the
//! cache's tables; with this, whoever holds only a database login can delete
//! or spoil entries (misses) but cannot plant one that a reader serves.
//!
//! The MAC's input is a sequence of fields, each with its length in front
//! (8 bytes, big-endian), an optional one behind a presence byte, and a
//! first field naming the table and the format: no two entries share an
//! input (the tests decode it back).

use chrono::{DateTime, Utc};
use ring::hmac;

use crate::config::{ConfigError, Secret};
use crate::domain::EmbedProgress;
use crate::ports::{CacheKey, DataVersions};

/// Shorter keys are refused at init: HMAC-SHA256's security needs 256 bits.
pub const MIN_KEY_BYTES: usize = 32;

const RESULT_FORMAT: &[u8] = b"jobmatch match_cache v1";
const EMBEDDING_FORMAT: &[u8] = b"jobmatch embedding_cache v1";
const PROGRESS_FORMAT: &[u8] = b"jobmatch embedding progress v1";

/// The key that signs and verifies the cache's entries.
#[derive(Clone)]
pub struct CacheMac {
    key: hmac::Key,
}

impl std::fmt::Debug for CacheMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheMac(***)")
    }
}

/// Why an entry is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No MAC or no payload: written without one (an older release) or by
    /// hand.
    Missing,
    /// Written without the key, or changed since.
    Mismatch,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Mismatch => "mismatch",
        }
    }
}

/// A stored result as its reader relies on it: the key asked for, the
/// owner and data versions the lookup matched, when it ends, and the
/// result's JSON exactly as stored.
#[derive(Debug, Clone, Copy)]
pub struct ResultEntry<'a> {
    pub key: &'a CacheKey,
    pub profile_user: Option<&'a str>,
    pub versions: DataVersions,
    /// Microsecond precision, as PostgreSQL keeps it ([`to_micros`]).
    pub expires_at: DateTime<Utc>,
    pub result_json: &'a [u8],
}

impl CacheMac {
    /// `variable` names the setting in the error of a short key.
    pub fn new(secret: &Secret, variable: &str) -> Result<CacheMac, ConfigError> {
        let bytes = secret.expose().as_bytes();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(ConfigError::new(format!(
                "{variable}: the cache's MAC key has {} bytes; at least {MIN_KEY_BYTES} are needed",
                bytes.len()
            )));
        }
        Ok(CacheMac {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        })
    }

    pub fn sign_result(&self, entry: &ResultEntry<'_>) -> Vec<u8> {
        hmac::sign(&self.key, &result_input(entry))
            .as_ref()
            .to_vec()
    }

    /// Constant-time comparison (`ring::hmac::verify`).
    pub fn verify_result(
        &self,
        entry: &ResultEntry<'_>,
        mac: Option<&[u8]>,
    ) -> Result<(), Rejection> {
        let mac = mac.ok_or(Rejection::Missing)?;
        hmac::verify(&self.key, &result_input(entry), mac).map_err(|_| Rejection::Mismatch)
    }

    pub fn sign_embedding(&self, key: &CacheKey, embedding: &[f32]) -> Vec<u8> {
        hmac::sign(&self.key, &embedding_input(key, embedding))
            .as_ref()
            .to_vec()
    }

    pub fn verify_embedding(
        &self,
        key: &CacheKey,
        embedding: &[f32],
        mac: Option<&[u8]>,
    ) -> Result<(), Rejection> {
        let mac = mac.ok_or(Rejection::Missing)?;
        hmac::verify(&self.key, &embedding_input(key, embedding), mac)
            .map_err(|_| Rejection::Mismatch)
    }

    /// `progress` of task `task_id`, sealed: its `mac` set. A handed-back
    /// task's progress travels through the queue, which more principals can
    /// write than the worker; an unsealed one could choose a text's vector,
    /// which the cache would then serve to everyone (issue 27's review).
    pub fn seal_progress(&self, task_id: &str, mut progress: EmbedProgress) -> EmbedProgress {
        use base64::Engine;
        let tag = hmac::sign(&self.key, &progress_input(task_id, &progress));
        progress.mac = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
        progress
    }

    /// `progress` if it was sealed for `task_id` with this key (constant-time).
    pub fn open_progress(&self, task_id: &str, progress: EmbedProgress) -> Option<EmbedProgress> {
        use base64::Engine;
        let mac = base64::engine::general_purpose::STANDARD
            .decode(&progress.mac)
            .ok()?;
        hmac::verify(&self.key, &progress_input(task_id, &progress), &mac).ok()?;
        Some(progress)
    }
}

fn progress_input(task_id: &str, p: &EmbedProgress) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + p.sum.len());
    field(&mut out, PROGRESS_FORMAT);
    field(&mut out, task_id.as_bytes());
    field(&mut out, p.key.as_bytes());
    field(&mut out, &p.windows.to_be_bytes());
    field(&mut out, &p.tokens.to_be_bytes());
    field(&mut out, p.sum.as_bytes());
    out
}

/// `t` truncated to what a `timestamptz` keeps, so that the time signed is
/// the time read back.
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn optional(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            field(out, b);
        }
    }
}

fn result_input(e: &ResultEntry<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + e.result_json.len());
    field(&mut out, RESULT_FORMAT);
    field(&mut out, e.key);
    field(&mut out, &e.versions.jobs.to_be_bytes());
    optional(&mut out, e.profile_user.map(str::as_bytes));
    optional(
        &mut out,
        e.versions
            .profile
            .map(i64::to_be_bytes)
            .as_ref()
            .map(|b| &b[..]),
    );
    field(&mut out, &e.expires_at.timestamp_micros().to_be_bytes());
    field(&mut out, e.result_json);
    out
}

fn embedding_input(key: &CacheKey, embedding: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 4 * embedding.len());
    field(&mut out, EMBEDDING_FORMAT);
    field(&mut out, key);
    let bytes: Vec<u8> = embedding.iter().flat_map(|x| x.to_le_bytes()).collect();
    field(&mut out, &bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mac() -> CacheMac {
        CacheMac::new(&Secret::new("k".repeat(32)), "CACHE_MAC_KEY").expect("key")
    }

    /// Reads the fields back: the input is a sequence of these, so two
    /// entries with one input would decode to one entry.
    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn field(&mut self) -> &'a [u8] {
            let (len, rest) = self.0.split_at(8);
            let len = u64::from_be_bytes(len.try_into().expect("8 bytes")) as usize;
            let (value, rest) = rest.split_at(len);
            self.0 = rest;
            value
        }
        fn optional(&mut self) -> Option<&'a [u8]> {
            let (flag, rest) = self.0.split_first().expect("a presence byte");
            self.0 = rest;
            match flag {
                0 => None,
                1 => Some(self.field()),
                other => panic!("presence byte {other}"),
            }
        }
        fn i64(&mut self) -> i64 {
            i64::from_be_bytes(self.field().try_into().expect("8 bytes"))
        }
    }

    type Decoded = (Vec<u8>, i64, Option<String>, Option<i64>, i64, Vec<u8>);

    fn decode_result(input: &[u8]) -> Decoded {
        let mut r = Reader(input);
        assert_eq!(r.field(), RESULT_FORMAT);
        let key = r.field().to_vec();
        let jobs = r.i64();
        let user = r
            .optional()
            .map(|b| String::from_utf8(b.to_vec()).expect("utf-8"));
        let profile = r
            .optional()
            .map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes")));
        let expires = r.i64();
        let json = r.field().to_vec();
        assert!(r.0.is_empty(), "nothing after the last field");
        (key, jobs, user, profile, expires, json)
    }

    fn at(micros: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(micros).expect("time")
    }

    proptest! {
        #[test]
        fn the_result_input_decodes_to_its_entry(
            key in any::<[u8; 32]>(),
            jobs in any::<i64>(),
            user in proptest::option::of(".{0,12}"),
            profile in proptest::option::of(any::<i64>()),
            micros in -10_000_000_000_000_000i64..10_000_000_000_000_000,
            json in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let entry = ResultEntry {
                key: &key,
                profile_user: user.as_deref(),
                versions: DataVersions { jobs, profile },
                expires_at: at(micros),
                result_json: &json,
            };
            let decoded = decode_result(&result_input(&entry));
            prop_assert_eq!(decoded, (key.to_vec(), jobs, user, profile, micros, json));
        }

        #[test]
        fn the_embedding_input_decodes_to_its_entry(
            key in any::<[u8; 32]>(),
            vector in proptest::collection::vec(any::<f32>(), 0..8),
        ) {
            let input = embedding_input(&key, &vector);
            let mut r = Reader(&input);
            prop_assert_eq!(r.field(), EMBEDDING_FORMAT);
            prop_assert_eq!(r.field(), &key[..]);
            let bytes = r.field();
            prop_assert!(r.0.is_empty());
            let back: Vec<u32> = bytes
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")).to_bits())
                .collect();
            prop_assert_eq!(back, vector.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        }
    }

    fn entry<'a>(user: Option<&'a str>, json: &'a [u8]) -> ResultEntry<'a> {
        ResultEntry {
            key: &[7; 32],
            profile_user: user,
            versions: DataVersions {
                jobs: 3,
                profile: None,
            },
            expires_at: at(1_800_000_000_000_000),
            result_json: json,
        }
    }

    /// Bytes moved from one field to the next, or an absent field made
    /// empty, give another input: concatenation alone would not.
    #[test]
    fn field_boundaries_and_absence_are_part_of_the_input() {
        let split = |user, json| result_input(&entry(Some(user), json));
        assert_ne!(split("ab", b"c"), split("a", b"bc"));
        assert_ne!(
            result_input(&entry(None, b"{}")),
            result_input(&entry(Some(""), b"{}"))
        );
        let mut zero = entry(None, b"{}");
        zero.versions.profile = Some(0);
        assert_ne!(result_input(&zero), result_input(&entry(None, b"{}")));
        // The two tables never share an input, whatever their payloads.
        let vector = embedding_input(&[7; 32], &[]);
        assert_ne!(
            &vector[..8 + EMBEDDING_FORMAT.len()],
            &result_input(&zero)[..8 + RESULT_FORMAT.len()]
        );
    }

    #[test]
    fn a_signed_entry_verifies_and_any_change_does_not() {
        let mac = mac();
        let json = br#"{"matches":[],"count":0}"#;
        let good = entry(Some("alice"), json);
        let tag = mac.sign_result(&good);
        assert_eq!(mac.verify_result(&good, Some(&tag)), Ok(()));
        assert_eq!(mac.verify_result(&good, None), Err(Rejection::Missing));

        let mut changes = Vec::new();
        let mut e = good;
        e.key = &[8; 32];
        changes.push(e);
        let mut e = good;
        e.profile_user = Some("mallory");
        changes.push(e);
        let mut e = good;
        e.versions.jobs = 4;
        changes.push(e);
        let mut e = good;
        e.versions.profile = Some(1);
        changes.push(e);
        let mut e = good;
        e.expires_at = at(1_800_000_000_000_001);
        changes.push(e);
        let planted = br#"{"matches":[],"count":1}"#;
        let mut e = good;
        e.result_json = planted;
        changes.push(e);
        for changed in changes {
            assert_eq!(
                mac.verify_result(&changed, Some(&tag)),
                Err(Rejection::Mismatch),
                "{changed:?}"
            );
        }
        let other = CacheMac::new(&Secret::new("o".repeat(32)), "CACHE_MAC_KEY").expect("key");
        assert_eq!(
            other.verify_result(&good, Some(&tag)),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            mac.verify_result(&good, Some(&tag[..31])),
            Err(Rejection::Mismatch)
        );

        let vector = [0.5f32, -0.25];
        let tag = mac.sign_embedding(&[1; 32], &vector);
        assert_eq!(mac.verify_embedding(&[1; 32], &vector, Some(&tag)), Ok(()));
        assert_eq!(
            mac.verify_embedding(&[1; 32], &[0.5, -0.5], Some(&tag)),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            mac.verify_embedding(&[2; 32], &vector, Some(&tag)),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_short_key_is_refused_naming_its_setting() {
        let err =
            CacheMac::new(&Secret::new("k".repeat(31)), "CACHE_MAC_KEY_ARN").expect_err("31 bytes");
        let text = err.to_string();
        assert!(
            text.contains("CACHE_MAC_KEY_ARN") && text.contains("31 bytes"),
            "{text}"
        );
        assert!(CacheMac::new(&Secret::new("k".repeat(32)), "CACHE_MAC_KEY").is_ok());
    }

    #[test]
    fn times_are_signed_as_postgresql_keeps_them() {
        let t = DateTime::from_timestamp(1_800_000_000, 123_456_789).expect("time");
        assert_eq!(to_micros(t).timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn progress_opens_only_for_its_task_and_unchanged() {
        let p = EmbedProgress::new("model", "a resume", 3, 700, &[0.25; 384]);
        let sealed = mac().seal_progress("t1", p.clone());
        assert!(!sealed.mac.is_empty());
        assert_eq!(
            mac().open_progress("t1", sealed.clone()),
            Some(sealed.clone())
        );
        assert_eq!(
            mac().open_progress("t2", sealed.clone()),
            None,
            "another task"
        );
        assert_eq!(mac().open_progress("t1", p.clone()), None, "unsealed");
        let moved = EmbedProgress {
            windows: 4,
            ..sealed.clone()
        };
        assert_eq!(mac().open_progress("t1", moved), None, "changed");
        let other_key = CacheMac::new(&Secret::new("j".repeat(32)), "K").expect("key");
        assert_eq!(other_key.open_progress("t1", sealed), None, "another key");
    }
}
