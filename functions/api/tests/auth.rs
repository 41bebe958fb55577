//! The authentication matrix through the api handler: tokens minted here
//! (HS256; RS256 and ES256 verified against a JWKS this test serves) and every
//! way a token can be wrong, each answer checked for status, content type,
//! problem body and `WWW-Authenticate`. Also the JWKS cache: bounded refresh on
//! unknown key ids, key rotation, and 503 (not 401) when the JWKS is down.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::handler::App;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use shared::adapters::memory::{MemoryJobIndex, MemoryQueue, MemoryQuota, MemoryTaskStore};
use shared::auth::{Jwks, Verifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";
const ISSUER: &str = "https://idp.test/";
const AUDIENCE: &str = "jobmatch-api";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture("rsa_test_key.pem")).expect("rsa key")
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&fixture("ec_test_key.pem")).expect("ec key")
}

fn jwk(public: DecodingKey, alg: Algorithm, kid: &str) -> Jwk {
    // jsonwebtoken's crypto is the one the functions install (ring).
    shared::jwt_crypto::install();
    let mut jwk = Jwk::from_decoding_key(&public, Some(alg)).expect("jwk");
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn rsa_jwk() -> Jwk {
    // From the private key: the ring provider (shared::jwt_crypto) does not
    // take DER RSA public keys apart.
    shared::jwt_crypto::install();
    let mut jwk = Jwk::from_encoding_key(&rsa_key(), Algorithm::RS256).expect("jwk");
    jwk.common.key_id = Some("rsa-1".to_owned());
    jwk
}

fn ec_jwk() -> Jwk {
    let public = DecodingKey::from_ec_pem(&fixture("ec_test_pub.pem")).expect("ec pub");
    jwk(public, Algorithm::ES256, "ec-1")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Standard claims of a good token, changed by `edit`.
fn claims(edit: impl FnOnce(&mut Value)) -> Value {
    let mut c = json!({"sub": "alice", "exp": now() + 300, "iss": ISSUER, "aud": AUDIENCE});
    edit(&mut c);
    c
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    shared::jwt_crypto::install();
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).expect("sign")
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(SECRET),
    )
}

fn rs(claims: &Value) -> String {
    sign(Algorithm::RS256, Some("rsa-1"), claims, &rsa_key())
}

fn es(claims: &Value) -> String {
    sign(Algorithm::ES256, Some("ec-1"), claims, &ec_key())
}

/// A JWKS endpoint served by this test: counts fetches; its keys and status can change.
struct JwksServer {
    url: String,
    fetches: Arc<AtomicUsize>,
    body: Arc<Mutex<(u16, String)>>,
}

