//! The match request, defined once: each field's name, type, rule and JSON
//! schema sit on one line of [`request_object!`]. From that line come the
//! stored form (serde; it accepts unknown fields, so that an older worker
//! reads a task written by a newer api during a deploy), the HTTP parse and
//! its 422 answers, and the schema that `openapi.yaml` is checked against.
//! A filter's SQL predicate sits beside its in-memory one in
//! [`Filters::clauses`]; `jobmatch_filter_sql` (db/) is generated from it.
//!
//! The HTTP parse answers in the order a client needs: 413 for a body over 64
//! KiB, 415 for a non-JSON content type, 400 for malformed JSON or a
//! non-object, and 422 listing every offending field (unknown fields
//! included, by name): each field is read on its own, so that one answer
//! names all the problems, not just the first.

use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::domain::{check_embedding, normalise_skills, EmploymentType, JobRecord, EMBEDDING_DIM};
use crate::error::{Error, FieldError};

/// Largest accepted body (DESIGN.md).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Default and bounds of `limit`.
pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;
/// Field limits (issue 3; `openapi.yaml` is checked against them).
pub const MAX_SKILLS: usize = 100;
pub const MAX_SKILL_CHARS: usize = 64;
pub const MAX_LOCATIONS: usize = 50;
pub const MAX_LOCATION_CHARS: usize = 200;
pub const MAX_EMPLOYMENT_TYPES: usize = EmploymentType::ALL.len() * 4;
pub const MAX_EXCLUDED_JOBS: usize = 1000;
pub const MAX_JOB_ID_CHARS: usize = 255;
pub const MAX_POSTED_WITHIN_DAYS: i64 = 3650;
/// Salaries are `int` columns.
pub const MAX_SALARY: i64 = i32::MAX as i64;
/// `text`: characters, not bytes (DESIGN.md "Text and embeddings").
pub const MAX_TEXT_CHARS: usize = 20_000;
/// `callback.url`, in bytes. Its scheme and address are checked by the api
/// (`crate::callback`), which knows the deployment's allowed hosts.
pub use crate::callback::MAX_URL_BYTES as MAX_CALLBACK_URL_BYTES;

/// How one field is read from a JSON body, and its JSON schema.
pub trait Rule {
    type Out;
    /// The value, or `None` with the reasons pushed to `errors` (at `field`
    /// or below it).
    fn read(&self, v: &Value, field: &str, errors: &mut Vec<FieldError>) -> Option<Self::Out>;
    /// The value of an absent field.
    fn absent(&self) -> Self::Out;
    /// The field's JSON schema (the properties `openapi.yaml` must state).
    fn schema(&self) -> Value;
}

/// An object of the request: its field names and how it is read.
pub trait RequestObject: Sized {
    const FIELDS: &'static [&'static str];
    /// Reads the fields of `map`; `prefix` is the path of the object's fields.
    fn read(map: &Map<String, Value>, prefix: &str, errors: &mut Vec<FieldError>) -> Self;
    /// `{field: schema}` of every field.
    fn schemas() -> Map<String, Value>;
}

/// Declares a request object: the struct (with serde) and its
/// [`RequestObject`] impl, from one line per field: `name: Type = rule`.
macro_rules! request_object {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $rule:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl RequestObject for $name {
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            fn read(map: &Map<String, Value>, prefix: &str, errors: &mut Vec<FieldError>) -> Self {
                unknown_fields(map, prefix, Self::FIELDS, errors);
                $name {
                    $( $field: {
                        let rule = $rule;
                        match map.get(stringify!($field)) {
                            Some(v) => rule
                                .read(v, &format!("{prefix}{}", stringify!($field)), errors)
                                .unwrap_or_else(|| rule.absent()),
                            None => rule.absent(),
                        }
                    }, )*
                }
            }

            fn schemas() -> Map<String, Value> {
                let mut out = Map::new();
                $( out.insert(stringify!($field).to_owned(), Rule::schema(&$rule)); )*
                out
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: Rule::absent(&$rule), )* }
            }
        }
    };
}

