//! A real headless Chromium (Debian's `chromium` and `chromium-driver` packages) driven over WebDriver
//! with fantoccini: one chromedriver process on a free port and one fresh browser profile per
//! [`Browser`]. `CHROMIUM` / `CHROMEDRIVER` override the binaries' paths.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
pub const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn binary(var: &str, default: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_string());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: `apt-get install chromium chromium-driver` (.ci/run installs them), or set {var}"
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a window of `width` x `height`.
    pub async fn start(width: u32, height: u32) -> Self {
        let chromium = binary("CHROMIUM", DEFAULT_CHROMIUM);
        let chromedriver = binary("CHROMEDRIVER", DEFAULT_CHROMEDRIVER);
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {addr} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = std::env::temp_dir().join(format!("props-chromium-{}", rand::random::<u64>()));
        // No network beyond the page under test: no QUIC probing, no component or sync traffic.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--window-size={width},{height}"),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), json!({ "binary": chromium, "args": args }));
        let client = ClientBuilder::rustls()
            .expect("rustls connector")
            .capabilities(capabilities)
            .connect(&format!("http://{addr}"))
            .await
            .expect("a WebDriver session on headless Chromium");
        Self { client, driver, profile }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("load {url}: {e}"));
    }

    /// The text of the element `css` matches (first one). Read in one script: pages that refresh
    /// themselves replace their elements, and an element found by one WebDriver call can be stale
    /// by the next.
    pub async fn text(&self, css: &str) -> String {
        let script = "const e = document.querySelector(arguments[0]); return e === null ? null : e.innerText;";
        let value = self.client.execute(script, vec![json!(css)]).await.unwrap_or_else(|e| panic!("read {css}: {e}"));
        match value {
            serde_json::Value::String(text) => text.trim().to_string(),
            _ => panic!("find {css}: no such element"),
        }
    }

    /// The attribute `name` of every element `css` matches, read in one script (see [`Self::text`]).
    pub async fn attrs(&self, css: &str, name: &str) -> Vec<String> {
        let script =
            "return Array.from(document.querySelectorAll(arguments[0]), e => e.getAttribute(arguments[1]) ?? '');";
        let value = self
            .client
            .execute(script, vec![json!(css), json!(name)])
            .await
            .unwrap_or_else(|e| panic!("read {css}: {e}"));
        serde_json::from_value(value).expect("a list of attribute values")
    }

    /// Waits (up to 10 s) until the page's URL ends with `suffix`: a click that submits a form returns
    /// before the browser navigated.
    pub async fn wait_for_url(&self, suffix: &str) {
        let mut last = String::new();
        let arrived = super::poll_until(Duration::from_secs(10), async || {
            last = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            last.ends_with(suffix).then_some(())
        })
        .await;
        assert!(arrived.is_some(), "the page never reached a URL ending with {suffix}; last: {last}");
    }

    pub async fn click(&self, css: &str) {
        let element = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("find {css}: {e}"));
        element.click().await.expect("click");
    }

    /// Polls `css`'s text until `accept` holds or `within` passed; returns every distinct text seen.
    pub async fn watch_text(&self, css: &str, within: Duration, accept: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        let accepted = super::poll_until(within, async || {
            let text = self.text(css).await;
            if seen.last() != Some(&text) {
                seen.push(text.clone());
            }
            accept(&text).then_some(())
        })
        .await;
        assert!(accepted.is_some(), "{css} never satisfied the check within {within:?}; saw {seen:?}");
        seen
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        self.stop_driver();
    }

    fn stop_driver(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test must not leave chromedriver (and its Chromium) running.
        self.stop_driver();
    }
}
