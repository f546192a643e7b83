//! Fuzzing every parser that takes outside input, with proptest: addresses and domains, the other
//! field parsers, the CSV import, socketmap netstrings, policy requests, JWTs, API keys, the JSON
//! bodies of every write route and the query strings of every list. (The policy listener's line
//! reader is private: its harness is in `src/check/postfix.rs`; the HTTP-level run is
//! `tests/api/fuzz.rs`.)
//!
//! The properties: nothing panics; what parses prints back to what parses to the same value; a
//! refusal says why (a non-empty message, a problem naming its field); a frame reader reassembles
//! valid frames however they are split and buffers no more than its cap; no forged or mangled
//! credential is accepted.
//!
//! `cargo test --test fuzz` runs each harness for a few hundred cases; `bench/fuzz.sh` runs them
//! for a time budget (see `tests/support/mod.rs`) and records the executions.

mod support;

use allot::api::extract;
use allot::api::mailboxes::{CreateMailbox, NewMailbox, csv_rows};
use allot::auth::{api_key, jwt};
use allot::check::postfix::{self, PolicyDirection};
use allot::check::socketmap::{self, Step};
use allot::domain::address::{DomainName, MailAddress};
use allot::error::ApiError;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::{QUERY_KEYS, fuzz, json, mutated, query_string, text};

/// The default cases for the pure harnesses: fast enough for every `cargo test`.
const CASES: u32 = 256;

// ---------------------------------------------------------------------------------------------
// Addresses and domains

fn domain_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        text(),
        "[a-zA-Z0-9äöüß_-]{0,12}(\\.[a-zA-Z0-9äöü.-]{0,12}){0,4}\\.?",
        "(xn--[a-z0-9-]{0,12}\\.){1,3}[a-z]{2,4}",
        // IDNA's other dots and mapped characters.
        "[a-zA-Z\u{ff21}-\u{ff3a}]{1,8}[.\u{3002}\u{ff0e}\u{ff61}][a-zA-Z]{2,6}",
    ]
}

fn local_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~.-]{0,70}",
        "\"([^\"\\\\]|\\\\.){0,20}\"",
        "[a-zA-Z0-9\u{e0}-\u{ff}\u{4e00}-\u{4e10}.]{1,20}",
    ]
}

