//! A real DNS server on loopback for the tests: it answers TXT and A questions from a table the
//! test fills, and says "no such name" (NXDOMAIN) for anything else. Just enough of RFC 1035 to be a
//! faithful peer for allot's resolver over UDP.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

#[derive(Clone, Default)]
pub struct DnsServer {
    records: Arc<Mutex<HashMap<String, Vec<Record>>>>,
    pub addr: Option<SocketAddr>,
}

impl DnsServer {
    /// Binds a UDP port on loopback and answers until the test's runtime ends.
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("a UDP port");
        let server = Self {
            records: Default::default(),
            addr: Some(socket.local_addr().unwrap()),
        };
        let records = server.records.clone();
        tokio::spawn(async move {
            let mut buffer = [0u8; 1500];
            while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
                let reply = answer(&buffer[..len], &records.lock().unwrap());
                if let Some(reply) = reply {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        server
    }

    /// Publishes a TXT record (names without the trailing dot, lowercase).
    pub fn publish_txt(&self, name: &str, text: &str) {
        self.records
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .push(Record::Txt(text.to_owned()));
    }

    /// Publishes the proof that `domain` (a registered domain as allot shows it) belongs to its
    /// customer: its verification token as TXT at `_allot.{name}`.
    pub fn publish_proof(&self, name: &str, domain: &serde_json::Value) {
        let token = domain["verification"]["token"].as_str().unwrap();
        self.publish_txt(&format!("_allot.{name}"), token);
    }

    /// Publishes an A record (names without the trailing dot, lowercase).
    pub fn publish_a(&self, name: &str, address: Ipv4Addr) {
        self.records
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .push(Record::A(address));
    }
}

#[derive(Clone)]
enum Record {
    Txt(String),
    A(Ipv4Addr),
}

impl Record {
    fn rtype(&self) -> u16 {
        match self {
            Self::Txt(_) => 16,
            Self::A(_) => 1,
        }
    }

    fn rdata(&self) -> Vec<u8> {
        match self {
            Self::Txt(text) => {
                let mut data = vec![text.len() as u8];
                data.extend_from_slice(text.as_bytes());
                data
            }
            Self::A(address) => address.octets().to_vec(),
        }
    }
}

/// The response to one query: the question echoed, and the answers of its type or NXDOMAIN.
fn answer(query: &[u8], records: &HashMap<String, Vec<Record>>) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: a name of length-prefixed labels, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_lowercase());
        at += len;
    }
    let question_end = at + 4;
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let name = labels.join(".");
    let found: Vec<&Record> = records
        .get(&name)
        .into_iter()
        .flatten()
        .filter(|r| r.rtype() == qtype)
        .collect();
    let mut response = Vec::new();
    response.extend_from_slice(&query[0..2]); // id
    let rcode = if records.contains_key(&name) { 0 } else { 3 };
    response.extend_from_slice(&[0x81, 0x80 | rcode]); // response, recursion desired and available
    response.extend_from_slice(&[0, 1]); // one question
    let answers = found.len() as u16;
    response.extend_from_slice(&answers.to_be_bytes());
    response.extend_from_slice(&[0, 0, 0, 0]); // no authority, no additional records
    response.extend_from_slice(query.get(12..question_end)?);
    for record in found {
        response.extend_from_slice(&[0xc0, 12]); // the name: a pointer to the question's
        response.extend_from_slice(&record.rtype().to_be_bytes());
        response.extend_from_slice(&[0, 1]); // IN
        response.extend_from_slice(&0u32.to_be_bytes()); // TTL 0
        let data = record.rdata();
        response.extend_from_slice(&(data.len() as u16).to_be_bytes());
        response.extend_from_slice(&data);
    }
    Some(response)
}
