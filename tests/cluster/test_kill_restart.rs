//! kill -9 one node of three: the other two see it down within 3 s and keep answering; started
//! again with the same config on the same port, it is back and all three are up within 3 s.

use std::time::{Duration, Instant};

use crate::util::{wait_until, Cluster};

const WITHIN: Duration = Duration::from_secs(3);

#[test]
fn a_killed_node_is_seen_down_and_rejoins_after_a_restart() {
    let mut cluster = Cluster::start("kill-restart", 3);
    let addr = cluster.node("n3").addr();

    cluster.node("n3").kill();
    let killed = Instant::now();
    let mut last = String::new();
    let seen_down = wait_until(WITHIN, || {
        let mut all = true;
        last.clear();
        for id in ["n1", "n2"] {
            let node = cluster.node(id);
            let status = node.status();
            let n3 = node.peer_state("n3");
            all &= n3.as_deref() == Some("down")
                && status["peers_up"] == 1
                && status["peers_down"] == 1;
            last.push_str(&format!("{id}: n3 {n3:?}, {status}\n"));
        }
        all
    });
    assert!(
        seen_down,
        "n3 not seen down by both within {WITHIN:?} of kill -9:\n{last}"
    );
    eprintln!("n3 seen down after {:?}", killed.elapsed());

    // Both survivors still answer, on the console and through ctl; a down node stays a member.
    for id in ["n1", "n2"] {
        let status = cluster.node(id).status();
        assert_eq!(status["members"], 3, "{id}: {status}");
        let ran = cluster.node(id).ctl(&["status"]);
        assert_eq!(ran.code, Some(0), "{id}: {ran}");
        assert_eq!(ran.json()["peers_up"], 1, "{id}: {ran}");
    }

    cluster.node("n3").restart();
    assert_eq!(cluster.node("n3").addr(), addr);
    let took = cluster.wait_formed(WITHIN);
    eprintln!("all up again {took:?} after the restart");
}
