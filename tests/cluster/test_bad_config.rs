//! A bad config stops the node before it starts: exit code 2 and one message on stderr that
//! names the file and the key to fix.

use std::time::Duration;

use crate::util::{run, NodeSpec, Ran, TestDir};

fn start_with(dir: &TestDir, file: &str, env: &[(&str, &str)]) -> Ran {
    let path = dir.path().join(file).to_string_lossy().into_owned();
    run(
        &["--config", &path, "--json"],
        env,
        "status\n",
        dir.path(),
        Duration::from_secs(10),
    )
}

fn assert_refused(ran: &Ran, file: &str, key: &str, case: &str) {
    assert_eq!(ran.code, Some(2), "{case}: {ran}");
    assert!(
        ran.stdout.is_empty(),
        "{case}: nothing belongs on stdout: {ran}"
    );
    assert!(
        ran.stderr.contains(file) && ran.stderr.contains(key),
        "{case}: stderr should name {file:?} and {key:?}: {ran}"
    );
}

#[test]
fn a_bad_config_exits_2_naming_the_key() {
    let dir = TestDir::new("bad-config");
    let good = NodeSpec::new("n1").to_toml(dir.path());
    let good_with_data =
        format!("{good}\n[data]\nshard = \"shards/house_prices/A.csv\"\nlabel = \"SalePrice\"\n");
    // (case, file contents, key that must be named)
    let cases = [
        (
            "unknown key",
            good.replace("[cluster]\n", "[cluster]\nheartbeat = 3\n"),
            "heartbeat",
        ),
        (
            "zero heartbeat",
            good.replace("[cluster]\n", "[cluster]\nheartbeat_ms = 0\n"),
            "cluster.heartbeat_ms",
        ),
        (
            "listen is not an address",
            good.replace("127.0.0.1:0", "nowhere"),
            "listen",
        ),
        (
            "a seed is not an address",
            good.replace("seeds = []", "seeds = [\"not an address\"]"),
            "node.seeds",
        ),
        ("missing id", good.replace("id = \"n1\"\n", ""), "node.id"),
        (
            "unknown task",
            good_with_data.clone() + "task = \"clustering\"\n",
            "data.task",
        ),
        (
            "drift share out of range",
            good.clone() + "\n[drift]\nshare = 1.5\n",
            "drift.share",
        ),
        (
            "unknown model kind",
            good.clone() + "\n[model]\nkind = \"svm\"\n",
            "kind",
        ),
    ];
    for (i, (case, contents, key)) in cases.into_iter().enumerate() {
        assert!(contents != good, "{case}: the edit did not apply");
        let file = format!("bad{i}.toml");
        dir.write(&file, &contents);
        assert_refused(&start_with(&dir, &file, &[]), &file, key, case);
    }

    // An environment override is checked like the file.
    dir.write("good.toml", &good);
    let ran = start_with(&dir, "good.toml", &[("ENSEMBLE__NODE__LISTEN", "garbage")]);
    assert_refused(
        &ran,
        "good.toml",
        "node.listen",
        "bad ENSEMBLE__NODE__LISTEN",
    );

    // Unreadable TOML and a missing file name the file.
    dir.write("syntax.toml", "[node\nid = ");
    let ran = start_with(&dir, "syntax.toml", &[]);
    assert_refused(&ran, "syntax.toml", "line 1", "TOML syntax error");
    let ran = start_with(&dir, "missing.toml", &[]);
    assert_refused(&ran, "missing.toml", "no such file", "missing file");
}