request_object! {
    /// Filters of a match request; all optional, combined with AND. A new
    /// filter is a line here and its clause in [`Filters::clauses`] (its SQL
    /// and in-memory predicates); the compiler asks for the clause.
    pub struct Filters {
        /// Case-insensitive (Unicode lower case, as PostgreSQL's `lower`), any of.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locations: Option<Vec<String>> = optional(set_of(strings(1, MAX_LOCATIONS, MAX_LOCATION_CHARS), |s| s.trim().to_owned())),
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote: Option<bool> = optional(boolean()),
        /// Any of.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        employment_types: Option<Vec<EmploymentType>> = optional(employment_types()),
        /// Jobs whose `salary_max` (or `salary_min`) reaches it; none without a salary.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_salary: Option<i64> = optional(integer(0, MAX_SALARY)),
        #[serde(default, skip_serializing_if = "Option::is_none")]
        posted_within_days: Option<i64> = optional(integer(1, MAX_POSTED_WITHIN_DAYS)),
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exclude_job_ids: Option<Vec<String>> = optional(set_of(strings(0, MAX_EXCLUDED_JOBS, MAX_JOB_ID_CHARS), str::to_owned)),
    }
}

request_object! {
    /// A validated, normalised match request, as stored with its task.
    pub struct MatchRequest {
        /// Inline query embedding; with neither it nor `text`, the caller's
        /// stored profile is the query.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        embedding: Option<Vec<f32>> = optional(embedding()),
        /// A resume or search phrase, embedded by the worker (never with `embedding`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String> = optional(text()),
        /// Skills for the overlap score; `None` means the profile's skills.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skills: Option<Vec<String>> = optional(skills()),
        #[serde(default)]
        filters: Filters = Nested::<Filters>(PhantomData),
        #[serde(default = "default_limit")]
        limit: u32 = Or(limit(), DEFAULT_LIMIT),
        /// Where to POST the task's status when it ends (DESIGN.md "Cancel
        /// and completion callbacks"). Not part of the cache's key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        callback: Option<Callback> = CallbackRule,
    }
}

/// A match request's `callback`: the URL the ended task is POSTed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    pub url: String,
}

/// `callback`: an object with exactly one field, `url`, a string of
/// 1..=[`MAX_CALLBACK_URL_BYTES`] bytes; each problem names its field.
pub struct CallbackRule;

impl Rule for CallbackRule {
    type Out = Option<Callback>;

    fn read(&self, v: &Value, field: &str, errors: &mut Vec<FieldError>) -> Option<Self::Out> {
        let Some(map) = v.as_object() else {
            errors.push(FieldError::new(
                field,
                format!("must be an object with a `url`, got {}", kind(v)),
            ));
            return None;
        };
        let before = errors.len();
        unknown_fields(map, &format!("{field}."), &["url"], errors);
        let url_field = format!("{field}.url");
        let url = match map.get("url") {
            None => Err("is required".to_owned()),
            Some(Value::String(u)) if u.is_empty() => Err("must not be empty".to_owned()),
            Some(Value::String(u)) if u.len() > MAX_CALLBACK_URL_BYTES => Err(format!(
                "must be at most {MAX_CALLBACK_URL_BYTES} bytes, got {}",
                u.len()
            )),
            Some(Value::String(u)) => Ok(u.clone()),
            Some(other) => Err(format!("must be a string, got {}", kind(other))),
        };
        let url = push_err(&url_field, url, errors)?;
        (errors.len() == before).then_some(Some(Callback { url }))
    }

    fn absent(&self) -> Option<Callback> {
        None
    }

    fn schema(&self) -> Value {
        json!({
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string", "minLength": 1, "maxLength": MAX_CALLBACK_URL_BYTES}},
        })
    }
}

