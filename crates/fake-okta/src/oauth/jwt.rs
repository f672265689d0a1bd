//! Verifying the two JWTs a service app sends: its client assertion (signed with the key
//! registered for the app) and DPoP proofs (signed with the key in their own `jwk` header).
//! Pure functions of the token, the expectations and the time; replayed `jti`s and nonces
//! are the caller's business because they need the app's state. Error strings are the
//! `error_description`s the fake answers with (Okta's wording where it is known).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The algorithms Okta lists in its DPoP challenges.
pub const DPOP_ALGS: &str = "RS256 RS384 RS512 ES256 ES384 ES512";
/// How far a proof's `iat` may be from the server's clock.
const PROOF_IAT_WINDOW_S: i64 = 300;
/// Okta: an assertion's `exp` "must be a maximum of only one hour in the future".
const MAX_ASSERTION_LIFETIME_S: i64 = 3600;
/// Okta's words for a replayed proof (okta/terraform-provider-okta#2392).
pub const REPLAYED: &str = "The DPoP proof JWT has already been used.";
/// Members of a private JWK, which must never appear in a proof's `jwk`.
const PRIVATE_JWK_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

/// A verified DPoP proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 SHA-256 thumbprint of the proof's key (`cnf.jkt` of the token it binds).
    pub jkt: String,
    pub jti: String,
    pub nonce: Option<String>,
}

/// What a proof must say to be accepted for one request.
#[derive(Debug, Clone, Copy)]
pub struct ProofCheck<'a> {
    pub method: &'a str,
    /// The request URL without query and fragment.
    pub htu: &'a str,
    /// For API requests: the access token the proof must be bound to (`ath`).
    pub access_token: Option<&'a str>,
    pub now_s: i64,
}

#[derive(Deserialize)]
struct ProofClaims {
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<i64>,
    jti: Option<String>,
    ath: Option<String>,
    nonce: Option<String>,
}

/// `ath`: base64url(SHA-256(access token)).
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// The JOSE header as plain JSON, for the checks jsonwebtoken's typed header cannot make.
fn raw_header(jwt: &str) -> Option<Value> {
    let first = jwt.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(first).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Okta's list less ES512, which jsonwebtoken cannot verify.
fn is_dpop_alg(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::ES256
            | Algorithm::ES384
    )
}

/// Header, key and signature of a proof; returns its key and claims.
fn proof_key_and_claims(proof: &str) -> Result<(Jwk, ProofClaims), String> {
    let raw = raw_header(proof).ok_or("The DPoP proof JWT is malformed.")?;
    if raw.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err("The DPoP proof JWT header 'typ' must be 'dpop+jwt'.".into());
    }
    let raw_jwk = raw
        .get("jwk")
        .ok_or("The DPoP proof JWT header is missing the 'jwk'.")?;
    if PRIVATE_JWK_MEMBERS.iter().any(|m| raw_jwk.get(m).is_some()) {
        return Err("The DPoP proof JWT 'jwk' must not contain a private key.".into());
    }
    let header = jsonwebtoken::decode_header(proof)
        .map_err(|_| "The DPoP proof JWT header is invalid.".to_owned())?;
    if !is_dpop_alg(header.alg) {
        return Err(format!(
            "The DPoP proof JWT 'alg' must be one of {DPOP_ALGS}."
        ));
    }
    let jwk = header
        .jwk
        .ok_or("The DPoP proof JWT header is missing the 'jwk'.")?;
    let key = DecodingKey::from_jwk(&jwk)
        .map_err(|_| "The DPoP proof JWT 'jwk' is invalid.".to_owned())?;
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<ProofClaims>(proof, &key, &validation)
        .map_err(|_| "The DPoP proof JWT signature is invalid.".to_owned())?
        .claims;
    Ok((jwk, claims))
}

/// Verifies a DPoP proof against one request (RFC 9449 §4.3).
pub fn verify_proof(proof: &str, check: &ProofCheck<'_>) -> Result<Proof, String> {
    let (jwk, claims) = proof_key_and_claims(proof)?;
    if claims.htm.as_deref() != Some(check.method) {
        return Err("'htm' claim in the DPoP proof JWT is invalid.".into());
    }
    if claims.htu.as_deref().map(without_query) != Some(without_query(check.htu)) {
        return Err("'htu' claim in the DPoP proof JWT is invalid.".into());
    }
    match claims.iat {
        Some(iat) if (check.now_s - iat).abs() <= PROOF_IAT_WINDOW_S => {}
        _ => return Err("'iat' claim in the DPoP proof JWT is invalid.".into()),
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty())
        .ok_or("'jti' claim in the DPoP proof JWT is missing.")?;
    if let Some(token) = check.access_token
        && claims.ath.as_deref() != Some(ath(token).as_str())
    {
        return Err("'ath' claim in the DPoP proof JWT is invalid.".into());
    }
    let jkt = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| "The DPoP proof JWT 'jwk' is invalid.".to_owned())?;
    Ok(Proof {
        jkt,
        jti,
        nonce: claims.nonce,
    })
}

/// What a client assertion must say.
#[derive(Clone, Copy)]
pub struct AssertionCheck<'a> {
    pub client_id: &'a str,
    pub token_url: &'a str,
    pub key: &'a DecodingKey,
    pub family: AlgorithmFamily,
    pub now_s: i64,
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Value>,
    exp: Option<i64>,
    jti: Option<String>,
}

fn audience_matches(aud: Option<&Value>, token_url: &str) -> bool {
    match aud {
        Some(Value::String(a)) => a == token_url,
        Some(Value::Array(all)) => all.iter().any(|a| a.as_str() == Some(token_url)),
        _ => false,
    }
}

/// Verifies a `private_key_jwt` client assertion; returns its `jti` (single-use if present).
pub fn verify_assertion(
    assertion: &str,
    check: &AssertionCheck<'_>,
) -> Result<Option<String>, String> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| "The client_assertion token is malformed.".to_owned())?;
    if header.alg.family() != check.family {
        return Err(format!(
            "The client_assertion token 'alg' {:?} does not fit the client's key.",
            header.alg
        ));
    }
    let mut validation = Validation::new(header.alg);
    // exp and aud are checked below, against the fake's clock and with Okta's limits.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, check.key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => "The client_assertion signature is invalid.".to_owned(),
            _ => "The client_assertion token is malformed.".to_owned(),
        })?
        .claims;
    if claims.iss.as_deref() != Some(check.client_id)
        || claims.sub.as_deref() != Some(check.client_id)
    {
        return Err("The client_assertion token has an invalid 'iss' or 'sub' claim.".into());
    }
    if !audience_matches(claims.aud.as_ref(), check.token_url) {
        return Err(
            "The audience claim for client_assertion must be the endpoint invoked for the request."
                .into(),
        );
    }
    match claims.exp {
        None => Err("The client_assertion token must have an 'exp' claim.".into()),
        Some(exp) if exp <= check.now_s => Err("The client_assertion token is expired.".into()),
        Some(exp) if exp > check.now_s + MAX_ASSERTION_LIFETIME_S => {
            Err("The client_assertion token has an expiration too far into the future.".into())
        }
        Some(_) => Ok(claims.jti),
    }
}