impl JwksServer {
    async fn start(keys: Vec<Jwk>) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("addr")
        );
        let fetches = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(Mutex::new((
            200,
            serde_json::to_string(&JwkSet { keys }).expect("jwks json"),
        )));
        let (f, b) = (fetches.clone(), body.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (f, b) = (f.clone(), b.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut read = 0;
                    while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                    }
                    f.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = b.lock().expect("lock").clone();
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                });
            }
        });
        JwksServer { url, fetches, body }
    }

    fn set_keys(&self, keys: Vec<Jwk>) {
        *self.body.lock().expect("lock") =
            (200, serde_json::to_string(&JwkSet { keys }).expect("json"));
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn jwks(url: &str, min_refresh: Duration) -> Jwks {
    Jwks::new(
        url,
        Duration::from_secs(2),
        min_refresh,
        Duration::from_secs(3600),
    )
    .expect("jwks client")
}

type TestApp = App<MemoryTaskStore, MemoryQueue, MemoryJobIndex, MemoryQuota>;

fn app(verifier: Verifier) -> TestApp {
    App {
        store: MemoryTaskStore::default(),
        queue: MemoryQueue::default(),
        index: MemoryJobIndex::default(),
        // Room for every request of a test: these are about the token.
        quota: MemoryQuota::new(shared::quota::Policy::new(1.0, 1_000).expect("policy")),
        verifier,
        task_ttl_secs: 3600,
        legacy_text_wait: Duration::from_millis(300),
        text_bound: embed::tokenizer::TextBound::bundled(2_048).expect("the bundled tokenizer"),
        health_cache: Default::default(),
        callbacks: shared::callback::CallbackPolicy::new(""),
        cache: shared::ports::NoCache,
    }
}

/// Accepts HS256 (shared secret) and RS256/ES256 (JWKS), with iss and aud checked.
fn full_verifier(jwks_url: &str) -> Verifier {
    let mut cfg: shared::config::AuthConfig = envy::from_iter([
        ("JWT_JWKS_URL".to_string(), jwks_url.to_string()),
        (
            "JWT_ALGORITHMS".to_string(),
            "HS256,RS256,ES256".to_string(),
        ),
        ("JWT_ISSUER".to_string(), ISSUER.to_string()),
        ("JWT_AUDIENCE".to_string(), AUDIENCE.to_string()),
        ("JWT_LEEWAY_SECS".to_string(), "0".to_string()),
    ])
    .expect("config");
    cfg.jwt_secret = None;
    let secret = shared::config::Secret::new(String::from_utf8(SECRET.to_vec()).expect("utf8"));
    Verifier::from_config(&cfg, Some(&secret)).expect("verifier")
}

async fn post(app: &TestApp, token: Option<&str>) -> Response<Body> {
    let mut b = lambda_http::http::Request::builder()
        .method("POST")
        .uri("/jobs/match")
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req: Request = b.body(Body::from("{}")).expect("request");
    app.handle(req).await
}

fn body(resp: &Response<Body>) -> Value {
    serde_json::from_slice(resp.body().as_ref()).expect("json body")
}

/// The caller's name beside another trusted issuer: `key` is `hs256` or
/// `jwks` (see `shared::auth::Caller`).
fn named(key: &str, subject: &str) -> String {
    format!("{key}|{ISSUER}|{subject}")
}

async fn assert_accepted(app: &TestApp, token: &str, who: &str, case: &str) {
    let resp = post(app, Some(token)).await;
    assert_eq!(resp.status(), 202, "{case}: {:?}", resp.body());
    assert_eq!(resp.headers()["content-type"], "application/json", "{case}");
    let id = body(&resp)["task_id"].as_str().expect("task id").to_owned();
    let owner = app.store.tasks.lock().expect("lock")[&id].owner.clone();
    assert_eq!(owner, who, "{case}");
}

async fn assert_401(app: &TestApp, token: &str, reason: &str, case: &str) {
    let resp = post(app, Some(token)).await;
    assert_eq!(resp.status(), 401, "{case}");
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "{case}"
    );
    assert_eq!(
        resp.headers()["www-authenticate"],
        format!(r#"Bearer realm="jobmatch", error="invalid_token", error_description="{reason}""#)
            .as_str(),
        "{case}"
    );
    let b = body(&resp);
    assert_eq!(b["status"], 401, "{case}");
    assert_eq!(b["type"], "/problems/unauthorized", "{case}");
    assert_eq!(b["detail"], reason, "{case}");
}

#[tokio::test]
async fn good_tokens_of_each_algorithm_are_accepted() {
    let server = JwksServer::start(vec![rsa_jwk(), ec_jwk()]).await;
    let app = app(full_verifier(&server.url));
    // The shared secret and the JWKS are two issuers: names hold theirs.
    let alice = named("jwks", "alice");
    assert_accepted(
        &app,
        &hs(&claims(|_| {})),
        &named("hs256", "alice"),
        "HS256",
    )
    .await;
    assert_accepted(&app, &rs(&claims(|_| {})), &alice, "RS256").await;
    assert_accepted(&app, &es(&claims(|_| {})), &alice, "ES256").await;
    let id_only = claims(|c| {
        c.as_object_mut().expect("object").remove("sub");
        c["id"] = json!("bob");
    });
    let bob = named("jwks", "bob");
    assert_accepted(&app, &rs(&id_only), &bob, "id when sub is absent").await;
    let aud_list = claims(|c| c["aud"] = json!(["other", AUDIENCE]));
    assert_accepted(&app, &es(&aud_list), &alice, "aud as a list").await;
    // One fetch served both key ids: the keys are cached.
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn every_bad_token_is_401_with_its_reason() {
    let server = JwksServer::start(vec![rsa_jwk(), ec_jwk()]).await;
    let app = app(full_verifier(&server.url));
    let good = claims(|_| {});
    let without = |claim: &'static str| {
        claims(move |c| {
            c.as_object_mut().expect("object").remove(claim);
        })
    };

    // Tampered payload keeps the original signature.
    let token = rs(&good);
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_payload = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(claims(|c| c["sub"] = json!("mallory")).to_string())
    };
    parts[1] = &forged_payload;
    let tampered = parts.join(".");

    // Algorithm confusion: HS256 "signed" with the RSA public key as the secret.
    let confused = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &good,
        &EncodingKey::from_secret(&fixture("rsa_test_pub.pem")),
    );
    // header {"alg":"none"}
    let none = {
        use base64::Engine;
        let e = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.", e(&json!({"alg": "none", "typ": "JWT"})), e(&good))
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            rs(&claims(|c| c["exp"] = json!(now() - 60))),
            "token expired",
        ),
        (
            "bad signature (HS256, other secret)",
            sign(
                Algorithm::HS256,
                None,
                &good,
                &EncodingKey::from_secret(b"another-secret-of-32-bytes-or-more!"),
            ),
            "bad signature",
        ),
        ("bad signature (RS256, tampered)", tampered, "bad signature"),
        ("alg none", none, "unsupported algorithm"),
        ("algorithm confusion", confused, "bad signature"),
        (
            "HS512 is not pinned",
            sign(
                Algorithm::HS512,
                None,
                &good,
                &EncodingKey::from_secret(SECRET),
            ),
            "unsupported algorithm",
        ),
        (
            "ES256 header on the RSA key",
            sign(Algorithm::ES256, Some("rsa-1"), &good, &ec_key()),
            "algorithm does not match the signing key",
        ),
        (
            "missing exp",
            es(&without("exp")),
            "missing required claim `exp`",
        ),
        ("missing sub and id", rs(&without("sub")), "missing subject"),
        (
            "empty sub",
            hs(&claims(|c| c["sub"] = json!(""))),
            "missing subject",
        ),
        (
            "future nbf",
            es(&claims(|c| c["nbf"] = json!(now() + 120))),
            "token not yet valid",
        ),
        (
            "wrong iss",
            rs(&claims(|c| c["iss"] = json!("https://evil.test/"))),
            "wrong issuer",
        ),
        (
            "missing iss",
            hs(&without("iss")),
            "missing required claim `iss`",
        ),
        (
            "wrong aud",
            es(&claims(|c| c["aud"] = json!("someone-else"))),
            "wrong audience",
        ),
        (
            // No numeric `exp` is no `exp` (jsonwebtoken's reading).
            "exp not a number",
            hs(&claims(|c| c["exp"] = json!("tomorrow"))),
            "missing required claim `exp`",
        ),
        (
            "nbf not a number",
            hs(&claims(|c| c["nbf"] = json!("soon"))),
            "invalid claim `nbf`",
        ),
        (
            "no kid",
            sign(Algorithm::RS256, None, &good, &rsa_key()),
            "missing key id",
        ),
        (
            "unknown kid",
            sign(Algorithm::RS256, Some("rsa-404"), &good, &rsa_key()),
            "unknown signing key",
        ),
        ("garbage", "garbage".into(), "malformed token"),
        ("three dots of garbage", "a.b.c".into(), "malformed token"),
    ];
    for (case, token, reason) in &cases {
        assert_401(&app, token, reason, case).await;
    }
    assert!(app.store.tasks.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn confusion_is_an_unsupported_algorithm_when_only_jwks_is_pinned() {
    let server = JwksServer::start(vec![rsa_jwk()]).await;
    let app = app(Verifier::jwks(
        jwks(&server.url, Duration::from_secs(30)),
        &[Algorithm::RS256],
        0,
    ));
    let confused = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &claims(|_| {}),
        &EncodingKey::from_secret(&fixture("rsa_test_pub.pem")),
    );
    assert_401(&app, &confused, "unsupported algorithm", "confusion").await;
    // ES256 is not pinned either, even with a valid signature.
    assert_401(&app, &es(&claims(|_| {})), "unsupported algorithm", "ES256").await;
    // A JWKS without a configured issuer: the name holds the token's `iss`.
    let alice = named("jwks", "alice");
    assert_accepted(&app, &rs(&claims(|_| {})), &alice, "RS256").await;
}

