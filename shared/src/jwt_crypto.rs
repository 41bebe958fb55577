//! jsonwebtoken's signatures on ring, which rustls, sqlx and the SDK client
//! already link: jsonwebtoken's own `rust_crypto` provider brought the
//! RustCrypto RSA, P-256/P-384 and Ed25519 crates into the api and status
//! bootstraps as a second crypto library, and its `aws_lc_rs` one the large
//! aws-lc C library. jsonwebtoken takes a process-wide `CryptoProvider`
//! (its documented extension point); [`install`] sets this one.
//!
//! Every algorithm jsonwebtoken names is here, not only the three
//! `auth::SUPPORTED` ones: the verifier refuses the others by name before
//! any signature is checked, and the tests mint tokens with them. The one
//! gap is a JWK made from an RSA public key (see
//! `rsa_pub_components_from_public_key`).

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use ring::{digest, hmac};

/// The provider; jsonwebtoken panics on its first signature if none is set.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key,
        rsa_pub_components_from_public_key,
        ec_pub_components_from_private_key,
        ed_pub_components_from_private_key,
        compute_digest,
    },
};

/// Makes [`PROVIDER`] jsonwebtoken's provider for this process. Called by
/// the `auth::Verifier` constructors and `auth::mint_hs256`; a no-op once a
/// provider is set.
pub fn install() {
    // Err only means that a provider is already installed (this one, unless
    // a test installed another on purpose).
    let _ = PROVIDER.install_default();
}

fn sig_error(_: ring::error::Unspecified) -> signature::Error {
    signature::Error::new()
}

fn hmac_alg(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

fn rsa_signing(alg: Algorithm) -> Option<&'static dyn sig::RsaEncoding> {
    match alg {
        Algorithm::RS256 => Some(&sig::RSA_PKCS1_SHA256),
        Algorithm::RS384 => Some(&sig::RSA_PKCS1_SHA384),
        Algorithm::RS512 => Some(&sig::RSA_PKCS1_SHA512),
        Algorithm::PS256 => Some(&sig::RSA_PSS_SHA256),
        Algorithm::PS384 => Some(&sig::RSA_PSS_SHA384),
        Algorithm::PS512 => Some(&sig::RSA_PSS_SHA512),
        _ => None,
    }
}

