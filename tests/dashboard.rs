//! The dashboard in a real headless Chromium, served by the real binary (`props-pipeline dashboard`)
//! while a real batch runs on the emulators: what a person sees, not what the HTML says.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::browser::Browser;
use common::harness::{DATE, Harness, date, items};
use common::nba::{NbaEnv, exported};
use common::ops::{Process, http_get};
use props_pipeline::batch::documents::batch_id_for;
use props_pipeline::batch::settings::EngineSettings;
use props_pipeline::batch::state::BatchState;
use props_pipeline::messages::{TriggerMessage, TriggerMode};
use props_pipeline::nba::domain::NbaWorker;
use props_pipeline::nba::model::ModelConfig;
use props_pipeline::nba::store::{current_predictions, export_record};

const ITEMS: usize = 30;
const FAILING: [&str; 2] = ["player0003", "player0017"];
const SKIPPING: [&str; 2] = ["player0009", "player0021"];

async fn trigger(h: &Harness, mode: TriggerMode, reason: &str) -> String {
    let trigger = TriggerMessage::new(DATE, mode, reason.into(), None, String::new()).unwrap();
    let message_id = h.env.publish(&h.env.topics.trigger_topic, trigger.to_json(), &[]).await;
    batch_id_for(DATE, &message_id)
}

async fn wait_for_state(h: &Harness, batch_id: &str, state: BatchState) {
    common::wait_for("the batch state", Duration::from_secs(60), async || {
        h.store.header(batch_id).await.unwrap().filter(|b| b.state == state).map(|_| ())
    })
    .await;
}

/// With `DASHBOARD_SCREENSHOTS_DIR` set (`make screenshots`), saves what the browser shows as `name`.
async fn screenshot(browser: &Browser, name: &str) {
    if let Ok(dir) = std::env::var("DASHBOARD_SCREENSHOTS_DIR") {
        let png = browser.client.screenshot().await.expect("a screenshot");
        std::fs::write(std::path::Path::new(&dir).join(name), png).expect("write the screenshot");
    }
}

