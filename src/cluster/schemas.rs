//! What the coordinator knows of its members' schemas: each member's model columns, by model
//! version, and their union (a column is a category when any model reads it as text). A request
//! that arrives as names and text (JSON, CSV, HTTP) is resolved by that union once, here, and
//! every member gets the same packed rows.
//!
//! Schemas are learned from the members themselves (`Request::Schema`) and refreshed when a
//! member answers a prediction with another model version than the one on record. A request
//! never waits for that: until every member is known, the rows keep the columns the schema does
//! not know ([`SchemaBook::current`] says so), and text still makes a column a category, so no
//! model loses a column or a spelling in the meantime.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use futures::FutureExt;

use super::member::Asked;
use crate::ml::Schema;
use crate::protocol::{Request, Response};

/// A member that could not say its schema is asked again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What is known of one member.
#[derive(Default)]
struct Known {
    /// The model version and its columns (`None`: the member has no model).
    schema: Option<(u64, Option<Arc<Schema>>)>,
    /// The member answered with another model version since.
    stale: bool,
    fetching: bool,
    failed_at: Option<Instant>,
}

impl Known {
    fn needs_fetch(&self, now: Instant) -> bool {
        (self.schema.is_none() || self.stale)
            && !self.fetching
            && self
                .failed_at
                .is_none_or(|t| now.duration_since(t) >= RETRY_AFTER)
    }
}

/// The members' schemas (one per coordinating node, shared by its flows).
#[derive(Default)]
pub struct SchemaBook {
    known: RefCell<HashMap<String, Known>>,
    /// The last union, and the (member, version) list it was made from.
    merged: RefCell<Option<Union>>,
}

type Fetched = Option<(u64, Option<Arc<Schema>>)>;

/// A union of schemas and the (member, model version) list it was made from.
type Union = (Vec<(String, u64)>, Arc<Schema>);

impl SchemaBook {
    pub fn new() -> Rc<SchemaBook> {
        Rc::new(SchemaBook::default())
    }

    /// The schema to resolve a request for `members` by, and whether it covers every one of
    /// them with its current model. Starts fetching what is missing, without waiting for it
    /// (a member that answers at once, as this node's own model does, is recorded at once).
    pub fn current(self: &Rc<Self>, members: &[Asked]) -> (Arc<Schema>, bool) {
        self.fetch_missing(members, false);
        self.union(members)
    }

    /// [`SchemaBook::current`] after waiting for the members not known yet (each at most its
    /// deadline): for a client that asks the schema once and then sends many requests.
    pub async fn refreshed(self: &Rc<Self>, members: &[Asked]) -> (Arc<Schema>, bool) {
        let waits = self.fetch_missing(members, true);
        futures::future::join_all(waits).await;
        self.union(members)
    }

    /// Every record is stale (the members may have new models): each is asked again when next
    /// needed.
    pub fn expire(&self) {
        for k in self.known.borrow_mut().values_mut() {
            k.stale = true;
            k.failed_at = None;
        }
    }

    /// A member answered a prediction with model `version`: a different one makes its record
    /// stale.
    pub fn saw(&self, id: &str, version: u64) {
        if let Some(k) = self.known.borrow_mut().get_mut(id) {
            if k.schema.as_ref().is_some_and(|(v, _)| *v != version) {
                k.stale = true;
            }
        }
    }

    fn union(&self, members: &[Asked]) -> (Arc<Schema>, bool) {
        let known = self.known.borrow();
        let mut complete = true;
        let mut key = Vec::with_capacity(members.len());
        let mut parts: Vec<Arc<Schema>> = Vec::with_capacity(members.len());
        for m in members {
            match known.get(&m.id) {
                Some(Known {
                    schema: Some((version, schema)),
                    stale,
                    ..
                }) => {
                    complete &= !stale;
                    key.push((m.id.clone(), *version));
                    parts.extend(schema.iter().cloned());
                }
                _ => complete = false,
            }
        }
        drop(known);
        let mut merged = self.merged.borrow_mut();
        if let Some((k, s)) = merged.as_ref() {
            if *k == key {
                return (s.clone(), complete);
            }
        }
        let schema = Schema::new(parts.iter().flat_map(|s| s.columns().iter().cloned())).shared();
        *merged = Some((key, schema.clone()));
        (schema, complete)
    }

