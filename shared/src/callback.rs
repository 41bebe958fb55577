//! Completion callbacks (DESIGN.md, "Cancel and completion callbacks"):
//! - the SSRF guard ([`forbidden`], [`CallbackPolicy`]), used by the api at
//!   submit and by the deliverer at every delivery;
//! - with the `callback` feature, the Standard Webhooks [`Signer`] and the
//!   [`Deliverer`], which only the delivery function needs.
//!
//! A URL is `https`, and every address its host resolves to is public. The
//! hosts of `CALLBACK_ALLOW_HOSTS` (the local stack) may use `http` and skip
//! the address check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use url::{Host, Url};

/// The longest callback URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// Why `ip` may not be called back, or `None` for a public address.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => forbidden_v4(ip),
        IpAddr::V6(ip) => forbidden_v6(ip),
    }
}

/// Cloud metadata endpoints, named apart so that a refusal says what was
/// aimed at (most also fall in a range refused anyway).
const METADATA_V4: [Ipv4Addr; 5] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack
    Ipv4Addr::new(169, 254, 170, 2),   // ECS task credentials
    Ipv4Addr::new(169, 254, 170, 23),  // EKS Pod Identity
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud
];
const METADATA_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), // AWS (Nitro)
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23),  // EKS Pod Identity
];

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(if METADATA_V4.contains(&ip) {
        "metadata"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_broadcast() {
        "broadcast"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if a == 100 && b & 0xc0 == 64 {
        // 100.64.0.0/10 (carrier-grade NAT; Ipv4Addr::is_shared is unstable)
        "shared address space"
    } else if ip.is_documentation() {
        "documentation"
    } else if a == 198 && b & 0xfe == 18 {
        // 198.18.0.0/15
        "benchmarking"
    } else if ip.is_multicast() {
        "multicast"
    } else if a == 0 || a >= 240 || (a, b, c) == (192, 0, 0) || (a, b, c) == (192, 88, 99) {
        // "this network", 240/4, IETF protocol assignments, the 6to4 relay
        "reserved"
    } else {
        return None;
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if METADATA_V6.contains(&ip) {
        return Some("metadata");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // An IPv4 address inside reaches that IPv4 address: judged as such.
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    Some(if ip.is_unique_local() {
        "unique-local"
    } else if ip.is_unicast_link_local() {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if s[0] & 0xe000 != 0x2000 {
        // Outside 2000::/3, the only global unicast block (::/8, fec0::/10...).
        "reserved"
    } else if (s[0], s[1]) == (0x2001, 0xdb8) || (s[0] == 0x3fff && s[1] & 0xf000 == 0) {
        // 2001:db8::/32, 3fff::/20
        "documentation"
    } else if (s[0], s[1], s[2]) == (0x2001, 2, 0) {
        "benchmarking"
    } else if s[0] == 0x2001 && s[1] < 0x200 {
        // 2001::/23, IETF protocol assignments (Teredo among them)
        "reserved"
    } else {
        return None;
    })
}

/// The IPv4 address an IPv6 one carries: mapped (`::ffff:a.b.c.d`),
/// compatible (`::a.b.c.d`), translated (`::ffff:0:a.b.c.d`), NAT64
/// (`64:ff9b::/96`) and 6to4 (`2002:aabb:ccdd::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let low = Ipv4Addr::from_bits(ip.to_bits() as u32);
    match ip.segments() {
        [0, 0, 0, 0, 0, 0xffff | 0, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from_bits((u32::from(hi) << 16) | u32::from(lo))),
        _ => None,
    }
}

/// The refusal of a name that resolves to a forbidden address: the same
/// words whatever the address.
pub const NOT_PUBLIC: &str = "resolves to an address that is not public";

/// `Err` with the message for a forbidden address.
fn refusal(ip: IpAddr) -> Result<(), String> {
    match forbidden(ip) {
        None => Ok(()),
        Some(reason) => {
            let article = if reason == "unspecified" { "an" } else { "a" };
            Err(format!("resolves to {article} {reason} address ({ip})"))
        }
    }
}

/// One spelling per host: trimmed, lower case, IPv6 without brackets and
/// in canonical form, so that `[::1]`, `::1` and `0:0::1` are one host.
fn host_key(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&host);
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => bare.to_owned(),
    }
}

/// Which callback URLs may be called: `https` to public addresses, and the
/// hosts of `CALLBACK_ALLOW_HOSTS` over `http` too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackPolicy {
    allow_hosts: Vec<String>,
}

/// A URL that passed [`CallbackPolicy::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackUrl {
    url: Url,
    /// [`host_key`]'s spelling.
    host: String,
    port: u16,
    literal: Option<IpAddr>,
    allowed: bool,
}