fn default_limit() -> u32 {
    DEFAULT_LIMIT
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        self == &Filters::default()
    }

    /// Whether `job` passes the filters at `now`: the in-memory index's
    /// predicate, every clause's.
    pub fn admits(&self, job: &JobRecord, now: DateTime<Utc>) -> bool {
        self.clauses().iter().all(|c| c.admits(job, now))
    }

    /// Every filter, each with its SQL predicate and its in-memory predicate
    /// side by side; the one definition of what a filter means. Listed by
    /// destructuring, so that a new field does not compile without its clause.
    pub fn clauses(&self) -> [FilterClause<'_>; 6] {
        let Filters {
            locations,
            remote,
            employment_types,
            min_salary,
            posted_within_days,
            exclude_job_ids,
        } = self;
        [
            FilterClause::new(
                "locations",
                SqlType::LowerTexts,
                "lower(location) = ANY ({v})",
                locations.as_ref().map(|ls| {
                    let ls: Vec<String> = ls.iter().map(|l| l.to_lowercase()).collect();
                    let test = {
                        let ls = ls.clone();
                        move |j: &JobRecord, _: DateTime<Utc>| {
                            ls.contains(&j.location.to_lowercase())
                        }
                    };
                    (SqlValue::Texts(ls), boxed(test))
                }),
            ),
            FilterClause::new(
                "remote",
                SqlType::Boolean,
                "remote = {v}",
                remote.map(|r| {
                    (
                        SqlValue::Boolean(r),
                        boxed(move |j: &JobRecord, _| j.remote == r),
                    )
                }),
            ),
            FilterClause::new(
                "employment_types",
                SqlType::Texts,
                "employment_type = ANY ({v})",
                employment_types.as_ref().map(|ts| {
                    let names = ts.iter().map(|t| t.as_str().to_owned()).collect();
                    let test =
                        move |j: &JobRecord, _: DateTime<Utc>| ts.contains(&j.employment_type);
                    (SqlValue::Texts(names), boxed(test))
                }),
            ),
            FilterClause::new(
                "min_salary",
                SqlType::BigInt,
                "coalesce(salary_max, salary_min) >= {v}",
                min_salary.map(|m| {
                    let test = move |j: &JobRecord, _: DateTime<Utc>| {
                        j.salary_max
                            .or(j.salary_min)
                            .is_some_and(|r| i64::from(r) >= m)
                    };
                    (SqlValue::BigInt(m), boxed(test))
                }),
            ),
            FilterClause::new(
                "posted_within_days",
                SqlType::BigInt,
                "posted_at >= now() - make_interval(days => ({v})::int)",
                posted_within_days.map(|d| {
                    let test = move |j: &JobRecord, now: DateTime<Utc>| {
                        j.posted_at >= now - chrono::Duration::days(d)
                    };
                    (SqlValue::BigInt(d), boxed(test))
                }),
            ),
            FilterClause::new(
                "exclude_job_ids",
                SqlType::Texts,
                "id <> ALL ({v})",
                exclude_job_ids.as_ref().map(|ids| {
                    let test = move |j: &JobRecord, _: DateTime<Utc>| !ids.contains(&j.id);
                    (SqlValue::Texts(ids.clone()), boxed(test))
                }),
            ),
        ]
    }

    /// The predicate of every filter over a row of `jobs`, with the request's
    /// filters as their serde JSON in `$1` (absent filters absent): the body
    /// of `jobmatch_filter_sql` (db/, generated by
    /// `adapters::schema`). Each clause folds to a constant when planned with
    /// the value, so a filter that is not sent costs nothing and the B-tree
    /// indexes and the remote graph still apply.
    pub fn sql_over_json() -> String {
        Filters::default()
            .clauses()
            .iter()
            .map(|c| {
                let value = c.sql_type.json_value(c.field);
                format!(
                    "($1->'{}' IS NULL OR {})",
                    c.field,
                    c.predicate.replace("{v}", &value)
                )
            })
            .collect::<Vec<_>>()
            .join("\n    AND ")
    }
}

/// A filter's in-memory predicate.
type Admits<'a> = Box<dyn Fn(&JobRecord, DateTime<Utc>) -> bool + Send + Sync + 'a>;

fn boxed<'a>(f: impl Fn(&JobRecord, DateTime<Utc>) -> bool + Send + Sync + 'a) -> Admits<'a> {
    Box::new(f)
}

/// The SQL type of a filter's value, and how it is read from the filters' JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// `text[]`, lower-cased (Unicode, as PostgreSQL's `lower`).
    LowerTexts,
    /// `text[]`.
    Texts,
    Boolean,
    BigInt,
}

