//! The HS256 secret from Secrets Manager (moto locally): fetched by ARN at
//! init, then tokens signed with it verify; a missing secret stops the start.

mod common;

use shared::adapters::secrets;
use shared::config::AuthConfig;

fn config(vars: &[(&str, &str)]) -> AuthConfig {
    envy::from_iter(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).expect("config")
}

#[tokio::test]
async fn verifier_uses_the_secret_named_by_arn() {
    let client = aws_sdk_secretsmanager::Client::new(&common::local_aws().await);
    let value = format!("{}-{}", "s".repeat(32), uuid::Uuid::new_v4().simple());
    let arn = client
        .create_secret()
        .name(common::unique("jobmatch-jwt"))
        .secret_string(&value)
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn");
    let verifier = secrets::verifier(&config(&[("JWT_SECRET_ARN", &arn)]), &client)
        .await
        .expect("verifier");
    let token = shared::auth::mint_hs256(value.as_bytes(), "alice", 60).expect("token");
    let caller = verifier.caller(&token).await.expect("verifies");
    assert_eq!(caller.0, "alice");
    let other = shared::auth::mint_hs256(b"some-other-secret-of-32-characters!", "alice", 60)
        .expect("token");
    assert_eq!(
        verifier
            .caller(&other)
            .await
            .expect_err("other key")
            .status(),
        401
    );

    let missing = format!("{arn}-missing");
    let err = secrets::verifier(&config(&[("JWT_SECRET_ARN", &missing)]), &client)
        .await
        .expect_err("no such secret");
    assert!(err.to_string().contains("JWT_SECRET_ARN"), "{err}");
}
