//! Slow, idle and dead connections on a member's client and peer ports: each is closed in
//! bounded time, and well-behaved clients are served meanwhile. Against the real `bosun store`
//! binary on loopback.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bosun_tests::{Kind, Server};
use etcd_client::{Client, WatchOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The HTTP/2 client preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: what completes a client's side of the HTTP/2 handshake.
const SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// A connection that completed the HTTP/2 handshake and then does nothing.
async fn idle_h2(url: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr(url)).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&SETTINGS).await.unwrap();
    s
}

/// Reads (and drops) what the server sends until it closes the connection; how long that
/// took, or `None` if it was still open at `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A client that puts and reads back a key every 50 ms until told to stop; returns how many
/// rounds it made and the slowest.
fn steady_client(
    url: &str,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<(u32, Duration)>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let url = url.to_string();
    let task = tokio::spawn(async move {
        let mut c = Client::connect([url.as_str()], None).await.unwrap();
        let (mut rounds, mut slowest) = (0u32, Duration::ZERO);
        while !*stopped.borrow_and_update() {
            let t = Instant::now();
            c.put("steady", rounds.to_string(), None).await.unwrap();
            let got = c.get("steady", None).await.unwrap();
            assert_eq!(got.kvs()[0].value(), rounds.to_string().as_bytes());
            slowest = slowest.max(t.elapsed());
            rounds += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (rounds, slowest)
    });
    (stop, task)
}

/// Connections that dribble their handshake a byte at a time are closed once the handshake
/// timeout passes, on the client and the peer port, and so are connections that completed
/// the handshake but never finish a request; a client is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_is_dropped_and_clients_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        Kind::Bosun,
        dir.path(),
        &[
            "--handshake-timeout",
            "1s",
            "--idle-connection-timeout",
            "2s",
        ],
    )
    .await;
    let (stop, client) = steady_client(&server.client_url);
    let mut lorises = Vec::new();
    for url in [&server.client_url, &server.peer_url] {
        for _ in 0..10 {
            let addr = addr(url);
            lorises.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let start = Instant::now();
                // One byte of the preface every 300 ms: the whole would take 7 s.
                for b in PREFACE.iter().chain(&SETTINGS) {
                    if s.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if start.elapsed() > Duration::from_secs(20) {
                        break;
                    }
                }
                closed_within(&mut s, Duration::from_secs(1)).await;
                start.elapsed()
            }));
        }
    }
    // After the handshake: the start of a HEADERS frame, then a byte every 300 ms.
    let mut half = idle_h2(&server.client_url).await;
    half.write_all(&[0, 0, 50, 0x1, 0x4, 0, 0, 0, 1])
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        let start = Instant::now();
        for _ in 0..50 {
            if half.write_all(&[0x82]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        start.elapsed()
    });
    for l in lorises {
        let took = l.await.unwrap();
        assert!(
            took < Duration::from_secs(4),
            "a slow handshake held its connection for {took:?}"
        );
    }
    let took = trickle.await.unwrap();
    assert!(
        took < Duration::from_secs(6),
        "a request trickling in held its connection for {took:?}"
    );
    let _ = stop.send(true);
    let (rounds, slowest) = client.await.unwrap();
    println!("steady client: {rounds} rounds, slowest {slowest:?}");
    assert!(rounds >= 20, "client made only {rounds} rounds");
    assert!(
        slowest < Duration::from_secs(2),
        "slowest round {slowest:?}"
    );
}

/// With more idle connections than the bound, the server keeps at most the bound, closing the
/// idlest to make room, and a client that connects afterwards is served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_above_the_bound_do_not_starve_clients() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Kind::Bosun, dir.path(), &["--max-client-connections", "50"]).await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(idle_h2(&server.client_url).await);
    }
    let start = Instant::now();
    let mut c = tokio::time::timeout(
        Duration::from_secs(5),
        Client::connect([server.client_url.as_str()], None),
    )
    .await
    .expect("connect within 5 s")
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), c.put("k", "v", None))
        .await
        .expect("served within 5 s")
        .unwrap();
    println!(
        "client served {:?} after 200 idle connections",
        start.elapsed()
    );
    let mut open = 0;
    for s in &mut idle {
        if closed_within(s, Duration::from_millis(200)).await.is_none() {
            open += 1;
        }
    }
    println!("{open} of 200 idle connections still open");
    assert!(
        open < 50,
        "{open} idle connections kept, above the bound of 50"
    );
}

/// The idle timeout closes a connection with nothing in flight, and never one that carries a
/// watch or a lease keep-alive stream, however quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_spares_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        Kind::Bosun,
        dir.path(),
        &["--idle-connection-timeout", "1s"],
    )
    .await;
    let mut bare = idle_h2(&server.client_url).await;
    let mut c = Client::connect([server.client_url.as_str()], None)
        .await
        .unwrap();
    let mut events = c
        .watch("w", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let lease = c.lease_grant(30, None).await.unwrap().id();
    let (mut keeper, mut acks) = c.lease_keep_alive(lease).await.unwrap();
    let took = closed_within(&mut bare, Duration::from_secs(5)).await;
    assert!(
        took.is_some(),
        "an idle connection outlived a 1 s idle timeout by 5 s"
    );
    // Quiet for three idle timeouts: the streams are still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    keeper.keep_alive().await.unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(5), acks.message())
        .await
        .expect("keep-alive answered")
        .unwrap()
        .expect("keep-alive stream open");
    assert_eq!(ack.id(), lease);
    assert!(ack.ttl() > 0);
    let mut other = Client::connect([server.client_url.as_str()], None)
        .await
        .unwrap();
    other.put("w1", "x", None).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let resp = events.message().await.unwrap().expect("watch stream open");
            if let Some(e) = resp.events().first() {
                return e.kv().unwrap().key().to_vec();
            }
        }
    })
    .await
    .expect("watch event within 5 s");
    assert_eq!(event, b"w1");
}

/// HTTP/2 keepalive: a connection whose other end stops answering pings is closed, on the
/// client and the peer port, even with the idle timeout off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_drops_connections_that_stop_answering() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        Kind::Bosun,
        dir.path(),
        &[
            "--grpc-keepalive-interval",
            "500ms",
            "--grpc-keepalive-timeout",
            "500ms",
            "--idle-connection-timeout",
            "0",
        ],
    )
    .await;
    for url in [&server.client_url, &server.peer_url] {
        let mut s = idle_h2(url).await;
        let took = closed_within(&mut s, Duration::from_secs(5)).await;
        println!("{url}: closed after {took:?}");
        assert!(
            took.is_some(),
            "a connection that never answers pings was kept 5 s"
        );
    }
}
