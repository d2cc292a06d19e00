//! A pair's certificates: its own CA, and a server certificate signed by it that both members
//! present, valid for every name clients and the other member use. Issued with rcgen (ECDSA
//! P-256), inspected with x509-parser; no Kubernetes types here (the operator stores them in
//! Secrets, the tests hand them to real servers).
//!
//! Lifetimes: the CA lives [`CA_VALIDITY_DAYS`] (ten years: clients hold a copy, so replacing it
//! means handing every client the new one; CA rotation is not automated), a server certificate
//! [`SERVER_VALIDITY_DAYS`], re-issued when fewer than [`RENEW_BEFORE_DAYS`] remain, when the
//! names it must carry change, or when the CA did not sign it.

use std::collections::BTreeSet;
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

/// How long a pair's CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How long a server certificate is valid.
pub const SERVER_VALIDITY_DAYS: i64 = 365;
/// A server certificate is re-issued when it expires within this many days.
pub const RENEW_BEFORE_DAYS: i64 = 30;
/// Certificates start an hour in the past, for clocks a little behind.
const BACKDATE: Duration = Duration::hours(1);

/// Why issuing or reading a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("read the {what} certificate: {why}")]
    Read { what: &'static str, why: String },
    #[error("a server certificate needs at least one name")]
    NoNames,
}

/// A certificate and its private key, both PEM. The key never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAndKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"***")
            .finish()
    }
}

fn params(common_name: &str, now: OffsetDateTime, days: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "receiptdb-operator");
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.not_before = now - BACKDATE;
    p.not_after = now + Duration::days(days);
    p
}

/// A new CA named `common_name` (e.g. `<namespace>/<pair> CA`), valid from `now` for
/// [`CA_VALIDITY_DAYS`], allowed to sign end-entity certificates only.
pub fn issue_ca(common_name: &str, now: SystemTime) -> Result<CertAndKey, PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut p = params(common_name, now.into(), CA_VALIDITY_DAYS);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p.self_signed(&key)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A server certificate signed by `ca` for `names` (DNS names or IP addresses; the first is
/// also the subject's common name), valid from `now` for [`SERVER_VALIDITY_DAYS`].
pub fn issue_server(
    ca: &CertAndKey,
    names: &[String],
    now: SystemTime,
) -> Result<CertAndKey, PkiError> {
    let first = names.first().ok_or(PkiError::NoNames)?;
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut p = params(first, now.into(), SERVER_VALIDITY_DAYS);
    p.subject_alt_names = names
        .iter()
        .map(|n| match n.parse() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    let cert = p.signed_by(&key, &issuer)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What matters about an existing certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// DNS names (lower-case) and IP addresses of its subjectAltName.
    pub names: BTreeSet<String>,
    pub is_ca: bool,
}

fn read_err(what: &'static str) -> impl Fn(String) -> PkiError {
    move |why| PkiError::Read { what, why }
}

/// Read the first certificate of a PEM text.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, PkiError> {
    let err = read_err("existing");
    let (_, pem) = parse_x509_pem(cert_pem.as_bytes()).map_err(|e| err(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| err(e.to_string()))?;
    let mut names = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => {
                    names.insert(d.to_ascii_lowercase());
                }
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    names.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    let v = cert.validity();
    Ok(CertInfo {
        not_before: OffsetDateTime::from_unix_timestamp(v.not_before.timestamp())
            .map_err(|e| err(e.to_string()))?
            .into(),
        not_after: OffsetDateTime::from_unix_timestamp(v.not_after.timestamp())
            .map_err(|e| err(e.to_string()))?
            .into(),
        names,
        is_ca: cert.is_ca(),
    })
}

/// Whether `cert_pem` carries a valid signature by the CA certificate `ca_pem`.
pub fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (Ok((_, leaf)), Ok((_, ca))) = (
        parse_x509_pem(cert_pem.as_bytes()),
        parse_x509_pem(ca_pem.as_bytes()),
    ) else {
        return false;
    };
    let (Ok(leaf), Ok(ca)) = (leaf.parse_x509(), ca.parse_x509()) else {
        return false;
    };
    leaf.verify_signature(Some(ca.public_key())).is_ok()
}

/// Why a server certificate must be (re-)issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reissue {
    /// There is none yet.
    Missing,
    /// It cannot be read.
    Unreadable(String),
    /// It was not signed by the pair's CA (the CA was replaced).
    OtherCa,
    /// It expires within [`RENEW_BEFORE_DAYS`] (or has expired).
    Expiring,
    /// The names it must carry changed.
    NamesChanged,
}