impl CallbackUrl {
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the host is in the allow list of the policy that checked it.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }
}

/// Why [`CallbackPolicy::check_resolved`] did not pass a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Some address of the host is forbidden: never call it.
    #[error("{0}")]
    Forbidden(String),
    /// No answer: the api accepts, and delivery checks again.
    #[error("does not resolve: {0}")]
    Unresolved(String),
}

impl CallbackPolicy {
    /// `allow_hosts_csv`: comma-separated host names or IP addresses; empty
    /// allows none.
    pub fn new(allow_hosts_csv: &str) -> CallbackPolicy {
        let allow_hosts = allow_hosts_csv
            .split(',')
            .map(host_key)
            .filter(|h| !h.is_empty())
            .collect();
        CallbackPolicy { allow_hosts }
    }

    fn allows(&self, host: &str) -> bool {
        let key = host_key(host);
        self.allow_hosts.contains(&key)
    }

    /// The URL's syntax, and its host when it is an IP address. `Err` is the
    /// message for a 422 on `callback.url`; it never repeats the URL.
    pub fn check(&self, raw: &str) -> Result<CallbackUrl, String> {
        if raw.len() > MAX_URL_BYTES {
            return Err(format!("must be at most {MAX_URL_BYTES} bytes"));
        }
        let url = Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("must use https".into());
        }
        let literal = match url.host() {
            Some(Host::Domain(_)) => None,
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            None => return Err("must have a host".into()),
        };
        let host = host_key(url.host_str().unwrap_or_default());
        let allowed = self.allows(&host);
        if url.scheme() == "http" && !allowed {
            return Err("must use https".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain a user name or password".into());
        }
        if url.fragment().is_some() {
            return Err("must not have a fragment".into());
        }
        // The deliverer sends it as an http::Uri, which is stricter than url.
        http::Uri::try_from(url.as_str()).map_err(|e| format!("is not a valid URL ({e})"))?;
        if let (Some(ip), false) = (literal, allowed) {
            refusal(ip)?;
        }
        let port = url.port_or_known_default().unwrap_or(443);
        Ok(CallbackUrl {
            url,
            host,
            port,
            literal,
            allowed,
        })
    }

    /// Resolves the URL's host within `timeout`. One forbidden address
    /// among the answers refuses: whoever owns the DNS picks their order.
    /// Allowed hosts pass without a lookup.
    pub async fn check_resolved(
        &self,
        url: &CallbackUrl,
        timeout: Duration,
    ) -> Result<(), Refused> {
        if self.allows(&url.host) {
            return Ok(());
        }
        if let Some(ip) = url.literal {
            return refusal(ip).map_err(Refused::Forbidden);
        }
        let lookup = tokio::net::lookup_host((url.host.as_str(), url.port));
        let addrs = match tokio::time::timeout(timeout, lookup).await {
            Err(_) => return Err(Refused::Unresolved(format!("no answer within {timeout:?}"))),
            Ok(Err(e)) => return Err(Refused::Unresolved(e.to_string())),
            Ok(Ok(addrs)) => addrs,
        };
        let mut any = false;
        for addr in addrs {
            any = true;
            if let Some(reason) = forbidden(addr.ip()) {
                // The api resolves inside the VPC: its answer must not tell
                // a caller what a private name resolves to. The log does.
                tracing::info!(reason, "a callback host resolves to a forbidden address");
                return Err(Refused::Forbidden(NOT_PUBLIC.into()));
            }
        }
        if any {
            Ok(())
        } else {
            Err(Refused::Unresolved("no address".into()))
        }
    }
}

