//! What one connection, and one peer address, may hold: the whole-request deadline and the bound
//! on concurrent connections per peer. Raw sockets, because an HTTP client cannot be made slow.
//! The deadlines are shortened; the bounds are asserted with generous margins, never latencies.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{TestApp, spawn_app_with};

/// How long a test waits for the server to close a connection: far past any deadline set here.
const PATIENCE: Duration = Duration::from_secs(20);

fn server(app: &TestApp) -> SocketAddr {
    app.address.trim_start_matches("http://").parse().unwrap()
}

/// A connection to `app` from the loopback address `from` (127.0.0.x: all of 127/8 is local).
async fn connect_from(app: &TestApp, from: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(server(app)).await.unwrap()
}

/// Everything the server sends until it closes the connection, or `None` if it keeps it open
/// past `PATIENCE`.
async fn read_until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut received = Vec::new();
    match tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received)).await {
        Ok(Ok(_)) => Some(String::from_utf8_lossy(&received).into_owned()),
        // A reset is closed too.
        Ok(Err(_)) => Some(String::from_utf8_lossy(&received).into_owned()),
        Err(_) => None,
    }
}

/// Asks for `/healthz` on a new connection from `from` (closed after the answer); returns all
/// that was read.
async fn healthz_from(app: &TestApp, from: [u8; 4]) -> String {
    let mut stream = connect_from(app, from).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: allot\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    read_until_closed(&mut stream).await.unwrap()
}

const SLOW_LOGIN: &[u8] = b"POST /v1/auth/token HTTP/1.1\r\nHost: allot\r\n\
    Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{";

#[tokio::test]
async fn a_body_that_does_not_arrive_is_answered_408_and_the_connection_closed() {
    let app = spawn_app_with(|config| config.request_timeout = 2).await;
    let mut stream = connect_from(&app, [127, 0, 0, 1]).await;
    stream.write_all(SLOW_LOGIN).await.unwrap();
    let answer = read_until_closed(&mut stream)
        .await
        .expect("the connection is closed past the deadline");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("/problems/request-timeout"), "{answer}");
    assert!(
        app.get("/problems/request-timeout")
            .await
            .status()
            .is_success(),
        "the problem type explains itself"
    );
}

#[tokio::test]
async fn a_client_stuck_in_its_headers_is_closed_on_its_first_request_and_on_a_later_one() {
    let app = spawn_app_with(|config| config.request_timeout = 2).await;
    let mut first = connect_from(&app, [127, 0, 0, 1]).await;
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: al")
        .await
        .unwrap();
    assert!(read_until_closed(&mut first).await.is_some());

    // actix times only the first head of a connection; the second is timed here too.
    let mut later = connect_from(&app, [127, 0, 0, 1]).await;
    later
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: allot\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    later.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    later
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    assert!(read_until_closed(&mut later).await.is_some());
}

#[tokio::test]
async fn a_body_that_arrives_in_pieces_within_the_deadline_is_served() {
    let app = spawn_app_with(|config| config.request_timeout = 5).await;
    let body = br#"{"username": "admin", "password": "wrong password!"}"#;
    let mut stream = connect_from(&app, [127, 0, 0, 1]).await;
    let head = format!(
        "POST /v1/auth/token HTTP/1.1\r\nHost: allot\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(&body[10..]).await.unwrap();
    let answer = read_until_closed(&mut stream).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // And an ordinary client on a kept-alive connection notices nothing.
    for _ in 0..3 {
        assert_eq!(app.get("/healthz").await.status(), 200);
    }
}

#[tokio::test]
async fn connections_over_the_bound_from_one_address_are_closed_while_another_is_served() {
    let app = spawn_app_with(|config| config.max_connections_per_peer = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(&app, [127, 0, 0, 1]).await);
    }
    // Served: the three connections are really open.
    held[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: allot\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    held[0].read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    let mut over = connect_from(&app, [127, 0, 0, 1]).await;
    let answer = read_until_closed(&mut over).await;
    assert_eq!(
        answer.as_deref(),
        Some(""),
        "closed at once, without an answer"
    );

    let answer = healthz_from(&app, [127, 0, 0, 2]).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A connection given up gives its place back.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let answer = healthz_from(&app, [127, 0, 0, 1]).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