impl std::fmt::Display for Reissue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("no server certificate yet"),
            Self::Unreadable(why) => write!(f, "the server certificate is unreadable: {why}"),
            Self::OtherCa => f.write_str("the server certificate was not signed by the pair's CA"),
            Self::Expiring => write!(
                f,
                "the server certificate expires within {RENEW_BEFORE_DAYS} days"
            ),
            Self::NamesChanged => {
                f.write_str("the names the server certificate must carry changed")
            }
        }
    }
}

/// Whether the server certificate `existing` must be re-issued at `now` to be signed by
/// `ca_pem`, valid for more than [`RENEW_BEFORE_DAYS`] and carry exactly `names`.
pub fn reissue_reason(
    existing: Option<&str>,
    ca_pem: &str,
    names: &[String],
    now: SystemTime,
) -> Option<Reissue> {
    let Some(pem) = existing else {
        return Some(Reissue::Missing);
    };
    let info = match inspect(pem) {
        Ok(i) => i,
        Err(e) => return Some(Reissue::Unreadable(e.to_string())),
    };
    if !signed_by(pem, ca_pem) {
        return Some(Reissue::OtherCa);
    }
    let renew_at = OffsetDateTime::from(info.not_after) - Duration::days(RENEW_BEFORE_DAYS);
    if OffsetDateTime::from(now) >= renew_at {
        return Some(Reissue::Expiring);
    }
    let wanted: BTreeSet<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    (wanted != info.names).then_some(Reissue::NamesChanged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as StdDuration;

    const DAY: StdDuration = StdDuration::from_secs(86_400);

    fn names() -> Vec<String> {
        ["orca", "orca.clinic.svc", "127.0.0.1"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn ca_and_server_certificates_carry_what_they_must() {
        let now = SystemTime::now();
        let ca = issue_ca("clinic/orca CA", now).unwrap();
        let info = inspect(&ca.cert_pem).unwrap();
        assert!(info.is_ca);
        let ca_days = info.not_after.duration_since(now).unwrap().as_secs() / 86_400;
        assert!((3649..=3650).contains(&ca_days), "{ca_days}");
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));

        let server = issue_server(&ca, &names(), now).unwrap();
        let info = inspect(&server.cert_pem).unwrap();
        assert!(!info.is_ca);
        assert_eq!(
            info.names,
            BTreeSet::from(["orca".into(), "orca.clinic.svc".into(), "127.0.0.1".into()])
        );
        let days = info.not_after.duration_since(now).unwrap().as_secs() / 86_400;
        assert!((364..=365).contains(&days), "{days}");
        assert!(info.not_before < now);
        assert!(signed_by(&server.cert_pem, &ca.cert_pem));
        let other = issue_ca("other", now).unwrap();
        assert!(!signed_by(&server.cert_pem, &other.cert_pem));
        assert!(issue_server(&ca, &[], now).is_err());
    }

    #[test]
    fn reissue_decision() {
        let now = SystemTime::now();
        let ca = issue_ca("ca", now).unwrap();
        let server = issue_server(&ca, &names(), now).unwrap();
        let cert = Some(server.cert_pem.as_str());
        assert_eq!(reissue_reason(cert, &ca.cert_pem, &names(), now), None);
        // Names compare as a set, DNS names without regard to case.
        let mut shuffled = names();
        shuffled.reverse();
        shuffled[2] = "ORCA".into();
        assert_eq!(reissue_reason(cert, &ca.cert_pem, &shuffled, now), None);
        // 334 days on: 31 days left, kept; 336 days on: 29 left, re-issued.
        assert_eq!(
            reissue_reason(cert, &ca.cert_pem, &names(), now + 334 * DAY),
            None
        );
        assert_eq!(
            reissue_reason(cert, &ca.cert_pem, &names(), now + 336 * DAY),
            Some(Reissue::Expiring)
        );
        let mut more = names();
        more.push("orca-primary.clinic.svc".into());
        assert_eq!(
            reissue_reason(cert, &ca.cert_pem, &more, now),
            Some(Reissue::NamesChanged)
        );
        let other = issue_ca("other", now).unwrap();
        assert_eq!(
            reissue_reason(cert, &other.cert_pem, &names(), now),
            Some(Reissue::OtherCa)
        );
        assert_eq!(
            reissue_reason(None, &ca.cert_pem, &names(), now),
            Some(Reissue::Missing)
        );
        assert!(matches!(
            reissue_reason(Some("junk"), &ca.cert_pem, &names(), now),
            Some(Reissue::Unreadable(_))
        ));
    }
}
