//! Endpoints as the learning loop sees them: hashed, templated into routes (`/product/42` and
//! `/product/7` are the route `/product/{id}`), and told apart as static assets. Pure string work,
//! allocation-free where it runs on the decision path (`route_hash`).

/// The hash a client-minute keeps an endpoint (and agent, user, client) under.
pub fn endpoint_hash(text: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

/// Whether a path segment is an identifier rather than a name: digits, or a long token with
/// digits in it (hex ids, UUIDs, hashes).
fn is_id(segment: &[u8]) -> bool {
    !segment.is_empty()
        && (segment.iter().all(u8::is_ascii_digit)
            || (segment.len() >= 8
                && segment.iter().any(u8::is_ascii_digit)
                && segment
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')))
}

/// Whether an endpoint is a static asset (by its file extension): pages load many at once.
pub fn is_asset(endpoint: &str) -> bool {
    const EXTENSIONS: [&str; 14] = [
        "js", "css", "png", "jpg", "jpeg", "gif", "svg", "ico", "woff", "woff2", "ttf", "map",
        "webp", "avif",
    ];
    let last = endpoint.rsplit('/').next().unwrap_or("");
    last.rsplit_once('.')
        .is_some_and(|(_, ext)| EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// The hash of an endpoint's route: its path with identifier segments templated, so
/// `/product/42` and `/product/7` are one route (`/product/{id}`). Allocation-free.
pub fn route_hash(endpoint: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    for (i, segment) in endpoint.as_bytes().split(|b| *b == b'/').enumerate() {
        if i > 0 {
            h.update(b"/");
        }
        h.update(if is_id(segment) { b"{id}" } else { segment });
    }
    h.digest()
}

/// The hash of an endpoint's route *family*: its first path segment, templated (`/image/7/brand`
/// and `/image/9/productModel/150x150` are the family `/image`). Sites keep a kind of resource
/// under one prefix; a route too rarely visited to say how it is fetched borrows its family's
/// word (see `Baselines::is_sub_resource`). Salted: never equal to a route's hash.
pub fn route_family_hash(endpoint: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    h.update(b"family:");
    let first = endpoint
        .as_bytes()
        .split(|b| *b == b'/')
        .find(|s| !s.is_empty())
        .unwrap_or(b"");
    h.update(if is_id(first) { b"{id}" } else { first });
    h.digest()
}

/// An endpoint's route as text: identifier segments become `{id}` (`/product/{id}`).
pub fn route_template(endpoint: &str) -> String {
    endpoint
        .split('/')
        .map(|segment| {
            if is_id(segment.as_bytes()) {
                "{id}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}
