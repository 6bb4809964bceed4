//! Mutual TLS between nodes and clients on loopback: members form a cluster; an operator may do
//! anything, a reader only what changes nothing; a certificate from another CA, a plaintext
//! client, and a member certificate used under another id are all refused, and the node goes on.

use std::path::Path;
use std::time::Duration;

use crate::fixtures::{certs, tls_toml};
use crate::util::{ctl, wait_until, Cluster, NodeSpec, CLUSTER, SECRET};

fn client_flags(dir: &Path, name: &str) -> Vec<String> {
    let mut flags: Vec<String> = ["--cluster", CLUSTER, "--secret", SECRET]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (flag, file) in [
        ("--ca", "ca.pem".to_string()),
        ("--cert", format!("{name}.pem")),
        ("--key", format!("{name}.key")),
    ] {
        flags.push(flag.into());
        flags.push(dir.join(file).display().to_string());
    }
    flags
}

#[test]
fn tls_members_form_and_clients_act_within_their_role() {
    let dir = crate::util::TestDir::new("tls-roles");
    let tls = dir.path().join("tls");
    certs(
        &tls,
        &[
            "--node",
            "n1",
            "--node",
            "n2",
            "--operator",
            "op",
            "--reader",
            "viewer",
        ],
    );
    let other = dir.path().join("other-ca");
    certs(&other, &["--operator", "op"]);
    let tls_for_nodes = tls.clone();
    let mut cluster = Cluster::start_with("tls", 2, move |spec: NodeSpec| {
        let id = spec.id.clone();
        spec.toml(&tls_toml(&tls_for_nodes, &id))
    });
    let addr = cluster.node("n1").addr();
    let as_ = |flags: &[String], command: &[&str]| {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        ctl(addr, &flags, command)
    };

    // An operator runs anything; a reader looks, and is told which role it lacks.
    let op = client_flags(&tls, "op");
    let viewer = client_flags(&tls, "viewer");
    let s = as_(&op, &["status"]);
    assert_eq!(s.json()["peers_up"], 1, "{s}");
    let s = as_(&viewer, &["peers"]);
    assert_eq!(s.code, Some(0), "{s}");
    for command in [&["train"][..], &["quit"], &["train", "local"]] {
        let r = as_(&viewer, command);
        assert_eq!(r.code, Some(1), "{command:?}: {r}");
        let error = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(
            error.contains("needs the operator role"),
            "{command:?}: {r}"
        );
    }

    // Refused: another CA, plaintext, a member certificate as a client.
    let foreign = client_flags(&other, "op");
    let r = as_(&foreign, &["status"]);
    assert_eq!(r.code, Some(1), "{r}");
    let plain = ctl(
        addr,
        &["--cluster", CLUSTER, "--secret", SECRET],
        &["status"],
    );
    assert_eq!(plain.code, Some(1), "{plain}");
    assert!(plain.stdout.contains("the node speaks TLS"), "{plain}");
    let member_as_client = client_flags(&tls, "n2");
    let r = as_(&member_as_client, &["status"]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stdout.contains("member certificate"), "{r}");
    let n1 = cluster.node("n1");
    assert!(
        n1.wait_for_log("TLS:", Duration::from_secs(3)),
        "no TLS refusal logged"
    );

    // A node that uses n2's certificate under the id n3 is not let in as n3, nor as n2.
    let spec = cluster.member_spec("n3").toml(&tls_toml(&tls, "n2"));
    cluster.add(spec);
    assert!(
        cluster
            .node("n1")
            .wait_for_log("cannot speak for member \"n3\"", Duration::from_secs(10)),
        "n1 did not refuse n3's borrowed certificate"
    );
    let s = as_(&op, &["status"]);
    assert_eq!(s.json()["peers_up"], 1, "{s}");
    assert!(wait_until(Duration::from_secs(2), || as_(&op, &["peers"])
        .stdout
        .contains("\"n2\"")));
}