impl SqlType {
    /// The value of field `field` of the JSON in `$1`, as this type.
    fn json_value(self, field: &str) -> String {
        match self {
            SqlType::LowerTexts => format!("jobmatch_texts($1->'{field}', true)"),
            SqlType::Texts => format!("jobmatch_texts($1->'{field}', false)"),
            SqlType::Boolean => format!("($1->>'{field}')::boolean"),
            SqlType::BigInt => format!("($1->>'{field}')::bigint"),
        }
    }
}

/// A filter's value, ready to bind as its [`SqlType`].
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Texts(Vec<String>),
    Boolean(bool),
    BigInt(i64),
}

/// One filter: its name (the JSON field), its SQL predicate over a row of
/// `jobs` with `{v}` for its value, and, when the request sets it, the value
/// and the in-memory predicate.
pub struct FilterClause<'a> {
    pub field: &'static str,
    pub sql_type: SqlType,
    pub predicate: &'static str,
    set: Option<(SqlValue, Admits<'a>)>,
}

impl<'a> FilterClause<'a> {
    fn new(
        field: &'static str,
        sql_type: SqlType,
        predicate: &'static str,
        set: Option<(SqlValue, Admits<'a>)>,
    ) -> Self {
        FilterClause {
            field,
            sql_type,
            predicate,
            set,
        }
    }

    /// The request's value, when it sets this filter.
    pub fn value(&self) -> Option<&SqlValue> {
        self.set.as_ref().map(|(v, _)| v)
    }

    /// Whether `job` passes this filter at `now` (an absent filter passes all).
    pub fn admits(&self, job: &JobRecord, now: DateTime<Utc>) -> bool {
        self.set.as_ref().is_none_or(|(_, test)| test(job, now))
    }
}

/// Where the query vector of a request comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuerySource<'a> {
    Embedding(&'a [f32]),
    Text(&'a str),
    /// The caller's stored profile.
    Profile,
}

impl MatchRequest {
    pub fn source(&self) -> QuerySource<'_> {
        match (&self.embedding, &self.text) {
            (Some(e), _) => QuerySource::Embedding(e),
            (None, Some(t)) => QuerySource::Text(t),
            (None, None) => QuerySource::Profile,
        }
    }
}

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
    let map = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match json_value(body)? {
            Value::Object(map) => map,
            _ => {
                return Err(Error::MalformedJson(
                    "the body must be a JSON object".into(),
                ))
            }
        }
    };
    let mut errors = Vec::new();
    let request = MatchRequest::read(&map, "", &mut errors);
    if map.contains_key("embedding") && map.contains_key("text") {
        errors.push(FieldError::new(
            "text",
            "give either `text` or `embedding`, not both (neither: your stored profile)",
        ));
    }
    if errors.is_empty() {
        Ok(request)
    } else {
        Err(Error::Validation(errors))
    }
}

/// The body as a JSON value. Its syntax is checked first, without reading
/// numbers as floats; valid syntax that still fails as a value holds a
/// number no float can hold (1e999): a value out of contract at a known
/// field, not malformed JSON.
fn json_value(body: &[u8]) -> Result<Value, Error> {
    let malformed = |e: serde_json::Error| Error::MalformedJson(format!("malformed JSON: {e}"));
    serde_json::from_slice::<&serde_json::value::RawValue>(body).map_err(malformed)?;
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = path.split('[').next().unwrap_or_default();
        Error::Validation(vec![FieldError::new(
            if field.is_empty() || field == "." {
                "body"
            } else {
                field
            },
            format!("{path}: number out of range"),
        )])
    })
}