#[tokio::test]
async fn missing_token_gets_a_challenge_without_error_code() {
    let app = app(Verifier::hs256(SECRET, 0));
    let resp = post(&app, None).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer realm="jobmatch""#
    );
    assert_eq!(body(&resp)["detail"], "missing bearer token");
}

#[tokio::test]
async fn unknown_kids_refresh_the_key_set_at_most_once_per_interval() {
    let server = JwksServer::start(vec![rsa_jwk()]).await;
    let app = app(Verifier::jwks(
        jwks(&server.url, Duration::from_secs(30)),
        &[Algorithm::RS256, Algorithm::ES256],
        0,
    ));
    let alice = named("jwks", "alice");
    assert_accepted(&app, &rs(&claims(|_| {})), &alice, "first").await;
    assert_eq!(server.fetches(), 1);
    for i in 0..20 {
        let token = sign(
            Algorithm::RS256,
            Some(&format!("made-up-{i}")),
            &claims(|_| {}),
            &rsa_key(),
        );
        assert_401(&app, &token, "unknown signing key", "made-up kid").await;
    }
    assert_eq!(server.fetches(), 1, "no fetch within the refresh interval");
}

#[tokio::test]
async fn a_rotated_in_key_is_fetched_on_first_sight() {
    let server = JwksServer::start(vec![rsa_jwk()]).await;
    let app = app(Verifier::jwks(
        jwks(&server.url, Duration::ZERO),
        &[Algorithm::RS256, Algorithm::ES256],
        0,
    ));
    let alice = named("jwks", "alice");
    assert_accepted(&app, &rs(&claims(|_| {})), &alice, "RS256").await;
    server.set_keys(vec![rsa_jwk(), ec_jwk()]);
    assert_accepted(&app, &es(&claims(|_| {})), &alice, "rotated-in ES256").await;
    assert_eq!(server.fetches(), 2);
}

