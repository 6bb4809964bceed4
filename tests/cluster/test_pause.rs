//! A frozen node (SIGSTOP: its sockets stay open, it just goes silent) is found out by the
//! membership protocol alone: suspect, then down; once it thaws (SIGCONT), all three are up again.

use std::time::{Duration, Instant};

use crate::util::{wait_until, Cluster};

#[test]
fn a_silent_node_turns_suspect_then_down_and_recovers() {
    let mut cluster = Cluster::start("pause", 3);

    cluster.node("n3").pause();
    let paused = Instant::now();
    // Suspect within a probe round or two, down 1.5 s later (the suspicion timeout): about 3 s after the
    // pause; allow some slack for a busy machine.
    let mut seen: Vec<String> = Vec::new();
    let mut last = String::new();
    let down = wait_until(Duration::from_secs(6), || {
        let mut all_down = true;
        last.clear();
        for id in ["n1", "n2"] {
            let node = cluster.node(id);
            let status = node.status();
            let state = node.peer_state("n3").unwrap_or_default();
            if id == "n1" && seen.last() != Some(&state) {
                seen.push(state.clone());
            }
            all_down &= state == "down" && status["peers_down"] == 1;
            last.push_str(&format!("{id}: n3 {state}, {status}\n"));
        }
        all_down
    });
    assert!(down, "n3 not seen down after 6 s of silence:\n{last}");
    eprintln!("n1 saw n3 go {seen:?}; down after {:?}", paused.elapsed());
    assert_eq!(
        seen,
        ["up", "suspect", "down"],
        "n1 should see n3 up, then suspect, then down"
    );

    cluster.node("n3").resume();
    let took = cluster.wait_formed(Duration::from_secs(6));
    eprintln!("all up again {took:?} after SIGCONT");
}
