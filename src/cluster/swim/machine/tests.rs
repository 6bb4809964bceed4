//! The rules of [`Swim`] on hand-made packets: what a node answers, how it merges news, when it
//! suspects, refutes and declares dead.

use std::time::Duration;

use bytes::Bytes;

use super::super::wire::{self, Incarnation, Packet, Rumor, Status};
use super::super::{Config, Event, Outgoing};
use super::Swim;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// Node `id` (its meta is its id) knowing `members` alive, run 1.
fn node(id: u32, members: &[u32]) -> Swim<u32, u32> {
    let members = members
        .iter()
        .map(|&m| (m, Incarnation::new(1), m))
        .collect();
    Swim::with_members(id, id, 1, Config::default(), 7, Duration::ZERO, members)
}

fn bytes(p: &Packet<u32, u32>) -> Bytes {
    wire::encode(p).expect("encode")
}

fn rumor(id: u32, count: u32, status: Status) -> Rumor<u32, u32> {
    Rumor {
        id,
        inc: Incarnation { run: 1, count },
        status,
        meta: (status == Status::Alive).then_some(id),
    }
}

fn gossip(to: &mut Swim<u32, u32>, from: u32, news: Rumor<u32, u32>, now: Duration) {
    let p = Packet::Gossip { rumors: vec![news] };
    to.receive(&from, &bytes(&p), now).expect("a packet");
}

fn sent(n: &mut Swim<u32, u32>) -> Vec<(u32, Packet<u32, u32>)> {
    n.outgoing()
        .map(|Outgoing { to, bytes }| (to, wire::decode(&bytes).expect("decodes")))
        .collect()
}

fn events(n: &mut Swim<u32, u32>) -> Vec<Event<u32, u32>> {
    n.events().collect()
}

#[test]
fn news_is_merged_by_incarnation() {
    let mut a = node(1, &[2, 3]);
    let t = MS(10);
    gossip(&mut a, 3, rumor(2, 0, Status::Suspect), t);
    assert_eq!(a.status(&2).map(|s| s.0), Some(Status::Suspect));
    assert_eq!(events(&mut a), [Event::Suspect(2)]);
    gossip(&mut a, 3, rumor(2, 0, Status::Alive), t);
    assert_eq!(
        a.status(&2).map(|s| s.0),
        Some(Status::Suspect),
        "same count"
    );
    gossip(&mut a, 3, rumor(2, 1, Status::Alive), t);
    assert_eq!(events(&mut a), [Event::Alive(2)], "refuted");
    gossip(&mut a, 3, rumor(2, 0, Status::Dead), t);
    assert_eq!(a.status(&2).map(|s| s.0), Some(Status::Alive), "older news");
    gossip(&mut a, 3, rumor(2, 1, Status::Dead), t);
    assert_eq!(events(&mut a), [Event::Down(2)]);
    gossip(&mut a, 3, rumor(2, 1, Status::Alive), t);
    assert_eq!(
        a.status(&2).map(|s| s.0),
        Some(Status::Dead),
        "dead wins a tie"
    );
    // A restart (a larger run) comes back whatever its count, but only the member itself says
    // so: another claiming a run nothing could refute is not believed.
    let restarted = Rumor {
        inc: Incarnation::new(2),
        ..rumor(2, 0, Status::Alive)
    };
    gossip(&mut a, 3, restarted.clone(), t);
    assert_eq!(a.status(&2).map(|s| s.0), Some(Status::Dead), "hearsay");
    gossip(&mut a, 2, restarted, t);
    assert_eq!(events(&mut a), [Event::Up { id: 2, meta: 2 }]);
    assert_eq!(a.live(), 2);
    // News of an unknown member introduces it only if it is alive.
    gossip(&mut a, 3, rumor(9, 0, Status::Suspect), t);
    assert_eq!(a.status(&9), None);
    gossip(&mut a, 3, rumor(9, 0, Status::Alive), t);
    assert_eq!(events(&mut a), [Event::Up { id: 9, meta: 9 }]);
}