async fn assert_503(app: &TestApp, token: &str, case: &str) {
    let resp = post(app, Some(token)).await;
    assert_eq!(resp.status(), 503, "{case}");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(resp.headers().get("www-authenticate").is_none(), "{case}");
    let b = body(&resp);
    assert_eq!(b["type"], "/problems/dependency-unavailable");
    assert_eq!(b["detail"], "jwks is unavailable; retry later");
}

#[tokio::test]
async fn an_unreachable_or_failing_jwks_is_503_not_401() {
    // Nothing listens on a port just released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/jwks.json", l.local_addr().expect("addr"))
    };
    let app_closed = app(Verifier::jwks(
        jwks(&closed, Duration::from_secs(30)),
        &[Algorithm::RS256],
        0,
    ));
    assert_503(&app_closed, &rs(&claims(|_| {})), "connection refused").await;
    // Still 503 within the refresh interval, without another attempt.
    assert_503(&app_closed, &rs(&claims(|_| {})), "again").await;

    let server = JwksServer::start(vec![]).await;
    *server.body.lock().expect("lock") = (500, "oops".into());
    let app_500 = app(Verifier::jwks(
        jwks(&server.url, Duration::from_secs(30)),
        &[Algorithm::RS256],
        0,
    ));
    assert_503(&app_500, &rs(&claims(|_| {})), "HTTP 500").await;
    assert_503(&app_500, &rs(&claims(|_| {})), "HTTP 500 again").await;
    assert_eq!(server.fetches(), 1, "failures are not retried at once");
    // HS256 and bad tokens do not depend on the JWKS.
    assert_401(&app_500, "garbage", "malformed token", "garbage").await;
}

fn fixed_config(vars: &[(&str, String)]) -> shared::config::AuthConfig {
    envy::from_iter(vars.iter().map(|(k, v)| (k.to_string(), v.clone()))).expect("config")
}

fn key_set(keys: Vec<Jwk>) -> String {
    serde_json::to_string(&JwkSet { keys }).expect("jwks json")
}

