//! Outsiders are refused and change nothing: a node of another cluster, a node with a wrong
//! secret and one without the secret never become members, and `ctl` with a wrong or missing
//! secret (or another cluster's name) gets a clear error and exit code 1.

use std::path::Path;
use std::time::Duration;

use crate::util::{self, ctl, run, Cluster, Node, NodeSpec, TestDir, CLUSTER, SECRET};

/// The refused nodes log their seed's refusal at debug level only; turn it on to check it.
const DEBUG: &str = "ensemble_cluster=debug,info";

#[test]
fn nodes_of_another_cluster_or_with_a_wrong_secret_are_refused() {
    let mut cluster = Cluster::start("refusal", 3);
    let seed = cluster.node("n1").addr();
    let outsiders = [
        (
            "x-other",
            NodeSpec::new("x-other").cluster("other-cluster"),
            "other-cluster",
        ),
        (
            "x-wrong",
            NodeSpec::new("x-wrong").secret(Some("wrong")),
            "secret",
        ),
        ("x-none", NodeSpec::new("x-none").secret(None), "secret"),
    ];
    let mut intruders: Vec<(Node, &str)> = outsiders
        .into_iter()
        .map(|(_, spec, reason)| {
            let spec = spec.seeds(&[seed]).env("RUST_LOG", DEBUG);
            (Node::start(&cluster.dir, spec), reason)
        })
        .collect();

    // Each outsider keeps trying its seed; wait until each was refused twice, for the reason
    // that applies to it.
    for (node, reason) in &intruders {
        let refused_twice = util::wait_until(Duration::from_secs(8), || {
            let log = node.log();
            log.lines()
                .filter(|l| l.contains("refused") && l.contains(reason))
                .count()
                >= 2
        });
        if !refused_twice {
            node.fail(&format!("not refused twice for {reason:?}"));
        }
    }
    // The seed says why it refused the other cluster and the node without a secret.
    let log = cluster.node("n1").log();
    assert!(
        log.contains("other-cluster"),
        "n1 did not log the refusal:\n{log}"
    );
    assert!(
        log.contains("cluster secret"),
        "n1 did not log the refusal:\n{log}"
    );

    for (node, _) in intruders.iter_mut() {
        let status = node.status();
        assert_eq!(status["members"], 1, "{}: {status}", node.id);
        assert_eq!(status["peers_up"], 0, "{}: {status}", node.id);
        assert_eq!(node.peer_states(), vec![], "{} knows peers", node.id);
    }
    // The cluster is as it was: three members, all up, no outsider listed.
    let (formed, views) = cluster.formed();
    assert!(formed, "the cluster changed:\n{views}");
    assert!(!views.contains("x-"), "an outsider is listed:\n{views}");
}

#[test]
fn ctl_with_a_wrong_secret_gets_a_clear_error() {
    let dir = TestDir::new("ctl-secret");
    let mut node = Node::start(&dir, NodeSpec::new("n1"));
    let addr = node.addr();

    let refusals = [
        (vec!["--cluster", CLUSTER, "--secret", "wrong"], "secret"),
        (vec!["--cluster", CLUSTER], "secret"),
        (
            vec!["--cluster", "other-cluster", "--secret", SECRET],
            "cluster",
        ),
    ];
    for (options, reason) in refusals {
        let ran = ctl(addr, &options, &["status"]);
        assert_eq!(ran.code, Some(1), "ctl {options:?}: {ran}");
        let answer = ran.json();
        assert_eq!(answer["ok"], false, "ctl {options:?}: {ran}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("refused") && error.contains(reason),
            "ctl {options:?}: the error should say it was refused and mention {reason:?}: {ran}"
        );
    }

    // The right secret works, from --secret, the environment, or the node's config file.
    let ran = node.ctl(&["status"]);
    assert_eq!(ran.code, Some(0), "{ran}");
    assert_eq!(ran.json()["node"], "n1", "{ran}");
    let addr = addr.to_string();
    let from_env = run(
        &["ctl", &addr, "--cluster", CLUSTER, "status"],
        &[("ENSEMBLE__CLUSTER__SECRET", SECRET)],
        "",
        dir.path(),
        util::COMMAND_TIMEOUT,
    );
    assert_eq!(
        from_env.code,
        Some(0),
        "secret from the environment: {from_env}"
    );
    let config = node.config_path().to_string_lossy().into_owned();
    let from_config = run(
        &["ctl", &addr, "--config", &config, "status"],
        &[],
        "",
        Path::new("/"),
        util::COMMAND_TIMEOUT,
    );
    assert_eq!(
        from_config.code,
        Some(0),
        "secret from --config: {from_config}"
    );

    // The node is unharmed and still alone.
    let status = node.status();
    assert_eq!(status["members"], 1, "{status}");
}
