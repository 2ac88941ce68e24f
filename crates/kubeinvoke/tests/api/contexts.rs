//! Hostile `context` zips: every one is refused at submission with a 400 naming `context` and the
//! offending entry, and nothing is written anywhere.

use std::io::Write;

use serde_json::json;
use zip::write::SimpleFileOptions;

use crate::harness::*;

/// Overwrites a little-endian u32 at `offset` from every header with this signature.
fn patch_headers(zip: &mut [u8], signature: u32, offset: usize, value: u32) {
    let sig = signature.to_le_bytes();
    let positions: Vec<usize> = (0..zip.len().saturating_sub(4)).filter(|&i| zip[i..i + 4] == sig).collect();
    assert!(!positions.is_empty());
    for at in positions {
        zip[at + offset..at + offset + 4].copy_from_slice(&value.to_le_bytes());
    }
}
const LOCAL_HEADER: u32 = 0x04034b50;
const CENTRAL_HEADER: u32 = 0x02014b50;

async fn refused(s: &Server, context: String) -> String {
    let r =
        s.post(&format!("{}/runCommand", cluster_path("rg", "c1")), json!({"command": "ls", "context": context})).await;
    assert_eq!(r.status, 400, "accepted: {context:.200}");
    let message = r.assert_error(400, "InvalidParameter");
    assert_eq!(r.json()["error"]["target"], "context", "{}", r.text);
    message
}

#[tokio::test]
async fn hostile_archives_are_refused_naming_the_entry() {
    let s = Server::start(&["--max-context-entries", "10000"]).await;
    s.create_cluster("rg", "c1", json!({})).await;

    let slip = refused(&s, encodebytes(&zip_of(&[("../kubeinvoke-slip-marker", b"x")]))).await;
    assert!(slip.contains("kubeinvoke-slip-marker") && slip.contains("unsafe path"), "{slip}");
    let absolute = refused(&s, encodebytes(&zip_of(&[("/etc/kubeinvoke-abs-marker", b"x")]))).await;
    assert!(absolute.contains("kubeinvoke-abs-marker"), "{absolute}");

    let mut with_link = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    with_link.add_symlink("innocent", "/etc/passwd", SimpleFileOptions::default()).unwrap();
    let link = refused(&s, encodebytes(&with_link.finish().unwrap().into_inner())).await;
    assert!(link.contains("innocent") && link.contains("symbolic link"), "{link}");

    // Writers refuse duplicates, so rename the second entry in place.
    let mut twins = zip_of(&[("same.txt", b"one"), ("samE.txt", b"two")]);
    for at in (0..twins.len() - 8).filter(|&i| &twins[i..i + 8] == b"samE.txt").collect::<Vec<_>>() {
        twins[at..at + 8].copy_from_slice(b"same.txt");
    }
    let duplicate = refused(&s, encodebytes(&twins)).await;
    assert!(duplicate.contains("same.txt"), "{duplicate}");

    let mut device = zip_of(&[("fake-device", b"")]);
    patch_headers(&mut device, CENTRAL_HEADER, 38, 0o020644 << 16);
    let special = refused(&s, encodebytes(&device)).await;
    assert!(special.contains("fake-device") && special.contains("device"), "{special}");

    let mut lying = zip_of(&[("liar.txt", b"five!")]);
    patch_headers(&mut lying, LOCAL_HEADER, 22, 4);
    patch_headers(&mut lying, CENTRAL_HEADER, 24, 4);
    let mismatch = refused(&s, encodebytes(&lying)).await;
    assert!(mismatch.contains("liar.txt"), "{mismatch}");

    let whole = zip_of(&[("a.txt", b"some content that is long enough to cut")]);
    let truncated = refused(&s, encodebytes(&whole[..whole.len() / 2])).await;
    assert!(truncated.contains("not a zip archive"), "{truncated}");
    let garbage = refused(&s, "this is *not* base64 at all!".into()).await;
    assert!(garbage.contains("base64"), "{garbage}");

    let names: Vec<String> = (0..20_000).map(|i| format!("f{i}")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
    let many = refused(&s, encodebytes(&zip_of(&files))).await;
    assert!(many.contains("20000 entries") && many.contains("10000"), "{many}");

    let found = std::process::Command::new("find")
        .args(["/tmp", "/etc", "-maxdepth", "3", "-name", "kubeinvoke-*-marker"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&found.stdout).trim().is_empty(), "something was written");
}

#[tokio::test]
async fn a_zip_bomb_is_refused_before_anything_inflates() {
    let s = Server::start(&[]).await;
    s.create_cluster("rg", "c1", json!({})).await;
    let mut bomb = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).large_file(true);
    bomb.start_file("zeros.bin", options).unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        bomb.write_all(&block).unwrap();
    }
    let bytes = bomb.finish().unwrap().into_inner();
    assert!(bytes.len() < 4 << 20, "a real bomb: {} bytes for 1 GiB", bytes.len());
    let message = refused(&s, encodebytes(&bytes)).await;
    assert!(message.contains("zeros.bin"), "{message}");
    // A big but honest archive within the limits is accepted.
    let honest: Vec<u8> = (0..2_000_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let location = s
        .submit(
            "rg",
            "c1",
            json!({"command": "wc -c < data.bin", "context": encodebytes(&zip_of(&[("data.bin", &honest)]))}),
        )
        .await;
    assert_eq!(s.wait(&location).await["properties"]["logs"], "8000000\n");
}
