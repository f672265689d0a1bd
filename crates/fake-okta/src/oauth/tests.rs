//! The service app over real loopback HTTP: the token grant with its DPoP nonce dance, the
//! checks of assertions and proofs, resource requests, and the admin nonce and expiry knobs.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::jwt::ath;
use crate::testutil::{Resp, TOKEN, admin, get, send_with, start};
use crate::{FakeOkta, Options};

const CLIENT_ID: &str = "0oaservice0000000001";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const SCOPES: &str = "okta.users.read okta.groups.read okta.apps.read okta.logs.read";

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn now() -> i64 {
    crate::clock::real_now_ms() / 1000
}

/// A client of the service app: its assertion key and its DPoP key.
struct Client {
    key: EncodingKey,
    alg: Algorithm,
    public_pem: String,
    dpop: EncodingKey,
    jwk: Jwk,
}

fn ec_key() -> (EncodingKey, String) {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let public = pem("PUBLIC KEY", pair.public_key().as_der().unwrap().as_ref());
    (
        EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref()),
        public,
    )
}

fn rsa_key() -> (EncodingKey, String) {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
    let public = pem("PUBLIC KEY", pair.public_key().as_der().unwrap().as_ref());
    let key = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes()).unwrap();
    (key, public)
}

impl Client {
    fn new(rsa: bool) -> Self {
        let ((key, public_pem), alg) = if rsa {
            (rsa_key(), Algorithm::RS256)
        } else {
            (ec_key(), Algorithm::ES256)
        };
        let (dpop, _) = ec_key();
        let jwk = Jwk::from_encoding_key(&dpop, Algorithm::ES256).unwrap();
        Client {
            key,
            alg,
            public_pem,
            dpop,
            jwk,
        }
    }

    fn assertion(&self, claims: Value) -> String {
        jsonwebtoken::encode(&Header::new(self.alg), &claims, &self.key).unwrap()
    }

    fn good_assertion(&self, base: &str) -> String {
        self.assertion(json!({
            "iss": CLIENT_ID, "sub": CLIENT_ID, "aud": format!("{base}/oauth2/v1/token"),
            "iat": now(), "exp": now() + 300, "jti": uuid::Uuid::new_v4().to_string(),
        }))
    }

    fn proof(&self, claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.jwk.clone());
        jsonwebtoken::encode(&header, &claims, &self.dpop).unwrap()
    }

    fn token_proof(&self, base: &str, nonce: Option<&str>) -> String {
        self.proof(json!({
            "htm": "POST", "htu": format!("{base}/oauth2/v1/token"), "iat": now(),
            "jti": uuid::Uuid::new_v4().to_string(), "nonce": nonce,
        }))
    }

    fn api_proof(&self, base: &str, path: &str, token: &str, nonce: Option<&str>) -> String {
        self.proof(json!({
            "htm": "GET", "htu": format!("{base}{path}"), "iat": now(),
            "jti": uuid::Uuid::new_v4().to_string(), "ath": ath(token), "nonce": nonce,
        }))
    }
}

async fn start_app(client: &Client, tweak: impl FnOnce(&mut Options)) -> FakeOkta {
    let mut options = Options {
        users: 20,
        groups: 3,
        oauth_client_id: Some(CLIENT_ID.into()),
        oauth_public_key_pem: Some(client.public_pem.clone()),
        ..Options::default()
    };
    tweak(&mut options);
    start(options).await
}

fn form(assertion: &str, scope: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("scope", scope)
        .append_pair("client_assertion_type", JWT_BEARER)
        .append_pair("client_assertion", assertion)
        .finish()
}

async fn token_request(base: &str, proof: Option<String>, body: &str) -> Resp {
    let headers: Vec<(&str, String)> = proof.into_iter().map(|p| ("DPoP", p)).collect();
    send_with(
        base,
        "POST",
        "/oauth2/v1/token",
        &headers,
        Some(("application/x-www-form-urlencoded", body)),
    )
    .await
}

