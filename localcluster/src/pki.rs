//! The cluster's certificates and kubeconfigs: one CA, the API server's serving certificate,
//! the ServiceAccount token signing key, and a client certificate per identity (the admin, the
//! controller manager, the scheduler, kube-proxy, CoreDNS and each node), written fresh by
//! `up`. Private keys are written with mode 0600.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::layout::{Layout, CLUSTER_DOMAIN, GATEWAY, KUBERNETES_SERVICE_IP};

/// A client identity: the user name (certificate CN) and groups (O).
#[derive(Debug, Clone)]
pub struct Identity {
    /// File stem of its certificate and kubeconfig.
    pub file: String,
    /// The user name the API server sees.
    pub user: String,
    /// Its groups.
    pub groups: Vec<String>,
}

impl Identity {
    /// An identity with `file`, `user` and `groups`.
    pub fn new(file: &str, user: &str, groups: &[&str]) -> Self {
        Self {
            file: file.into(),
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

/// Paths of the files the control plane reads.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate every component trusts.
    pub ca_cert: PathBuf,
    /// The API server's serving certificate and key.
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    /// The ServiceAccount token signing key and its public half.
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

impl Pki {
    /// The paths under `layout` (whether or not they exist yet).
    pub fn at(layout: &Layout) -> Self {
        let d = layout.pki();
        Self {
            ca_cert: d.join("ca.crt"),
            apiserver_cert: d.join("apiserver.crt"),
            apiserver_key: d.join("apiserver.key"),
            sa_key: d.join("sa.key"),
            sa_pub: d.join("sa.pub"),
        }
    }
}

fn write_file(path: &Path, content: &str, mode: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(content.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

fn params(cn: &str, orgs: &[String]) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    // A day of clock skew before, a year after: a throwaway cluster's lifetime.
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(365);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    Ok(p)
}

/// The CA, written by [`generate`], that signs every other certificate.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn sign(
        &self,
        dir: &Path,
        stem: &str,
        params: CertificateParams,
    ) -> Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let crt = dir.join(format!("{stem}.crt"));
        let keyf = dir.join(format!("{stem}.key"));
        write_file(&crt, &cert.pem(), 0o644)?;
        write_file(&keyf, &key.serialize_pem(), 0o600)?;
        Ok((crt, keyf))
    }
}

/// The API server's names: every address and DNS name a client may use for it.
fn apiserver_names() -> Vec<SanType> {
    let mut names: Vec<SanType> = [
        IpAddr::from(GATEWAY),
        IpAddr::from(KUBERNETES_SERVICE_IP),
        IpAddr::from([127, 0, 0, 1]),
    ]
    .into_iter()
    .map(SanType::IpAddress)
    .collect();
    for n in [
        "localhost".to_string(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{CLUSTER_DOMAIN}"),
    ] {
        if let Ok(n) = n.try_into() {
            names.push(SanType::DnsName(n));
        }
    }
    names
}

/// Write the CA, the API server's certificate, the ServiceAccount key and a client certificate
/// with a kubeconfig for each of `identities` (the one with file `admin` also becomes the
/// user's kubeconfig at [`Layout::admin_kubeconfig`]).
pub fn generate(layout: &Layout, identities: &[Identity]) -> Result<Pki> {
    let pki = Pki::at(layout);
    let dir = layout.pki();
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;

    let ca_key = KeyPair::generate()?;
    let mut ca_params = params("receiptdb-localcluster-ca", &[])?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    write_file(&pki.ca_cert, &ca_cert.pem(), 0o644)?;
    write_file(&dir.join("ca.key"), &ca_key.serialize_pem(), 0o600)?;
    let ca = Ca {
        issuer: Issuer::new(ca_params, ca_key),
    };

    let mut server = params("kube-apiserver", &[])?;
    server.subject_alt_names = apiserver_names();
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    ca.sign(&dir, "apiserver", server)?;

    let sa = KeyPair::generate()?;
    write_file(&pki.sa_key, &sa.serialize_pem(), 0o600)?;
    write_file(&pki.sa_pub, &sa.public_key_pem(), 0o644)?;

    for id in identities {
        let mut p = params(&id.user, &id.groups)?;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (crt, key) = ca.sign(&dir, &id.file, p)?;
        let kc = kubeconfig(&pki.ca_cert, &crt, &key, &id.user);
        write_file(&layout.kubeconfig(&id.file), &kc, 0o600)?;
        if id.file == "admin" {
            write_file(&layout.admin_kubeconfig(), &kc, 0o600)?;
        }
    }
    Ok(pki)
}

/// The API server's URL as every client of the cluster reaches it.
pub fn server_url() -> String {
    format!("https://{GATEWAY}:{}", crate::layout::APISERVER_PORT)
}

fn kubeconfig(ca: &Path, crt: &Path, key: &Path, user: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: receiptdb-local
  cluster:
    server: {server}
    certificate-authority: {ca}
contexts:
- name: receiptdb-local
  context:
    cluster: receiptdb-local
    user: {user:?}
current-context: receiptdb-local
users:
- name: {user:?}
  user:
    client-certificate: {crt}
    client-key: {key}
",
        server = server_url(),
        ca = ca.display(),
        crt = crt.display(),
        key = key.display(),
    )
}