/// A new signing secret: `whsec_` + base64 of 32 random bytes from the OS
/// (`jobmatch webhook-secret`; the local stack makes its own the same way).
pub fn new_webhook_secret() -> Result<String, ring::error::Unspecified> {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut key = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut key)?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

#[cfg(feature = "callback")]
pub use delivery::{Deliverer, Delivery, SecretError, Signer};

#[cfg(feature = "callback")]
mod delivery {
    use std::error::Error as StdError;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use aws_smithy_types::body::SdkBody;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
    use hyper_util::client::legacy::connect::dns::Name;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use ring::hmac;

    use super::{refusal, CallbackPolicy};
    use crate::http_client::{find_source, tls_config, TlsError};

    type BoxError = Box<dyn StdError + Send + Sync>;

    /// Standard Webhooks 1.0 signatures, one per secret (rotation: the new
    /// secret and the old one, both valid at the receiver for a while).
    ///
    /// On ring's HMAC, not the `standardwebhooks` crate (1.0.1): ring is
    /// linked already, while the crate brings hmac-sha256, `time` and a
    /// second base64 (0.21), signs one secret per instance, refuses a body
    /// that is not UTF-8, and takes a secret without its `whsec_` prefix
    /// silently. The tests verify with the crate.
    pub struct Signer {
        keys: Vec<hmac::Key>,
    }