#[test]
fn a_suspicion_ends_in_death_after_its_timeout() {
    let mut a = node(1, &[2, 3]);
    gossip(&mut a, 3, rumor(2, 0, Status::Suspect), MS(1000));
    let _ = events(&mut a);
    // Three members: log10(3) × 2 × 0.5 s < 1.5 s, so the timeout is its minimum, 1.5 s.
    a.tick(MS(2499));
    assert_eq!(a.status(&2).map(|s| s.0), Some(Status::Suspect));
    a.tick(MS(2500));
    assert_eq!(a.status(&2).map(|s| s.0), Some(Status::Dead));
    assert!(events(&mut a).contains(&Event::Down(2)));
}

#[test]
fn a_suspect_still_heard_from_is_given_time() {
    let mut a = node(1, &[2, 3]);
    gossip(&mut a, 3, rumor(2, 0, Status::Suspect), MS(1000));
    assert_eq!(a.suspects().collect::<Vec<_>>(), [&2]);
    // A frame from before the suspicion changes nothing; one from after it restarts the clock.
    a.heard_from(&2, MS(900));
    a.tick(MS(2500));
    assert_eq!(a.status(&2).map(|s| s.0), Some(Status::Dead));
    let mut b = node(1, &[2, 3]);
    gossip(&mut b, 3, rumor(2, 0, Status::Suspect), MS(1000));
    b.heard_from(&2, MS(2000));
    b.tick(MS(3499));
    assert_eq!(b.status(&2).map(|s| s.0), Some(Status::Suspect));
    b.tick(MS(3500));
    assert_eq!(b.status(&2).map(|s| s.0), Some(Status::Dead));
}

#[test]
fn a_node_refutes_news_of_its_own_failure() {
    let mut a = node(1, &[2, 3]);
    gossip(&mut a, 2, rumor(1, 0, Status::Suspect), MS(5));
    assert_eq!(a.incarnation().count, 1);
    let out = sent(&mut a);
    let told = out.iter().any(|(to, p)| {
        *to == 2
            && matches!(p, Packet::Gossip { rumors } if rumors[0] == rumor(1, 1, Status::Alive))
    });
    assert!(told, "the suspector is told at once: {out:?}");
    // Taken for dead: refutes again and asks the sender for the member list.
    gossip(&mut a, 3, rumor(1, 1, Status::Dead), MS(6));
    assert_eq!(a.incarnation().count, 2);
    let out = sent(&mut a);
    assert!(out
        .iter()
        .any(|(to, p)| *to == 3 && matches!(p, Packet::Join { .. })));
    // Stale news: no new count, but the sender learns the current one.
    gossip(&mut a, 2, rumor(1, 0, Status::Dead), MS(7));
    assert_eq!(a.incarnation().count, 2);
    let out = sent(&mut a);
    assert!(out.iter().any(|(to, p)| *to == 2
        && matches!(p, Packet::Gossip { rumors } if rumors[0] == rumor(1, 2, Status::Alive))));
}

#[test]
fn pings_are_acked_and_indirect_probes_relayed() {
    let mut a = node(1, &[2, 3]);
    let ping = Packet::Ping {
        seq: 5,
        rumors: vec![],
    };
    a.receive(&2, &bytes(&ping), MS(1)).expect("a packet");
    assert!(matches!(
        &sent(&mut a)[..],
        [(2, Packet::Ack { seq: 5, .. })]
    ));
    let req = Packet::PingReq {
        seq: 9,
        target: 3,
        rumors: vec![],
    };
    a.receive(&2, &bytes(&req), MS(2)).expect("a packet");
    let out = sent(&mut a);
    let Some(&(3, Packet::Ping { seq, .. })) = out.first().map(|(to, p)| (*to, p.clone())).as_ref()
    else {
        panic!("no ping to the target: {out:?}");
    };
    let ack = Packet::Ack {
        seq,
        rumors: vec![],
    };
    a.receive(&3, &bytes(&ack), MS(3)).expect("a packet");
    assert!(matches!(
        &sent(&mut a)[..],
        [(2, Packet::Ack { seq: 9, .. })]
    ));
}

/// The member `a` probes in its first period, after ticking at its first probe time.
fn first_probe(a: &mut Swim<u32, u32>) -> (u32, Duration) {
    let t0 = a.next_wake();
    a.tick(t0);
    let out = sent(a);
    match &out[..] {
        [(to, Packet::Ping { .. })] => (*to, t0),
        _ => panic!("expected one ping: {out:?}"),
    }
}