    /// Starts a fetch for each member that needs one; with `wait`, returns them to await.
    fn fetch_missing(
        self: &Rc<Self>,
        members: &[Asked],
        wait: bool,
    ) -> Vec<LocalBoxFuture<'static, ()>> {
        let now = Instant::now();
        let mut waits = Vec::new();
        for m in members {
            {
                let mut known = self.known.borrow_mut();
                let k = known.entry(m.id.clone()).or_default();
                if !k.needs_fetch(now) {
                    continue;
                }
                k.fetching = true;
            }
            let (member, deadline) = (m.member.clone(), m.deadline);
            let mut ask: LocalBoxFuture<'static, Fetched> = async move {
                match member.call(Request::Schema, deadline).await {
                    Ok(Response::Schema { version, schema }) => {
                        Some((version, Some(schema.shared())))
                    }
                    Ok(Response::NoModel) => Some((0, None)),
                    Ok(_) | Err(_) => None,
                }
            }
            .boxed_local();
            // This node's own model answers without waiting: record it before the request it
            // was asked for is resolved.
            let mut cx = Context::from_waker(futures::task::noop_waker_ref());
            if let Poll::Ready(fetched) = ask.poll_unpin(&mut cx) {
                self.record(&m.id, fetched);
                continue;
            }
            let (book, id) = (self.clone(), m.id.clone());
            let done = async move { book.record(&id, ask.await) };
            if wait {
                waits.push(done.boxed_local());
            } else {
                actix_rt::spawn(done);
            }
        }
        waits
    }

    fn record(&self, id: &str, fetched: Fetched) {
        let mut known = self.known.borrow_mut();
        let k = known.entry(id.to_string()).or_default();
        k.fetching = false;
        match fetched {
            Some(schema) => {
                k.schema = Some(schema);
                k.stale = false;
                k.failed_at = None;
            }
            None => k.failed_at = Some(Instant::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::member::{Batch, Member};
    use crate::ml::{ColumnKind, SchemaColumn};
    use std::cell::Cell;

    /// A member that answers `Schema` with fixed columns, at once or never.
    struct Fake {
        columns: Vec<(&'static str, ColumnKind)>,
        version: Cell<u64>,
        asked: Cell<usize>,
        hangs: bool,
    }

    impl Member for Fake {
        fn call(
            &self,
            request: Request,
            _deadline: Duration,
        ) -> LocalBoxFuture<'_, crate::error::Result<Response>> {
            assert!(matches!(request, Request::Schema));
            self.asked.set(self.asked.get() + 1);
            if self.hangs {
                return futures::future::pending().boxed_local();
            }
            let schema = Schema::new(self.columns.iter().map(|(n, k)| SchemaColumn {
                name: n.to_string(),
                kind: *k,
            }));
            let (version, schema) = (self.version.get(), Box::new(schema));
            futures::future::ready(Ok(Response::Schema { version, schema })).boxed_local()
        }

        fn predict<'a>(
            &'a self,
            _batch: &'a Batch,
        ) -> LocalBoxFuture<'a, crate::error::Result<Response>> {
            futures::future::pending().boxed_local()
        }
    }

    fn asked(id: &str, fake: Rc<Fake>) -> Asked {
        Asked {
            id: id.into(),
            member: fake,
            deadline: Duration::from_millis(100),
        }
    }

    fn fake(columns: Vec<(&'static str, ColumnKind)>, hangs: bool) -> Rc<Fake> {
        Rc::new(Fake {
            columns,
            version: Cell::new(1),
            asked: Cell::new(0),
            hangs,
        })
    }

    #[actix_rt::test]
    async fn the_union_types_a_column_by_every_model_that_reads_it() {
        use ColumnKind::{Category, Number};
        let a = fake(vec![("area", Number), ("pool", Number)], false);
        let b = fake(vec![("pool", Category), ("zone", Category)], false);
        let members = vec![asked("a", a.clone()), asked("b", b.clone())];
        let book = SchemaBook::new();
        let (schema, complete) = book.current(&members);
        assert!(complete, "members that answer at once are known at once");
        let kinds: Vec<(&str, ColumnKind)> = schema
            .columns()
            .iter()
            .map(|c| (c.name.as_str(), c.kind))
            .collect();
        assert_eq!(
            kinds,
            [("area", Number), ("pool", Category), ("zone", Category)]
        );
        // Known members are not asked again, until one answers with another model version.
        book.current(&members);
        assert_eq!((a.asked.get(), b.asked.get()), (1, 1));
        book.saw("b", 1);
        book.current(&members);
        assert_eq!(b.asked.get(), 1);
        b.version.set(2);
        book.saw("b", 2);
        let (_, complete) = book.current(&members);
        assert!(complete);
        assert_eq!(
            b.asked.get(),
            2,
            "a new model version is asked for its schema"
        );
    }

    #[actix_rt::test]
    async fn a_silent_member_leaves_the_schema_incomplete_without_holding_anyone_up() {
        let a = fake(vec![("area", ColumnKind::Number)], false);
        let hung = fake(vec![], true);
        let members = vec![asked("a", a), asked("h", hung.clone())];
        let book = SchemaBook::new();
        let (schema, complete) = book.current(&members);
        assert!(!complete);
        assert_eq!(schema.len(), 1);
        // Asked once; while that question is open it is not asked again.
        book.current(&members);
        assert_eq!(hung.asked.get(), 1);
    }
}
