//! The model stops at its deadline (DESIGN.md "Fair use"): checked before
//! each window, so that no window starts after it, and when the caller stops
//! waiting; the worker's embedder holds its permit until its thread is done,
//! so nothing runs on beside the next text. The deadlines here are short on
//! purpose (the test hook is the deadline itself); what is asserted is which
//! windows ran, never how long anything took.

use std::time::{Duration, Instant};

use embed::{EmbedError, MiniLm, ModelEmbedder, Partial, Stop};
use shared::ports::Embedder;

fn model() -> MiniLm {
    MiniLm::load(&embed::default_dir()).unwrap_or_else(|e| {
        panic!("{e}\n(infra/model/fetch.sh puts the model in .model/; `make bootstrap` runs it)")
    })
}

/// 20 windows: "word" is one word piece.
fn long_text() -> String {
    vec!["word"; 20 * (embed::WINDOW - 2)].join(" ")
}

#[test]
fn no_window_starts_after_the_deadline() {
    let model = model();
    let text = long_text();
    let deadline = Instant::now() + Duration::from_millis(300);
    match model.embed_until(&[&text], &Stop::at(deadline)) {
        Err(EmbedError::Stopped {
            done,
            total,
            last_started,
            partial,
        }) => {
            assert_eq!(partial.done, done);
            assert_eq!(total, 20);
            assert!(done < total, "{done} of {total}");
            if let Some(at) = last_started {
                assert!(at < deadline, "a window started after the deadline");
            }
        }
        other => panic!("not stopped: {:?}", other.map(|v| v.len())),
    }
    // A deadline already past: nothing runs.
    let past = model.embed_until(&[&text], &Stop::at(Instant::now()));
    assert!(
        matches!(past, Err(EmbedError::Stopped { done: 0, .. })),
        "{past:?}"
    );
}

