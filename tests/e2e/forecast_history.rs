//! The forecast history: each minute's forecasts beside what happened, written with a minute's
//! history, pruned with it, read back over gRPC (`ListForecasts`) with what had been forecast
//! for each minute one and fifteen minutes before; on both stores.

use sluice::proto::sluice::v1 as pb;
use sluice::store::history::{ForecastRow, HistoryBatch};
use sluice::store::{Store, StoreOptions};
use tonic::Code;

use crate::harness::*;
use crate::store_tests;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

/// From minute `m`, the forecast of minute `m + h` is `10m + h`: easy to check.
fn row(series: &str, m: i64) -> ForecastRow {
    let forecast: Vec<f64> = (1..=15).map(|h| (10 * m + h) as f64).collect();
    ForecastRow {
        minute_ms: T0 + m * MIN,
        series: series.into(),
        actual: (100 + m) as f64,
        forecast: serde_json::to_string(&forecast).unwrap(),
        method_1: "last",
        method_15: "mean5",
    }
}

async fn forecasts_are_kept_beside_what_happened(backend: Backend) {
    let db = Db::new(backend).await;
    let store = Store::connect(&StoreOptions::new(&db.url)).await.unwrap();
    let mut rows: Vec<ForecastRow> = (0..20).map(|m| row("/api/payment", m)).collect();
    rows.extend((0..5).map(|m| row("*", m)));
    let batch = HistoryBatch {
        forecasts: rows,
        instance: "sluice-a".into(),
        ..HistoryBatch::default()
    };
    store.write_history(&batch).await.unwrap();
    // Written twice (a retried batch): the first stays, nothing doubles.
    store.write_history(&batch).await.unwrap();
    // Retention: minutes before minute 2 go with the rest of the history.
    store.prune_history(T0 + 2 * MIN, 100).await.unwrap();
    store.close().await;

    let server = TestServer::start_with(config(&db.url)).await;
    let mut api = server.api().await;
    let ask = |series: &str, limit: u32| pb::ListForecastsRequest {
        series: series.into(),
        limit,
        ..Default::default()
    };
    let points = api
        .list_forecasts(admin(ask("/api/payment", 0)))
        .await
        .unwrap()
        .into_inner()
        .points;
    assert_eq!(points.len(), 18, "minutes 2..20 of one series, once each");
    // (minute, actual, predicted a minute before, predicted 15 minutes before)
    let seen: Vec<(i64, f64, Option<f64>, Option<f64>)> = points
        .iter()
        .map(|p| {
            (
                (p.minute_ms - T0) / MIN,
                p.actual,
                p.predicted_1,
                p.predicted_15,
            )
        })
        .collect();
    assert_eq!(seen[0], (19, 119.0, Some(181.0), Some(55.0)));
    assert_eq!(seen[2], (17, 117.0, Some(161.0), Some(35.0)));
    assert_eq!(
        seen[3],
        (16, 116.0, Some(151.0), None),
        "minute 1 was pruned"
    );
    assert_eq!(seen[17], (2, 102.0, None, None), "minute 1 was pruned");
    let p = &points[0];
    assert_eq!(
        (p.series.as_str(), p.instance.as_str()),
        ("/api/payment", "sluice-a")
    );
    assert_eq!(
        (p.method_1.as_str(), p.method_15.as_str()),
        ("last", "mean5")
    );
    assert_eq!(p.forecast.len(), 15);
    // A page of the newest three still finds what was forecast for them.
    let page = api
        .list_forecasts(admin(ask("/api/payment", 3)))
        .await
        .unwrap()
        .into_inner()
        .points;
    assert_eq!(page.len(), 3);
    assert_eq!(page[2].predicted_1, Some(161.0));
    // Every series.
    let all = api
        .list_forecasts(admin(ask("", 0)))
        .await
        .unwrap()
        .into_inner()
        .points;
    assert_eq!(all.len(), 18 + 3);

    for (request, field) in [
        (ask("", 5_000), "limit"),
        (ask(&"x".repeat(100_000), 0), "series"),
        (
            pb::ListForecastsRequest {
                since_ms: 10,
                until_ms: 5,
                ..Default::default()
            },
            "until_ms",
        ),
    ] {
        let e = api.list_forecasts(admin(request)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains(field), "{}", e.message());
    }
    let e = api
        .list_forecasts(tonic::Request::new(ask("", 0)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    server.stop().await;
}

store_tests!(forecasts_are_kept_beside_what_happened);
