//! The pair's certificates at run time: read them (observe), keep them (act: create the CA once,
//! issue and re-issue the server certificate, publish the clients' CA), verify the members
//! against the CA in every probe and action, and ask the members to reload after a re-issue.
//!
//! Rotation without a restart: PostgreSQL reads its certificate files again on a reload, and
//! the kubelet replaces a mounted Secret's files some time after the Secret changes (about a
//! minute, not at once). For [`RELOAD_WINDOW`] after the operator issued a certificate (the
//! server Secret's [`tls::ISSUED_AT`] annotation), each pass asks every running member to
//! reload (`pg_reload_conf()`, harmless when nothing changed). The previous certificate stays
//! valid until then (it is re-issued 30 days before it expires), so clients never see an
//! invalid one. A user-supplied server Secret gets the same window after each change this
//! operator sees ([`user_secret_changed`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::ResourceExt;
use receiptdb_postgres::conn::{RootCerts, TlsSettings};
use receiptdb_postgres::member::tls::{CA_FILE, CERT_FILE, KEY_FILE};
use receiptdb_postgres::pki::{self, CertAndKey};

use super::act::{apply, publish};
use super::context::Context;
use super::error::Error;
use crate::crd::ReceiptDbPair;
use crate::pair::SpecProblem;
use crate::resources::tls;

/// How long after issuing a certificate the members are asked to reload on every pass.
pub const RELOAD_WINDOW: Duration = Duration::from_secs(300);

/// The TLS Secrets as read by one pass. `Debug` names them only: the CA Secret holds a key.
#[derive(Clone, Default)]
pub struct TlsObjects {
    /// `<pair>-tls-ca` (operator-issued certificates only).
    pub ca: Option<Secret>,
    /// The server Secret the members mount (the operator's or the user's).
    pub server: Option<Secret>,
    /// `<pair>-ca`, the clients' copy of the CA.
    pub client_ca: Option<Secret>,
}

impl std::fmt::Debug for TlsObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = |s: &Option<Secret>| s.as_ref().map(|s| s.name_any());
        f.debug_struct("TlsObjects")
            .field("ca", &name(&self.ca))
            .field("server", &name(&self.server))
            .field("client_ca", &name(&self.client_ca))
            .finish()
    }
}

/// Read the pair's TLS Secrets (nothing when TLS is off).
pub async fn read(pair: &ReceiptDbPair, api: &Api<Secret>) -> Result<TlsObjects, Error> {
    if !tls::enabled(pair) {
        return Ok(TlsObjects::default());
    }
    let get = |name: String| async move {
        api.get_opt(&name)
            .await
            .map_err(Error::kube(format!("reading Secret {name}")))
    };
    Ok(TlsObjects {
        ca: if tls::operator_issued(pair) {
            get(tls::ca_secret_name(pair)).await?
        } else {
            None
        },
        server: get(tls::server_secret_name(pair)).await?,
        client_ca: get(tls::client_ca_secret_name(pair)).await?,
    })
}

/// The CA certificate the members are verified against, when known: the operator's CA, or the
/// `ca.crt` of the user's server Secret.
pub fn ca_pem(pair: &ReceiptDbPair, objects: &TlsObjects) -> Option<String> {
    if tls::operator_issued(pair) {
        objects.ca.as_ref().and_then(|s| tls::text_in(s, CA_FILE))
    } else {
        objects
            .server
            .as_ref()
            .and_then(|s| tls::text_in(s, CA_FILE))
    }
}

/// How the operator connects to the members: `verify-full` against the pair's CA. TLS off:
/// libpq's default `prefer`. TLS on but no CA yet (the pass that creates it, or an upgrade
/// from a version without TLS): `prefer` too, for that pass only, rather than failing the
/// probes (which could fail the pair over).
pub fn client_settings(pair: &ReceiptDbPair, objects: &TlsObjects) -> TlsSettings {
    match ca_pem(pair, objects).filter(|_| tls::enabled(pair)) {
        Some(pem) => TlsSettings::verify_full(RootCerts::Pem {
            label: format!(
                "the CA of pair {}/{}",
                pair.namespace().unwrap_or_default(),
                pair.name_any()
            ),
            pem: Arc::new(pem.into_bytes()),
        }),
        None => TlsSettings::default(),
    }
}

