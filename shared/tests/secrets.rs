//! The HS256 secret and the cache's MAC key from Secrets Manager (moto
//! locally): fetched by ARN at init, then tokens signed with it verify, and
//! the MAC key signs as the same key given inline; a missing, short or
//! unset one stops the start, naming its setting.

mod common;

use shared::adapters::secrets;
use shared::cache_mac::CacheMac;
use shared::config::{AuthConfig, CacheConfig, Secret};

fn config<T: serde::de::DeserializeOwned>(vars: &[(&str, &str)]) -> T {
    envy::from_iter(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).expect("config")
}

async fn create_secret(
    client: &aws_sdk_secretsmanager::Client,
    prefix: &str,
    value: &str,
) -> String {
    client
        .create_secret()
        .name(common::unique(prefix))
        .secret_string(value)
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn")
}

#[tokio::test]
async fn verifier_uses_the_secret_named_by_arn() {
    let client = aws_sdk_secretsmanager::Client::new(&common::local_aws().await);
    let value = format!("{}-{}", "s".repeat(32), uuid::Uuid::new_v4().simple());
    let arn = create_secret(&client, "jobmatch-jwt", &value).await;
    let verifier = secrets::verifier(&config::<AuthConfig>(&[("JWT_SECRET_ARN", &arn)]), &client)
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
    let err = secrets::verifier(
        &config::<AuthConfig>(&[("JWT_SECRET_ARN", &missing)]),
        &client,
    )
    .await
    .expect_err("no such secret");
    assert!(err.to_string().contains("JWT_SECRET_ARN"), "{err}");
}

#[tokio::test]
async fn the_cache_mac_key_is_read_by_arn_and_must_be_long_enough() {
    let client = aws_sdk_secretsmanager::Client::new(&common::local_aws().await);
    let value = format!("{}-{}", "m".repeat(32), uuid::Uuid::new_v4().simple());
    let arn = create_secret(&client, "jobmatch-cache-mac", &value).await;
    let signs = |mac: &CacheMac| mac.sign_embedding(&[1; 32], &[0.5, 0.25]);
    let inline = CacheMac::new(&Secret::new(value.clone()), "CACHE_MAC_KEY").expect("key");

    let by_arn = secrets::cache_mac(
        &config::<CacheConfig>(&[("CACHE_MAC_KEY_ARN", &arn)]),
        &client,
    )
    .await
    .expect("the key by ARN");
    assert_eq!(
        signs(&by_arn),
        signs(&inline),
        "the secret's value is the key"
    );
    let both = config::<CacheConfig>(&[
        ("CACHE_MAC_KEY_ARN", &arn),
        ("CACHE_MAC_KEY", &"i".repeat(32)),
    ]);
    let wins = secrets::cache_mac(&both, &client).await.expect("inline");
    assert_ne!(signs(&wins), signs(&inline), "CACHE_MAC_KEY wins");

    let short = create_secret(&client, "jobmatch-cache-mac", &"s".repeat(31)).await;
    let err = secrets::cache_mac(
        &config::<CacheConfig>(&[("CACHE_MAC_KEY_ARN", &short)]),
        &client,
    )
    .await
    .expect_err("31 bytes");
    assert!(
        err.to_string().contains("CACHE_MAC_KEY_ARN") && err.to_string().contains("at least 32"),
        "{err}"
    );
    let err = secrets::cache_mac(
        &config::<CacheConfig>(&[("CACHE_MAC_KEY_ARN", &format!("{arn}-missing"))]),
        &client,
    )
    .await
    .expect_err("no such secret");
    assert!(
        err.to_string().contains("CACHE_MAC_KEY_ARN: cannot read"),
        "{err}"
    );
    let err = secrets::cache_mac(&config::<CacheConfig>(&[]), &client)
        .await
        .expect_err("unset");
    assert!(
        err.to_string()
            .contains("CACHE_MAC_KEY or CACHE_MAC_KEY_ARN is not set"),
        "{err}"
    );
}
