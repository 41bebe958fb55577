//! Parsing and validation of a match request into a normalised
//! `MatchRequest`, in the order a client needs the answers: 413 for a body over
//! 64 KiB, 415 for a non-JSON content type, 400 for malformed JSON or a
//! non-object, and 422 listing every offending field (unknown fields included,
//! by name). The body is read as a JSON value and checked field by field, so
//! that one answer names all the problems, not just the first.

use serde_json::{Map, Value};

use crate::domain::{
    check_embedding, normalise_skills, EmploymentType, Filters, MatchRequest, DEFAULT_LIMIT,
    EMBEDDING_DIM, MAX_LIMIT,
};
use crate::error::{Error, FieldError};

/// Largest accepted body (DESIGN.md).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Field limits (issue 3; mirrored in openapi.yaml).
pub const MAX_SKILLS: usize = 100;
pub const MAX_SKILL_CHARS: usize = 64;
pub const MAX_LOCATIONS: usize = 50;
pub const MAX_LOCATION_CHARS: usize = 200;
pub const MAX_EXCLUDED_JOBS: usize = 1000;
pub const MAX_JOB_ID_CHARS: usize = 255;
pub const MAX_POSTED_WITHIN_DAYS: i64 = 3650;
/// Salaries are `int` columns.
pub const MAX_SALARY: i64 = i32::MAX as i64;

/// `text`: characters, not bytes (DESIGN.md "Text and embeddings").
pub const MAX_TEXT_CHARS: usize = 20_000;

const TOP_FIELDS: [&str; 5] = ["embedding", "text", "skills", "filters", "limit"];
const FILTER_FIELDS: [&str; 6] = [
    "locations",
    "remote",
    "employment_types",
    "min_salary",
    "posted_within_days",
    "exclude_job_ids",
];

/// Checks a `Content-Type` header: a body must be `application/json` or an
/// `application/*+json` type; parameters (`charset=utf-8`) are allowed. An
/// empty body needs no content type.
pub fn check_content_type(content_type: Option<&str>, body: &[u8]) -> Result<(), Error> {
    let Some(value) = content_type else {
        return if body.iter().all(u8::is_ascii_whitespace) {
            Ok(())
        } else {
            Err(Error::UnsupportedMediaType(
                "a request body needs `Content-Type: application/json`".into(),
            ))
        };
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType(format!(
            "content type `{}` is not supported; send application/json",
            essence.chars().take(100).collect::<String>()
        )))
    }
}