/// The spec problems of a user-supplied server Secret (missing, or lacking a file).
pub fn validate(pair: &ReceiptDbPair, objects: &TlsObjects) -> Vec<SpecProblem> {
    if !tls::enabled(pair) || tls::operator_issued(pair) {
        return Vec::new();
    }
    let name = tls::server_secret_name(pair);
    let field = "tls.serverSecret";
    match &objects.server {
        None => vec![SpecProblem::SecretMissing { name, field }],
        Some(s) => [CERT_FILE, KEY_FILE, CA_FILE]
            .into_iter()
            .filter(|k| tls::text_in(s, k).is_none())
            .map(|k| SpecProblem::SecretKeyMissing {
                name: name.clone(),
                key: k.into(),
                field,
            })
            .collect(),
    }
}

/// Whether the members should be asked to reload now: a certificate was issued less than
/// [`RELOAD_WINDOW`] ago.
pub fn reload_due(objects: &TlsObjects, now: Timestamp) -> bool {
    let issued = objects
        .server
        .as_ref()
        .and_then(|s| s.annotations().get(tls::ISSUED_AT))
        .and_then(|t| t.parse::<Timestamp>().ok());
    issued.is_some_and(|t| {
        let age = now.as_second() - t.as_second();
        (0..=RELOAD_WINDOW.as_secs() as i64).contains(&age)
    })
}

/// Whether a user-supplied server Secret (`spec.tls.serverSecret`, e.g. renewed by
/// cert-manager) changed less than [`RELOAD_WINDOW`] ago, as far as this operator process saw:
/// a change is a new resourceVersion after one already seen (the first sighting after a start
/// is not a change, so a renewal while no operator ran is picked up at the members' next
/// restart or reload).
pub fn user_secret_changed(
    pair: &ReceiptDbPair,
    objects: &TlsObjects,
    now: Timestamp,
    ctx: &Context,
) -> bool {
    if tls::operator_issued(pair) || !tls::enabled(pair) {
        return false;
    }
    let Some(version) = objects.server.as_ref().and_then(|s| s.resource_version()) else {
        return false;
    };
    let key = format!(
        "{}/{}",
        pair.namespace().unwrap_or_default(),
        pair.name_any()
    );
    let Ok(mut seen) = ctx.tls_seen.lock() else {
        return false;
    };
    let since = match seen.get(&key) {
        Some((v, since)) if *v == version => *since,
        Some(_) => {
            seen.insert(key, (version, now));
            now
        }
        None => {
            seen.insert(key, (version, Timestamp::UNIX_EPOCH));
            Timestamp::UNIX_EPOCH
        }
    };
    (0..=RELOAD_WINDOW.as_secs() as i64).contains(&(now.as_second() - since.as_second()))
}

fn system_time(t: Timestamp) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.as_second()).unwrap_or(0))
}

fn pki_err(what: &'static str) -> impl Fn(pki::PkiError) -> Error {
    move |e| Error::Tls(format!("{what}: {e}"))
}