fn unknown_fields(
    map: &Map<String, Value>,
    prefix: &str,
    known: &[&str],
    errors: &mut Vec<FieldError>,
) {
    for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
        let name: String = key.chars().take(100).collect();
        errors.push(FieldError::new(
            format!("{prefix}{name}"),
            format!(
                "unknown field `{name}`; expected one of {}",
                known.join(", ")
            ),
        ));
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

/// A value rule: the value or one message, and the field's schema.
pub struct Check<T, F> {
    check: F,
    schema: Value,
    out: PhantomData<fn() -> T>,
}

fn check<T, F: Fn(&Value) -> Result<T, String>>(schema: Value, check: F) -> Check<T, F> {
    Check {
        check,
        schema,
        out: PhantomData,
    }
}

/// An optional field: `None` when absent.
pub struct Optional<R>(R);

fn optional<R>(rule: R) -> Optional<R> {
    Optional(rule)
}

impl<T, F: Fn(&Value) -> Result<T, String>> Rule for Optional<Check<T, F>> {
    type Out = Option<T>;

    fn read(&self, v: &Value, field: &str, errors: &mut Vec<FieldError>) -> Option<Option<T>> {
        push_err(field, (self.0.check)(v).map(Some), errors)
    }

    fn absent(&self) -> Option<T> {
        None
    }

    fn schema(&self) -> Value {
        self.0.schema.clone()
    }
}

/// A field with a default.
pub struct Or<F, T>(F, T);

impl<T: Copy + Serialize, C: Fn(&Value) -> Result<T, String>> Rule for Or<Check<T, C>, T> {
    type Out = T;

    fn read(&self, v: &Value, field: &str, errors: &mut Vec<FieldError>) -> Option<T> {
        push_err(field, (self.0.check)(v), errors)
    }

    fn absent(&self) -> T {
        self.1
    }

    fn schema(&self) -> Value {
        let mut schema = self.0.schema.clone();
        schema["default"] = json!(self.1);
        schema
    }
}

fn push_err<T>(field: &str, r: Result<T, String>, errors: &mut Vec<FieldError>) -> Option<T> {
    r.map_err(|message| errors.push(FieldError::new(field, message)))
        .ok()
}

/// A nested request object (its schema is a reference to its own).
pub struct Nested<T>(PhantomData<fn() -> T>);

impl<T: RequestObject + Default> Rule for Nested<T> {
    type Out = T;

    fn read(&self, v: &Value, field: &str, errors: &mut Vec<FieldError>) -> Option<T> {
        match v.as_object() {
            Some(map) => Some(T::read(map, &format!("{field}."), errors)),
            None => {
                errors.push(FieldError::new(
                    field,
                    format!("must be an object, got {}", kind(v)),
                ));
                None
            }
        }
    }

    fn absent(&self) -> T {
        T::default()
    }

    fn schema(&self) -> Value {
        json!({"type": "object", "properties": Value::Object(T::schemas())})
    }
}

fn integer(min: i64, max: i64) -> Check<i64, impl Fn(&Value) -> Result<i64, String>> {
    check(
        json!({"type": "integer", "minimum": min, "maximum": max}),
        move |v: &Value| match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            Some(_) => Err(format!("must be between {min} and {max}")),
            // u64 beyond i64, or a number with a fraction or exponent.
            None if v.is_number() && v.as_f64().is_some_and(|f| f.fract() != 0.0) => {
                Err("must be an integer".into())
            }
            None if v.is_number() => Err(format!("must be between {min} and {max}")),
            None => Err(format!("must be an integer, got {}", kind(v))),
        },
    )
}

fn limit() -> Check<u32, impl Fn(&Value) -> Result<u32, String>> {
    let range = integer(1, i64::from(MAX_LIMIT));
    check(range.schema.clone(), move |v: &Value| {
        (range.check)(v).map(|n| u32::try_from(n).unwrap_or(DEFAULT_LIMIT))
    })
}