/// `JWT_JWKS`: the key set given whole (Cognito's, for functions without a
/// route to it) verifies RS256 and ES256 tokens with no fetch at all.
#[tokio::test]
async fn a_key_set_given_whole_verifies_without_a_fetch() {
    let cfg = fixed_config(&[
        ("JWT_JWKS", key_set(vec![rsa_jwk(), ec_jwk()])),
        ("JWT_ISSUER", ISSUER.to_owned()),
        ("JWT_AUDIENCE", AUDIENCE.to_owned()),
        ("JWT_LEEWAY_SECS", "0".to_owned()),
    ]);
    let app = app(Verifier::from_config(&cfg, None).expect("verifier"));
    assert_accepted(&app, &rs(&claims(|_| {})), "alice", "RS256").await;
    assert_accepted(&app, &es(&claims(|_| {})), "alice", "ES256").await;
    let unknown = sign(
        Algorithm::RS256,
        Some("rotated-away"),
        &claims(|_| {}),
        &rsa_key(),
    );
    assert_401(&app, &unknown, "unknown signing key", "kid not in the set").await;
    // HS256 was not configured: no secret, so not accepted.
    assert_401(
        &app,
        &hs(&claims(|_| {})),
        "unsupported algorithm",
        "HS256 without a secret",
    )
    .await;
}

#[test]
fn a_key_set_given_whole_is_checked_at_init() {
    let err = |vars: &[(&str, String)]| {
        Verifier::from_config(&fixed_config(vars), None)
            .expect_err("a bad configuration")
            .to_string()
    };
    let both = err(&[
        ("JWT_JWKS", key_set(vec![rsa_jwk()])),
        ("JWT_JWKS_URL", "https://idp.test/jwks.json".to_owned()),
    ]);
    assert!(both.contains("not both"), "{both}");
    let not_json = err(&[("JWT_JWKS", "https://idp.test/jwks.json".to_owned())]);
    assert!(not_json.contains("not a JWKS document"), "{not_json}");
    let mut no_kid = rsa_jwk();
    no_kid.common.key_id = None;
    let unusable = err(&[("JWT_JWKS", key_set(vec![no_kid]))]);
    assert!(unusable.contains("no signing key"), "{unusable}");
}

fn hs256_secret() -> shared::config::Secret {
    shared::config::Secret::new(String::from_utf8(SECRET.to_vec()).expect("utf8"))
}

