//! Microsoft Graph: an app registration's token by the OAuth 2.0 client credentials grant
//! (`POST {login}/{tenant}/oauth2/v2.0/token`, scope `{graph}/.default`), then
//! `POST {graph}/v1.0/users/{sender}/sendMail` with the message as JSON, as Microsoft documents
//! them; `sendMail` answers 202 Accepted. The application needs the `Mail.Send` application
//! permission, which its tenant's admin grants.

use serde::Deserialize;
use serde_json::json;

use super::{Answer, Failure, Outgoing, Settings, TIMEOUT};
use crate::service::settings::Sending;

#[derive(Deserialize)]
struct Token {
    access_token: String,
}

/// What the token endpoint says when it refuses (no secret in it).
#[derive(Deserialize, Default)]
struct TokenRefusal {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

fn url(base: &str, segments: &[&str]) -> Result<reqwest::Url, Failure> {
    let mut url = reqwest::Url::parse(base)
        .map_err(|e| Failure::failed(format!("the Graph URL {base} is not a URL: {e}")))?;
    url.path_segments_mut()
        .map_err(|()| Failure::failed(format!("the Graph URL {base} cannot have a path")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

pub(super) async fn send(
    sending: &Sending,
    message: &Outgoing,
    settings: &Settings,
) -> Result<Answer, Failure> {
    let server = &sending.server;
    let (Some(tenant), Some(client_id)) = (server.tenant_id, server.client_id) else {
        return Err(Failure::failed("the Graph application is not configured"));
    };
    let sender = server.sender_address.clone().unwrap_or_default();
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Failure::failed(format!("no HTTP client: {e}")))?;
    let graph = settings.graph_url.trim_end_matches('/');
    let token_url = url(
        &settings.graph_login_url,
        &[&tenant.to_string(), "oauth2", "v2.0", "token"],
    )?;
    let scope = format!("{graph}/.default");
    let client_id = client_id.to_string();
    let secret = sending.secret.clone().unwrap_or_default();
    let form = [
        ("client_id", client_id.as_str()),
        ("client_secret", secret.as_str()),
        ("scope", scope.as_str()),
        ("grant_type", "client_credentials"),
    ];
    let unreachable = |what: &str, e: reqwest::Error| {
        // Without the URL: only its host would be useful, and the form is never in it anyway.
        Failure::failed(format!("{what} could not be reached: {}", e.without_url()))
    };
    let answer = client
        .post(token_url)
        .form(&form)
        .send()
        .await
        .map_err(|e| unreachable("Microsoft's token endpoint", e))?;
    let status = answer.status();
    if !status.is_success() {
        let refusal: TokenRefusal = answer.json().await.unwrap_or_default();
        return Err(Failure::Failed {
            answer: Some(Answer::Graph {
                status: status.as_u16(),
            }),
            message: format!(
                "Microsoft refused the application's token ({status}): {} {}",
                refusal.error, refusal.error_description
            )
            .trim_end()
            .to_owned(),
        });
    }
    let token: Token = answer.json().await.map_err(|e| {
        Failure::failed(format!(
            "the token answer is not a token: {}",
            e.without_url()
        ))
    })?;
    let to_recipient = json!({"emailAddress": {"address": message.to}});
    let mut from = json!({"emailAddress": {"address": sender}});
    if let Some(name) = &server.sender_name {
        from["emailAddress"]["name"] = json!(name);
    }
    let body = json!({
        "message": {
            "subject": message.subject,
            "body": {"contentType": "Text", "content": message.text},
            "from": from,
            "toRecipients": [to_recipient],
        },
        "saveToSentItems": false,
    });
    let send_url = url(graph, &["v1.0", "users", &sender, "sendMail"])?;
    let answer = client
        .post(send_url)
        .bearer_auth(&token.access_token)
        .json(&body)
        .send()
        .await
        .map_err(|e| unreachable("Microsoft Graph", e))?;
    let status = answer.status();
    if status.is_success() {
        return Ok(Answer::Graph {
            status: status.as_u16(),
        });
    }
    let detail = answer.text().await.unwrap_or_default();
    let detail: String = detail.chars().take(500).collect();
    Err(Failure::Failed {
        answer: Some(Answer::Graph {
            status: status.as_u16(),
        }),
        message: format!("Microsoft Graph did not take the message ({status}): {detail}"),
    })
}
