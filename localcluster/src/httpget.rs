//! The one HTTP request the cluster tool and the node agent make themselves: a plain-text
//! `GET` whose status code is all that matters (health endpoints, httpGet probes).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` on `addr` with `headers`, within `timeout`; returns the status code.
pub async fn get_status(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<u16> {
    tokio::time::timeout(timeout, get(addr, path, headers))
        .await
        .with_context(|| format!("GET http://{addr}{path}: timed out after {timeout:?}"))?
}

async fn get(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> Result<u16> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: localcluster\r\nAccept: */*\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .await
        .context("send the request")?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut chunk).await.context("read the response")?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 8192 {
            break;
        }
    }
    status_code(&buf)
}

/// The status code of an HTTP/1.x status line.
fn status_code(response: &[u8]) -> Result<u16> {
    let text = String::from_utf8_lossy(response);
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().and_then(|c| c.parse().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => Ok(code),
        _ => bail!("not an HTTP response: {line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_line() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n\r\n").unwrap(), 200);
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\n").unwrap(),
            503
        );
        assert!(status_code(b"SSH-2.0-OpenSSH\r\n").is_err());
    }

    #[tokio::test]
    async fn gets_a_status_from_a_server() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = vec![0u8; 1024];
            let n = s.read(&mut req).await.unwrap();
            let head = String::from_utf8_lossy(&req[..n]).to_string();
            let code = if head.starts_with("GET /healthz ") && head.contains("X-Probe: yes") {
                "204 No Content"
            } else {
                "400 Bad Request"
            };
            s.write_all(format!("HTTP/1.1 {code}\r\n\r\n").as_bytes())
                .await
                .unwrap();
        });
        let code = get_status(
            addr,
            "/healthz",
            &[("X-Probe".into(), "yes".into())],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(code, 204);
    }
}
