//! Images, mapped to programs on this machine: the one place that says what each container
//! image of the project runs as. No image is pulled; an image not listed here makes the
//! container wait with `ErrImagePull` and a message naming this file.
//!
//! | image | what the container sees |
//! | --- | --- |
//! | `*receiptdb-operator*` (the operator's, any registry and tag) | the operator binary built by cargo at `/usr/local/bin/receiptdb-operator`, user 65532 (distroless `nonroot`), entrypoint that binary |
//! | `*postgres:15*` (the member image) | Debian's PostgreSQL 15 programs (`/usr/lib/postgresql/15/bin` first on PATH), user `postgres` 999:999 as in the official image, `/var/lib/postgresql` and `/var/run/postgresql` writable by it, stop signal SIGINT (the official image's STOPSIGNAL) |
//!
//! Every image also sees the host's `/usr` (except `/usr/local`) and `/etc` read-only: the
//! programs are the host's, so their libraries are too.

use std::path::PathBuf;

use nix::sys::signal::Signal;

use super::launch::ImageDir;

/// Where the programs behind the images are (given to the agent by `localcluster up`).
#[derive(Debug, Clone)]
pub struct ImageSources {
    /// The operator binary (`target/<profile>/receiptdb-operator`); without it, the operator
    /// image is not available.
    pub operator_bin: Option<PathBuf>,
    /// PostgreSQL 15's programs.
    pub pg_bindir: PathBuf,
}

/// What a container of an image runs with.
#[derive(Debug, Clone)]
pub struct Image {
    /// Host paths shown read-only at the same place (programs and their libraries).
    pub host_paths: Vec<String>,
    /// Host files shown at a container path: (host path, container path).
    pub files: Vec<(PathBuf, String)>,
    /// The image's directories (writable ones for its user).
    pub dirs: Vec<ImageDir>,
    /// `/etc/passwd` lines beyond root's.
    pub passwd: Vec<String>,
    /// `/etc/group` lines beyond root's.
    pub group: Vec<String>,
    /// Environment of the image (`ENV`).
    pub env: Vec<(String, String)>,
    /// `ENTRYPOINT`, used when the container gives no `command`.
    pub entrypoint: Vec<String>,
    /// `CMD`, used when the container gives neither `command` nor `args`.
    pub cmd: Vec<String>,
    /// `USER`: uid and gid when the pod sets none.
    pub user: (u32, u32),
    /// `STOPSIGNAL`.
    pub stop_signal: Signal,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The host's `/usr` subtrees, except `/usr/local` (an image's own programs go there).
fn host_usr() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/usr")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name() != "local")
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| format!("/usr/{}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.push("/etc".into());
    v
}

fn dir(path: &str, uid: u32, mode: u32) -> ImageDir {
    ImageDir {
        path: path.into(),
        uid,
        gid: uid,
        mode,
    }
}

impl ImageSources {
    /// The image `reference` runs as, or why it cannot run.
    pub fn resolve(&self, reference: &str) -> Result<Image, String> {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        if name.starts_with("receiptdb-operator") {
            let bin = self.operator_bin.clone().ok_or_else(|| {
                format!("image {reference:?}: the node agent was started without --operator-bin (localcluster/src/agent/images.rs)")
            })?;
            let exe = "/usr/local/bin/receiptdb-operator".to_string();
            return Ok(Image {
                host_paths: host_usr(),
                files: vec![(bin, exe.clone())],
                dirs: vec![dir("/home/nonroot", 65532, 0o755)],
                passwd: vec!["nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin".into()],
                group: vec!["nonroot:x:65532:".into()],
                env: vec![("PATH".into(), DEFAULT_PATH.into())],
                entrypoint: vec![exe],
                cmd: vec!["run".into()],
                user: (65532, 65532),
                stop_signal: Signal::SIGTERM,
            });
        }
        if name.starts_with("postgres:15") {
            let bindir = self.pg_bindir.display().to_string();
            return Ok(Image {
                host_paths: host_usr(),
                files: Vec::new(),
                dirs: vec![
                    dir("/var/lib/postgresql", 999, 0o755),
                    dir("/var/lib/postgresql/data", 999, 0o777),
                    dir("/run/postgresql", 999, 0o3777),
                ],
                passwd: vec!["postgres:x:999:999::/var/lib/postgresql:/bin/bash".into()],
                group: vec!["postgres:x:999:".into()],
                env: vec![
                    ("PATH".into(), format!("{DEFAULT_PATH}:{bindir}")),
                    ("PGDATA".into(), "/var/lib/postgresql/data".into()),
                    ("LANG".into(), "C.UTF-8".into()),
                ],
                entrypoint: vec!["docker-entrypoint.sh".into()],
                cmd: vec!["postgres".into()],
                user: (0, 0),
                stop_signal: Signal::SIGINT,
            });
        }
        Err(format!(
            "image {reference:?} is not mapped to a local program (see localcluster/src/agent/images.rs)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(op: bool) -> ImageSources {
        ImageSources {
            operator_bin: op.then(|| PathBuf::from("/build/receiptdb-operator")),
            pg_bindir: "/usr/lib/postgresql/15/bin".into(),
        }
    }

    #[test]
    fn the_project_images_map_to_local_programs() {
        let op = sources(true)
            .resolve("ghcr.io/receiptdb/receiptdb-operator:0.1.0")
            .unwrap();
        assert_eq!(op.entrypoint, ["/usr/local/bin/receiptdb-operator"]);
        assert_eq!(
            op.files,
            [(
                PathBuf::from("/build/receiptdb-operator"),
                "/usr/local/bin/receiptdb-operator".to_string()
            )]
        );
        assert_eq!(op.user, (65532, 65532));
        let pg = sources(true)
            .resolve("docker.io/library/postgres:15-bookworm")
            .unwrap();
        assert!(pg
            .env
            .iter()
            .any(|(k, v)| k == "PATH" && v.ends_with(":/usr/lib/postgresql/15/bin")));
        assert_eq!(pg.stop_signal, Signal::SIGINT);
        assert!(pg.passwd[0].starts_with("postgres:x:999:999:"));
    }

    #[test]
    fn unknown_images_and_a_missing_operator_binary_are_refused_with_the_reason() {
        let e = sources(true).resolve("nginx:1.27").unwrap_err();
        assert!(e.contains("not mapped"), "{e}");
        let e = sources(false)
            .resolve("receiptdb-operator:dev")
            .unwrap_err();
        assert!(e.contains("--operator-bin"), "{e}");
    }
}
