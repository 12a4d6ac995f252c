//! Brigading-resistant trending: an article is listed only when its reactions in the recent
//! window come from at least `TRENDING_MIN_NETWORKS` distinct client networks (IPv4 /24, IPv6
//! /48), counted from keyed hashes stored with each write. Clients are told apart by the address
//! they connect from (`127.10.N.x` is network N) or, behind a trusted proxy, by
//! `X-Forwarded-For`.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{TestDatabase, spawn_app};
use crate::helpers::{TestApp, client_in_network, json_ok, segment, spawn_with, test_config};

async fn trending(app: &TestApp, query: &str) -> Value {
    json_ok(app.request(Method::GET, &format!("/v1/stats/trending{query}"), None, None).await).await
}

/// `(article, recent, networks)` of each listed article, in order.
fn listed(trending: &Value) -> Vec<(String, i64, i64)> {
    trending["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (a["article_id"].as_str().unwrap().to_owned(), a["recent"].as_i64().unwrap(), a["networks"].as_i64().unwrap())
        })
        .collect()
}

async fn put_ok(app: &TestApp, client: &reqwest::Client, article: &str, visitor: &str, reaction: &str) {
    let response = app.put_reaction_by(client, article, visitor, reaction).await;
    assert_eq!(response.status(), StatusCode::OK, "{article} by {visitor}: {}", response.text().await.unwrap());
}

/// The distinct network keys stored with an article's reactions; each is 16 bytes.
async fn distinct_network_keys(app: &TestApp, article: &str) -> BTreeSet<Vec<u8>> {
    let keys = app.db.network_keys(article).await;
    let keys: BTreeSet<Vec<u8>> = keys.into_iter().map(|key| key.expect("every write stores its network")).collect();
    assert!(keys.iter().all(|key| key.len() == 16), "16-byte keys: {keys:?}");
    keys
}

#[tokio::test]
async fn sixty_writes_from_one_network_do_not_trend_and_eight_from_eight_networks_do() {
    let app = spawn_app().await; // TRENDING_MIN_NETWORKS at its default, 5
    // 60 writes, each with a visitor id of its own, from six addresses of one /24.
    let brigade: Vec<reqwest::Client> = (1..=6).map(|host| client_in_network(1, host)).collect();
    for i in 0..60 {
        put_ok(&app, &brigade[i % brigade.len()], "brigaded", &format!("brigade-{i:04}"), "angry").await;
    }
    // 8 writes from 8 networks.
    for n in 0..8u8 {
        put_ok(&app, &client_in_network(10 + n, 1), "genuine", &format!("reader-{n:04}"), "love").await;
    }

    let hour = trending(&app, "").await;
    let genuine = json!({"article_id": "genuine", "score": 8.0, "recent": 8, "previous": 0, "networks": 8});
    assert_eq!(hour["articles"], json!([genuine]), "the brigaded article (60 reactions) is not listed: {hour}");
    // The filter comes before the limit: the brigaded article, whose score is far higher, does
    // not take the only place.
    assert_eq!(trending(&app, "?limit=1").await["articles"], json!([genuine]));
    assert_eq!(trending(&app, "?window=24h").await["articles"], json!([genuine]));

    // What is stored: one key for the whole /24, one per network for the others.
    assert_eq!(app.db.network_keys("brigaded").await.len(), 60);
    assert_eq!(distinct_network_keys(&app, "brigaded").await.len(), 1);
    assert_eq!(distinct_network_keys(&app, "genuine").await.len(), 8);
    let dump = app.db.dump().await;
    assert!(!dump.contains("127.10."), "no address or network is stored in the clear");
}

#[tokio::test]
async fn the_threshold_is_trending_min_networks() {
    let app = spawn_app().await;
    for n in 0..8u8 {
        put_ok(&app, &client_in_network(30 + n, 1), "eight-networks", &format!("reader-{n:04}"), "wow").await;
    }
    let with_threshold = |networks: u32| {
        let mut config = test_config(&app.db.url);
        config.trending_min_networks = networks;
        config
    };
    let at_eight = app.another_instance_with(with_threshold(8)).await;
    let at_nine = app.another_instance_with(with_threshold(9)).await;
    assert_eq!(listed(&trending(&at_eight, "").await), [("eight-networks".to_owned(), 8, 8)]);
    assert_eq!(listed(&trending(&at_nine, "").await), [], "8 networks are fewer than 9");
}

#[tokio::test]
async fn a_switch_stores_the_network_it_came_from() {
    let app = spawn_app().await;
    let home = client_in_network(20, 1);
    for i in 0..5 {
        put_ok(&app, &home, "switched", &format!("reader-{i:04}"), "like").await;
    }
    assert_eq!(listed(&trending(&app, "").await), [], "five readers of one network");

    // The same readers switch, each from a network of its own.
    for i in 0..5u8 {
        put_ok(&app, &client_in_network(21 + i, 1), "switched", &format!("reader-{i:04}"), "wow").await;
    }
    assert_eq!(listed(&trending(&app, "").await), [("switched".to_owned(), 5, 5)]);

    // Setting the reaction already held changes nothing, its time and network included.
    for i in 0..5 {
        put_ok(&app, &home, "switched", &format!("reader-{i:04}"), "wow").await;
    }
    assert_eq!(listed(&trending(&app, "").await), [("switched".to_owned(), 5, 5)]);
    // A removal and a new set from the home network: that row's network is home's again.
    let path = format!("/v1/articles/{}/reaction", segment("switched"));
    let removed = app.request_by(&home, Method::DELETE, &path, Some("reader-0000"), None).await;
    assert_eq!(removed.status(), StatusCode::OK);
    put_ok(&app, &home, "switched", "reader-0000", "love").await;
    assert_eq!(distinct_network_keys(&app, "switched").await.len(), 5, "home and four others");
}

/// Behind a trusted proxy, so that `X-Forwarded-For` names IPv6 clients.
#[tokio::test]
async fn ipv6_clients_count_by_their_slash_48_and_mapped_addresses_as_ipv4() {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    config.trending_min_networks = 0; // every trending article listed, with its networks
    let app = spawn_with(db, config).await;
    let write = |article: &'static str, client: String, visitor: String| {
        let request = app
            .client
            .put(app.url(&format!("/v1/articles/{article}/reaction")))
            .header("x-forwarded-for", client)
            .header("x-visitor-id", visitor)
            .json(&json!({"reaction": "sad"}));
        async move { assert_eq!(request.send().await.unwrap().status(), StatusCode::OK) }
    };
    for i in 0..8 {
        // Eight /64s of one /48, then eight /48s.
        write("one-48", format!("2001:db8:aa:{i:x}::1"), format!("one-48-{i:04}")).await;
        write("eight-48s", format!("2001:db8:{:x}::1", 0x100 + i), format!("eight-48s-{i:04}")).await;
        // One /24, half of it written as IPv4-mapped IPv6 addresses.
        let ipv4 = format!("198.51.100.{}", i + 1);
        let client = if i % 2 == 0 { format!("::ffff:{ipv4}") } else { ipv4 };
        write("one-24", client, format!("one-24-{i:04}")).await;
    }
    let mut found = listed(&trending(&app, "").await);
    found.sort();
    assert_eq!(
        found,
        [("eight-48s".to_owned(), 8, 8), ("one-24".to_owned(), 8, 1), ("one-48".to_owned(), 8, 1)],
        "with TRENDING_MIN_NETWORKS=0 every article is listed"
    );
}
