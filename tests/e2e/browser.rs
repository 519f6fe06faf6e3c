//! A real browser for the dashboard's tests: Debian's headless chromium,
//! driven through chromedriver (WebDriver) with fantoccini. Both are
//! required: a machine without them fails these tests (`.ci/run` installs
//! them), it does not skip them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::{eventually, port};

/// How long a page condition may take to hold (each wait polls it).
pub const PAGE: Duration = Duration::from_secs(20);

fn tool(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} is missing: install Debian's chromium and chromium-driver (.ci/run does), or set {var}",
        path.display()
    );
    path
}

pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

/// chromedriver's log endpoint (not in W3C WebDriver; fantoccini has no
/// method for it): `browser` (the console) or `performance` (DevTools'
/// network events). Each call returns what came since the last.
#[derive(Debug)]
struct GetLog(&'static str);

impl WebDriverCompatibleCommand for GetLog {
    fn endpoint(
        &self,
        base: &reqwest::Url,
        session: Option<&str>,
    ) -> Result<reqwest::Url, url_error::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (reqwest::Method, Option<String>) {
        (
            reqwest::Method::POST,
            Some(json!({"type": self.0}).to_string()),
        )
    }
}

/// `url::ParseError` without naming the url crate: reqwest's Url is it.
mod url_error {
    pub type ParseError = <reqwest::Url as std::str::FromStr>::Err;
}

impl Browser {
    pub async fn start() -> Self {
        let chromium = tool("WAPI_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = tool("WAPI_CHROMEDRIVER", "/usr/bin/chromedriver");
        let driver_port = port();
        let driver = tokio::process::Command::new(&chromedriver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{driver_port}");
        eventually(PAGE, "chromedriver up", || async {
            reqwest::get(format!("{url}/status")).await.ok().map(|_| ())
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-default-apps", "--lang=en-US",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a chromium session through chromedriver");
        let browser = Self {
            client,
            driver,
            _profile: profile,
        };
        // What the browser did before the test opened anything.
        browser.log("browser").await;
        browser.log("performance").await;
        browser
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("open the page");
    }

    /// Runs a script in the page and returns what it returns.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// The text of the element `css`, or `None` when it is absent or
    /// hidden (by `hidden` on it or an ancestor).
    pub async fn text(&self, css: &str) -> Option<String> {
        let script = format!(
            "const e = document.querySelector({}); \
             return e && e.closest('[hidden]') === null ? e.textContent : null;",
            json!(css)
        );
        self.js(&script).await.as_str().map(str::to_string)
    }

    /// Waits until the visible element `css` contains `part`; its text.
    pub async fn wait_text(&self, css: &str, part: &str) -> String {
        eventually(PAGE, &format!("{css} to show {part:?}"), || async {
            self.text(css).await.filter(|t| t.contains(part))
        })
        .await
    }

    /// Waits until `script` returns something other than null or false.
    pub async fn wait_js(&self, what: &str, script: &str) -> Value {
        eventually(PAGE, what, || async {
            let v = self.js(script).await;
            (!v.is_null() && v != Value::Bool(false)).then_some(v)
        })
        .await
    }

    pub async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(PAGE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Types into a field (after clearing it), as a person would.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self
            .client
            .wait()
            .at_most(PAGE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"));
        field.clear().await.unwrap();
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// What the browser logged since the last call: `browser` is the
    /// console, `performance` DevTools' events (network requests among them).
    pub async fn log(&self, kind: &'static str) -> Vec<Value> {
        match self.client.issue_cmd(GetLog(kind)).await {
            Ok(Value::Array(entries)) => entries,
            other => panic!("the {kind} log: {other:?}"),
        }
    }

    /// The console's errors since the last call.
    pub async fn console_errors(&self) -> Vec<String> {
        self.log("browser")
            .await
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Every URL the page asked for since the last call (documents,
    /// scripts, images, fetches, streams).
    pub async fn requested_urls(&self) -> Vec<String> {
        self.log("performance")
            .await
            .into_iter()
            .filter_map(|e| serde_json::from_str::<Value>(e["message"].as_str()?).ok())
            .filter(|m| m["message"]["method"] == "Network.requestWillBeSent")
            .filter_map(|m| {
                m["message"]["params"]["request"]["url"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }

    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.expect("a screenshot")
    }

    pub async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}
