//! Slow-loris and connection floods against the real binary: slow header senders are cut off
//! after the header deadline, connections beyond the cap wait instead of costing memory, and
//! the broker keeps answering throughout.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn broker_with(dir: &std::path::Path, http: &str) -> Broker {
    let config = dir.join("haltwire.toml");
    std::fs::write(&config, format!("[http]\n{http}\n")).unwrap();
    BrokerBuilder::new(&dir.join("data")).config(&config).start()
}

fn addr(broker: &Broker) -> String {
    broker.url.trim_start_matches("http://").to_string()
}

/// Opens a connection and sends the start of a request whose headers never finish.
fn slow_client(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"POST /v1/ingest/generic HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    stream
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// True once the server has closed its side: a read returns end of stream or an error.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => closed_by_server(stream),
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[test]
fn slow_header_senders_are_cut_off_and_the_broker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with(dir.path(), "max_connections = 16\nheader_read_timeout_secs = 1");
    let addr = addr(&broker);
    let mut slow: Vec<TcpStream> = (0..16).map(|_| slow_client(&addr)).collect();
    std::thread::sleep(Duration::from_millis(200));

    // Every slot is taken: a new client is told so at once, as problem+json with Retry-After.
    let refused = broker.get("/healthz", None);
    refused.assert_problem(503, "urn:haltwire:problem:overloaded");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));

    // The header deadline frees the slots, and service resumes.
    std::thread::sleep(Duration::from_millis(1800));
    let cut = slow.iter_mut().map(closed_by_server).filter(|closed| *closed).count();
    assert_eq!(cut, 16, "slow connections still open after the header deadline");
    assert_eq!(broker.get("/healthz", None).status, 200);
}

#[test]
fn a_connection_flood_is_refused_fast_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with(dir.path(), "max_connections = 64\nheader_read_timeout_secs = 30");
    let addr = addr(&broker);
    let pid = broker.child.id();
    let before = rss_kib(pid);
    let mut flood: Vec<TcpStream> = (0..600).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(1000));
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB for 600 idle connections");
    let refused = flood
        .iter_mut()
        .map(|s| {
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let mut head = [0u8; 12];
            s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 503")
        })
        .filter(|was_refused| *was_refused)
        .count();
    // Exactly the cap is served (their idle slots last the 30 s header deadline); every other
    // connection was told 503 at once.
    assert_eq!(refused, 600 - 64);
    drop(flood);
    std::thread::sleep(Duration::from_millis(300));
    let metrics = broker.get("/metrics", None).body;
    assert!(metrics.contains("haltwire_http_connections_refused_total 536"), "{metrics}");
    assert_eq!(broker.get("/healthz", None).status, 200);
}
