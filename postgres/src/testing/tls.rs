//! Certificates for test members, issued by [`crate::pki`] as the operator issues them, and
//! written as a Kubernetes Secret volume lays them out (`tls.crt`, `tls.key`, `ca.crt`; with
//! `defaultMode: 0640` and the pod's fsGroup, the key is root's and group-readable).

use std::path::Path;
use std::time::SystemTime;

use crate::conn::{RootCerts, Target, TlsSettings};
use crate::member::MemberTls;
use crate::pgbin::running_as_root;
use crate::pki::{self, CertAndKey};

/// The names test servers' certificates carry: they listen on 127.0.0.1.
pub fn test_names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

/// A CA and a server certificate for [`test_names`].
pub fn test_pki() -> (CertAndKey, CertAndKey) {
    let ca = pki::issue_ca("test CA", SystemTime::now()).expect("issue a CA");
    let server = pki::issue_server(&ca, &test_names(), SystemTime::now()).expect("issue a cert");
    (ca, server)
}

/// Write `ca.crt`, `tls.crt` and `tls.key` into `dir` as a Secret volume would: certificates
/// 0644; the key, when running as root, owned by root with group `postgres` and mode 0640,
/// else 0600 (then the server runs as this user, and PostgreSQL wants 0600).
pub fn write_member_files(dir: &Path, ca_cert_pem: &str, server: &CertAndKey) -> MemberTls {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("create the TLS directory");
    let tls = MemberTls::in_dir(dir);
    let write = |path: &Path, text: &str, mode: u32| {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        std::fs::write(&tmp, text).expect("write a TLS file");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).expect("chmod");
        tmp
    };
    let ca = write(&tls.ca_file, ca_cert_pem, 0o644);
    let cert = write(&tls.cert_file, &server.cert_pem, 0o644);
    let key_mode = if running_as_root() { 0o640 } else { 0o600 };
    let key = write(&tls.key_file, &server.key_pem, key_mode);
    if running_as_root() {
        let group = nix::unistd::Group::from_name("postgres")
            .expect("look up group postgres")
            .expect("group postgres exists");
        nix::unistd::chown(&key, None, Some(group.gid)).expect("chgrp the key");
    }
    // Renamed into place, as the kubelet swaps a Secret volume's files.
    for (tmp, path) in [
        (ca, &tls.ca_file),
        (cert, &tls.cert_file),
        (key, &tls.key_file),
    ] {
        std::fs::rename(tmp, path).expect("rename a TLS file into place");
    }
    tls
}

/// `target` verifying the server against the CA in `ca_file`, host name included.
pub fn verify_full(target: Target, ca_file: &Path) -> Target {
    target.with_tls(TlsSettings::verify_full(RootCerts::File(ca_file.into())))
}
