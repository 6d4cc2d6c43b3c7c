//! Who is signed in: accounts with a role (admin, operator, viewer), passwords hashed with
//! argon2, sessions as random cookies (`HttpOnly`, `SameSite=Lax`, `Secure` behind https)
//! whose hash the store keeps, a CSRF token per session checked on every form, and a
//! lockout after wrong passwords.

use axum::Form;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::blocking::blocking;
use crate::http::{AppStateRef, token_hash};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "pw_session";
/// The pre-session CSRF cookie of the sign-in form.
const LOGIN_CSRF: &str = "pw_login";
/// How long a session lasts.
const SESSION_MS: i64 = 12 * 3600 * 1000;
/// Wrong passwords in a row that lock an account, and for how long.
const MAX_FAILURES: i64 = 5;
const LOCK_MS: i64 = 5 * 60 * 1000;

/// What an account may do, each role all the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    /// Reads everything.
    Viewer,
    /// Runs, cancels, approves, deploys and rolls back.
    Operator,
    /// And manages accounts, secrets and tokens.
    Admin,
}

impl Role {
    pub(crate) fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// The signed-in account of a page request (else the page redirects to `/login`).
pub(crate) struct Signed {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) csrf: String,
}

/// Why a form's action was refused (403; nothing changed).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error(
        "the form's CSRF token is missing or not this session's: reload the page and try again"
    )]
    Csrf,
    #[error("this needs the {} role; `{name}` is {}", needed.as_str(), has.as_str())]
    Role {
        needed: Role,
        name: String,
        has: Role,
    },
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (StatusCode::FORBIDDEN, self.to_string()).into_response()
    }
}

impl Signed {
    /// Refuses unless the form's CSRF token is the session's and the account's role is at
    /// least `role`.
    pub(crate) fn may(&self, role: Role, csrf: &str) -> Result<(), Refused> {
        if !crate::http::constant_time_eq(csrf.as_bytes(), self.csrf.as_bytes()) {
            return Err(Refused::Csrf);
        }
        if self.role < role {
            return Err(Refused::Role {
                needed: role,
                name: self.name.clone(),
                has: self.role,
            });
        }
        Ok(())
    }
}

/// The value of cookie `name` in the request's headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The account of the session the request's cookie names, if it is one.
pub(crate) async fn session_of(s: &AppStateRef, headers: &HeaderMap) -> Option<Signed> {
    let token = cookie(headers, COOKIE)?;
    let (store, hash) = (s.store.clone(), token_hash(token));
    let (user, csrf) = blocking(move || store.session(&hash)).await.ok()??;
    Some(Signed {
        role: Role::parse(&user.role)?,
        name: user.name,
        csrf,
    })
}

impl FromRequestParts<AppStateRef> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppStateRef,
    ) -> Result<Self, Self::Rejection> {
        match session_of(state, &parts.headers).await {
            Some(s) => Ok(s),
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                Err(Redirect::to(&format!("/login?next={}", encode(&next))).into_response())
            }
        }
    }
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_./".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path of this server to go to after signing in (never another site).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

fn set_cookie(s: &AppStateRef, name: &str, value: &str, max_age: i64) -> String {
    let secure = if s.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// An argon2 hash of `password` (a random salt).
pub(crate) fn hash_password(password: &str) -> Result<String, crate::ServeError> {
    use argon2::PasswordHasher;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)?;
    let salt = argon2::password_hash::SaltString::encode_b64(&salt)
        .map_err(|e| crate::ServeError::Password(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| crate::ServeError::Password(e.to_string()))
}

fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::password_hash::PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Checked against when the account does not exist, so a wrong name takes as long as a
/// wrong password (the hash of a random password, made once).
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let mut p = [0u8; 16];
        let _ = getrandom::fill(&mut p);
        hash_password(&hex::encode(p)).unwrap_or_default()
    })
}