#[test]
fn fuzz_domain_names() {
    fuzz("domain names", CASES, domain_like(), |raw| {
        match DomainName::parse(&raw) {
            Ok(name) => {
                let ascii = name.as_str();
                prop_assert!(ascii.len() <= 253, "{ascii}");
                prop_assert!(
                    ascii.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'.'),
                    "stored form {ascii:?} of {raw:?}"
                );
                prop_assert_eq!(DomainName::parse(ascii), Ok(name.clone()));
                prop_assert_eq!(
                    DomainName::parse(&name.unicode()),
                    Ok(name.clone()),
                    "the Unicode form {} of {:?}",
                    name.unicode(),
                    raw
                );
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
        Ok(())
    });
}

#[test]
fn fuzz_mail_addresses() {
    let address = prop_oneof![
        any::<String>(),
        (local_like(), domain_like()).prop_map(|(l, d)| format!("{l}@{d}")),
        (local_like(), "[a-z]{1,10}\\.example").prop_map(|(l, d)| format!("{l}@{d}")),
    ];
    fuzz("mail addresses", CASES, address, |raw| {
        match MailAddress::parse(&raw) {
            Ok(address) => {
                let stored = address.stored();
                prop_assert!(stored.len() <= 254, "{stored}");
                prop_assert!(address.local().len() <= 64, "{stored}");
                prop_assert_eq!(MailAddress::parse(&stored), Ok(address.clone()));
                prop_assert_eq!(
                    MailAddress::parse(&address.display()),
                    Ok(address.clone()),
                    "the display form {} of {:?}",
                    address.display(),
                    raw
                );
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
        Ok(())
    });
}

type FieldParser = fn(&str) -> Result<String, String>;

#[test]
fn fuzz_field_parsers() {
    use allot::api::common::{PageRequest, parse_active};
    use allot::domain::resource::Resource;
    use allot::domain::tree;
    let input = (
        prop_oneof![text(), any::<String>()],
        proptest::option::of(any::<u32>()),
        proptest::option::of(prop_oneof![
            any::<String>(),
            "[A-Za-z0-9_-]{0,60}",
            // Real cursors: an id, or something else, base64url-encoded.
            prop_oneof![Just(uuid::Uuid::now_v7().to_string()), any::<String>()].prop_map(|id| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
            }),
        ]),
    );
    fuzz("field parsers", CASES, input, |(raw, limit, cursor)| {
        // Each accepted value is a fixed point: parsing it again changes nothing.
        let parsers: [(&str, FieldParser); 4] = [
            ("name", tree::parse_name),
            ("phone", tree::parse_phone),
            ("email", tree::parse_email),
            ("description", tree::parse_description),
        ];
        for (what, parse) in parsers {
            match parse(&raw) {
                Ok(value) => prop_assert_eq!(parse(&value), Ok(value.clone()), "{}", what),
                Err(message) => prop_assert!(!message.is_empty(), "{}", what),
            }
        }
        if let Ok(resource) = raw.parse::<Resource>() {
            prop_assert_eq!(resource.to_string(), raw.clone());
        }
        let _ = raw.parse::<allot::domain::ids::NodeId>();
        let _ = parse_active(&raw);
        match PageRequest::parse(limit, cursor.as_deref()) {
            Ok(page) => prop_assert!((1..=500).contains(&page.limit)),
            Err(err) => prop_assert!(names_fields(&err), "{err:?}"),
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// The CSV import

/// A CSV as a spreadsheet would write it: a header of known columns, rows of any text.
fn valid_csv() -> impl Strategy<Value = (Vec<&'static str>, Vec<Vec<String>>)> {
    let columns = prop::sample::subsequence(
        vec![
            "address",
            "display_name",
            "first_name",
            "last_name",
            "contact_email",
        ],
        1..=5,
    )
    .prop_filter("the address column", |c| c.contains(&"address"))
    .prop_shuffle();
    columns.prop_flat_map(|columns| {
        let width = columns.len();
        let row = prop::collection::vec(
            prop_oneof![text(), "[a-z.]{1,10}@example\\.com", "[a-z \",\n\r]{0,12}",],
            width,
        );
        (Just(columns), prop::collection::vec(row, 0..8))
    })
}

fn write_csv(columns: &[&str], rows: &[Vec<String>]) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(columns).unwrap();
    for row in rows {
        writer.write_record(row).unwrap();
    }
    writer.into_inner().unwrap()
}

/// Every row either becomes a new mailbox or is refused naming its fields.
fn check_rows(rows: Vec<(usize, CreateMailbox)>) -> Result<(), TestCaseError> {
    let mut previous = 1;
    for (line, row) in rows {
        prop_assert!(line > previous, "line {line} after {previous}");
        previous = line;
        if let Err(err) = NewMailbox::try_from(row) {
            prop_assert!(names_fields(&err), "{err:?}");
        }
    }
    Ok(())
}

#[test]
fn fuzz_csv_import() {
    let input = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        valid_csv().prop_map(|(columns, rows)| write_csv(&columns, &rows)),
        // A valid file with a few bytes changed, cut or added.
        (
            valid_csv().prop_map(|(columns, rows)| write_csv(&columns, &rows)),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4)
        )
            .prop_map(|(mut bytes, edits)| {
                for (at, byte, how) in edits {
                    let at = at.index(bytes.len() + 1);
                    match how {
                        0 if at < bytes.len() => bytes[at] = byte,
                        1 if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        _ => bytes.insert(at, byte),
                    }
                }
                bytes
            }),
    ];
    fuzz("CSV import", CASES, input, |bytes| {
        match csv_rows(&bytes) {
            Ok(rows) => check_rows(rows)?,
            Err(err) => prop_assert!(
                matches!(err, ApiError::MalformedBody(_)) || names_fields(&err),
                "{err:?}"
            ),
        }
        Ok(())
    });
}

#[test]
fn fuzz_csv_import_reads_back_what_a_spreadsheet_wrote() {
    fuzz(
        "CSV import round trip",
        CASES,
        valid_csv(),
        |(columns, rows)| {
            let bytes = write_csv(&columns, &rows);
            let read = csv_rows(&bytes).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(read.len(), rows.len());
            let address = columns.iter().position(|c| *c == "address").unwrap();
            for ((_, got), wrote) in read.iter().zip(&rows) {
                prop_assert_eq!(&got.address, &wrote[address]);
                for (column, value) in columns.iter().zip(wrote) {
                    let field = match *column {
                        "display_name" => &got.display_name,
                        "first_name" => &got.first_name,
                        "last_name" => &got.last_name,
                        "contact_email" => &got.contact_email,
                        _ => continue,
                    };
                    prop_assert_eq!(field.as_deref(), Some(value.as_str()));
                }
            }
            check_rows(read)
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Socketmap netstrings

/// The longest request payload the socketmap listener takes (`socketmap::MAX_REQUEST`).
const NETSTRING_MAX: usize = 10_000;

fn netstring(payload: &[u8]) -> Vec<u8> {
    let mut wire = format!("{}:", payload.len()).into_bytes();
    wire.extend_from_slice(payload);
    wire.push(b',');
    wire
}

/// What the listener does with its input: append each read, take every whole frame off the front.
/// Returns the payloads, whether framing failed, and the most it ever held.
fn reassemble(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, bool, usize) {
    let (mut buf, mut payloads, mut most) = (Vec::new(), Vec::new(), 0);
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        most = most.max(buf.len());
        loop {
            match socketmap::decode(&buf) {
                Err(_) => return (payloads, true, most),
                Ok(None) => break,
                Ok(Some((payload, used))) => {
                    payloads.push(payload.to_vec());
                    buf.drain(..used);
                }
            }
        }
        // What waits for more is at most one frame's beginning: the bound on what a peer can
        // make allot hold, whatever it sends.
        assert!(
            buf.len() <= 5 + 1 + NETSTRING_MAX,
            "{} bytes held",
            buf.len()
        );
    }
    (payloads, false, most)
}

/// Cuts `bytes` at the given places.
fn split<'a>(bytes: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in at.into_iter().chain([bytes.len()]) {
        chunks.push(&bytes[start..cut]);
        start = cut;
    }
    chunks
}

#[test]
fn fuzz_socketmap_framing() {
    let payload = prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..200),
        1 => (NETSTRING_MAX - 2..=NETSTRING_MAX + 2).prop_map(|n| vec![b'x'; n]),
    ];
    let input = (
        prop::collection::vec(payload, 0..5),
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    );
    fuzz(
        "socketmap framing",
        CASES,
        input,
        |(payloads, garbage, cuts)| {
            let mut wire: Vec<u8> = payloads.iter().flat_map(|p| netstring(p)).collect();
            let valid = payloads
                .iter()
                .take_while(|p| p.len() <= NETSTRING_MAX)
                .count();
            wire.extend_from_slice(&garbage);
            let (got, failed, _) = reassemble(&split(&wire, &cuts));
            // Every frame up to the first over-long one comes out whole and in order.
            prop_assert!(got.len() >= valid.min(got.len()));
            prop_assert_eq!(
                &got[..valid.min(got.len())],
                &payloads[..valid.min(got.len())]
            );
            if garbage.is_empty() && valid == payloads.len() {
                prop_assert_eq!(&got, &payloads);
                prop_assert!(!failed);
            }
            if valid < payloads.len() {
                prop_assert!(failed, "an over-long frame is refused");
                prop_assert_eq!(got.len(), valid);
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_socketmap_arbitrary_bytes() {
    let input = (
        prop::collection::vec(any::<u8>(), 0..400),
        prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    );
    fuzz("socketmap bytes", CASES, input, |(bytes, cuts)| {
        if let Ok(Some((payload, used))) = socketmap::decode(&bytes) {
            prop_assert!(used <= bytes.len() && payload.len() <= NETSTRING_MAX);
            prop_assert_eq!(netstring(payload), bytes[..used].to_vec());
            for cut in 0..used {
                prop_assert_eq!(socketmap::decode(&bytes[..cut]), Ok(None));
            }
        }
        // The same bytes however split: the same frames.
        let whole = reassemble(&[&bytes]);
        let pieces = reassemble(&split(&bytes, &cuts));
        prop_assert_eq!((whole.0, whole.1), (pieces.0, pieces.1));
        Ok(())
    });
}

#[test]
fn fuzz_socketmap_requests() {
    let request = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        (
            prop::sample::select(vec![
                "domain",
                "transport",
                "alias",
                "mailbox",
                "virtual",
                ""
            ]),
            prop_oneof![
                domain_like(),
                local_like().prop_map(|l| format!("{l}@example.com"))
            ],
        )
            .prop_map(|(map, key)| format!("{map} {key}").into_bytes()),
    ];
    fuzz("socketmap requests", CASES, request, |request| {
        match socketmap::step(&request) {
            Step::Reply(reply) => prop_assert!(
                reply.starts_with("PERM ") || reply == "NOTFOUND ",
                "{reply:?}"
            ),
            Step::Ask(address) => prop_assert!(request.starts_with(b"mailbox "), "{address:?}"),
            Step::Look(_) => {}
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Policy requests (framed; the line reader is fuzzed in src/check/postfix.rs)

#[test]
fn fuzz_policy_requests() {
    let line = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        (
            prop::sample::select(vec![
                "request",
                "recipient",
                "sender",
                "sasl_username",
                "policy_context",
                "protocol_state",
            ]),
            prop_oneof![
                Just("smtpd_access_policy".to_owned()),
                Just("inbound".to_owned()),
                Just("outbound".to_owned()),
                local_like().prop_map(|l| format!("{l}@example.com")),
                any::<String>(),
            ],
        )
            .prop_map(|(name, value)| format!("{name}={value}").into_bytes()),
    ];
    let input = (
        any::<bool>(),
        prop::collection::vec(line, 0..12),
        prop::sample::select(PolicyDirection::ALL.to_vec()),
    );
    fuzz(
        "policy requests",
        CASES,
        input,
        |(access_policy, mut lines, mode)| {
            if access_policy {
                lines.insert(0, b"request=smtpd_access_policy".to_vec());
            }
            if let Ok(request) = postfix::parse_request(&lines) {
                match postfix::step(&request, mode) {
                    postfix::Step::Action(action) => prop_assert!(
                        action == "DUNNO" || action.starts_with("REJECT 5.1."),
                        "{action:?}"
                    ),
                    postfix::Step::Ask(address, _) => {
                        prop_assert!(address.stored().len() <= 254)
                    }
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Credentials

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

const SECRET: &[u8] = b"the fuzz harness's signing key, 32+ bytes long";

fn valid_token(keys: &jwt::Keys) -> String {
    let subject = jwt::Subject {
        account: allot::domain::ids::AccountId::generate(),
        node: allot::domain::ids::NodeId::generate(),
        role: allot::domain::roles::Role::Admin,
        credential_version: 1,
        password_change_only: false,
    };
    keys.issue(subject, chrono::Utc::now().timestamp()).unwrap()
}

#[test]
fn fuzz_jwt() {
    let keys = jwt::Keys::from_secret(SECRET);
    let token = valid_token(&keys);
    assert!(
        keys.verify(&token).is_ok(),
        "the harness's own token verifies"
    );
    let claims = json!(keys.verify(&token).unwrap());
    let header = |alg: &str| json!({"alg": alg, "typ": "JWT", "kid": keys.kid()});
    let forged = prop_oneof![
        // Any text at all.
        any::<String>(),
        "[A-Za-z0-9_.-]{0,200}",
        // Three segments: a header (often with the right kid), claims (often the real ones,
        // changed), a signature of any bytes.
        (
            prop_oneof![
                prop::sample::select(vec!["HS256", "none", "None", "HS512", "RS256", ""])
                    .prop_map(header),
                json(),
            ],
            prop_oneof![mutated(claims.clone()), Just(claims.clone()), json()],
            prop_oneof![
                Just(Vec::new()),
                prop::collection::vec(any::<u8>(), 32),
                prop::collection::vec(any::<u8>(), 0..80),
            ],
        )
            .prop_map(|(header, claims, signature)| {
                format!(
                    "{}.{}.{}",
                    b64(header.to_string().as_bytes()),
                    b64(claims.to_string().as_bytes()),
                    b64(&signature)
                )
            }),
        // The real token with one character changed, cut or added.
        (
            any::<prop::sample::Index>(),
            any::<char>(),
            0..3u8,
            Just(token.clone())
        )
            .prop_map(|(at, c, how, token)| {
                let mut chars: Vec<char> = token.chars().collect();
                let at = at.index(chars.len());
                match how {
                    0 => chars[at] = c,
                    1 => {
                        chars.remove(at);
                    }
                    _ => chars.insert(at, c),
                }
                chars.into_iter().collect()
            }),
        // Signed with another key but carrying this key's id.
        any::<[u8; 32]>().prop_map({
            let kid = keys.kid().to_owned();
            let claims = claims.clone();
            move |other| {
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                header.kid = Some(kid.clone());
                jsonwebtoken::encode(
                    &header,
                    &claims,
                    &jsonwebtoken::EncodingKey::from_secret(&other),
                )
                .unwrap()
            }
        }),
    ];
    fuzz("JWTs", CASES, forged, |text| {
        if text != token {
            prop_assert!(keys.verify(&text).is_err(), "accepted {text:?}");
        }
        Ok(())
    });
}

#[test]
fn fuzz_api_keys() {
    let minted = api_key::mint();
    let (id, secret) = api_key::parse(&minted.text).unwrap();
    assert_eq!(id, minted.id);
    let secret = secret.to_owned();
    assert!(api_key::matches(&secret, &minted.secret_hash));
    let text = prop_oneof![
        any::<String>(),
        "allot_[0-9a-fA-F-]{0,40}_[A-Za-z0-9_-]{0,50}",
        (any::<String>()).prop_map(|s| format!("allot_{id}_{s}")),
        (
            any::<prop::sample::Index>(),
            any::<char>(),
            0..3u8,
            Just(minted.text.clone())
        )
            .prop_map(|(at, c, how, text)| {
                let mut chars: Vec<char> = text.chars().collect();
                let at = at.index(chars.len());
                match how {
                    0 => chars[at] = c,
                    1 => {
                        chars.remove(at);
                    }
                    _ => chars.insert(at, c),
                }
                chars.into_iter().collect()
            }),
    ];
    fuzz("API keys", CASES, text, |text| {
        let _ = api_key::stored_digest(&text);
        if let Some((_, presented)) = api_key::parse(&text) {
            prop_assert!(text.starts_with(api_key::PREFIX));
            // Only the minted secret matches the stored hash. (The id only finds the stored key:
            // another id finds another key, or none, whose hash this secret does not match.)
            if api_key::matches(presented, &minted.secret_hash) {
                prop_assert_eq!(presented, secret.as_str());
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// JSON bodies of every write route, through the extractor the handlers use

/// Whether `err` is a refusal that names each field it is about.
fn names_fields(err: &ApiError) -> bool {
    match err {
        ApiError::Validation(errors) | ApiError::InvalidQuery(errors) => {
            !errors.is_empty()
                && errors
                    .iter()
                    .all(|e| !e.field.is_empty() && !e.message.is_empty())
        }
        _ => false,
    }
}

/// Parses `value` as the body type `T`: a value, or a problem naming the field.
fn body<T: DeserializeOwned>(value: &Value) -> Result<Option<T>, TestCaseError> {
    let bytes = serde_json::to_vec(value).unwrap();
    match extract::parse::<T>(&bytes) {
        Ok(parsed) => Ok(Some(parsed)),
        Err(err) => {
            prop_assert!(names_fields(&err), "{value} gave {err:?}");
            Ok(None)
        }
    }
}

/// A route's body type, the conversion its handler makes first (where it is pure), and a valid
/// body to mutate.
struct Route {
    name: &'static str,
    valid: Value,
    check: fn(&Value) -> Result<(), TestCaseError>,
}

fn parses<T: DeserializeOwned>(value: &Value) -> Result<(), TestCaseError> {
    body::<T>(value).map(drop)
}

fn converts<T: DeserializeOwned, U: TryFrom<T, Error = ApiError>>(
    value: &Value,
) -> Result<(), TestCaseError> {
    if let Some(parsed) = body::<T>(value)?
        && let Err(err) = U::try_from(parsed)
    {
        prop_assert!(names_fields(&err), "{value} gave {err:?}");
    }
    Ok(())
}

fn routes() -> Vec<Route> {
    use allot::api::*;
    use allot::store::nodes::{NewNode, NodeChanges};
    let node = "0190f7b4-8d2a-7cc1-9f3a-3c1f5e2b9a10";
    vec![
        Route {
            name: "POST /v1/auth/token",
            valid: json!({"username": "admin", "password": "secret"}),
            check: parses::<auth::TokenRequest>,
        },
        Route {
            name: "POST /v1/nodes/{id}/children",
            valid: json!({"kind": "customer", "name": "Example GmbH", "description": "d",
                          "contact_phone": "+49 30 1234", "contact_email": "ops@example.com"}),
            check: converts::<nodes::CreateNode, NewNode>,
        },
        Route {
            name: "PATCH /v1/nodes/{id}",
            valid: json!({"name": "New", "description": null, "status": "suspended",
                          "max_aliases_per_mailbox": 10, "auto_enrol": true,
                          "inbound_recipients": "licensed", "role_recipient": "it@example.com"}),
            check: converts::<nodes::UpdateNode, NodeChanges>,
        },
        Route {
            name: "POST /v1/nodes/{id}/move",
            valid: json!({"parent_id": node}),
            check: parses::<nodes::MoveNode>,
        },
        Route {
            name: "PUT /v1/licence",
            valid: json!({"resources": [{"resource": "users", "amount": 10,
                          "starts_on": "2026-01-01", "ends_on": "2027-01-01"}]}),
            check: parses::<licence::SetLicence>,
        },
        Route {
            name: "POST /v1/nodes/{id}/accounts",
            valid: json!({"username": "jane", "email": "jane@example.com", "role": "admin",
                          "password": "long enough password"}),
            check: parses::<principals::CreateAccount>,
        },
        Route {
            name: "PATCH /v1/accounts/{id}",
            valid: json!({"email": "j@example.com", "role": "viewer", "password": "new one",
                          "current_password": "old one", "disabled": false}),
            check: parses::<principals::UpdateAccount>,
        },
        Route {
            name: "POST /v1/nodes/{id}/api-keys",
            valid: json!({"name": "worker", "role": "check", "expires_at": "2030-01-01T00:00:00Z"}),
            check: parses::<principals::CreateApiKey>,
        },
        Route {
            name: "POST /v1/nodes/{id}/groups",
            valid: json!({"name": "Sales"}),
            check: parses::<groups::CreateGroup>,
        },
        Route {
            name: "POST /v1/nodes/{id}/allocations",
            valid: json!({"resource": "users", "amount": 5, "starts_on": "2026-01-01",
                          "ends_on": "2027-01-01", "active": true, "description": "d"}),
            check: parses::<allocations::CreateAllocation>,
        },
        Route {
            name: "PATCH /v1/allocations/{id}",
            valid: json!({"amount": 5, "starts_on": "2026-01-01", "ends_on": null,
                          "active": false, "description": null}),
            check: parses::<allocations::UpdateAllocation>,
        },
        Route {
            name: "POST /v1/nodes/{id}/mailboxes",
            valid: json!({"address": "jane@example.com", "display_name": "Jane",
                          "first_name": "Jane", "last_name": "Doe",
                          "contact_email": "jane@home.example"}),
            check: converts::<mailboxes::CreateMailbox, NewMailbox>,
        },
        Route {
            name: "POST /v1/nodes/{id}/mailboxes/import",
            valid: json!([{"address": "jane@example.com"}, {"address": "joe@example.com",
                           "display_name": "Joe"}]),
            check: |value| {
                if let Some(rows) = body::<Vec<CreateMailbox>>(value)? {
                    check_rows(
                        rows.into_iter()
                            .enumerate()
                            .map(|(i, r)| (i + 2, r))
                            .collect(),
                    )?;
                }
                Ok(())
            },
        },
        Route {
            name: "PATCH /v1/mailboxes/{id}",
            valid: json!({"display_name": null, "first_name": "J", "last_name": "D",
                          "contact_email": "j@example.com"}),
            check: parses::<mailboxes::UpdateMailbox>,
        },
        Route {
            name: "POST /v1/mailboxes/{id}/aliases",
            valid: json!({"address": "sales@example.com"}),
            check: parses::<mailboxes::CreateAlias>,
        },
        Route {
            name: "POST /v1/check",
            valid: json!({"address": "jane@example.com", "direction": "inbound",
                          "module": "lft", "enrol": false}),
            check: parses::<check::CheckRequest>,
        },
        Route {
            name: "POST /v1/check/batch",
            valid: json!({"checks": [{"domain": "example.com", "direction": "outbound"}]}),
            check: parses::<check::CheckBatch>,
        },
        Route {
            name: "POST /v1/modules",
            valid: json!({"code": "archive", "name": "Archiving", "description": "d",
                          "unit": "per_mailbox", "requires": ["base"], "excludes": [],
                          "auto_assign": false}),
            check: parses::<modules::CreateModule>,
        },
        Route {
            name: "PATCH /v1/modules/{code}",
            valid: json!({"name": "A", "description": "d", "requires": [], "excludes": ["x"],
                          "auto_assign": true, "retired": false}),
            check: parses::<modules::UpdateModule>,
        },
        Route {
            name: "POST /v1/nodes/{id}/domains",
            valid: json!({"name": "Bücher.example", "description": "d",
                          "route": {"host": "mx.example.net", "port": 25, "priority": 10}}),
            check: parses::<domains::CreateDomain>,
        },
        Route {
            name: "PATCH /v1/domains/{id}",
            valid: json!({"description": null, "route": {"host": "192.0.2.1"},
                          "status": "disabled"}),
            check: parses::<domains::UpdateDomain>,
        },
    ]
}

#[test]
fn fuzz_json_bodies() {
    let all = routes();
    for route in &all {
        (route.check)(&route.valid)
            .unwrap_or_else(|e| panic!("{}: the valid body fails: {e}", route.name));
    }
    let count = all.len();
    // Per case: a route, and either any JSON or a mutation of the route's valid body.
    let input = (0..count).prop_flat_map(move |i| {
        let valid = routes()[i].valid.clone();
        (Just(i), prop_oneof![json(), mutated(valid)])
    });
    fuzz("JSON bodies", CASES * 4, input, |(i, value)| {
        (all[i].check)(&value).map_err(|e| TestCaseError::fail(format!("{}: {e}", all[i].name)))
    });
}

#[test]
fn fuzz_json_body_bytes() {
    // Bytes that may not be JSON at all: a syntax error is 400 (`malformed-body`), and nothing
    // panics. A valid body with bytes changed, and any bytes.
    let input = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        (
            json(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
        )
            .prop_map(|(value, edits)| {
                let mut bytes = serde_json::to_vec(&value).unwrap();
                for (at, byte) in edits {
                    let at = at.index(bytes.len());
                    bytes[at] = byte;
                }
                bytes
            }),
        // Deep nesting, past serde_json's recursion limit.
        (1usize..300).prop_map(|depth| {
            format!("{}{}", "{\"checks\":[".repeat(depth), "]}".repeat(depth)).into_bytes()
        }),
    ];
    fuzz("JSON body bytes", CASES, input, |bytes| {
        for result in [
            extract::parse::<allot::api::check::CheckBatch>(&bytes).map(drop),
            extract::parse::<allot::api::licence::SetLicence>(&bytes).map(drop),
            extract::parse::<allot::api::nodes::UpdateNode>(&bytes).map(drop),
        ] {
            if let Err(err) = result {
                prop_assert!(
                    matches!(err, ApiError::MalformedBody(_)) || names_fields(&err),
                    "{err:?}"
                );
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Query strings, through actix's `web::Query` as the handlers receive them

fn query<T: DeserializeOwned>(raw: &str) -> Result<Option<T>, TestCaseError> {
    Ok(actix_web::web::Query::<T>::from_query(raw)
        .ok()
        .map(|q| q.into_inner()))
}

#[test]
fn fuzz_query_strings() {
    use allot::api::common::PageRequest;
    use allot::api::*;
    let pair = (
        prop_oneof![
            prop::sample::select(QUERY_KEYS.to_vec()).prop_map(str::to_owned),
            any::<String>(),
        ],
        prop_oneof![text(), "%[0-9A-Fa-f]{0,2}", "[0-9]{0,12}", any::<String>()],
    );
    let raw = query_string(pair, 0..5);
    fuzz("query strings", CASES, raw, |raw| {
        query::<nodes::DeleteQuery>(&raw)?;
        query::<usage::UsageQuery>(&raw)?;
        query::<allocations::UpdateAllocationQuery>(&raw)?;
        query::<mailboxes::ImportQuery>(&raw)?;
        query::<allocations::AllocationsQuery>(&raw)?;
        query::<domains::DomainsQuery>(&raw)?;
        if let Some(q) = query::<nodes::ChildrenQuery>(&raw)? {
            let _ = PageRequest::parse(q.limit, q.cursor.as_deref());
        }
        for page in [
            query::<common::ListQuery>(&raw)?.map(|q| (q.limit, q.cursor)),
            query::<mailboxes::MailboxesQuery>(&raw)?.map(|q| (q.limit, q.cursor)),
        ]
        .into_iter()
        .flatten()
        {
            if let Err(err) = PageRequest::parse(page.0, page.1.as_deref()) {
                prop_assert!(names_fields(&err), "{err:?}");
            }
        }
        Ok(())
    });
}