/// The grant as Okta runs it with DPoP: nonce first, then a DPoP token.
/// A token request with a fresh proof carrying the current nonce.
async fn grant(base: &str, client: &Client, assertion: &str, scope: &str) -> Resp {
    let nonce = fake_nonce(base).await;
    let proof = client.token_proof(base, Some(&nonce));
    token_request(base, Some(proof), &form(assertion, scope)).await
}

async fn dpop_token(base: &str, client: &Client) -> String {
    let r = grant(base, client, &client.good_assertion(base), SCOPES).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["access_token"].as_str().unwrap().to_owned()
}

async fn fake_nonce(base: &str) -> String {
    admin(base, "GET", "/__admin/oauth", None).await.json()["nonce"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn api_get(base: &str, path: &str, scheme: &str, token: &str, proof: Option<String>) -> Resp {
    let mut headers = vec![("Authorization", format!("{scheme} {token}"))];
    headers.extend(proof.map(|p| ("DPoP", p)));
    send_with(base, "GET", path, &headers, None).await
}

/// An API GET with `Authorization: DPoP` and a fresh proof (with `nonce`).
async fn dpop_get(
    base: &str,
    client: &Client,
    path: &str,
    token: &str,
    nonce: Option<&str>,
) -> Resp {
    let proof = client.api_proof(base, path, token, nonce);
    api_get(base, path, "DPoP", token, Some(proof)).await
}

fn oauth_error(r: &Resp) -> (String, String) {
    let v = r.json();
    assert!(
        v.get("errorCode").is_none(),
        "OAuth format, not Okta's: {v}"
    );
    (
        v["error"].as_str().unwrap_or_default().to_owned(),
        v["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

fn challenge(r: &Resp) -> String {
    r.header("www-authenticate").unwrap_or_default().to_owned()
}

#[tokio::test]
async fn token_grant_asks_for_a_proof_then_a_nonce_then_issues_a_dpop_token() {
    let client = Client::new(true);
    let fake = start_app(&client, |_| {}).await;
    let base = fake.base_url();
    let body = form(&client.good_assertion(&base), SCOPES);

    let r = token_request(&base, None, &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        oauth_error(&r),
        (
            "invalid_dpop_proof".into(),
            "The DPoP proof JWT header is missing.".into()
        )
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let r = token_request(&base, Some(client.token_proof(&base, None)), &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(oauth_error(&r).0, "use_dpop_nonce");
    let nonce = r.header("dpop-nonce").unwrap().to_owned();

    let r = token_request(&base, Some(client.token_proof(&base, Some(&nonce))), &body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["token_type"], "DPoP");
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(v["scope"], SCOPES);
    let token = v["access_token"].as_str().unwrap();

    let path = "/api/v1/users";
    let proof = client.api_proof(&base, path, token, None);
    let r = api_get(&base, path, "DPoP", token, Some(proof.clone())).await;
    assert_eq!(r.status, 200);
    let r = api_get(&base, path, "DPoP", token, Some(proof)).await;
    assert_eq!(r.status, 400, "a replayed proof");
    assert!(
        challenge(&r).contains("has already been used"),
        "{}",
        challenge(&r)
    );

    let stats = admin(&base, "GET", "/__admin/stats", None).await.json();
    assert_eq!(stats["buckets"]["token"]["calls"], 3, "{stats}");
    assert_eq!(stats["buckets"]["users"]["calls"], 2, "{stats}");
}

#[tokio::test]
async fn client_assertions_must_verify_and_stay_within_okta_limits() {
    let client = Client::new(false);
    let fake = start_app(&client, |_| {}).await;
    let base = fake.base_url();
    let aud = format!("{base}/oauth2/v1/token");
    let stranger = Client::new(false);
    let cases = [
        (stranger.good_assertion(&base), "signature is invalid"),
        (
            client.assertion(json!({"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": "https://other/oauth2/v1/token", "exp": now() + 60})),
            "audience",
        ),
        (
            client.assertion(json!({"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": aud, "exp": now() + 7200})),
            "too far into the future",
        ),
        (
            client.assertion(json!({"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": aud, "exp": now() - 10})),
            "expired",
        ),
        (
            client.assertion(json!({"iss": "0oaother", "sub": "0oaother", "aud": aud, "exp": now() + 60})),
            "'iss' or 'sub'",
        ),
        (String::new(), "No client credentials found."),
    ];
    for (assertion, expected) in cases {
        let r = grant(&base, &client, &assertion, SCOPES).await;
        let (error, description) = oauth_error(&r);
        assert_eq!(
            (r.status, error.as_str()),
            (401, "invalid_client"),
            "{description}"
        );
        assert!(
            description.contains(expected),
            "{description} (wanted {expected})"
        );
    }
    // A jti is single-use.
    let assertion = client.good_assertion(&base);
    for (status, nth) in [(200, "first"), (401, "second")] {
        let r = grant(&base, &client, &assertion, SCOPES).await;
        assert_eq!(r.status, status, "{nth} use of one assertion");
    }
    // Scopes the app was not granted.
    let r = grant(
        &base,
        &client,
        &client.good_assertion(&base),
        "okta.users.manage",
    )
    .await;
    assert_eq!(
        (r.status, oauth_error(&r).0.as_str()),
        (400, "invalid_scope")
    );
}

#[tokio::test]
async fn api_proofs_are_checked_against_the_request_and_the_token() {
    let client = Client::new(false);
    let fake = start_app(&client, |_| {}).await;
    let base = fake.base_url();
    let token = dpop_token(&base, &client).await;
    let path = "/api/v1/groups";
    let other = Client::new(false);
    let cases = [
        (None, "header is missing"),
        (Some(client.api_proof(&base, "/api/v1/users", &token, None)), "'htu'"),
        (Some(client.api_proof(&base, path, "another-token", None)), "'ath'"),
        (Some(other.api_proof(&base, path, &token, None)), "cnf.jkt"),
        (
            Some(client.proof(json!({"htm": "POST", "htu": format!("{base}{path}"), "iat": now(), "jti": "j1", "ath": ath(&token)}))),
            "'htm'",
        ),
        (
            Some(client.proof(json!({"htm": "GET", "htu": format!("{base}{path}"), "iat": now() - 900, "jti": "j2", "ath": ath(&token)}))),
            "'iat'",
        ),
    ];
    for (proof, expected) in cases {
        let r = api_get(&base, path, "DPoP", &token, proof).await;
        assert_eq!(r.status, 400, "{expected}");
        let c = challenge(&r);
        assert!(
            c.starts_with("DPoP algs=\"RS256 RS384 RS512 ES256 ES384 ES512\""),
            "{c}"
        );
        assert!(c.contains("error=\"invalid_dpop_proof\""), "{c}");
        assert!(c.contains(expected), "{c} (wanted {expected})");
        assert!(c.contains(&format!("resource=\"{path}\"")), "{c}");
    }
    // The query is not part of htu.
    let with_query = format!("{path}?limit=2");
    let proof = client.api_proof(&base, path, &token, None);
    let r = api_get(&base, &with_query, "DPoP", &token, Some(proof)).await;
    assert_eq!(r.status, 200);
    // A DPoP-bound token is not a Bearer token.
    let r = api_get(&base, path, "Bearer", &token, None).await;
    assert_eq!(r.status, 401);
    assert!(challenge(&r).contains("error=\"invalid_token\""));
    // SSWS still works next to OAuth.
    assert_eq!(get(&base, path).await.status, 200);
    assert_eq!(
        api_get(&base, path, "SSWS", "wrong", None)
            .await
            .error_code(),
        "E0000011"
    );
}

#[tokio::test]
async fn rotated_nonces_and_expired_tokens_are_refused_until_the_client_catches_up() {
    let client = Client::new(true);
    let fake = start_app(&client, |o| o.oauth_token_ttl_seconds = 600).await;
    let base = fake.base_url();
    let token = dpop_token(&base, &client).await;
    let path = "/api/v1/users";
    let ok = dpop_get(&base, &client, path, &token, None).await;
    assert_eq!(ok.status, 200, "no nonce on the API before a rotation");

    let old = fake_nonce(&base).await;
    let rotated = admin(&base, "POST", "/__admin/oauth/rotate-nonce", None).await;
    let nonce = rotated.json()["nonce"].as_str().unwrap().to_owned();
    let nonce = nonce.as_str();
    assert_ne!(nonce, old);
    for stale in [None, Some(old.as_str())] {
        let r = dpop_get(&base, &client, path, &token, stale).await;
        assert_eq!(r.status, 401);
        let c = challenge(&r);
        assert!(c.contains("error=\"use_dpop_nonce\""), "{c}");
        assert_eq!(r.header("dpop-nonce"), Some(nonce));
    }
    let r = dpop_get(&base, &client, path, &token, Some(nonce)).await;
    assert_eq!(r.status, 200);
    let proof = client.token_proof(&base, Some(&old));
    let r = token_request(
        &base,
        Some(proof),
        &form(&client.good_assertion(&base), SCOPES),
    )
    .await;
    assert_eq!(
        (r.status, oauth_error(&r).0.as_str()),
        (400, "use_dpop_nonce")
    );
    assert_eq!(r.header("dpop-nonce"), Some(nonce));

    let expired = admin(&base, "POST", "/__admin/oauth/expire-tokens", None).await;
    assert_eq!(expired.json()["expired"], 1);
    let r = dpop_get(&base, &client, path, &token, Some(nonce)).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "E0000011"));
    assert!(challenge(&r).contains("error=\"invalid_token\""));

    // Tokens also age on the fake's clock.
    let token = dpop_token(&base, &client).await;
    let advance = r#"{"advance_seconds": 601}"#;
    admin(&base, "POST", "/__admin/clock", Some(advance)).await;
    let r = dpop_get(&base, &client, path, &token, Some(nonce)).await;
    assert_eq!(r.status, 401);
    assert!(challenge(&r).contains("expired"), "{}", challenge(&r));
}

#[tokio::test]
async fn without_dpop_required_a_proofless_grant_gets_a_scoped_bearer_token() {
    let client = Client::new(false);
    let fake = start_app(&client, |o| o.dpop_required = false).await;
    let base = fake.base_url();
    let r = token_request(
        &base,
        None,
        &form(&client.good_assertion(&base), "okta.users.read"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["token_type"], "Bearer");
    let token = v["access_token"].as_str().unwrap();
    assert_eq!(
        api_get(&base, "/api/v1/users", "Bearer", token, None)
            .await
            .status,
        200
    );
    let r = api_get(&base, "/api/v1/groups", "Bearer", token, None).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "E0000006");
    assert!(challenge(&r).contains("insufficient_scope"));
    assert!(challenge(&r).starts_with("Bearer "));
}

#[tokio::test]
async fn ssws_only_fakes_have_no_service_app() {
    let fake = start(Options::default()).await;
    let base = fake.base_url();
    let r = token_request(&base, None, "grant_type=client_credentials").await;
    assert_eq!(
        (r.status, oauth_error(&r).0.as_str()),
        (401, "invalid_client")
    );
    assert_eq!(
        admin(&base, "POST", "/__admin/oauth/rotate-nonce", None)
            .await
            .status,
        400
    );
    assert_eq!(
        api_get(&base, "/api/v1/users", "Bearer", "anything", None)
            .await
            .error_code(),
        "E0000011"
    );
    assert_eq!(
        api_get(&base, "/api/v1/users", "SSWS", TOKEN, None)
            .await
            .status,
        200
    );
}