/// An identity provider's deployment: its JWKS URL and issuer, plus `extra`.
fn idp_app(jwks_url: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![
        ("JWT_JWKS_URL", jwks_url.to_owned()),
        ("JWT_ISSUER", ISSUER.to_owned()),
        ("JWT_LEEWAY_SECS", "0".to_owned()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    // The HS256 secret is at hand, as JWT_SECRET_ARN would give it.
    app(Verifier::from_config(&fixed_config(&vars), Some(&hs256_secret())).expect("verifier"))
}

/// A Cognito access token of app client `client` (`client_id`, no `aud`), changed by `edit`.
fn access_token(client: &str, edit: impl FnOnce(&mut Value)) -> String {
    rs(&claims(|c| {
        let o = c.as_object_mut().expect("object");
        o.remove("aud");
        o.insert("token_use".into(), json!("access"));
        o.insert("client_id".into(), json!(client));
        edit(c);
    }))
}

/// A Cognito ID token: its app client is its `aud`.
fn id_token(aud: Value) -> String {
    es(&claims(|c| {
        c["aud"] = aud;
        c["token_use"] = json!("id");
    }))
}

fn remove(claim: &'static str) -> impl FnOnce(&mut Value) {
    move |c| {
        c.as_object_mut().expect("object").remove(claim);
    }
}

#[tokio::test]
async fn beside_a_jwks_hs256_is_accepted_only_when_named() {
    let server = JwksServer::start(vec![rsa_jwk(), ec_jwk()]).await;
    let unnamed = idp_app(&server.url, &[]);
    assert_401(
        &unnamed,
        &hs(&claims(|_| {})),
        "unsupported algorithm",
        "HS256 beside a JWKS, not named",
    )
    .await;
    assert_accepted(&unnamed, &rs(&claims(|_| {})), "alice", "RS256 by default").await;
    assert_accepted(&unnamed, &es(&claims(|_| {})), "alice", "ES256 by default").await;

    // Named, the secret is a second issuer: each name holds its own.
    let both = idp_app(&server.url, &[("JWT_ALGORITHMS", "HS256,RS256")]);
    let (hs_alice, idp_alice) = (named("hs256", "alice"), named("jwks", "alice"));
    assert_accepted(&both, &hs(&claims(|_| {})), &hs_alice, "HS256 named").await;
    assert_accepted(&both, &rs(&claims(|_| {})), &idp_alice, "RS256 named").await;
    assert_401(
        &both,
        &es(&claims(|_| {})),
        "unsupported algorithm",
        "ES256 not named",
    )
    .await;
}

#[tokio::test]
async fn access_tokens_only_of_the_listed_clients() {
    let server = JwksServer::start(vec![rsa_jwk(), ec_jwk()]).await;
    let app = idp_app(
        &server.url,
        &[
            ("JWT_CLIENT_IDS", "app-web, app-cli"),
            ("JWT_TOKEN_USE", "access"),
        ],
    );
    assert_accepted(&app, &access_token("app-cli", |_| {}), "alice", "listed").await;
    let cases = [
        (
            "client not listed",
            access_token("app-other", |_| {}),
            "invalid claim `client_id`",
        ),
        (
            "no client_id",
            access_token("app-web", remove("client_id")),
            "missing required claim `client_id`",
        ),
        (
            "an ID token where access tokens are expected",
            id_token(json!("app-web")),
            "invalid claim `token_use`",
        ),
        (
            "token_use of another kind",
            access_token("app-web", |c| c["token_use"] = json!("refresh")),
            "invalid claim `token_use`",
        ),
        (
            "no token_use",
            access_token("app-web", remove("token_use")),
            "missing required claim `token_use`",
        ),
    ];
    for (case, token, reason) in &cases {
        assert_401(&app, token, reason, case).await;
    }
}

#[tokio::test]
async fn id_tokens_name_their_client_in_aud() {
    let server = JwksServer::start(vec![rsa_jwk(), ec_jwk()]).await;
    let app = idp_app(
        &server.url,
        &[("JWT_CLIENT_IDS", "app-web"), ("JWT_TOKEN_USE", "id")],
    );
    assert_accepted(&app, &id_token(json!("app-web")), "alice", "listed aud").await;
    assert_accepted(
        &app,
        &id_token(json!(["other", "app-web"])),
        "alice",
        "listed aud in a list",
    )
    .await;
    assert_401(
        &app,
        &id_token(json!("app-other")),
        "invalid claim `aud`",
        "aud not listed",
    )
    .await;
    assert_401(
        &app,
        &access_token("app-web", |_| {}),
        "invalid claim `token_use`",
        "an access token where ID tokens are expected",
    )
    .await;
}

#[tokio::test]
async fn empty_client_ids_and_token_use_are_not_checked() {
    let server = JwksServer::start(vec![rsa_jwk(), ec_jwk()]).await;
    let app = idp_app(
        &server.url,
        &[("JWT_CLIENT_IDS", ""), ("JWT_TOKEN_USE", "")],
    );
    assert_accepted(&app, &access_token("anyone", |_| {}), "alice", "access").await;
    assert_accepted(&app, &id_token(json!("anyone")), "alice", "id").await;
    assert_accepted(&app, &rs(&claims(|_| {})), "alice", "no token_use").await;
}

#[tokio::test]
async fn the_caller_is_a_non_empty_string_sub_or_else_id() {
    let server = JwksServer::start(vec![rsa_jwk(), ec_jwk()]).await;
    let app = app(full_verifier(&server.url));
    // A present `sub` is never replaced by `id`.
    for (case, sub) in [
        ("sub empty", json!("")),
        ("sub a number", json!(42)),
        ("sub null", json!(null)),
    ] {
        let token = rs(&claims(|c| {
            c["sub"] = sub;
            c["id"] = json!("bob");
        }));
        assert_401(&app, &token, "missing subject", case).await;
    }
    let id_only = claims(|c| {
        remove("sub")(c);
        c["id"] = json!("bob");
    });
    let bob = named("hs256", "bob");
    assert_accepted(&app, &hs(&id_only), &bob, "sub absent, id").await;
    assert!(app
        .store
        .tasks
        .lock()
        .expect("lock")
        .values()
        .all(|t| t.owner == bob));
}
