//! AIA completion against a loopback HTTP server: fetched issuers, hops, and every refusal.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use super::*;
use crate::ek_chain::tests::{ca, ek};
use crate::ek_chain::to_pem;

/// A loopback HTTP/1.1 server answering each path with a canned response; records the paths.
struct Server {
    base: String,
    seen: Arc<Mutex<Vec<String>>>,
}

fn serve(routes: Vec<(&'static str, Vec<u8>)>) -> Server {
    serve_on(listener(), routes)
}

/// A loopback listener, bound first so certificates can name its URL before it serves.
fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

fn base(listener: &TcpListener) -> String {
    format!("http://{}", listener.local_addr().unwrap())
}

fn serve_on(listener: TcpListener, routes: Vec<(&'static str, Vec<u8>)>) -> Server {
    let base = base(&listener);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
            log.lock().unwrap().push(path.clone());
            match routes.iter().find(|(p, _)| *p == path) {
                Some((_, response)) if response.is_empty() => std::thread::sleep(Duration::from_secs(8)),
                Some((_, response)) => {
                    let _ = stream.write_all(response);
                }
                None => {
                    let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
                }
            }
        }
    });
    Server { base, seen }
}

fn ok(body: &[u8]) -> Vec<u8> {
    [format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes(), body]
        .concat()
}

#[tokio::test]
async fn missing_issuers_are_fetched_by_aia_up_to_a_self_signed_root() {
    let (l1, l2) = (listener(), listener());
    let (root, root_issuer) = ca("AIA Root", None, None);
    let (int, int_issuer) = ca("AIA Intermediate", Some(&root_issuer), Some(&format!("{}/root.pem", base(&l2))));
    let ek = ek(&int, &int_issuer, Some(&format!("{}/int.der", base(&l1))));
    let server = serve_on(l1, vec![("/int.der", ok(&int))]);
    let server_root = serve_on(l2, vec![("/root.pem", ok(to_pem(&root).as_bytes()))]);

    let mut candidates = Vec::new();
    complete(&ek, &mut candidates, false).await;
    assert!(candidates.is_empty(), "nothing is fetched with AIA off");
    assert!(server.seen.lock().unwrap().is_empty());

    complete(&ek, &mut candidates, true).await;
    let fetched: Vec<&[u8]> = candidates.iter().map(|c| c.der.as_slice()).collect();
    assert_eq!(fetched, vec![int.as_slice(), root.as_slice()]);
    assert_eq!(*server.seen.lock().unwrap(), vec!["/int.der".to_string()]);
    assert_eq!(*server_root.seen.lock().unwrap(), vec!["/root.pem".to_string()]);
    assert!(candidates[0].source.starts_with("AIA http://127.0.0.1:"));
}

#[tokio::test]
async fn at_most_three_issuers_are_fetched_and_a_wrong_certificate_is_ignored() {
    // root <- ca1 <- ca2 <- ca3 <- ca4 <- EK, each pointing at its issuer on one server.
    let l = listener();
    let url = base(&l);
    let (_, mut issuer) = ca("Hop Root", None, None);
    let mut ders = Vec::new();
    for i in 1..=4 {
        let aia = if i == 1 { format!("{url}/root") } else { format!("{url}/ca{}", i - 1) };
        let (d, next) = ca(&format!("Hop CA {i}"), Some(&issuer), Some(&aia));
        ders.push(d);
        issuer = next;
    }
    let ek = ek(&ders[3], &issuer, Some(&format!("{url}/ca4")));
    let (stranger, _) = ca("Stranger", None, None);
    let wrong = ek_with_aia_to(&stranger, &format!("{url}/stranger"));
    let server = serve_on(
        l,
        vec![
            ("/ca1", ok(&ders[0])),
            ("/ca2", ok(&ders[1])),
            ("/ca3", ok(&ders[2])),
            ("/ca4", ok(&ders[3])),
            ("/stranger", ok(&stranger)),
        ],
    );
    let mut candidates = Vec::new();
    complete(&ek, &mut candidates, true).await;
    assert_eq!(candidates.len(), MAX_HOPS);
    assert_eq!(*server.seen.lock().unwrap(), vec!["/ca4", "/ca3", "/ca2"]);

    let mut candidates = Vec::new();
    complete(&wrong, &mut candidates, true).await;
    assert!(candidates.is_empty(), "a certificate that did not issue the EK is not taken");
}

/// An EK certificate issued by an unnamed CA, whose AIA points at `url`.
fn ek_with_aia_to(_unrelated: &[u8], url: &str) -> Vec<u8> {
    let (der, issuer) = ca("Real Issuer", None, None);
    ek(&der, &issuer, Some(url))
}

#[tokio::test]
async fn oversized_redirected_slow_pkcs7_and_foreign_answers_are_refused() {
    let (root, _) = ca("Refusal Root", None, None);
    let mut pkcs7 = b"\x30\x82\x01\x00\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02".to_vec();
    pkcs7.extend([0u8; 64]);
    let server = serve(vec![
        ("/big", ok(&vec![0x30; MAX_RESPONSE_BYTES + 1])),
        ("/announced", b"HTTP/1.1 200 OK\r\ncontent-length: 999999\r\n\r\n".to_vec()),
        ("/moved", b"HTTP/1.1 302 Found\r\nlocation: /root\r\ncontent-length: 0\r\n\r\n".to_vec()),
        ("/slow", Vec::new()),
        ("/p7c", ok(&pkcs7)),
        ("/garbage", ok(b"hello")),
        ("/root", ok(&root)),
    ]);
    let url = |p: &str| format!("{}{p}", server.base);
    let err = |r: Result<Vec<Vec<u8>>, String>| r.unwrap_err();
    assert!(err(fetch_certificates(&url("/big")).await).contains("larger than 65536"));
    assert!(err(fetch_certificates(&url("/announced")).await).contains("larger than 65536"));
    assert!(err(fetch_certificates(&url("/moved")).await).contains("redirects are not followed"));
    assert!(err(fetch_certificates(&url("/p7c")).await).contains("PKCS#7"));
    assert!(err(fetch_certificates(&url("/garbage")).await).contains("neither a DER nor a PEM"));
    assert!(err(fetch_certificates(&url("/nowhere")).await).contains("HTTP 404"));
    assert!(err(fetch_certificates("ftp://127.0.0.1/x").await).contains("only http:// and https://"));
    let started = std::time::Instant::now();
    assert!(err(fetch_certificates(&url("/slow")).await).contains("no complete answer within 5 s"));
    assert!(started.elapsed() < Duration::from_secs(7));
    assert_eq!(fetch_certificates(&url("/root")).await.unwrap(), vec![root]);
}