    /// Why a webhook secret is unusable. Never holds the secret.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum SecretError {
        #[error("the webhook secret is empty")]
        Empty,
        #[error("webhook secret {0} (counting from 1) does not start with whsec_")]
        Prefix(usize),
        #[error("webhook secret {0} (counting from 1) is not base64 after whsec_")]
        Base64(usize),
        #[error("webhook secret {0} (counting from 1) has an empty key")]
        EmptyKey(usize),
    }

    impl Signer {
        /// `secrets`: one or more `whsec_<base64 key>`, separated by
        /// whitespace, the one to sign with first.
        pub fn new(secrets: &str) -> Result<Signer, SecretError> {
            let keys = secrets
                .split_whitespace()
                .enumerate()
                .map(|(i, secret)| {
                    let n = i + 1;
                    let encoded = secret
                        .strip_prefix("whsec_")
                        .ok_or(SecretError::Prefix(n))?;
                    let key = STANDARD
                        .decode(encoded)
                        .map_err(|_| SecretError::Base64(n))?;
                    if key.is_empty() {
                        return Err(SecretError::EmptyKey(n));
                    }
                    Ok(hmac::Key::new(hmac::HMAC_SHA256, &key))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if keys.is_empty() {
                return Err(SecretError::Empty);
            }
            Ok(Signer { keys })
        }

        /// The `webhook-signature` header: `v1,<base64 HMAC-SHA256 of
        /// "{id}.{timestamp}.{body}">` per secret, space-separated.
        pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
            let timestamp = timestamp.to_string();
            let signatures: Vec<String> = self
                .keys
                .iter()
                .map(|key| {
                    let mut mac = hmac::Context::with_key(key);
                    for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
                        mac.update(part);
                    }
                    format!("v1,{}", STANDARD.encode(mac.sign().as_ref()))
                })
                .collect();
            signatures.join(" ")
        }
    }

    impl std::fmt::Debug for Signer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Signer")
                .field("keys", &self.keys.len())
                .finish_non_exhaustive()
        }
    }

    /// The outcome of one POST.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Delivery {
        /// A 2xx.
        Delivered(u16),
        /// Any other status, 3xx included: redirects are never followed.
        Rejected(u16),
        /// The guard's: nothing was sent, nor will be.
        Refused(String),
        /// No response: connection, TLS or timeout.
        Failed(String),
    }

    /// Resolves, then fails if any answer is forbidden (unless the host is
    /// allowed): the connector then connects to an address checked here,
    /// whatever the DNS answers a moment later (rebinding).
    #[derive(Clone)]
    struct GuardedResolver {
        policy: Arc<CallbackPolicy>,
    }

    /// The guard's refusal, found again in the client's error chain.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct ForbiddenAddress(String);

    impl tower_service::Service<Name> for GuardedResolver {
        type Response = std::vec::IntoIter<SocketAddr>;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, name: Name) -> Self::Future {
            let allowed = self.policy.allows(name.as_str());
            Box::pin(async move {
                // Port 0: the connector sets the URL's.
                let addrs: Vec<SocketAddr> =
                    tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
                if !allowed {
                    for addr in &addrs {
                        refusal(addr.ip()).map_err(ForbiddenAddress)?;
                    }
                }
                Ok(addrs.into_iter())
            })
        }
    }

    type GuardedClient = Client<HttpsConnector<HttpConnector<GuardedResolver>>, SdkBody>;

    /// POSTs callbacks on the project's HTTP stack (see
    /// [`crate::http_client`]), through the guard.
    pub struct Deliverer {
        policy: Arc<CallbackPolicy>,
        client: GuardedClient,
        timeout: Duration,
    }

    impl std::fmt::Debug for Deliverer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Deliverer")
                .field("policy", &self.policy)
                .field("timeout", &self.timeout)
                .finish_non_exhaustive()
        }
    }

    /// TCP's connect, within the delivery's timeout.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

    impl Deliverer {
        /// Each POST, connection included, is bounded by `timeout`.
        pub fn new(policy: CallbackPolicy, timeout: Duration) -> Result<Deliverer, TlsError> {
            let tls = tls_config()?;
            let policy = Arc::new(policy);
            let mut tcp = HttpConnector::new_with_resolver(GuardedResolver {
                policy: policy.clone(),
            });
            tcp.enforce_http(false);
            tcp.set_nodelay(true);
            // A receiver that never accepts holds a slot for this, not the
            // whole timeout (the slots are shared by every caller's callbacks).
            tcp.set_connect_timeout(Some(timeout.min(CONNECT_TIMEOUT)));
            let https = HttpsConnectorBuilder::new()
                .with_tls_config((*tls).clone())
                .https_or_http()
                .enable_http1()
                .wrap_connector(tcp);
            // No idle connections: every delivery connects, so every delivery
            // goes through the resolver's check.
            let client = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(https);
            Ok(Deliverer {
                policy,
                client,
                timeout,
            })
        }

        /// POSTs `body` as JSON with `headers` added (the webhook ones). The
        /// response body is not read.
        pub async fn post(&self, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Delivery {
            // The URL is judged here, at every delivery: its syntax and an
            // IP-literal host (the connector skips the resolver for those);
            // a name's addresses by the resolver.
            let url = match self.policy.check(url) {
                Ok(url) => url,
                Err(message) => return Delivery::Refused(message),
            };
            let mut request = http::Request::post(url.as_str())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::USER_AGENT, "jobmatch-callback");
            for (name, value) in headers {
                request = request.header(*name, value.as_str());
            }
            let request = match request.body(SdkBody::from(body)) {
                Ok(request) => request,
                Err(e) => return Delivery::Failed(format!("invalid request: {e}")),
            };
            match tokio::time::timeout(self.timeout, self.client.request(request)).await {
                Err(_) => Delivery::Failed(format!("no response within {:?}", self.timeout)),
                Ok(Err(e)) => match find_source::<ForbiddenAddress>(&e) {
                    Some(refused) => Delivery::Refused(refused.0.clone()),
                    None => Delivery::Failed(describe(&e)),
                },
                Ok(Ok(response)) => {
                    let status = response.status();
                    if status.is_success() {
                        Delivery::Delivered(status.as_u16())
                    } else {
                        Delivery::Rejected(status.as_u16())
                    }
                }
            }
        }
    }

    /// An error with its causes: hyper's own message alone says little.
    fn describe(err: &(dyn StdError + 'static)) -> String {
        let mut text = err.to_string();
        let mut next = err.source();
        while let Some(e) = next {
            text.push_str(": ");
            text.push_str(&e.to_string());
            next = e.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an IP address")
    }

    #[test]
    fn every_class_of_address_is_named() {
        let cases = [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.5.4", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "metadata"),
            ("169.254.170.2", "metadata"),
            ("169.254.1.1", "link-local"),
            ("100.100.100.200", "metadata"),
            ("100.64.0.1", "shared address space"),
            ("100.127.255.254", "shared address space"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "reserved"),
            ("240.0.0.1", "reserved"),
            ("192.0.0.8", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("192.0.2.1", "documentation"),
            ("203.0.113.7", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fd00:ec2::254", "metadata"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("100::1", "reserved"),
            ("fec0::1", "reserved"),
            ("2001::1", "reserved"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "metadata"),
            ("::127.0.0.1", "loopback"),
            ("::ffff:0:10.1.2.3", "private"),
            ("64:ff9b::a00:1", "private"),
            ("64:ff9b::7f00:1", "loopback"),
            ("2002:a9fe:a9fe::1", "metadata"),
        ];
        for (addr, reason) in cases {
            assert_eq!(forbidden(ip(addr)), Some(reason), "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(forbidden(ip(addr)), None, "{addr}");
        }
    }

    fn refused(policy: &CallbackPolicy, url: &str) -> String {
        policy.check(url).expect_err(url)
    }

    #[test]
    fn check_refuses_what_may_not_be_called() {
        let none = CallbackPolicy::new("");
        assert_eq!(refused(&none, "http://example.com/"), "must use https");
        assert_eq!(
            refused(&none, "https://10.0.0.1/"),
            "resolves to a private address (10.0.0.1)"
        );
        assert_eq!(
            refused(&none, "https://[::1]/"),
            "resolves to a loopback address (::1)"
        );
        assert_eq!(
            refused(&none, "https://0x7f.1/"),
            "resolves to a loopback address (127.0.0.1)",
            "url normalises IPv4 spellings"
        );
        assert_eq!(
            refused(&none, "https://[::ffff:a9fe:a9fe]/"),
            "resolves to a metadata address (::ffff:169.254.169.254)"
        );
        assert_eq!(
            refused(&none, "http://169.254.169.254/latest/meta-data"),
            "must use https"
        );
        assert_eq!(
            refused(&none, "https://169.254.169.254/latest/meta-data"),
            "resolves to a metadata address (169.254.169.254)"
        );
        assert_eq!(
            refused(&none, "https://0.0.0.0/"),
            "resolves to an unspecified address (0.0.0.0)"
        );
        assert_eq!(
            refused(&none, "https://user:pw@example.com/"),
            "must not contain a user name or password"
        );
        assert_eq!(
            refused(&none, "https://user@example.com/"),
            "must not contain a user name or password"
        );
        assert_eq!(
            refused(&none, "https://example.com/#x"),
            "must not have a fragment"
        );
        let long = format!("https://example.com/{}", "a".repeat(3000 - 20));
        assert_eq!(long.len(), 3000);
        assert_eq!(refused(&none, &long), "must be at most 2048 bytes");
        assert_eq!(refused(&none, "ftp://example.com/f"), "must use https");
        assert_eq!(refused(&none, "mailto:a@example.com"), "must use https");
        assert!(refused(&none, "not a url").starts_with("is not a valid URL"));
        assert!(refused(&none, "https://exa mple.com/").starts_with("is not a valid URL"));
    }

    #[test]
    fn check_accepts_https_and_allowed_hosts() {
        let none = CallbackPolicy::new("");
        let url = none.check("https://Example.COM/hook?a=1").expect("public");
        assert_eq!(url.as_str(), "https://example.com/hook?a=1");
        assert_eq!(
            (url.host(), url.port(), url.is_allowed()),
            ("example.com", 443, false)
        );
        let at_most = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES - 20));
        assert!(none.check(&at_most).is_ok());

        let local = CallbackPolicy::new(" 127.0.0.1 , LocalHost,[::1],");
        let url = local.check("http://127.0.0.1:8080/cb").expect("allowed");
        assert_eq!(
            (url.host(), url.port(), url.is_allowed()),
            ("127.0.0.1", 8080, true)
        );
        assert!(local.check("http://localhost/cb").is_ok());
        assert!(local.check("http://[0:0::1]:9/cb").is_ok());
        assert_eq!(refused(&local, "http://127.0.0.2/"), "must use https");
        assert_eq!(
            refused(&local, "https://10.0.0.1/"),
            "resolves to a private address (10.0.0.1)"
        );
        assert_eq!(
            refused(&local, "http://user@127.0.0.1/"),
            "must not contain a user name or password"
        );
    }

    #[tokio::test]
    async fn check_resolved_refuses_a_name_for_loopback() {
        let none = CallbackPolicy::new("");
        let url = none.check("https://localhost/").expect("a name");
        let refusal = none
            .check_resolved(&url, Duration::from_secs(5))
            .await
            .expect_err("localhost is loopback");
        assert!(
            matches!(&refusal, Refused::Forbidden(m) if m == NOT_PUBLIC),
            "{refusal:?}"
        );
        let allowing = CallbackPolicy::new("localhost");
        assert_eq!(
            allowing.check_resolved(&url, Duration::from_secs(5)).await,
            Ok(())
        );
        // A literal is judged again by the policy asked.
        let literal = allowing_literal("https://127.0.0.1/");
        assert!(matches!(
            none.check_resolved(&literal, Duration::from_secs(5)).await,
            Err(Refused::Forbidden(_))
        ));
    }

    fn allowing_literal(url: &str) -> CallbackUrl {
        CallbackPolicy::new("127.0.0.1")
            .check(url)
            .expect("allowed")
    }

    #[tokio::test]
    async fn check_resolved_reports_a_name_without_address() {
        let none = CallbackPolicy::new("");
        // .invalid never resolves (RFC 6761); offline, the lookup fails or
        // times out: Unresolved either way.
        let url = none.check("https://callback.invalid/").expect("a name");
        let refusal = none
            .check_resolved(&url, Duration::from_secs(3))
            .await
            .expect_err("no address");
        assert!(matches!(refusal, Refused::Unresolved(_)), "{refusal:?}");
    }

    #[cfg(feature = "callback")]
    mod signing {
        use super::super::*;

        const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        // base64 of b"jobmatch-rotation-old-key-32byte"
        const OLD: &str = "whsec_am9ibWF0Y2gtcm90YXRpb24tb2xkLWtleS0zMmJ5dGU=";
        const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
        const TS: i64 = 1649367553;
        const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
        // Computed with Python's hmac/hashlib/base64 (the first is also the
        // Standard Webhooks reference libraries' own vector).
        const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
        const OLD_SIG: &str = "v1,69tMhRTVgpD2pgzfNlKkjb6FrRiNu1uFni3tKFAscY0=";

        #[test]
        fn signs_the_fixed_vector() {
            let signer = Signer::new(SECRET).expect("a secret");
            assert_eq!(signer.sign(ID, TS, BODY), SIG);
        }

        #[test]
        fn signs_with_every_secret_in_order() {
            let signer = Signer::new(&format!("  {SECRET}\n {OLD} ")).expect("two secrets");
            assert_eq!(signer.sign(ID, TS, BODY), format!("{SIG} {OLD_SIG}"));
            let swapped = Signer::new(&format!("{OLD} {SECRET}")).expect("two secrets");
            assert_eq!(swapped.sign(ID, TS, BODY), format!("{OLD_SIG} {SIG}"));
        }

        fn headers(timestamp: i64, signature: &str) -> http::HeaderMap {
            let mut headers = http::HeaderMap::new();
            headers.insert("webhook-id", ID.parse().expect("value"));
            let timestamp = timestamp.to_string();
            headers.insert("webhook-timestamp", timestamp.parse().expect("value"));
            headers.insert("webhook-signature", signature.parse().expect("value"));
            headers
        }

        /// The official crate accepts the rotated header with either secret,
        /// and refuses another body or a third secret. (Its 1.0.1 verifies
        /// against the clock only: signed now.)
        #[test]
        fn the_reference_library_verifies() {
            let now = chrono::Utc::now().timestamp();
            let signature = Signer::new(&format!("{SECRET} {OLD}"))
                .expect("two secrets")
                .sign(ID, now, BODY);
            let headers = headers(now, &signature);
            for secret in [SECRET, OLD] {
                let webhook = standardwebhooks::Webhook::new(secret).expect("secret");
                webhook.verify(BODY, &headers).expect("verified");
                assert!(webhook.verify(b"{}", &headers).is_err());
            }
            let other = standardwebhooks::Webhook::new("whsec_b3RoZXI=").expect("secret");
            assert!(other.verify(BODY, &headers).is_err());
        }

        #[test]
        fn bad_secrets_are_refused_without_echo() {
            let cases = [
                ("", SecretError::Empty),
                (" \n ", SecretError::Empty),
                ("C2FVsBQIhrscChlQIMV+b5sSYspob7oD", SecretError::Prefix(1)),
                ("whsec_not*base64!", SecretError::Base64(1)),
                ("whsec_", SecretError::EmptyKey(1)),
                (
                    "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD hunter2",
                    SecretError::Prefix(2),
                ),
            ];
            for (secret, expected) in cases {
                let err = Signer::new(secret).expect_err(secret);
                assert_eq!(err, expected, "{secret:?}");
                let text = err.to_string();
                assert!(
                    !text.contains("hunter2") && !text.contains("C2FV"),
                    "{text}"
                );
            }
            let debug = format!("{:?}", Signer::new(SECRET).expect("a secret"));
            assert!(!debug.contains("C2FV"), "{debug}");
        }
    }

    #[cfg(feature = "callback")]
    mod deliverer {
        use super::super::*;
        use std::net::SocketAddr;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::{TcpListener, TcpStream};
        use tokio::sync::mpsc;

        struct Server {
            addr: SocketAddr,
            connections: Arc<AtomicUsize>,
            requests: mpsc::UnboundedReceiver<String>,
        }

        /// Reads a request (head and Content-Length body).
        async fn read_request(socket: &mut TcpStream) -> String {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = socket.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            let l = l.to_ascii_lowercase();
                            l.strip_prefix("content-length:")
                                .and_then(|v| v.trim().parse::<usize>().ok())
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            String::from_utf8_lossy(&buf).into_owned()
        }

        /// Answers each request with `reply`, or never when `None`; counts
        /// connections and passes the requests on.
        async fn serve(reply: Option<String>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let connections = Arc::new(AtomicUsize::new(0));
            let (sent, requests) = mpsc::unbounded_channel();
            let count = connections.clone();
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    count.fetch_add(1, Ordering::SeqCst);
                    let (sent, reply) = (sent.clone(), reply.clone());
                    tokio::spawn(async move {
                        let _ = sent.send(read_request(&mut socket).await);
                        match reply {
                            Some(reply) => {
                                let _ = socket.write_all(reply.as_bytes()).await;
                            }
                            None => tokio::time::sleep(Duration::from_secs(60)).await,
                        }
                    });
                }
            });
            Server {
                addr,
                connections,
                requests,
            }
        }

        fn status(code: &str) -> Option<String> {
            Some(format!("HTTP/1.1 {code}\r\ncontent-length: 2\r\n\r\nno"))
        }

        fn deliverer(allow: &str) -> Deliverer {
            Deliverer::new(CallbackPolicy::new(allow), Duration::from_secs(5)).expect("CA bundle")
        }

        fn url(allow: &str, url: &str) -> CallbackUrl {
            CallbackPolicy::new(allow).check(url).expect("a valid URL")
        }

        #[tokio::test]
        async fn an_allowed_host_gets_the_signed_post() {
            let mut server = serve(Some("HTTP/1.1 204 No Content\r\n\r\n".into())).await;
            let target = url("127.0.0.1", &format!("http://{}/cb?t=1", server.addr));
            let body = br#"{"task_id":"t1","status":"completed"}"#.to_vec();
            let signature = Signer::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
                .expect("secret")
                .sign("t1-completed", 1_700_000_000, &body);
            let headers = [
                ("webhook-id", "t1-completed".to_owned()),
                ("webhook-timestamp", "1700000000".to_owned()),
                ("webhook-signature", signature.clone()),
            ];
            let delivery = deliverer("127.0.0.1")
                .post(target.as_str(), &headers, body)
                .await;
            assert_eq!(delivery, Delivery::Delivered(204));
            let request = server.requests.recv().await.expect("a request");
            assert!(
                request.starts_with("POST /cb?t=1 HTTP/1.1\r\n"),
                "{request}"
            );
            for line in [
                "content-type: application/json".to_owned(),
                "user-agent: jobmatch-callback".to_owned(),
                "webhook-id: t1-completed".to_owned(),
                "webhook-timestamp: 1700000000".to_owned(),
                format!("webhook-signature: {signature}"),
            ] {
                assert!(
                    request.contains(&format!("\r\n{line}\r\n")),
                    "{line}: {request}"
                );
            }
            assert!(request.ends_with("\r\n\r\n{\"task_id\":\"t1\",\"status\":\"completed\"}"));
        }

        #[tokio::test]
        async fn a_host_not_allowed_gets_no_connection() {
            let server = serve(status("200 OK")).await;
            let port = server.addr.port();
            let none = deliverer("");
            // Checked by a lenient policy; the deliverer's own decides.
            let plain = url("127.0.0.1", &format!("http://127.0.0.1:{port}/"));
            assert_eq!(
                none.post(plain.as_str(), &[], b"{}".to_vec()).await,
                Delivery::Refused("must use https".into())
            );
            let literal = url("127.0.0.1", &format!("https://127.0.0.1:{port}/"));
            assert_eq!(
                none.post(literal.as_str(), &[], b"{}".to_vec()).await,
                Delivery::Refused("resolves to a loopback address (127.0.0.1)".into())
            );
            // A name goes through the resolver, which refuses its answer.
            let name = url("", &format!("https://localhost:{port}/"));
            let delivery = none.post(name.as_str(), &[], b"{}".to_vec()).await;
            assert!(
                matches!(&delivery, Delivery::Refused(m) if m.starts_with("resolves to a loopback address")),
                "{delivery:?}"
            );
            assert_eq!(server.connections.load(Ordering::SeqCst), 0);
        }

        #[tokio::test]
        async fn an_allowed_name_is_resolved_and_called() {
            let server = serve(status("200 OK")).await;
            let name = url(
                "localhost",
                &format!("http://localhost:{}/", server.addr.port()),
            );
            let delivery = deliverer("localhost")
                .post(name.as_str(), &[], b"{}".to_vec())
                .await;
            assert_eq!(delivery, Delivery::Delivered(200));
            assert_eq!(server.connections.load(Ordering::SeqCst), 1);
        }

        #[tokio::test]
        async fn a_redirect_is_rejected_and_not_followed() {
            let elsewhere = serve(status("200 OK")).await;
            let redirect = format!(
                "HTTP/1.1 302 Found\r\nlocation: http://{}/x\r\ncontent-length: 0\r\n\r\n",
                elsewhere.addr
            );
            let server = serve(Some(redirect)).await;
            let target = url("127.0.0.1", &format!("http://{}/", server.addr));
            let delivery = deliverer("127.0.0.1")
                .post(target.as_str(), &[], b"{}".to_vec())
                .await;
            assert_eq!(delivery, Delivery::Rejected(302));
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(elsewhere.connections.load(Ordering::SeqCst), 0);
        }

        #[tokio::test]
        async fn a_server_error_is_rejected() {
            let server = serve(status("500 Internal Server Error")).await;
            let target = url("127.0.0.1", &format!("http://{}/", server.addr));
            let delivery = deliverer("127.0.0.1")
                .post(target.as_str(), &[], b"{}".to_vec())
                .await;
            assert_eq!(delivery, Delivery::Rejected(500));
        }

        #[tokio::test]
        async fn a_silent_server_fails_within_the_timeout() {
            let server = serve(None).await;
            let target = url("127.0.0.1", &format!("http://{}/", server.addr));
            let deliverer =
                Deliverer::new(CallbackPolicy::new("127.0.0.1"), Duration::from_millis(300))
                    .expect("CA bundle");
            let started = std::time::Instant::now();
            let delivery = deliverer.post(target.as_str(), &[], b"{}".to_vec()).await;
            assert!(matches!(delivery, Delivery::Failed(_)), "{delivery:?}");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{:?}",
                started.elapsed()
            );
        }

        #[tokio::test]
        async fn a_closed_port_fails() {
            let addr = TcpListener::bind("127.0.0.1:0")
                .await
                .and_then(|l| l.local_addr())
                .expect("a free port");
            let target = url("127.0.0.1", &format!("http://{addr}/"));
            let delivery = deliverer("127.0.0.1")
                .post(target.as_str(), &[], b"{}".to_vec())
                .await;
            assert!(matches!(delivery, Delivery::Failed(_)), "{delivery:?}");
        }
    }
}