/// Makes the first account, `admin`, when there is none: with `password`
/// (`PIPEWRIGHT_ADMIN_PASSWORD`), or a generated one said once.
pub(crate) fn first_admin(
    store: &store::Store,
    password: Option<&str>,
) -> Result<(), crate::ServeError> {
    if !store.users()?.is_empty() {
        return Ok(());
    }
    let (password, made) = match password.filter(|p| !p.is_empty()) {
        Some(p) => (p.to_owned(), false),
        None => (crate::random_token()?[..20].to_owned(), true),
    };
    store.create_user("admin", Role::Admin.as_str(), &hash_password(&password)?)?;
    if made {
        tracing::warn!("the first account `admin` was made with a generated password");
        eprintln!(
            "pipewright: sign in to the dashboard as `admin` with the password {password} (said once; `pipewright users set admin` changes it)"
        );
    }
    Ok(())
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    error: Option<String>,
}

/// `GET /login`: the sign-in form.
pub(crate) async fn login_page(
    State(s): State<AppStateRef>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, crate::http::ApiError> {
    let csrf = crate::random_token()?;
    let page = super::pages::login(&csrf, q.next.as_deref(), q.error.as_deref());
    Ok((
        [("set-cookie", set_cookie(&s, LOGIN_CSRF, &csrf, 3600))],
        page,
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

/// `POST /login`: a session for the right password; the form again, with why not, else.
pub(crate) async fn login(
    State(s): State<AppStateRef>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, crate::http::ApiError> {
    let again = |why: &str| {
        let next = local_path(f.next.as_deref());
        Redirect::to(&format!(
            "/login?next={}&error={}",
            encode(&next),
            encode(why)
        ))
        .into_response()
    };
    let expected = cookie(&headers, LOGIN_CSRF).unwrap_or_default();
    if expected.is_empty() || !crate::http::constant_time_eq(expected.as_bytes(), f.csrf.as_bytes())
    {
        return Ok(again("the form expired: try again"));
    }
    let (store, name, password) = (s.store.clone(), f.username.clone(), f.password.clone());
    let outcome = blocking(
        move || -> Result<Result<String, &'static str>, store::StoreError> {
            let user = store.user(&name)?;
            let hash = user
                .as_ref()
                .map_or(dummy_hash(), |u| u.password_hash.as_str());
            let right = verify_password(&password, hash);
            let Some(user) = user else {
                return Ok(Err("wrong name or password"));
            };
            if user.locked_until.is_some_and(|t| t > store::now_ms()) {
                store.record_login(&user.name, false, MAX_FAILURES, LOCK_MS)?;
                return Ok(Err(
                    "too many wrong passwords: this account is locked for a few minutes",
                ));
            }
            store.record_login(&user.name, right, MAX_FAILURES, LOCK_MS)?;
            Ok(if right {
                Ok(user.name)
            } else {
                Err("wrong name or password")
            })
        },
    )
    .await?;
    let name = match outcome {
        Ok(name) => name,
        Err(why) => {
            tracing::warn!(user = f.username, "sign-in refused: {why}");
            return Ok(again(why));
        }
    };
    let (token, csrf) = (crate::random_token()?, crate::random_token()?);
    let (store, hash, who) = (s.store.clone(), token_hash(&token), name.clone());
    blocking(move || store.create_session(&hash, &who, &csrf, SESSION_MS)).await?;
    tracing::info!(user = name, "signed in");
    let mut response = Redirect::to(&local_path(f.next.as_deref())).into_response();
    let h = response.headers_mut();
    for c in [
        set_cookie(&s, COOKIE, &token, SESSION_MS / 1000),
        set_cookie(&s, LOGIN_CSRF, "", 0),
    ] {
        if let Ok(v) = c.parse() {
            h.append("set-cookie", v);
        }
    }
    Ok(response)
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`: the session ends.
pub(crate) async fn logout(
    State(s): State<AppStateRef>,
    who: Signed,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Result<Response, crate::http::ApiError> {
    if let Err(refused) = who.may(Role::Viewer, &f.csrf) {
        return Ok(refused.into_response());
    }
    if let Some(token) = cookie(&headers, COOKIE) {
        let (store, hash) = (s.store.clone(), token_hash(token));
        blocking(move || store.delete_session(&hash)).await?;
    }
    Ok((
        [("set-cookie", set_cookie(&s, COOKIE, "", 0))],
        Redirect::to("/login"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_next_stays_on_this_site() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsf", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_eq!(local_path(Some("/runs?repo=a")), "/runs?repo=a");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "runs"] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; pw_session=tok; b=2".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
    }
}
