//! Model exchange for cross-validation. A model stays with the node that trained it; whoever must
//! score it fetches it from its owner, in chunks of at most [`MODEL_CHUNK`] bytes, from at most
//! [`FETCH_AT_ONCE`] owners at a time. So no node sends every model to every node (the coordinator
//! sends only small requests), no frame is large enough to hold a link's heartbeats back for
//! long, and the memory a node spends on foreign models is bounded by what it scores.

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt};

use super::member::Asked;
use crate::protocol::{ModelBlob, ModelRef, Request, Response};

/// Largest chunk of a model in one frame.
pub const MODEL_CHUNK: usize = 256 * 1024;

/// Owners fetched from at once by one evaluating node.
pub const FETCH_AT_ONCE: usize = 4;

/// The owner's side: the chunk of `model` (its `version`) that starts at `offset`.
pub fn serve_chunk(model: Option<(u64, &Bytes)>, version: u64, offset: u64) -> Response {
    let Some((current, bytes)) = model else {
        return Response::NoModel;
    };
    if current != version {
        return Response::Error {
            reason: format!("model v{version} was replaced by v{current} during the exchange"),
        };
    }
    let total = bytes.len() as u64;
    if offset > total {
        return Response::Error {
            reason: format!("offset {offset} is past the model's {total} bytes"),
        };
    }
    let start = offset as usize;
    let end = (start + MODEL_CHUNK).min(bytes.len());
    Response::ModelChunk {
        version,
        total,
        bytes: bytes.slice(start..end),
    }
}

/// Fetches `model` from `owner`, chunk by chunk, refusing anything that disagrees with what the
/// owner announced or is larger than `max_bytes`.
pub async fn fetch(
    owner: &Asked,
    model: &ModelRef,
    max_bytes: u64,
    deadline: Duration,
) -> Result<Bytes, String> {
    if model.size > max_bytes {
        return Err(format!(
            "its model is {} bytes, more than the {max_bytes} this node accepts",
            model.size
        ));
    }
    // Memory grows with what the owner actually sends, not with what it announced.
    let mut buf = BytesMut::with_capacity((model.size as usize).min(MODEL_CHUNK));
    loop {
        let request = Request::FetchModel {
            version: model.version,
            offset: buf.len() as u64,
        };
        let answer = owner
            .member
            .call(request, deadline)
            .await
            .map_err(|e| e.to_string())?;
        let (total, bytes) = match answer {
            Response::ModelChunk {
                version,
                total,
                bytes,
            } if version == model.version => (total, bytes),
            other => return Err(super::train::unexpected(&other)),
        };
        if total != model.size || buf.len() + bytes.len() > model.size as usize {
            return Err(format!(
                "it sent more than the {} bytes it announced",
                model.size
            ));
        }
        if bytes.is_empty() && (buf.len() as u64) < total {
            return Err("it sent an empty chunk before the model's end".into());
        }
        buf.extend_from_slice(&bytes);
        if buf.len() as u64 == total {
            return Ok(buf.freeze());
        }
    }
}