/// Keep the pair's certificates (act): create the CA once, (re-)issue the server certificate
/// when [`pki::reissue_reason`] says so, and keep `<pair>-ca` equal to the CA certificate.
/// Private keys go only into Secrets; logs and Events say why a certificate was issued.
pub async fn ensure(
    pair: &ReceiptDbPair,
    objects: &TlsObjects,
    ctx: &Context,
) -> Result<(), Error> {
    if !tls::enabled(pair) {
        return Ok(());
    }
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &pair.namespace().unwrap_or_default());
    let now = ctx.now();
    let ca_cert = if tls::operator_issued(pair) {
        let ca = match objects.ca.as_ref().and_then(|s| {
            Some(CertAndKey {
                cert_pem: tls::text_in(s, CA_FILE)?,
                key_pem: tls::text_in(s, tls::CA_KEY)?,
            })
        }) {
            Some(ca) => ca,
            None => create_ca(pair, &api, now, ctx).await?,
        };
        let names = tls::server_names(pair);
        let existing = objects
            .server
            .as_ref()
            .and_then(|s| tls::text_in(s, CERT_FILE));
        if let Some(reason) =
            pki::reissue_reason(existing.as_deref(), &ca.cert_pem, &names, system_time(now))
        {
            let server = pki::issue_server(&ca, &names, system_time(now))
                .map_err(pki_err("issuing the server certificate"))?;
            let secret = tls::server_secret(pair, &server, &ca.cert_pem, &now.to_string());
            apply(&api, &secret, ctx).await?;
            let msg = format!(
                "issued a server certificate for {} names, valid {} days, because {reason}",
                names.len(),
                pki::SERVER_VALIDITY_DAYS
            );
            tracing::info!(secret = secret.name_any(), "{msg}");
            publish(pair, false, "CertificateIssued", &msg, ctx).await;
        }
        ca.cert_pem
    } else {
        match ca_pem(pair, objects) {
            Some(ca) => ca,
            // validate() reported it; nothing to publish yet.
            None => return Ok(()),
        }
    };
    let current = objects
        .client_ca
        .as_ref()
        .and_then(|s| tls::text_in(s, CA_FILE));
    if current.as_deref() != Some(ca_cert.as_str()) {
        apply(&api, &tls::client_ca_secret(pair, &ca_cert), ctx).await?;
    }
    Ok(())
}

async fn create_ca(
    pair: &ReceiptDbPair,
    api: &Api<Secret>,
    now: Timestamp,
    ctx: &Context,
) -> Result<CertAndKey, Error> {
    let ca = pki::issue_ca(&tls::ca_common_name(pair), system_time(now))
        .map_err(pki_err("issuing the pair's CA"))?;
    let secret = tls::ca_secret(pair, &ca);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(secret = secret.name_any(), "created the pair's CA");
            publish(
                pair,
                false,
                "CertificateIssued",
                &format!(
                    "created the pair's CA, valid {} days",
                    pki::CA_VALIDITY_DAYS
                ),
                ctx,
            )
            .await;
            Ok(ca)
        }
        // An earlier pass made it meanwhile: use that one.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let found = api
                .get(&secret.name_any())
                .await
                .map_err(Error::kube(format!("reading Secret {}", secret.name_any())))?;
            Ok(CertAndKey {
                cert_pem: tls::text_in(&found, CA_FILE).unwrap_or_default(),
                key_pem: tls::text_in(&found, tls::CA_KEY).unwrap_or_default(),
            })
        }
        Err(e) => Err(Error::kube(format!(
            "creating Secret {}",
            secret.name_any()
        ))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn with_issued(at: &str) -> TlsObjects {
        let mut s = Secret::default();
        s.metadata.annotations = Some(BTreeMap::from([(tls::ISSUED_AT.into(), at.into())]));
        TlsObjects {
            server: Some(s),
            ..TlsObjects::default()
        }
    }

    #[test]
    fn debug_output_names_the_secrets_and_shows_no_key() {
        let mut ca = Secret::default();
        ca.metadata.name = Some("orca-tls-ca".into());
        ca.data = Some(BTreeMap::from([(
            tls::CA_KEY.to_string(),
            k8s_openapi::ByteString(b"-----BEGIN PRIVATE KEY-----".to_vec()),
        )]));
        let text = format!(
            "{:?}",
            TlsObjects {
                ca: Some(ca),
                ..TlsObjects::default()
            }
        );
        assert!(
            text.contains("orca-tls-ca") && !text.contains("PRIVATE"),
            "{text}"
        );
    }

    #[test]
    fn members_reload_for_a_while_after_an_issue() {
        let issued: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let o = with_issued(&issued.to_string());
        let at = |secs: i64| Timestamp::from_second(issued.as_second() + secs).unwrap();
        assert!(reload_due(&o, at(0)));
        assert!(reload_due(&o, at(299)));
        assert!(!reload_due(&o, at(301)));
        assert!(!reload_due(&o, at(-5)));
        assert!(!reload_due(&TlsObjects::default(), at(0)));
    }
}