/// An array of `min_items` to `max_items` strings of at most `max_chars` characters.
fn strings(
    min_items: usize,
    max_items: usize,
    max_chars: usize,
) -> Check<Vec<String>, impl Fn(&Value) -> Result<Vec<String>, String>> {
    let mut schema = json!({"type": "array", "maxItems": max_items, "items": {"type": "string", "maxLength": max_chars}});
    if min_items > 0 {
        schema["minItems"] = json!(min_items);
    }
    check(schema, move |v: &Value| {
        let Some(items) = v.as_array() else {
            return Err(format!("must be an array of strings, got {}", kind(v)));
        };
        if items.len() < min_items {
            // "Any of" nothing admits no job: surely not what was meant.
            return Err(format!(
                "must have at least {min_items} item; leave the filter out to admit every job"
            ));
        }
        if items.len() > max_items {
            return Err(format!(
                "must have at most {max_items} items, got {}",
                items.len()
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item.as_str() {
                Some(s) if s.chars().count() <= max_chars => Ok(s.to_owned()),
                Some(_) => Err(format!("item {i} is longer than {max_chars} characters")),
                None => Err(format!("item {i} must be a string, got {}", kind(item))),
            })
            .collect()
    })
}

/// A list that is a set: normalised by `item`, sorted and without
/// duplicates, so that equal requests compare (and key the cache) equal.
fn set_of<C: Fn(&Value) -> Result<Vec<String>, String>>(
    list: Check<Vec<String>, C>,
    item: impl Fn(&str) -> String,
) -> Check<Vec<String>, impl Fn(&Value) -> Result<Vec<String>, String>> {
    check(list.schema.clone(), move |v: &Value| {
        let mut out: Vec<String> = (list.check)(v)?.iter().map(|s| item(s)).collect();
        out.sort();
        out.dedup();
        Ok(out)
    })
}

fn skills() -> Check<Vec<String>, impl Fn(&Value) -> Result<Vec<String>, String>> {
    let list = strings(0, MAX_SKILLS, MAX_SKILL_CHARS);
    check(list.schema.clone(), move |v: &Value| {
        (list.check)(v).map(|s| normalise_skills(&s))
    })
}

fn boolean() -> Check<bool, impl Fn(&Value) -> Result<bool, String>> {
    check(json!({"type": "boolean"}), |v: &Value| {
        v.as_bool()
            .ok_or_else(|| format!("must be a boolean, got {}", kind(v)))
    })
}

fn employment_types(
) -> Check<Vec<EmploymentType>, impl Fn(&Value) -> Result<Vec<EmploymentType>, String>> {
    let list = strings(1, MAX_EMPLOYMENT_TYPES, 32);
    let mut schema = list.schema.clone();
    schema["items"] = json!({"$ref": "#/components/schemas/EmploymentType"});
    check(schema, move |v: &Value| {
        let mut out = (list.check)(v)?
            .iter()
            .map(|name| {
                EmploymentType::parse(name).ok_or_else(|| {
                    let all: Vec<&str> = EmploymentType::ALL.iter().map(|t| t.as_str()).collect();
                    format!("`{name}` is not one of {}", all.join(", "))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Sorted by name, as stored before: cache keys and idempotent
        // requests compare the stored form.
        out.sort_by_key(|t| t.as_str());
        out.dedup();
        Ok(out)
    })
}

fn embedding() -> Check<Vec<f32>, impl Fn(&Value) -> Result<Vec<f32>, String>> {
    check(
        json!({"type": "array", "minItems": EMBEDDING_DIM, "maxItems": EMBEDDING_DIM,
               "items": {"type": "number", "minimum": -3.0e38, "maximum": 3.0e38}}),
        |v: &Value| {
            let Some(items) = v.as_array() else {
                return Err(format!(
                    "must be an array of {EMBEDDING_DIM} numbers, got {}",
                    kind(v)
                ));
            };
            let out = items
                .iter()
                .enumerate()
                // Stored and searched as float4: a value beyond f32 becomes infinite.
                .map(|(i, item)| {
                    item.as_f64().map(|f| f as f32).ok_or_else(|| {
                        format!("value at index {i} must be a number, got {}", kind(item))
                    })
                })
                .collect::<Result<Vec<f32>, String>>()?;
            check_embedding(&out).map_err(|e| e.to_string())?;
            Ok(out)
        },
    )
}

/// A resume or search phrase: 1..=MAX_TEXT_CHARS characters, not only
/// whitespace. Kept as sent: the model's tokenizer normalises it.
fn text() -> Check<String, impl Fn(&Value) -> Result<String, String>> {
    check(
        json!({"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}),
        |v: &Value| {
            let Some(text) = v.as_str() else {
                return Err(format!("must be a string, got {}", kind(v)));
            };
            let chars = text.chars().count();
            if text.trim().is_empty() {
                Err("must not be empty or only whitespace".into())
            } else if chars > MAX_TEXT_CHARS {
                Err(format!(
                    "must be at most {MAX_TEXT_CHARS} characters, got {chars}"
                ))
            } else {
                Ok(text.to_owned())
            }
        },
    )
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
    fn an_empty_any_of_list_is_refused_and_empty_sets_elsewhere_are_not() {
        for field in ["locations", "employment_types"] {
            let body = format!(r#"{{"filters":{{"{field}":[]}}}}"#);
            match parse_match_request(body.as_bytes()) {
                Err(Error::Validation(errors)) => {
                    assert_eq!(errors.len(), 1, "{errors:?}");
                    assert_eq!(errors[0].field, format!("filters.{field}"));
                    assert!(errors[0].message.contains("at least 1 item"), "{errors:?}");
                }
                other => panic!("{field}: expected 422, got {other:?}"),
            }
        }
        let r = parse_match_request(br#"{"skills":[],"filters":{"exclude_job_ids":[]}}"#)
            .expect("no skills and nothing excluded are fine");
        assert_eq!(r.skills, Some(vec![]));
        assert_eq!(r.filters.exclude_job_ids, Some(vec![]));
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

    /// A task written by a newer api, with a field this version does not
    /// know at each level, still decodes: the worker of the previous
    /// deploy runs it (fields it does not know are ignored).
    #[test]
    fn a_newer_apis_task_decodes_in_an_older_worker() {
        let stored = serde_json::json!({
            "task_id": "t-1", "owner": "alice", "status": "pending",
            "request": {
                "text": "rust engineer", "limit": 5, "rerank": "mmr",
                "filters": {"remote": true, "seniority": ["senior"]}
            },
            "attempts": 0, "created_at": "2026-11-30T10:00:00.000Z",
            "updated_at": "2026-11-30T10:00:00.000Z", "expires_at": 1_900_000_000,
            "priority": 3
        });
        let task: crate::domain::Task = serde_json::from_value(stored).expect("decodes");
        assert_eq!(task.request.text.as_deref(), Some("rust engineer"));
        assert_eq!(task.request.limit, 5);
        assert_eq!(task.request.filters.remote, Some(true));
        assert_eq!(
            task.request.filters,
            Filters {
                remote: Some(true),
                ..Filters::default()
            }
        );
        // The HTTP parse still names the same unknown fields.
        assert_eq!(
            fields(
                parse_match_request(br#"{"rerank":"mmr","filters":{"seniority":[]}}"#)
                    .expect_err("unknown")
            ),
            ["rerank", "filters.seniority"]
        );
    }

    /// openapi.yaml states every field of the request as its rule here does:
    /// the same names, types, bounds and defaults.
    #[test]
    fn openapi_states_each_field_as_defined_here() {
        let doc: Value =
            serde_norway::from_str(include_str!("../../openapi.yaml")).expect("openapi.yaml");
        let schemas = &doc["components"]["schemas"];
        let ours = json!({"properties": Value::Object(MatchRequest::schemas())});
        agree(schemas, &schemas["MatchRequest"], &ours, "MatchRequest");
    }

    fn agree(schemas: &Value, theirs: &Value, ours: &Value, at: &str) {
        let theirs = match (ours.get("$ref"), theirs.get("$ref").and_then(Value::as_str)) {
            (None, Some(name)) => &schemas[name.rsplit('/').next().unwrap_or_default()],
            _ => theirs,
        };
        let ours = ours.as_object().expect("a schema is an object");
        for (key, value) in ours {
            let at = format!("{at}.{key}");
            if key == "properties" {
                let names = |v: &Value| -> Vec<String> {
                    let mut n: Vec<String> = v
                        .as_object()
                        .map(|m| m.keys().cloned().collect())
                        .unwrap_or_default();
                    n.sort();
                    n
                };
                assert_eq!(names(&theirs[key]), names(value), "{at}: field names");
                for (name, schema) in value.as_object().into_iter().flatten() {
                    agree(schemas, &theirs[key][name], schema, &format!("{at}.{name}"));
                }
            } else if value.is_object() {
                agree(schemas, &theirs[key], value, &at);
            } else {
                let same = match (theirs[key].as_f64(), value.as_f64()) {
                    (Some(a), Some(b)) => a == b,
                    _ => &theirs[key] == value,
                };
                assert!(
                    same,
                    "{at}: openapi.yaml has {}, the rule {value}",
                    theirs[key]
                );
            }
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