/// Fetches every model of `models` from its owner among `owners` ([`FETCH_AT_ONCE`] at a time,
/// in order), then scores them with `score`. Owners whose model could not be fetched are named
/// in an `Unfetched` answer, so the coordinator can go on without them.
pub async fn evaluate<F, Fut>(
    owners: &[Asked],
    models: Vec<ModelRef>,
    max_bytes: u64,
    deadline: Duration,
    score: F,
) -> Response
where
    F: FnOnce(Vec<ModelBlob>) -> Fut,
    Fut: Future<Output = Response>,
{
    let fetched: Vec<(String, Result<Bytes, String>)> = stream::iter(models.iter())
        .map(|model| async move {
            let bytes = match owners.iter().find(|o| o.id == model.node) {
                Some(owner) => fetch(owner, model, max_bytes, deadline).await,
                None => Err("it is not linked to this node".to_string()),
            };
            (model.node.clone(), bytes)
        })
        .buffered(FETCH_AT_ONCE)
        .collect()
        .await;
    let mut blobs = Vec::with_capacity(fetched.len());
    let mut missing = Vec::new();
    let mut reasons = Vec::new();
    for (node, bytes) in fetched {
        match bytes {
            Ok(bytes) => blobs.push(ModelBlob { node, bytes }),
            Err(e) => {
                reasons.push(format!("{node}: {e}"));
                missing.push(node);
            }
        }
    }
    if !missing.is_empty() {
        return Response::Unfetched {
            nodes: missing,
            reason: format!("cannot fetch models ({})", reasons.join("; ")),
        };
    }
    score(blobs).await
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use futures::future::LocalBoxFuture;
    use futures::FutureExt;

    use super::*;
    use crate::cluster::{Batch, Member};
    use crate::error::{Error, Result};

    /// An owner serving `model` as version 7, counting the chunks it sends.
    struct Owner {
        model: Bytes,
        chunks: Cell<usize>,
        /// Lie about the total after the first chunk.
        grow: bool,
    }

    impl Member for Owner {
        fn call(&self, request: Request, _: Duration) -> LocalBoxFuture<'_, Result<Response>> {
            let answer = match request {
                Request::FetchModel { version, offset } => {
                    self.chunks.set(self.chunks.get() + 1);
                    let mut r = serve_chunk(Some((7, &self.model)), version, offset);
                    if let (true, Response::ModelChunk { total, .. }) = (self.grow, &mut r) {
                        if offset > 0 {
                            *total += 1;
                        }
                    }
                    Ok(r)
                }
                _ => Err(Error::Other("unexpected request".into())),
            };
            futures::future::ready(answer).boxed_local()
        }

        fn predict<'a>(&'a self, _: &'a Batch) -> LocalBoxFuture<'a, Result<Response>> {
            futures::future::ready(Ok(Response::NoModel)).boxed_local()
        }
    }

    fn owner(id: &str, len: usize, grow: bool) -> (Asked, Rc<Owner>) {
        let o = Rc::new(Owner {
            model: Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
            chunks: Cell::new(0),
            grow,
        });
        let asked = Asked {
            id: id.into(),
            member: o.clone(),
            deadline: Duration::from_secs(1),
        };
        (asked, o)
    }

    fn model_ref(node: &str, size: usize) -> ModelRef {
        ModelRef {
            node: node.into(),
            version: 7,
            size: size as u64,
        }
    }

    fn run(owners: &[Asked], models: Vec<ModelRef>) -> (Response, Vec<ModelBlob>) {
        let got = Rc::new(std::cell::RefCell::new(Vec::new()));
        let sink = got.clone();
        let answer = futures::executor::block_on(evaluate(
            owners,
            models,
            1 << 30,
            Duration::from_secs(1),
            |blobs| async move {
                *sink.borrow_mut() = blobs;
                Response::Pong
            },
        ));
        let blobs = got.borrow().clone();
        (answer, blobs)
    }

    #[test]
    fn models_arrive_whole_in_bounded_chunks() {
        let big = 3 * MODEL_CHUNK + 17;
        let (a, oa) = owner("a", big, false);
        let (b, ob) = owner("b", 10, false);
        let (answer, blobs) = run(&[a, b], vec![model_ref("a", big), model_ref("b", 10)]);
        assert_eq!(answer, Response::Pong);
        assert_eq!(blobs.len(), 2);
        assert_eq!(blobs[0].node, "a");
        assert_eq!(blobs[0].bytes, oa.model);
        assert_eq!(blobs[1].bytes, ob.model);
        assert_eq!(oa.chunks.get(), 4, "3 full chunks and a tail");
        assert_eq!(ob.chunks.get(), 1);
    }

    #[test]
    fn an_owner_that_lies_or_is_missing_is_named_not_scored() {
        let big = MODEL_CHUNK + 1;
        let (a, _) = owner("a", big, true);
        let (b, _) = owner("b", 10, false);
        let (answer, blobs) = run(
            &[a, b],
            vec![
                model_ref("a", big),
                model_ref("b", 10),
                model_ref("c", 10),
                // Announced 5 bytes, has 10.
                ModelRef {
                    size: 5,
                    ..model_ref("b", 5)
                },
            ],
        );
        let Response::Unfetched { nodes, reason } = answer else {
            panic!("expected unfetched, got {answer:?}");
        };
        assert_eq!(nodes, ["a", "c", "b"]);
        assert!(reason.contains("not linked"), "{reason}");
        assert!(
            blobs.is_empty(),
            "nothing is scored when a model is missing"
        );
    }

    #[test]
    fn a_replaced_version_or_oversized_model_is_refused() {
        let bytes = Bytes::from_static(b"0123456789");
        assert!(matches!(
            serve_chunk(Some((8, &bytes)), 7, 0),
            Response::Error { .. }
        ));
        assert!(matches!(
            serve_chunk(Some((7, &bytes)), 7, 11),
            Response::Error { .. }
        ));
        assert_eq!(serve_chunk(None, 7, 0), Response::NoModel);
        let (a, oa) = owner("a", 10, false);
        let e =
            futures::executor::block_on(fetch(&a, &model_ref("a", 10), 9, Duration::from_secs(1)));
        assert!(e.is_err_and(|e| e.contains("more than the 9")));
        assert_eq!(oa.chunks.get(), 0, "nothing fetched past the limit");
    }
}