/// `GET path` answered 200 with JSON.
async fn api(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let path = path.to_string();
    let (code, body) = tokio::task::spawn_blocking(move || http_get(addr, &path)).await.unwrap().unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_watches_a_batch_finish_filters_its_failures_and_follows_a_regeneration() {
    let mut h = Harness::new("dashboard").await;
    h.domain.set_items(date(), items(ITEMS));
    *h.domain.model_version.lock().unwrap() = Some("test-model-3".into());
    let engine = h.engine(EngineSettings::default());
    h.run_coordinator(&engine);
    h.run_dead_letter(&engine);
    let first = trigger(&h, TriggerMode::Start, "morning run").await;
    // No worker yet: the batch waits RUNNING with every item pending.
    wait_for_state(&h, &first, BatchState::Running).await;

    let dashboard = Process::start(h.env.binary().args(["dashboard", "--http-addr", "127.0.0.1:0"]));
    let addr = dashboard.http_addr();
    let url = |path: &str| format!("http://{addr}{path}");
    let browser = Browser::start(1280, 1100).await;

    // The batch appears in the list, RUNNING.
    browser.goto(&url("/")).await;
    let listed = browser.attrs("tr.batch", "data-batch").await;
    assert_eq!(listed, vec![first.clone()], "the batches page lists the running batch");
    assert_eq!(browser.text(&format!("tr.batch[data-batch='{first}'] .state")).await, "RUNNING");

    // Its page shows it RUNNING with nothing done, then follows it live to COMPLETE once workers run.
    browser.goto(&url(&format!("/batches/{first}"))).await;
    assert_eq!(browser.text("#state").await, "RUNNING");
    assert_eq!(browser.text("#done").await, "0");
    assert_eq!(browser.text("#model-version").await, "test-model-3", "the version the domain recorded");
    assert_eq!(browser.attrs("tr.item", "data-status").await.len(), 25, "the first page of pending items");
    screenshot(&browser, "dashboard-batch-running.png").await;
    // Items page by cursor: 25 then the other 5, none twice.
    let page1 = api(addr, &format!("/api/batches/{first}/items")).await;
    let cursor = page1["next_cursor"].as_str().expect("a second page").to_string();
    let page2 = api(addr, &format!("/api/batches/{first}/items?cursor={cursor}")).await;
    let ids: Vec<String> = [&page1, &page2]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap().iter().map(|i| i["item"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!((ids.len(), page2["next_cursor"].is_null()), (ITEMS, true));
    assert_eq!(ids, items(ITEMS), "every pending item once, in id order");
    browser.client.execute("window.__sameDocument = 'yes';", vec![]).await.unwrap();
    h.run_worker_skipping(&FAILING, &SKIPPING);
    let states = browser.watch_text("#state", Duration::from_secs(60), |s| s == "COMPLETE").await;
    assert_eq!(states.first().map(String::as_str), Some("RUNNING"), "{states:?}");
    assert_eq!(browser.text("#done").await, (ITEMS - FAILING.len() - SKIPPING.len()).to_string());
    assert_eq!(browser.text("#failed").await, FAILING.len().to_string());
    assert_eq!(browser.text("#skipped").await, SKIPPING.len().to_string());
    assert_eq!(browser.text("#pending").await, "0");
    let same = browser.client.execute("return window.__sameDocument || 'reloaded';", vec![]).await.unwrap();
    assert_eq!(same, "yes", "progress reached COMPLETE without a reload");

    // The failed-only filter shows exactly the failed items.
    browser.goto(&url(&format!("/batches/{first}"))).await;
    screenshot(&browser, "dashboard-batch-complete.png").await;
    browser.click("#failed-only").await;
    browser.click("#apply-filter").await;
    browser.wait_for_url("?failed=1").await;
    let failed: BTreeSet<String> = browser.attrs("tr.item", "data-item").await.into_iter().collect();
    assert_eq!(failed, FAILING.iter().map(|s| s.to_string()).collect(), "exactly the failed items");
    let errors = browser.text("#items").await;
    assert!(errors.contains("player0003 always fails (test)"), "{errors}");

    // The skipped-only filter shows exactly the skipped items, each with its reason.
    browser.click("#failed-only").await;
    browser.click("#skipped-only").await;
    browser.click("#apply-filter").await;
    browser.wait_for_url("?skipped=1").await;
    let skipped: BTreeSet<String> = browser.attrs("tr.item", "data-item").await.into_iter().collect();
    assert_eq!(skipped, SKIPPING.iter().map(|s| s.to_string()).collect(), "exactly the skipped items");
    assert_eq!(browser.attrs("tr.item", "data-status").await, vec!["skipped"; SKIPPING.len()]);
    let reasons = browser.text("#items").await;
    assert!(reasons.contains("player0021 has too little data (test)"), "{reasons}");
    // The batches page counts them.
    browser.goto(&url("/")).await;
    assert_eq!(browser.text(&format!("tr.batch[data-batch='{first}'] td.skipped")).await, SKIPPING.len().to_string());

    // The JSON of a batch is the document `status --json` prints for it.
    let status = api(addr, &format!("/api/batches/{first}")).await;
    let cli = h.env.binary().args(["status", &first, "--json"]).output().unwrap();
    let cli: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(status, cli["batches"][0]);

    // A regeneration: the new batch's lineage names both generations and why.
    let second = trigger(&h, TriggerMode::RegenerateWithSupersede, "injury news").await;
    wait_for_state(&h, &second, BatchState::Complete).await;
    browser.goto(&url(&format!("/batches/{second}"))).await;
    let generations = browser.attrs("#lineage tr.generation", "data-batch").await;
    assert_eq!(generations, vec![first.clone(), second.clone()], "oldest generation first");
    let why = browser.text("#regenerations").await;
    assert!(why.contains(&format!("generation 2 ({second}) superseded {first}")), "{why}");
    assert!(why.contains("injury news"), "{why}");
    browser.goto(&url(&format!("/dates/{DATE}"))).await;
    assert_eq!(browser.text("#current").await, second);

    // Server-side filters and cursor pages over the two batches.
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["batches"].as_array().unwrap().iter().map(|b| b["batch_id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(&api(addr, "/api/batches?text=INJURY").await), vec![second.clone()], "text, any case");
    assert_eq!(
        ids(&api(addr, "/api/batches?state=COMPLETE&from=2024-04-22&to=2024-04-22").await),
        vec![second.clone(), first.clone()]
    );
    assert!(ids(&api(addr, "/api/batches?to=2024-04-21").await).is_empty());
    let newest = api(addr, "/api/batches?limit=1").await;
    assert_eq!((ids(&newest), newest["matching"].as_u64()), (vec![second.clone()], Some(2)));
    let cursor = newest["next_cursor"].as_str().expect("a next page").to_string();
    let older = api(addr, &format!("/api/batches?limit=1&cursor={cursor}")).await;
    assert_eq!(ids(&older), vec![first.clone()]);
    assert!(older["next_cursor"].is_null(), "the last page");

    // Audit and dead letters: a malformed trigger is rejected, recorded, and shown on both pages.
    h.env.publish(&h.env.topics.trigger_topic, "not json", &[]).await;
    common::wait_for("the dead letter", Duration::from_secs(60), async || {
        let (_, body) = http_get(addr, "/api/dead-letters?channel=trigger").ok()?;
        body.contains("\"channel\":\"trigger\"").then_some(())
    })
    .await;
    browser.goto(&url("/dead-letters?channel=trigger")).await;
    assert_eq!(browser.attrs("tr.dead-letter", "data-channel").await, vec!["trigger"]);
    browser.goto(&url(&format!("/audit?game_date={DATE}"))).await;
    let outcomes = browser.attrs("tr.audit-record", "data-outcome").await;
    assert_eq!(outcomes, vec!["superseding", "started"], "this date's triggers, newest first");
    browser.goto(&url("/audit?outcome=rejected")).await;
    assert_eq!(browser.attrs("tr.audit-record", "data-outcome").await, vec!["rejected"]);

    // An unknown batch is a 404 page that says so.
    browser.goto(&url("/batches/2024-04-22-m0")).await;
    assert_eq!(browser.text("#error").await, "no batch 2024-04-22-m0");
    assert_eq!(http_get(addr, "/batches/2024-04-22-m0").unwrap().0, 404);

    browser.close().await;
    dashboard.stop();
    h.stop().await;
}

/// A real playoff date: its page lists every prop of the current generation, sorts by a column the
/// person clicks, and shows the export record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_date_page_sorts_real_predictions_and_shows_the_export() {
    const NBA_DATE: &str = "2023-05-02";
    let mut nba = NbaEnv::new("dashboard-date", &[NBA_DATE]).await;
    nba.run_roles(NbaWorker::new(nba.store.clone(), ModelConfig::default()), EngineSettings::default());
    let trigger = TriggerMessage::new(NBA_DATE, TriggerMode::Start, "date page".into(), None, String::new()).unwrap();
    let message_id = nba.env.publish(&nba.env.topics.trigger_topic, trigger.to_json(), &[]).await;
    let batch_id = batch_id_for(NBA_DATE, &message_id);
    exported(&nba.export_path(NBA_DATE), 1, Duration::from_secs(120)).await;
    let record = export_record(&nba.db, NBA_DATE).await.unwrap().expect("an export record");
    let props: usize =
        current_predictions(&nba.db, NBA_DATE).await.unwrap().iter().map(|p| p.prediction.props.len()).sum();

    let dashboard = Process::start(nba.env.binary().args(["dashboard", "--http-addr", "127.0.0.1:0"]));
    let addr = dashboard.http_addr();
    let browser = Browser::start(1280, 900).await;
    browser.goto(&format!("http://{addr}/dates/{NBA_DATE}")).await;
    assert_eq!(browser.text("#current").await, batch_id);
    assert!(browser.text("#export").await.contains(&record.checksum), "the export record is shown");
    assert_eq!(browser.attrs("tr.prop", "data-edge").await.len(), props, "every prop of the current generation");
    // Click "Edge" twice: ascending, then descending.
    browser.click("th a[href*='sort=edge']").await;
    browser.wait_for_url("sort=edge&dir=asc").await;
    browser.click("th a[href*='sort=edge']").await;
    browser.wait_for_url("sort=edge&dir=desc").await;
    let edges: Vec<f64> = browser.attrs("tr.prop", "data-edge").await.iter().map(|e| e.parse().unwrap()).collect();
    assert_eq!(edges.len(), props);
    assert!(edges.windows(2).all(|w| w[0] >= w[1]), "sorted by edge, descending");
    assert!(edges.first() > edges.last(), "the edges differ, so the order means something");

    browser.close().await;
    dashboard.stop();
    nba.stop().await;
}

/// Bad input gets a clear 4xx: unknown ids, malformed filters, huge page sizes; never a 500.
#[tokio::test]
async fn bad_input_gets_a_clear_4xx() {
    let h = Harness::new("dashboard-4xx").await;
    let dashboard = Process::start(h.env.binary().args(["dashboard", "--http-addr", "127.0.0.1:0"]));
    let addr = dashboard.http_addr();
    let cases: [(&str, u16, &str); 12] = [
        ("/?limit=100000", 400, "is not a page size from 1 to 200"),
        ("/?from=2024-02-30", 400, "is not a YYYY-MM-DD date"),
        ("/?state=DONE", 400, "is not one of PUBLISHING"),
        ("/?cursor=%00%FF", 400, "invalid `cursor`"),
        ("/?sort=x", 400, "unknown parameter `sort`"),
        ("/api/batches?limit=0", 400, "\"error\""),
        ("/batches/nope", 404, "no batch nope"),
        ("/batches/..%2F..%2Fetc", 404, "no batch"),
        ("/api/batches/nope/items?failed=2", 400, "invalid `failed`"),
        ("/dates/2024-99-01", 404, "is not a YYYY-MM-DD date"),
        ("/dates/2031-01-01", 404, "no batch was ever run for 2031-01-01"),
        ("/nowhere", 404, "no such page"),
    ];
    for (path, status, says) in cases {
        let (code, body) = http_get(addr, path).unwrap();
        assert_eq!(code, status, "{path}: {body}");
        assert!(body.contains(says), "{path} should say {says:?}: {body}");
    }
    let (code, body) = http_get(addr, "/dead-letters").unwrap();
    assert_eq!((code, body.contains("No dead letters.")), (200, true), "an empty project is not an error");
    dashboard.stop();
}