#[test]
fn a_silent_member_is_probed_indirectly_then_suspected() {
    let mut a = node(1, &[2, 3, 4, 5]);
    let (target, t0) = first_probe(&mut a);
    a.tick(t0 + MS(150));
    let out = sent(&mut a);
    assert_eq!(out.len(), 3, "every other member asked: {out:?}");
    assert!(out
        .iter()
        .all(|(to, p)| *to != target
            && matches!(p, Packet::PingReq { target: t, .. } if *t == target)));
    a.tick(t0 + MS(500));
    assert_eq!(a.status(&target).map(|s| s.0), Some(Status::Suspect));
    let out = sent(&mut a);
    assert!(
        out.iter()
            .any(|(to, p)| *to == target && matches!(p, Packet::Gossip { .. })),
        "the suspect is told, to refute: {out:?}"
    );
}

#[test]
fn an_answered_probe_raises_no_suspicion() {
    let mut a = node(1, &[2, 3, 4, 5]);
    let (target, t0) = first_probe(&mut a);
    // Any frame from the target counts, not only the ack; but not one from before the probe.
    a.heard_from(&target, t0 - MS(1));
    assert_eq!(a.probing(), Some(&target));
    a.heard_from(&target, t0 + MS(20));
    assert_eq!(a.probing(), None);
    a.tick(t0 + MS(150));
    assert!(sent(&mut a).is_empty(), "no indirect probe");
    a.tick(t0 + MS(500));
    assert_eq!(a.status(&target).map(|s| s.0), Some(Status::Alive));
}

#[test]
fn a_node_that_was_stopped_does_not_blame_its_target() {
    let mut a = node(1, &[2, 3, 4, 5]);
    let (target, t0) = first_probe(&mut a);
    a.tick(t0 + MS(10_000));
    assert_eq!(a.status(&target).map(|s| s.0), Some(Status::Alive));
    assert_eq!(a.stats().suspicions, 0);
}

#[test]
fn a_join_is_answered_with_the_whole_list_and_spread() {
    let mut seed = node(1, &[2, 3]);
    let mut newcomer: Swim<u32, u32> = Swim::new(9, 9, 1, Config::default(), 3, Duration::ZERO);
    newcomer.join(vec![1], MS(0));
    let out = sent(&mut newcomer);
    let [(1, join)] = &out[..] else {
        panic!("{out:?}");
    };
    seed.receive(&9, &bytes(join), MS(1)).expect("a packet");
    assert_eq!(events(&mut seed), [Event::Up { id: 9, meta: 9 }]);
    let out = sent(&mut seed);
    let [(9, sync @ Packet::Sync { .. })] = &out[..] else {
        panic!("{out:?}");
    };
    newcomer.receive(&1, &bytes(sync), MS(2)).expect("a packet");
    assert_eq!(newcomer.live(), 3);
    assert_eq!(events(&mut newcomer).len(), 3);
    // The seed passes the news on; the newcomer has nothing to spread, and stops asking.
    seed.tick(MS(3));
    assert!(sent(&mut seed).iter().any(|(_, p)| matches!(p,
        Packet::Gossip { rumors } | Packet::Ping { rumors, .. } if rumors.iter().any(|r| r.id == 9))));
    assert!(newcomer.rumors.is_empty());
    assert!(newcomer.join.is_none());
}

#[test]
fn garbage_changes_nothing() {
    let mut a = node(1, &[2, 3]);
    assert!(a.receive(&2, b"\x92\x01", MS(1)).is_err());
    assert!(a.receive(&2, b"", MS(1)).is_err());
    assert_eq!(a.status(&2).map(|s| s.0), Some(Status::Alive));
    assert!(sent(&mut a).is_empty());
    assert_eq!(a.stats().received_packets, 0);
}

#[test]
fn a_leaving_node_says_so_then_stays_silent() {
    let mut a = node(1, &[2, 3]);
    a.leave();
    let out = sent(&mut a);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|(_, p)| matches!(p,
        Packet::Gossip { rumors } if rumors[0].status == Status::Left && rumors[0].id == 1)));
    a.tick(MS(5000));
    assert!(sent(&mut a).is_empty());
    let mut b = node(2, &[1, 3]);
    b.receive(&1, &bytes(&out[0].1), MS(1)).expect("a packet");
    assert_eq!(events(&mut b), [Event::Left(1)]);
}
