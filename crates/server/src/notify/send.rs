//! Sending one alert to one channel.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Channel, ChannelKind, Message};

/// How long one attempt may take.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("the channel `{0}` is no longer configured")]
    Gone(String),
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("bad mail address `{address}`: {source}")]
    Address {
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },
    #[error("composing the mail: {0}")]
    Compose(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("SMTP: no answer within {0:?}")]
    Timeout(Duration),
}

/// The client alerts and monitors use: rustls, a timeout per request.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .user_agent(concat!("pipewright/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

pub(crate) async fn send(
    http: &reqwest::Client,
    channel: &Channel,
    message: &Message,
) -> Result<(), SendError> {
    match &channel.kind {
        ChannelKind::Smtp { url, from, to } => smtp(url, from, to, message).await,
        ChannelKind::Sendgrid {
            api_key,
            api_url,
            from,
            to,
        } => {
            let body = serde_json::json!({
                "personalizations": [{
                    "to": to.iter().map(|t| serde_json::json!({"email": t})).collect::<Vec<_>>()
                }],
                "from": {"email": from},
                "subject": message.title,
                "content": [{"type": "text/plain", "value": message.text()}],
            });
            let url = format!("{api_url}/v3/mail/send");
            post(http.post(&url).bearer_auth(api_key).json(&body), &url).await
        }
        ChannelKind::Slack { webhook_url } => {
            let body = serde_json::json!({ "text": message.slack() });
            // The URL is the credential: errors name the host only.
            post(http.post(webhook_url).json(&body), &host_of(webhook_url)).await
        }
        ChannelKind::Webhook { url, secret } => {
            let facts: serde_json::Map<String, serde_json::Value> = message
                .facts
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let body = serde_json::to_vec(&serde_json::json!({
                "event": message.event,
                "title": message.title,
                "facts": facts,
                "log": message.log,
                "link": message.link,
                "text": message.text(),
            }))
            .unwrap_or_default();
            let mut request = http
                .post(url)
                .header("content-type", "application/json")
                .header("x-pipewright-event", &message.event);
            if let Some(secret) = secret {
                request = request.header("x-pipewright-signature-256", signature(secret, &body));
            }
            post(request.body(body), &crate::config::redact_url(url)).await
        }
    }
}

/// `sha256=<hex>` of the body under `secret`, as GitHub signs its webhooks (HMAC takes a
/// key of any length: there is always one).
pub(crate) fn signature(secret: &str, body: &[u8]) -> String {
    <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).map_or_else(
        |_| String::new(),
        |mut mac| {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        },
    )
}

fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| format!("{}://{h}", u.scheme())))
        .unwrap_or_else(|| "the webhook".into())
}

async fn post(request: reqwest::RequestBuilder, shown: &str) -> Result<(), SendError> {
    let response = request.send().await.map_err(|source| SendError::Request {
        url: shown.to_owned(),
        source: source.without_url(),
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(SendError::Status {
        url: shown.to_owned(),
        status: status.as_u16(),
        body: body.chars().take(300).collect(),
    })
}

async fn smtp(url: &str, from: &str, to: &[String], message: &Message) -> Result<(), SendError> {
    use lettre::message::header::ContentType;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let address = |a: &str| {
        a.parse::<lettre::message::Mailbox>()
            .map_err(|source| SendError::Address {
                address: a.to_owned(),
                source,
            })
    };
    let mut mail = lettre::Message::builder()
        .from(address(from)?)
        .subject(&message.title)
        .header(ContentType::TEXT_PLAIN);
    for t in to {
        mail = mail.to(address(t)?);
    }
    let mail = mail.body(message.text())?;
    // `?tls=starttls` is what people write; lettre calls it `required`.
    let url = url.replace("tls=starttls", "tls=required");
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)?
        .timeout(Some(TIMEOUT))
        .build();
    tokio::time::timeout(TIMEOUT, transport.send(mail))
        .await
        .map_err(|_| SendError::Timeout(TIMEOUT))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn signatures_are_github_s_shape() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
