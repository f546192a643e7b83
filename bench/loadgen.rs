//! A load generator for the Postfix listeners, the way Postfix loads them: many connections, one
//! request in flight on each, the next sent as soon as the answer is in. Event-driven (tokio on
//! epoll, like wrk), so one thread holds many connections and the generator stays light next to
//! the server it measures.
//!
//!   cargo build --release --example loadgen
//!   loadgen policy    127.0.0.1:10040 jane@example.com [CONNECTIONS] [SECONDS] [THREADS]
//!   loadgen socketmap 127.0.0.1:10041 jane@example.com [CONNECTIONS] [SECONDS] [THREADS]
//!
//! A policy request asks about a recipient at the RCPT stage, as an MX's `check_policy_service`
//! does; a socketmap request is the `mailbox` lookup of `relay_recipient_maps`. It prints the
//! requests per second and the latency distribution in wrk's words, and counts answers that are
//! not an acceptance (so a misconfigured run is not mistaken for a fast one).

use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Copy)]
enum Protocol {
    Policy,
    Socketmap,
}

impl Protocol {
    fn request(self, address: &str) -> Vec<u8> {
        match self {
            Self::Policy => format!(
                "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
                 client_address=192.0.2.10\nclient_name=mail.example.net\n\
                 helo_name=mail.example.net\nsender=someone@example.net\nrecipient={address}\n\
                 recipient_count=0\nqueue_id=\nsize=0\ninstance=1.2.3\n\n"
            )
            .into_bytes(),
            Self::Socketmap => {
                let payload = format!("mailbox {address}");
                format!("{}:{payload},", payload.len()).into_bytes()
            }
        }
    }

    /// The length of the first complete answer in `buffer`, if one is there.
    fn answer_len(self, buffer: &[u8]) -> Option<usize> {
        match self {
            Self::Policy => buffer
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|at| at + 2),
            Self::Socketmap => {
                let colon = buffer.iter().position(|&b| b == b':')?;
                let len: usize = std::str::from_utf8(&buffer[..colon]).ok()?.parse().ok()?;
                let end = colon + 1 + len + 1;
                (buffer.len() >= end).then_some(end)
            }
        }
    }

    fn accepted(self, answer: &[u8]) -> bool {
        match self {
            Self::Policy => answer.starts_with(b"action=DUNNO") || answer.starts_with(b"action=OK"),
            Self::Socketmap => answer
                .iter()
                .position(|&b| b == b':')
                .is_some_and(|colon| answer[colon + 1..].starts_with(b"OK")),
        }
    }
}

/// What one connection saw: each answer's latency in microseconds, and the answers that were not
/// an acceptance.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    refused: u64,
}

async fn connection(
    protocol: Protocol,
    addr: std::net::SocketAddr,
    request: Vec<u8>,
    until: Instant,
) -> io::Result<Tally> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut tally = Tally::default();
    let mut buffer = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while Instant::now() < until {
        let sent = Instant::now();
        stream.write_all(&request).await?;
        let len = loop {
            if let Some(len) = protocol.answer_len(&buffer) {
                break len;
            }
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
            buffer.extend_from_slice(&chunk[..read]);
        };
        let micros = sent.elapsed().as_micros();
        tally
            .latencies
            .push(u32::try_from(micros).unwrap_or(u32::MAX));
        if !protocol.accepted(&buffer[..len]) {
            tally.refused += 1;
        }
        buffer.drain(..len);
    }
    Ok(tally)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen policy|socketmap HOST:PORT ADDRESS [CONNECTIONS=64] [SECONDS=10] [THREADS=2]"
    );
    std::process::exit(2)
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        usage();
    }
    let protocol = match args[1].as_str() {
        "policy" => Protocol::Policy,
        "socketmap" => Protocol::Socketmap,
        _ => usage(),
    };
    let addr: std::net::SocketAddr = args[2].parse().unwrap_or_else(|_| usage());
    let number = |at: usize, default: u64| {
        args.get(at)
            .map_or(Some(default), |v| v.parse().ok())
            .unwrap_or_else(|| usage())
    };
    let (connections, seconds, threads) = (number(4, 64), number(5, 10), number(6, 2));
    let request = protocol.request(&args[3]);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads as usize)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tallies = runtime.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(connection(protocol, addr, request.clone(), until)))
            .collect();
        let mut tallies = Vec::new();
        for task in tasks {
            tallies.push(task.await.map_err(io::Error::other)?);
        }
        Ok::<_, io::Error>(tallies)
    })?;
    let elapsed = started.elapsed().as_secs_f64();

    let mut latencies = Vec::new();
    let (mut refused, mut failed) = (0, 0);
    for tally in tallies {
        match tally {
            Ok(tally) => {
                latencies.extend(tally.latencies);
                refused += tally.refused;
            }
            Err(err) => {
                failed += 1;
                eprintln!("a connection failed: {err}");
            }
        }
    }
    latencies.sort_unstable();
    println!(
        "{} {addr}: {connections} connections, {threads} threads, {seconds} s",
        args[1]
    );
    println!("  Latency Distribution");
    for p in [50.0, 75.0, 90.0, 99.0] {
        println!("     {p:.0}%  {:.2}ms", percentile(&latencies, p));
    }
    println!("     max  {:.2}ms", percentile(&latencies, 100.0));
    println!(
        "  {} requests in {elapsed:.2}s, {refused} not accepted, {failed} connections failed",
        latencies.len()
    );
    println!("Requests/sec: {:.2}", latencies.len() as f64 / elapsed);
    Ok(())
}
