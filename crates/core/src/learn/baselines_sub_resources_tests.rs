//! Sub-resources learned from the site: routes its people fetch in a page's burst are judged on
//! their own baselines and left out of the site-wide count; pages are not.

use super::*;
use crate::learn::learner::test_support::requests;
use crate::learn::observe::{Aggregator, ObserveConfig};
use crate::learn::routes::{route_family_hash, route_hash};
use crate::time::{NANOS_PER_SEC, Nanos};

const SEC: Nanos = NANOS_PER_SEC;

/// One request at `t`.
fn at(agg: &Aggregator, client: &str, endpoint: &str, t: Nanos) {
    requests(agg, client, Tier::Std, endpoint, 1, (t, t + 1));
}

/// One category page at `at_second`, then 30 thumbnails and 20 brand logos: within a second
/// (`bursty`), or one every two seconds as if each were chosen.
fn category(agg: &Aggregator, client: &str, at_second: u64, bursty: bool) {
    let t = at_second * SEC;
    at(agg, client, "/category/1", t);
    let step = if bursty { SEC / 60 } else { 2 * SEC };
    for i in 1..=50u64 {
        let image = if i <= 30 {
            "/image/7/thumb"
        } else {
            "/image/7/logo"
        };
        at(agg, client, image, t + i * step);
    }
}

/// Thirty minutes of 300 clients: most read three product pages a minute; two of them load a
/// category page with its 50 images. The learner names each route's family; here the test does.
fn shop(bursty: bool) -> Baselines {
    let mut b = Baselines::new(BaselineConfig::default());
    let known = [
        "/category/1",
        "/image/1/thumb",
        "/image/1/logo",
        "/image/1/big",
        "/search",
    ];
    for endpoint in known {
        b.note_family(route_hash(endpoint), route_family_hash(endpoint));
    }
    for m in 0..30u64 {
        let agg = Aggregator::new(ObserveConfig::default());
        for p in 0..300u64 {
            let client = format!("10.1.{}.{}", p / 250, p % 250);
            let start = m * 60 + p % 5;
            if p % 150 == 0 {
                category(&agg, &client, start, bursty);
            } else {
                for k in 0..3 {
                    at(&agg, &client, "/product/1", (start + k * 20) * SEC);
                }
            }
        }
        let data = agg.drain().clients;
        b.note_failing(data.iter());
        b.learn(m as i64, data.iter());
    }
    b
}

/// One whole minute of a client made by `visit`, judged on the trained baselines.
fn judged(b: &Baselines, visit: impl Fn(&Aggregator)) -> Vec<Measure> {
    let agg = Aggregator::new(ObserveConfig::default());
    visit(&agg);
    let data = agg.drain().clients;
    b.assess(&data[0]).into_iter().map(|f| f.measure).collect()
}

/// Three category pages in a minute, each with its 50 images, in bursts: 153 requests.
fn shopper(agg: &Aggregator) {
    for i in 0..3 {
        category(agg, "10.9.0.1", i * 20, true);
    }
}

#[test]
fn a_route_fetched_in_page_bursts_is_a_sub_resource_and_a_page_is_not() {
    let b = shop(true);
    assert!(b.is_sub_resource(route_hash("/image/9/thumb")));
    assert!(b.is_sub_resource(route_hash("/image/9/logo")));
    assert!(!b.is_sub_resource(route_hash("/category/9")));
    assert!(!b.is_sub_resource(route_hash("/product/9")));
    // Never fetched by anyone, but of the images' family: it borrows the family's word.
    assert!(b.is_sub_resource(route_hash("/image/9/big")));
    assert!(!b.is_sub_resource(route_hash("/search")));
}

#[test]
fn a_busy_shopper_is_not_counted_by_its_images_but_a_page_walker_is() {
    let b = shop(true);
    let shopper = judged(&b, shopper);
    assert!(shopper.is_empty(), "{shopper:?}");
    // A walker fetching a category page a second: pages count.
    let walker = judged(&b, |agg| {
        requests(agg, "10.9.0.2", Tier::Std, "/category/4", 60, (0, 60 * SEC));
    });
    assert!(walker.contains(&Measure::Site), "{walker:?}");
    // An image scraper is judged on the images' own route.
    let thumbs = route_hash("/image/5/thumb");
    let scraper = judged(&b, |agg| {
        at(agg, "10.9.0.3", "/category/5", 0);
        requests(
            agg,
            "10.9.0.3",
            Tier::Std,
            "/image/5/thumb",
            2_000,
            (1, 60 * SEC),
        );
    });
    assert!(
        scraper
            .iter()
            .any(|m| matches!(m, Measure::Endpoint { endpoint, .. } if *endpoint == thumbs)),
        "{scraper:?}"
    );
}

#[test]
fn where_people_fetch_them_one_by_one_the_same_images_count_as_pages() {
    let b = shop(false);
    assert!(!b.is_sub_resource(route_hash("/image/9/thumb")));
    let shopper = judged(&b, shopper);
    assert!(shopper.contains(&Measure::Site), "{shopper:?}");
}

#[test]
fn what_the_sub_resources_remember_is_bounded() {
    let mut b = Baselines::new(BaselineConfig {
        max_endpoints: 10,
        ..BaselineConfig::default()
    });
    for m in 0..5u64 {
        let agg = Aggregator::new(ObserveConfig::default());
        // Every client a made-up route of its own, fetched in a burst beside a page.
        for p in 0..500u64 {
            let client = format!("10.2.{}.{}", p / 250, p % 250);
            at(&agg, &client, "/", 0);
            requests(
                &agg,
                &client,
                Tier::Std,
                &format!("/r{m}x{p}/a"),
                5,
                (1, SEC),
            );
        }
        let data = agg.drain().clients;
        b.learn(m as i64, data.iter());
        assert!(b.sub_resources.len() <= 2 * 10, "{}", b.sub_resources.len());
    }
}
