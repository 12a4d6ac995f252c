//! `reader-reactions --healthcheck`: asks the instance serving on `LISTEN_ADDR` whether it is up,
//! for container health checks in images that have no HTTP client (the runtime image has no shell
//! and no curl).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The longest the probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /healthz` on the service listening on `listen_addr`; `Ok` when it answers 200.
pub async fn probe(listen_addr: SocketAddr) -> anyhow::Result<()> {
    // A service listening on every interface answers on loopback.
    let addr = match listen_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen_addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen_addr.port())
        }
        _ => listen_addr,
    };
    let status_line = tokio::time::timeout(PROBE_TIMEOUT, async {
        let mut stream =
            TcpStream::connect(addr).await.with_context(|| format!("while connecting to {addr}"))?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .context("while sending the probe")?;
        let mut head = [0u8; 64];
        let mut read = 0;
        while read < head.len() && !head[..read].contains(&b'\n') {
            match stream.read(&mut head[read..]).await.context("while reading the answer")? {
                0 => break,
                n => read += n,
            }
        }
        let line = String::from_utf8_lossy(&head[..read]);
        anyhow::Ok(line.lines().next().unwrap_or_default().to_owned())
    })
    .await
    .with_context(|| format!("{addr} did not answer within {PROBE_TIMEOUT:?}"))??;
    anyhow::ensure!(status_line.starts_with("HTTP/1.1 200"), "{addr} answered {status_line:?}");
    Ok(())
}