fn rsa_verification(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    match alg {
        Algorithm::RS256 => Some(&sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Some(&sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Some(&sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Some(&sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Some(&sig::RSA_PSS_2048_8192_SHA512),
        _ => None,
    }
}

fn ecdsa_signing(alg: Algorithm) -> Option<&'static sig::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

fn public_key_verification(alg: Algorithm) -> Option<&'static dyn sig::VerificationAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Some(&sig::ED25519),
        _ => None,
    }
}

fn check_family(actual: AlgorithmFamily, alg: Algorithm) -> Result<()> {
    if actual == alg.family() {
        Ok(())
    } else {
        Err(ErrorKind::InvalidKeyFormat.into())
    }
}

/// One signer type for every family: the parsed key and the algorithm.
enum RingSigner {
    Hmac(hmac::Key),
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
}

struct Signing(RingSigner, Algorithm);

impl Signer<Vec<u8>> for Signing {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let rng = SystemRandom::new();
        match &self.0 {
            RingSigner::Hmac(key) => Ok(hmac::sign(key, msg).as_ref().to_vec()),
            RingSigner::Rsa(key, padding) => {
                let mut out = vec![0; key.public().modulus_len()];
                key.sign(*padding, &rng, msg, &mut out).map_err(sig_error)?;
                Ok(out)
            }
            RingSigner::Ecdsa(key) => Ok(key.sign(&rng, msg).map_err(sig_error)?.as_ref().to_vec()),
            RingSigner::Ed25519(key) => Ok(key.sign(msg).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for Signing {
    fn algorithm(&self) -> Algorithm {
        self.1
    }
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    let alg = *alg;
    check_family(key.family(), alg)?;
    let der = key.as_bytes();
    let signer = if let Some(h) = hmac_alg(alg) {
        RingSigner::Hmac(hmac::Key::new(h, der))
    } else if let Some(padding) = rsa_signing(alg) {
        RingSigner::Rsa(rsa_key_pair(der)?, padding)
    } else if let Some(ec) = ecdsa_signing(alg) {
        let pair = sig::EcdsaKeyPair::from_pkcs8(ec, der, &SystemRandom::new())
            .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
        RingSigner::Ecdsa(pair)
    } else {
        // EdDSA, the one algorithm left.
        let pair = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| ErrorKind::InvalidEddsaKey)?;
        RingSigner::Ed25519(pair)
    };
    Ok(Box::new(Signing(signer, alg)))
}

/// The key as jsonwebtoken decoded it; parsed by ring at each verification.
struct Verification(DecodingKey, Algorithm);

impl Verifier<Vec<u8>> for Verification {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let alg = self.1;
        if let Some(h) = hmac_alg(alg) {
            let secret = self
                .0
                .try_get_as_bytes()
                .map_err(|_| signature::Error::new())?;
            return hmac::verify(&hmac::Key::new(h, secret), msg, signature).map_err(sig_error);
        }
        if let Some(params) = rsa_verification(alg) {
            return match self.0.kind() {
                DecodingKeyKind::SecretOrDer(der) => {
                    sig::UnparsedPublicKey::new(params, der).verify(msg, signature)
                }
                DecodingKeyKind::RsaModulusExponent { n, e } => {
                    sig::RsaPublicKeyComponents { n, e }.verify(params, msg, signature)
                }
            }
            .map_err(sig_error);
        }
        let algorithm = public_key_verification(alg).ok_or_else(signature::Error::new)?;
        let public = self
            .0
            .try_get_as_bytes()
            .map_err(|_| signature::Error::new())?;
        sig::UnparsedPublicKey::new(algorithm, public)
            .verify(msg, signature)
            .map_err(sig_error)
    }
}

impl JwtVerifier for Verification {
    fn algorithm(&self) -> Algorithm {
        self.1
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    check_family(key.family(), *alg)?;
    Ok(Box::new(Verification(key.clone(), *alg)))
}

/// An RSA private key, PKCS#1 or PKCS#8 DER.
fn rsa_key_pair(der: &[u8]) -> Result<sig::RsaKeyPair> {
    sig::RsaKeyPair::from_der(der)
        .or_else(|_| sig::RsaKeyPair::from_pkcs8(der))
        .map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()).into())
}

fn rsa_pub_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let pair = rsa_key_pair(der)?;
    let public = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((public.n, public.e))
}

/// Only `Jwk::from_decoding_key` asks for this (the verifier takes JWKs as
/// the IdP publishes them, with `n` and `e`), and ring verifies DER public
/// keys without taking them apart: refused, rather than linking an ASN.1
/// parser (with its date code, about 0.1 MB) for it. A JWK from the private
/// key (`Jwk::from_encoding_key`) works.
fn rsa_pub_components_from_public_key(_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    Err(ErrorKind::InvalidRsaKey("a JWK from an RSA public key is not supported".into()).into())
}

fn ec_pub_components_from_private_key(
    der: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let (signing, curve, len) = match alg {
        Algorithm::ES256 => (
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            EllipticCurve::P256,
            32,
        ),
        Algorithm::ES384 => (
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            EllipticCurve::P384,
            48,
        ),
        _ => return Err(ErrorKind::InvalidEcdsaKey.into()),
    };
    let pair = sig::EcdsaKeyPair::from_pkcs8(signing, der, &SystemRandom::new())
        .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
    // An uncompressed point: 0x04, then x and y.
    match pair.public_key().as_ref() {
        [4, xy @ ..] if xy.len() == 2 * len => {
            let (x, y) = xy.split_at(len);
            Ok((curve, x.to_vec(), y.to_vec()))
        }
        _ => Err(ErrorKind::InvalidEcdsaKey.into()),
    }
}

fn ed_pub_components_from_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    match curve {
        EllipticCurve::Ed25519 => Ok(sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| ErrorKind::InvalidEddsaKey)?
            .public_key()
            .as_ref()
            .to_vec()),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        // The enum is non-exhaustive: a hash added later is refused.
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(digest::digest(alg, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{decode, encode, Header, Validation};
    use serde_json::{json, Value};

    // The api's test keys: RSA 2048 and P-256, PKCS#8 and SPKI PEM.
    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../functions/api/tests/fixtures"
    );

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
    }

    /// Signs, then verifies through a JWK as the verifier sees an IdP's keys.
    fn round_trip(alg: Algorithm, private: EncodingKey) {
        install();
        let claims = json!({"sub": "alice", "exp": 4_000_000_000u64});
        let token = encode(&Header::new(alg), &claims, &private).expect("sign");
        let jwk = Jwk::from_encoding_key(&private, alg).expect("jwk");
        let key = DecodingKey::from_jwk(&jwk).expect("key from jwk");
        let got = decode::<Value>(&token, &key, &Validation::new(alg)).expect("verify");
        assert_eq!(got.claims, claims);
        // One flipped signature byte is refused.
        let mut bad = token.into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).expect("ascii");
        assert!(decode::<Value>(&bad, &key, &Validation::new(alg)).is_err());
    }

    #[test]
    fn rs256_round_trip() {
        round_trip(
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&fixture("rsa_test_key.pem")).expect("rsa key"),
        );
    }

    #[test]
    fn es256_round_trip() {
        round_trip(
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&fixture("ec_test_key.pem")).expect("ec key"),
        );
        // An EC public key's JWK is made without the provider.
        let public = DecodingKey::from_ec_pem(&fixture("ec_test_pub.pem")).expect("ec pub");
        assert!(Jwk::from_decoding_key(&public, Some(Algorithm::ES256)).is_ok());
    }

    #[test]
    fn a_key_of_another_family_is_refused() {
        install();
        let token = encode(
            &Header::new(Algorithm::HS256),
            &json!({"exp": 4_000_000_000u64}),
            &EncodingKey::from_secret(b"a-secret-of-at-least-32-bytes!!!"),
        )
        .expect("sign");
        let rsa = DecodingKey::from_rsa_pem(&fixture("rsa_test_pub.pem")).expect("rsa pub");
        assert!(decode::<Value>(&token, &rsa, &Validation::new(Algorithm::HS256)).is_err());
    }
}
