//! Parsing and validation of a match request body into a normalised
//! `MatchRequest`: malformed JSON is a 400, values out of contract a 422 that
//! lists every offending field.

use serde::Deserialize;

use crate::domain::{
    check_embedding, normalise_skills, EmploymentType, Filters, MatchRequest, DEFAULT_LIMIT,
    MAX_LIMIT,
};
use crate::error::{Error, FieldError};

/// Largest accepted body (DESIGN.md).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    embedding: Option<Vec<f32>>,
    #[serde(default)]
    skills: Option<Vec<String>>,
    #[serde(default)]
    filters: Option<Filters>,
    #[serde(default)]
    limit: Option<i64>,
}

/// Parses and validates a request body.
pub fn parse_match_request(body: &[u8]) -> Result<MatchRequest, Error> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Object(Default::default())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| Error::MalformedJson(format!("malformed JSON: {e}")))?
    };
    if !value.is_object() {
        return Err(Error::MalformedJson(
            "the body must be a JSON object".into(),
        ));
    }
    let raw: RawRequest = serde_json::from_value(value)
        .map_err(|e| Error::Validation(vec![FieldError::new("body", e.to_string())]))?;
    validate(raw)
}

fn validate(raw: RawRequest) -> Result<MatchRequest, Error> {
    let mut errors = Vec::new();
    if let Some(embedding) = &raw.embedding {
        if let Err(e) = check_embedding(embedding) {
            errors.push(FieldError::new("embedding", e.to_string()));
        }
    }
    let limit = raw.limit.unwrap_or(i64::from(DEFAULT_LIMIT));
    if !(1..=i64::from(MAX_LIMIT)).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let mut filters = raw.filters.unwrap_or_default();
    if let Some(min) = filters.min_salary {
        if min < 0 {
            errors.push(FieldError::new("filters.min_salary", "must be at least 0"));
        }
    }
    if let Some(days) = filters.posted_within_days {
        if !(1..=3650).contains(&days) {
            errors.push(FieldError::new(
                "filters.posted_within_days",
                "must be between 1 and 3650",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    // Normalise so that equal requests compare equal.
    if let Some(locations) = &mut filters.locations {
        *locations = locations.iter().map(|l| l.trim().to_owned()).collect();
    }
    if let Some(types) = &mut filters.employment_types {
        types.sort_by_key(|t| EmploymentType::as_str(*t));
        types.dedup();
    }
    Ok(MatchRequest {
        embedding: raw.embedding,
        skills: raw.skills.as_deref().map(normalise_skills),
        filters,
        limit: u32::try_from(limit).unwrap_or(DEFAULT_LIMIT),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EMBEDDING_DIM;

    #[test]
    fn empty_body_means_profile_and_defaults() {
        let r = parse_match_request(b"").expect("valid");
        assert_eq!(r.limit, DEFAULT_LIMIT);
        assert!(r.embedding.is_none() && r.filters.is_empty());
    }

    #[test]
    fn malformed_json_and_non_objects_are_400() {
        for body in [&b"{"[..], b"[1]", b"42", b"nul"] {
            let err = parse_match_request(body).expect_err("rejected");
            assert_eq!(err.status(), 400, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn out_of_contract_values_list_every_field() {
        let body =
            br#"{"embedding":[1,2],"limit":0,"filters":{"min_salary":-1,"posted_within_days":0}}"#;
        match parse_match_request(body) {
            Err(Error::Validation(errors)) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(
                    fields,
                    [
                        "embedding",
                        "limit",
                        "filters.min_salary",
                        "filters.posted_within_days"
                    ]
                );
            }
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_are_named() {
        match parse_match_request(br#"{"limt":5}"#) {
            Err(Error::Validation(errors)) => assert!(errors[0].message.contains("limt")),
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn valid_request_is_normalised() {
        let emb: Vec<String> = (0..EMBEDDING_DIM)
            .map(|i| format!("{}", i as f32 / 1000.0))
            .collect();
        let body = format!(
            r#"{{"embedding":[{}],"skills":["Rust"," AWS ","rust"],"filters":{{"employment_types":["contract","full_time","contract"]}},"limit":7}}"#,
            emb.join(",")
        );
        let r = parse_match_request(body.as_bytes()).expect("valid");
        assert_eq!(r.limit, 7);
        assert_eq!(
            r.skills.as_deref(),
            Some(&["aws".to_string(), "rust".to_string()][..])
        );
        assert_eq!(
            r.filters.employment_types,
            Some(vec![EmploymentType::Contract, EmploymentType::FullTime])
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
}
