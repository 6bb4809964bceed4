//! `ensemble-node certs` and the TLS settings, through the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ensemble_cluster::net::{CertRole, Tls, TlsFiles};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_ensemble-node");

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let path =
            std::env::temp_dir().join(format!("ensemble-certs-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn certs(dir: &Path, args: &[&str]) -> (Output, serde_json::Value) {
    let out = Command::new(BIN)
        .arg("certs")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run certs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (out, json)
}

fn written(json: &serde_json::Value) -> Vec<String> {
    json["written"]
        .as_array()
        .expect("written")
        .iter()
        .map(|v| {
            v.as_str()
                .expect("path")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fn files(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    }
}

#[test]
fn certs_creates_the_ca_once_and_certificates_that_work_together() {
    let dir = Dir::new("cli");
    let (out, json) = certs(
        &dir.0,
        &[
            "--node",
            "n1",
            "--node",
            "n2",
            "--operator",
            "ops",
            "--reader",
            "viewer",
        ],
    );
    assert!(out.status.success(), "{json}");
    assert_eq!(json["ok"], true);
    assert_eq!(json["dir"], dir.0.display().to_string());
    let names = written(&json);
    for f in [
        "ca.pem",
        "ca.key",
        "n1.pem",
        "n1.key",
        "n2.pem",
        "ops.key",
        "viewer.pem",
    ] {
        assert!(names.contains(&f.to_string()), "{f} in {names:?}");
    }
    for key in ["ca.key", "n1.key", "ops.key", "viewer.key"] {
        let mode = std::fs::metadata(dir.0.join(key))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let roles = [
        ("n1", CertRole::Member),
        ("ops", CertRole::Operator),
        ("viewer", CertRole::Reader),
    ];
    for (name, role) in roles {
        let tls = Tls::load(&files(&dir.0, name)).expect("load");
        assert_eq!(tls.identity().name, name);
        assert_eq!(tls.identity().role, role);
    }

    // A second run reuses the CA: ca.pem is untouched and a new node joins the same cluster.
    let ca_before = std::fs::read(dir.0.join("ca.pem")).expect("ca");
    let (out, json) = certs(&dir.0, &["--node", "n3"]);
    assert!(out.status.success(), "{json}");
    assert_eq!(written(&json), vec!["n3.pem", "n3.key"]);
    assert_eq!(std::fs::read(dir.0.join("ca.pem")).expect("ca"), ca_before);

    let n1 = Tls::load(&files(&dir.0, "n1")).expect("n1");
    let n3 = Tls::load(&files(&dir.0, "n3")).expect("n3");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            n1.accept(tcp).await.map(|(_, id)| id)
        });
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (_stream, peer) = n3.connect(tcp, Some("n1")).await.expect("n3 reaches n1");
        assert_eq!(peer.name, "n1");
        let seen = server.await.expect("task").expect("n1 accepts n3");
        assert_eq!(seen.name, "n3");
    });
}

#[test]
fn certs_refuses_bad_names_and_a_half_ca() {
    let dir = Dir::new("bad");
    for bad in ["a b", "../x", "ca", ""] {
        let (out, json) = certs(&dir.0, &["--node", bad]);
        assert!(!out.status.success(), "{bad:?}");
        assert_eq!(json["ok"], false);
        assert!(
            json["error"].as_str().expect("error").contains("bad name"),
            "{json}"
        );
    }
    let (_, json) = certs(&dir.0, &["--node", "x", "--reader", "x"]);
    assert!(
        json["error"].as_str().expect("error").contains("twice"),
        "{json}"
    );

    std::fs::write(dir.0.join("ca.pem"), "left over").expect("write");
    let (out, json) = certs(&dir.0, &["--node", "n1"]);
    assert!(!out.status.success());
    assert!(
        json["error"].as_str().expect("error").contains("ca.key"),
        "{json}"
    );
}

#[test]
fn tls_settings_come_from_the_environment_too() {
    let dir = Dir::new("env");
    let (out, _) = certs(&dir.0, &["--node", "n1"]);
    assert!(out.status.success());
    let config = dir.0.join("n1.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nid = \"n1\"\nlisten = \"127.0.0.1:0\"\nstate_dir = {:?}\n",
            dir.0.join("state").display().to_string()
        ),
    )
    .expect("config");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .env("ENSEMBLE__TLS__CA", dir.0.join("ca.pem"))
        .env("ENSEMBLE__TLS__CERT", dir.0.join("n1.pem"))
        .env("ENSEMBLE__TLS__KEY", dir.0.join("missing.key"))
        .output()
        .expect("run node");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tls.key") && stderr.contains("missing.key"),
        "{stderr}"
    );

    // A client given only part of its TLS files is told what is missing.
    let out = Command::new(BIN)
        .args(["ctl", "--ca"])
        .arg(dir.0.join("ca.pem"))
        .args(["127.0.0.1:9", "status"])
        .env_remove("ENSEMBLE__TLS__CERT")
        .env_remove("ENSEMBLE__TLS__KEY")
        .output()
        .expect("run ctl");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("--cert"), "{stdout}");
}