/// Parses and validates a request body (its content type already checked).
pub fn parse_match_request(body: &[u8]) -> Result<MatchRequest, Error> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge(MAX_BODY_BYTES));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return validate(&Map::new());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: Value = match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => value,
        // Valid JSON syntax whose number no float can hold (1e999): a value out
        // of contract at a known place, not malformed JSON.
        Err(e) if e.inner().to_string().starts_with("number out of range") => {
            let path = e.path().to_string();
            let field = path.split('[').next().unwrap_or_default();
            return Err(Error::Validation(vec![FieldError::new(
                if field.is_empty() || field == "." {
                    "body"
                } else {
                    field
                },
                format!("{path}: number out of range"),
            )]));
        }
        Err(e) => {
            return Err(Error::MalformedJson(format!(
                "malformed JSON: {}",
                e.inner()
            )))
        }
    };
    // Trailing content after the value (`{} {}`) is malformed too.
    de.end()
        .map_err(|e| Error::MalformedJson(format!("malformed JSON: {e}")))?;
    match value {
        Value::Object(map) => validate(&map),
        _ => Err(Error::MalformedJson(
            "the body must be a JSON object".into(),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Collects the field errors of one request.
#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    fn unknown_fields(&mut self, map: &Map<String, Value>, prefix: &str, known: &[&str]) {
        for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
            let name: String = key.chars().take(100).collect();
            self.fail(
                &format!("{prefix}{name}"),
                format!(
                    "unknown field `{name}`; expected one of {}",
                    known.join(", ")
                ),
            );
        }
    }

    fn integer(&mut self, field: &str, v: &Value, min: i64, max: i64) -> Option<i64> {
        match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.fail(field, format!("must be between {min} and {max}"));
                None
            }
            // u64 beyond i64, or a number with a fraction or exponent.
            None if v.is_number() && v.as_f64().is_some_and(|f| f.fract() != 0.0) => {
                self.fail(field, "must be an integer");
                None
            }
            None if v.is_number() => {
                self.fail(field, format!("must be between {min} and {max}"));
                None
            }
            None => {
                self.fail(field, format!("must be an integer, got {}", kind(v)));
                None
            }
        }
    }

    /// An array of at most `max_items` strings of at most `max_chars` characters.
    fn strings(
        &mut self,
        field: &str,
        v: &Value,
        max_items: usize,
        max_chars: usize,
    ) -> Option<Vec<String>> {
        let Some(items) = v.as_array() else {
            self.fail(
                field,
                format!("must be an array of strings, got {}", kind(v)),
            );
            return None;
        };
        if items.len() > max_items {
            self.fail(
                field,
                format!("must have at most {max_items} items, got {}", items.len()),
            );
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) if s.chars().count() <= max_chars => out.push(s.to_owned()),
                Some(_) => {
                    self.fail(
                        field,
                        format!("item {i} is longer than {max_chars} characters"),
                    );
                    return None;
                }
                None => {
                    self.fail(
                        field,
                        format!("item {i} must be a string, got {}", kind(item)),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    fn embedding(&mut self, v: &Value) -> Option<Vec<f32>> {
        let field = "embedding";
        let Some(items) = v.as_array() else {
            self.fail(
                field,
                format!(
                    "must be an array of {EMBEDDING_DIM} numbers, got {}",
                    kind(v)
                ),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            // Stored and searched as float4: a value beyond f32 becomes infinite.
            match item.as_f64() {
                Some(f) => out.push(f as f32),
                None => {
                    self.fail(
                        field,
                        format!("value at index {i} must be a number, got {}", kind(item)),
                    );
                    return None;
                }
            }
        }
        if let Err(e) = check_embedding(&out) {
            self.fail(field, e.to_string());
            return None;
        }
        Some(out)
    }

    /// A resume or search phrase: 1..=MAX_TEXT_CHARS characters, not only
    /// whitespace. Kept as sent: the model's tokenizer normalises it.
    fn text(&mut self, v: &Value) -> Option<String> {
        let field = "text";
        let Some(text) = v.as_str() else {
            self.fail(field, format!("must be a string, got {}", kind(v)));
            return None;
        };
        let chars = text.chars().count();
        if text.trim().is_empty() {
            self.fail(field, "must not be empty or only whitespace");
            None
        } else if chars > MAX_TEXT_CHARS {
            self.fail(
                field,
                format!("must be at most {MAX_TEXT_CHARS} characters, got {chars}"),
            );
            None
        } else {
            Some(text.to_owned())
        }
    }

    fn filters(&mut self, v: &Value) -> Filters {
        let mut filters = Filters::default();
        let Some(map) = v.as_object() else {
            self.fail("filters", format!("must be an object, got {}", kind(v)));
            return filters;
        };
        self.unknown_fields(map, "filters.", &FILTER_FIELDS);
        if let Some(v) = map.get("locations") {
            filters.locations =
                self.strings("filters.locations", v, MAX_LOCATIONS, MAX_LOCATION_CHARS);
        }
        if let Some(v) = map.get("remote") {
            match v.as_bool() {
                Some(b) => filters.remote = Some(b),
                None => self.fail(
                    "filters.remote",
                    format!("must be a boolean, got {}", kind(v)),
                ),
            }
        }
        if let Some(v) = map.get("employment_types") {
            filters.employment_types = self.employment_types(v);
        }
        if let Some(v) = map.get("min_salary") {
            filters.min_salary = self.integer("filters.min_salary", v, 0, MAX_SALARY);
        }
        if let Some(v) = map.get("posted_within_days") {
            filters.posted_within_days =
                self.integer("filters.posted_within_days", v, 1, MAX_POSTED_WITHIN_DAYS);
        }
        if let Some(v) = map.get("exclude_job_ids") {
            filters.exclude_job_ids = self.strings(
                "filters.exclude_job_ids",
                v,
                MAX_EXCLUDED_JOBS,
                MAX_JOB_ID_CHARS,
            );
        }
        filters
    }

    fn employment_types(&mut self, v: &Value) -> Option<Vec<EmploymentType>> {
        let field = "filters.employment_types";
        let names = self.strings(field, v, EmploymentType::ALL.len() * 4, 32)?;
        let mut out = Vec::with_capacity(names.len());
        for name in &names {
            match EmploymentType::ALL.into_iter().find(|t| t.as_str() == name) {
                Some(t) => out.push(t),
                None => {
                    let all: Vec<&str> = EmploymentType::ALL.iter().map(|t| t.as_str()).collect();
                    self.fail(field, format!("`{name}` is not one of {}", all.join(", ")));
                    return None;
                }
            }
        }
        Some(out)
    }
}

fn validate(map: &Map<String, Value>) -> Result<MatchRequest, Error> {
    let mut c = Checker::default();
    c.unknown_fields(map, "", &TOP_FIELDS);
    let embedding = map.get("embedding").and_then(|v| c.embedding(v));
    let text = map.get("text").and_then(|v| c.text(v));
    if map.contains_key("embedding") && map.contains_key("text") {
        c.fail(
            "text",
            "give either `text` or `embedding`, not both (neither: your stored profile)",
        );
    }
    let skills = map
        .get("skills")
        .and_then(|v| c.strings("skills", v, MAX_SKILLS, MAX_SKILL_CHARS));
    let mut filters = map.get("filters").map(|v| c.filters(v)).unwrap_or_default();
    let limit = match map.get("limit") {
        Some(v) => c.integer("limit", v, 1, i64::from(MAX_LIMIT)),
        None => Some(i64::from(DEFAULT_LIMIT)),
    };
    if !c.errors.is_empty() {
        return Err(Error::Validation(c.errors));
    }
    // Normalise so that equal requests compare (and fingerprint) equal: the
    // list filters are sets.
    let set = |list: &mut Vec<String>| {
        list.sort();
        list.dedup();
    };
    if let Some(locations) = &mut filters.locations {
        *locations = locations.iter().map(|l| l.trim().to_owned()).collect();
        set(locations);
    }
    if let Some(ids) = &mut filters.exclude_job_ids {
        set(ids);
    }
    if let Some(types) = &mut filters.employment_types {
        types.sort_by_key(|t| EmploymentType::as_str(*t));
        types.dedup();
    }
    Ok(MatchRequest {
        embedding,
        text,
        skills: skills.as_deref().map(normalise_skills),
        filters,
        limit: limit
            .and_then(|l| u32::try_from(l).ok())
            .unwrap_or(DEFAULT_LIMIT),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(err: Error) -> Vec<String> {
        match err {
            Error::Validation(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn embedding_json(value: &str) -> String {
        let mut items = vec!["0.01".to_string(); EMBEDDING_DIM];
        items[7] = value.to_string();
        format!(r#"{{"embedding":[{}]}}"#, items.join(","))
    }

    #[test]
    fn empty_body_means_profile_and_defaults() {
        let r = parse_match_request(b"").expect("valid");
        assert_eq!(r.limit, DEFAULT_LIMIT);
        assert!(r.embedding.is_none() && r.filters.is_empty());
    }

    #[test]
    fn malformed_json_and_non_objects_are_400() {
        for body in [
            &b"{"[..],
            b"[1]",
            b"42",
            b"nul",
            b"null",
            b"\"x\"",
            b"{} {}",
        ] {
            let err = parse_match_request(body).expect_err("rejected");
            assert_eq!(err.status(), 400, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn out_of_contract_values_list_every_field() {
        let body = br#"{"embedding":[1,2],"limit":0,"skills":"rust","limt":3,
            "filters":{"min_salary":-1,"posted_within_days":0,"remote":"yes",
                       "employment_types":["freelance"],"locatons":[]}}"#;
        let got = fields(parse_match_request(body).expect_err("invalid"));
        assert_eq!(
            got,
            [
                "limt",
                "embedding",
                "skills",
                "filters.locatons",
                "filters.remote",
                "filters.employment_types",
                "filters.min_salary",
                "filters.posted_within_days",
                "limit"
            ]
        );
    }

    #[test]
    fn text_is_a_non_blank_string_within_the_limit_and_never_with_an_embedding() {
        let r = parse_match_request(br#"{"text":"  Registered nurse  ","skills":["ICU"]}"#)
            .expect("valid");
        assert_eq!(r.text.as_deref(), Some("  Registered nurse  "));
        assert_eq!(r.skills, Some(vec!["icu".to_string()]));
        assert_eq!(
            r.source(),
            crate::domain::QuerySource::Text("  Registered nurse  ")
        );
        let at_limit = format!(r#"{{"text":"{}"}}"#, "é".repeat(MAX_TEXT_CHARS));
        assert!(parse_match_request(at_limit.as_bytes()).is_ok());
        let over = format!(r#"{{"text":"{}"}}"#, "a".repeat(MAX_TEXT_CHARS + 1));
        let both = format!(
            r#"{{"text":"nurse","embedding":[{}]}}"#,
            vec!["0.1"; 384].join(",")
        );
        for (body, why) in [
            (r#"{"text":""}"#.to_string(), "empty"),
            (r#"{"text":" \n\t "}"#.to_string(), "whitespace"),
            (r#"{"text":42}"#.to_string(), "got a number"),
            (r#"{"text":["a"]}"#.to_string(), "got an array"),
            (r#"{"text":null}"#.to_string(), "got null"),
            (over, "at most 20000 characters"),
            (both, "not both"),
        ] {
            match parse_match_request(body.as_bytes()) {
                Err(Error::Validation(errors)) => {
                    assert_eq!(errors.len(), 1, "{errors:?}");
                    assert_eq!(errors[0].field, "text");
                    assert!(errors[0].message.contains(why), "{why}: {errors:?}");
                }
                other => panic!("{why}: expected 422, got {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_fields_are_named() {
        match parse_match_request(br#"{"limt":5}"#) {
            Err(Error::Validation(errors)) => {
                assert_eq!(errors[0].field, "limt");
                assert!(errors[0].message.contains("`limt`"));
            }
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn embedding_rejects_overflow_strings_nulls_and_wrong_sizes() {
        for (value, why) in [
            ("1e999", "number out of range"),
            ("1e300", "not a finite 32-bit number"),
            ("\"0.5\"", "must be a number, got a string"),
            ("null", "must be a number, got null"),
        ] {
            match parse_match_request(embedding_json(value).as_bytes()) {
                Err(Error::Validation(errors)) => {
                    assert_eq!(errors.len(), 1);
                    assert_eq!(errors[0].field, "embedding");
                    assert!(errors[0].message.contains(why), "{value}: {errors:?}");
                }
                other => panic!("{value}: expected 422, got {other:?}"),
            }
        }
        let short = format!(r#"{{"embedding":[{}]}}"#, vec!["1"; 383].join(","));
        assert_eq!(
            fields(parse_match_request(short.as_bytes()).expect_err("383")),
            ["embedding"]
        );
        assert_eq!(
            fields(parse_match_request(br#"{"embedding":null}"#).expect_err("null")),
            ["embedding"]
        );
        for all in ["0", "1e-30", "1e20"] {
            let body = format!(
                r#"{{"embedding":[{}]}}"#,
                vec![all; EMBEDDING_DIM].join(",")
            );
            match parse_match_request(body.as_bytes()) {
                Err(Error::Validation(errors)) => {
                    assert_eq!(errors[0].field, "embedding");
                    assert!(errors[0].message.contains("non-zero length"), "{all}");
                }
                other => panic!("{all}: expected 422, got {other:?}"),
            }
        }
        assert_eq!(
            fields(parse_match_request(br#"{"limit":1e999}"#).expect_err("huge")),
            ["limit"]
        );
    }

    #[test]
    fn list_sizes_and_ranges_are_bounded() {
        let many =
            |n: usize, len: usize| serde_json::to_string(&vec!["x".repeat(len); n]).expect("json");
        let cases = [
            (format!(r#"{{"skills":{}}}"#, many(101, 3)), "skills"),
            (format!(r#"{{"skills":{}}}"#, many(1, 65)), "skills"),
            (r#"{"skills":[1]}"#.to_string(), "skills"),
            (
                format!(r#"{{"filters":{{"locations":{}}}}}"#, many(51, 3)),
                "filters.locations",
            ),
            (
                format!(r#"{{"filters":{{"exclude_job_ids":{}}}}}"#, many(1001, 3)),
                "filters.exclude_job_ids",
            ),
            (r#"{"limit":101}"#.into(), "limit"),
            (r#"{"limit":2.5}"#.into(), "limit"),
            (r#"{"limit":"5"}"#.into(), "limit"),
            (r#"{"limit":18446744073709551616}"#.into(), "limit"),
            (
                r#"{"filters":{"posted_within_days":3651}}"#.into(),
                "filters.posted_within_days",
            ),
            (r#"{"filters":[]}"#.into(), "filters"),
        ];
        for (body, field) in cases {
            assert_eq!(
                fields(parse_match_request(body.as_bytes()).expect_err(&body)),
                [field],
                "{body}"
            );
        }
        let ok = format!(
            r#"{{"skills":{},"filters":{{"locations":{},"exclude_job_ids":{},"posted_within_days":3650,"min_salary":0}},"limit":100}}"#,
            many(100, 64),
            many(50, 3),
            many(1000, 3)
        );
        assert!(parse_match_request(ok.as_bytes()).is_ok());
    }

    #[test]
    fn valid_request_is_normalised() {
        let emb: Vec<String> = (0..EMBEDDING_DIM)
            .map(|i| format!("{}", i as f32 / 1000.0))
            .collect();
        let body = format!(
            r#"{{"embedding":[{}],"skills":["Rust"," AWS ","rust"],"filters":{{"employment_types":["contract","full_time","contract"],"locations":[" Berlin","Austin","Berlin"]}},"limit":7}}"#,
            emb.join(",")
        );
        let r = parse_match_request(body.as_bytes()).expect("valid");
        assert_eq!(r.limit, 7);
        assert_eq!(r.embedding.as_ref().map(Vec::len), Some(EMBEDDING_DIM));
        assert_eq!(
            r.skills.as_deref(),
            Some(&["aws".to_string(), "rust".to_string()][..])
        );
        assert_eq!(
            r.filters.employment_types,
            Some(vec![EmploymentType::Contract, EmploymentType::FullTime])
        );
        assert_eq!(
            r.filters.locations,
            Some(vec!["Austin".to_string(), "Berlin".to_string()])
        );
    }

    #[test]
    fn oversized_body_is_413() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            parse_match_request(&body).expect_err("too big").status(),
            413
        );
    }

    #[test]
    fn content_type_must_be_json() {
        for ok in [
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            Some("application/merge-patch+json"),
        ] {
            assert!(check_content_type(ok, b"{}").is_ok(), "{ok:?}");
        }
        assert!(check_content_type(None, b"").is_ok());
        for bad in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let err = check_content_type(bad, b"{}").expect_err("415");
            assert_eq!(err.status(), 415, "{bad:?}");
        }
    }

    /// Arbitrary JSON values, biased towards the request's own shape.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z_ ]{0,12}".prop_map(Value::String),
            prop::sample::select(vec![
                "full_time",
                "contract",
                "limit",
                "filters",
                "embedding"
            ])
            .prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            let keys = prop::sample::select(vec![
                "embedding",
                "skills",
                "filters",
                "limit",
                "locations",
                "remote",
                "employment_types",
                "min_salary",
                "posted_within_days",
                "exclude_job_ids",
                "limt",
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..6).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
            ]
        })
    }

    /// Cases per property (2 properties: 8192 generated inputs a run).
    /// `PROPTEST_CASES` overrides it for a longer fuzzing run.
    const CASES: u32 = 4096;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(CASES),
            ..ProptestConfig::default()
        })]

        /// Any bytes: an answer, never a panic, and only the contract's statuses.
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            match parse_match_request(&body) {
                Ok(r) => prop_assert!((1..=MAX_LIMIT).contains(&r.limit)),
                Err(e) => prop_assert!(matches!(e.status(), 400 | 413 | 422), "{e:?}"),
            }
        }

        /// Structured JSON near the contract: valid requests come back
        /// normalised and within bounds; invalid ones list at least one field.
        #[test]
        fn arbitrary_json_is_validated(value in json_value()) {
            let body = serde_json::to_vec(&value).expect("json");
            match parse_match_request(&body) {
                Ok(r) => {
                    prop_assert!((1..=MAX_LIMIT).contains(&r.limit));
                    prop_assert!(r.embedding.as_ref().is_none_or(|e| e.len() == EMBEDDING_DIM));
                    // Normalising is idempotent: the stored request, sent
                    // again, is the same request (idempotency keys rely on it).
                    let again = serde_json::to_vec(&r).expect("json");
                    let reparsed = parse_match_request(&again).expect("normalised is valid");
                    prop_assert_eq!(reparsed, r);
                }
                Err(Error::Validation(errors)) => prop_assert!(!errors.is_empty()),
                Err(e) => prop_assert_eq!(e.status(), 400, "{:?}", e),
            }
        }
    }
}