#[test]
fn stoppable_batches_give_the_same_vectors() {
    let model = model();
    let long = long_text();
    let texts = ["a short one", "ICU nurse, night shifts", long.as_str()];
    let batched = model.embed(&texts).expect("embed");
    let stoppable = model.embed_until(&texts, &Stop::never()).expect("embed");
    for (a, b) in batched.iter().zip(&stoppable) {
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_embedder_stops_at_the_task_deadline_and_frees_its_permit() {
    let embedder = ModelEmbedder::new(model(), 2);
    let deadline = Instant::now() + Duration::from_millis(300);
    let result =
        shared::deadline::within(deadline, embedder.embed(vec![long_text(), long_text()])).await;
    assert!(
        matches!(result, Err(shared::Error::OutOfTime(_))),
        "{result:?}"
    );
    let ran = embedder.windows_run();
    assert!(ran < 40, "{ran} windows ran of 40");
    // The answer came after its thread ended: nothing runs on.
    assert!(embedder.idle());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_stops_waiting_stops_the_embedding_within_one_window() {
    let embedder = ModelEmbedder::new(model(), 2);
    let waited = tokio::time::timeout(
        Duration::from_millis(300),
        embedder.embed(vec![long_text()]),
    )
    .await;
    assert!(waited.is_err(), "20 windows took under 300 ms?");
    let at_drop = embedder.windows_run();
    let give_up = Instant::now() + Duration::from_secs(30);
    while !embedder.idle() {
        assert!(Instant::now() < give_up, "the embedding ran on");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = embedder.windows_run() - at_drop;
    assert!(after <= 1, "{after} windows ran after the caller left");
    assert!(embedder.windows_run() < 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_with_no_time_for_one_window_does_not_start_beside_another() {
    let embedder = ModelEmbedder::new(model(), 2);
    // One long text holds a permit (and teaches the embedder a window's time).
    let busy = {
        let embedder = embedder.clone();
        tokio::spawn(async move { embedder.embed(vec![long_text()]).await })
    };
    let give_up = Instant::now() + Duration::from_secs(30);
    while embedder.windows_run() < 2 {
        assert!(Instant::now() < give_up, "the first text did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Not one window fits in 50 ms: refused before its first window.
    let deadline = Instant::now() + Duration::from_millis(50);
    let refused = shared::deadline::within(deadline, embedder.embed(vec![long_text()])).await;
    match refused {
        Err(shared::Error::OutOfTime(why)) => assert!(why.contains("are left"), "{why}"),
        other => panic!("{other:?}"),
    }
    busy.await.expect("join").expect("the first text");
    assert_eq!(embedder.windows_run(), 20, "only the first text ran");
}

#[tokio::test]
async fn the_worker_embedder_refuses_a_text_over_its_bound() {
    let embedder = ModelEmbedder::new(model(), 1).with_max_word_pieces(10);
    let err = embedder
        .embed(vec![["word"; 11].join(" ")])
        .await
        .expect_err("over the bound");
    match err {
        shared::Error::Validation(errors) => {
            assert_eq!(errors[0].field, "text");
            assert!(errors[0].message.contains("11 word pieces"), "{errors:?}");
        }
        other => panic!("{other:?}"),
    }
    embedder
        .embed(vec![["word"; 10].join(" ")])
        .await
        .expect("at the bound");
}

/// 6 windows: enough to be stopped several times.
fn six_windows() -> String {
    (0..6 * (embed::WINDOW - 2))
        .map(|i| ["nurse", "ward", "rust", "night", "shift", "care"][i % 6])
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_stopped_text_goes_on_where_it_stopped_and_gives_the_same_vector_bit_for_bit() {
    let model = model();
    let text = six_windows();
    let whole = model
        .embed_until(&[&text], &Stop::never())
        .expect("uninterrupted");
    let mut partial: Option<Partial> = None;
    let mut stops = 0;
    let resumed = loop {
        // About one window a call: the stop is checked before each.
        let stop = Stop::at(Instant::now() + Duration::from_millis(20));
        match model.embed_from(&[&text], &stop, partial.clone()) {
            Ok(v) => break v,
            Err(EmbedError::Stopped { partial: p, .. }) => {
                let before = partial.as_ref().map_or(0, |q| q.done);
                assert!(
                    p.done >= before,
                    "progress went back: {before} then {}",
                    p.done
                );
                stops += 1;
                assert!(stops < 500, "no progress");
                partial = Some(p);
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        stops >= 2,
        "stopped {stops} times: the test did not interrupt it"
    );
    assert_eq!(resumed, whole, "the same vector as an uninterrupted run");
    // Another text's progress is not used: it starts again.
    let other = model
        .embed_from(&["ICU nurse"], &Stop::never(), partial)
        .expect("embed");
    assert_eq!(other, model.embed(&["ICU nurse"]).expect("embed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_embedder_leaves_its_progress_and_every_delivery_moves_it_forward() {
    let embedder = ModelEmbedder::new(model(), 1);
    let text = long_text();
    let whole = embedder
        .embed(vec![text.clone()])
        .await
        .expect("uninterrupted");
    let mut progress = None;
    let mut deliveries = 0;
    let resumed = loop {
        deliveries += 1;
        assert!(deliveries < 300, "no progress");
        // Each "delivery" has time for a few of the 20 windows (the
        // embedder has learnt a window's time above, and starts only if one
        // fits: beside the other tests' models it may not, for a while).
        let deadline = Instant::now() + Duration::from_millis(1_000);
        let (result, left) = shared::progress::tracked(
            progress.clone(),
            shared::deadline::within(deadline, embedder.embed(vec![text.clone()])),
        )
        .await;
        match result {
            Ok(v) => break v,
            Err(shared::Error::OutOfTime(_)) => {
                let before = progress
                    .as_ref()
                    .map_or(0, |p: &shared::domain::EmbedProgress| p.windows);
                let after = left.as_ref().map_or(0, |p| p.windows);
                assert!(after >= before, "{before} then {after}");
                if after == before {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                progress = left;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        deliveries >= 2,
        "one delivery did it all: nothing was resumed"
    );
    assert_eq!(resumed, whole);
}
