//! The operators' page in a real browser (headless chromium): sign in,
//! create and link a session by its QR, watch it live, send, replay a dead
//! letter, a session key's narrower view, and a session that cannot reach
//! WhatsApp saying why.

use std::sync::atomic::Ordering;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::support::*;

const ADMIN_KEY: &str = "dashboard-admin-key";
const PHONE: &str = "15550007001";
const CONTACT: &str = "15550007002";

/// Nothing but the bridge: each URL the page requested is on its origin
/// (or an inline data: image).
fn same_origin(urls: &[String], base: &str) {
    assert!(!urls.is_empty(), "the performance log recorded requests");
    // The browser's own pages (its new tab before the test navigates) are
    // not the dashboard's requests.
    for u in urls.iter().filter(|u| !u.starts_with("chrome")) {
        assert!(
            u.starts_with(&format!("{base}/")) || u.starts_with("data:"),
            "the page asked another origin for {u}"
        );
    }
}

/// The QR code the page shows, read from its image as a phone would.
async fn qr_on_page(page: &Browser) -> String {
    let src = page
        .wait_js(
            "the QR image",
            "const i = document.getElementById('qr'); \
             return i && !i.hidden && i.src.startsWith('data:image/png;base64,') ? i.src : null;",
        )
        .await;
    let b64 = src
        .as_str()
        .unwrap()
        .trim_start_matches("data:image/png;base64,");
    let png = base64::prelude::BASE64_STANDARD.decode(b64).unwrap();
    decode_qr(&png)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_links_watches_sends_and_replays() {
    let sim = sim().await;
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    cfg.auth.api_keys = vec![wapi::config::Secret(ADMIN_KEY.into())];
    cfg.auth.admin = Some((
        "admin".into(),
        wapi::config::Secret("admin-password".into()),
    ));
    cfg.webhook.max_attempts = 2;
    let bridge = Bridge::start(cfg).await;
    let base = bridge.base.clone();

    // The page and its files come with a policy that allows only the bridge.
    let r = bridge.http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");

    let page = Browser::start().await;
    page.goto(&format!("{base}/dashboard")).await;

    // A wrong key: an error, not a blank page. Its 401 is the one console
    // error this test causes on purpose.
    page.wait_text("#signin-h", "Sign in").await;
    assert_eq!(page.console_errors().await, Vec::<String>::new());
    page.fill("#key", "not-a-key").await;
    page.click("#key-form button").await;
    page.wait_text("#signin-error", "Sign-in refused").await;
    let errors = page.console_errors().await;
    assert!(
        errors
            .iter()
            .all(|e| e.contains("/v1/sessions") && e.contains("401")),
        "{errors:?}"
    );

    // The right key, submitted from the keyboard.
    page.fill("#key", &format!("{ADMIN_KEY}\u{E007}")).await;
    page.wait_text("#sessions-h", "Sessions").await;
    page.wait_text("#no-sessions", "No sessions").await;
    // Set in the page: still there later means the page never reloaded.
    page.js("window.notReloaded = true; return null;").await;

    // Create a session with a webhook.
    page.click("#create summary").await;
    page.fill("#c-name", "dash").await;
    page.fill("#c-url", &format!("{}dash", hook.url)).await;
    page.click("#create-form button[type=submit]").await;
    page.wait_text("#create-result", "Created dash").await;
    page.wait_text("#d-name", "dash").await;

    // The QR appears; the phone scans it; the page turns WORKING by itself.
    let code = qr_on_page(&page).await;
    let r = admin_post(
        &sim,
        "/scan",
        json!({"qr": code, "phone": PHONE, "push_name": "Dash Phone"}),
    )
    .await;
    assert_eq!(r.status(), 200, "scan through wa-sim's admin API");
    page.wait_text("#d-status", "WORKING").await;
    page.wait_text("#session-list", "WORKING").await;
    page.wait_text("#d-number", &format!("+{PHONE}")).await;
    page.wait_text("#d-push", "Dash Phone").await;
    assert_ne!(page.text("#d-since").await.as_deref(), Some("—"));
    assert_eq!(page.text("#d-reconnects").await.as_deref(), Some("0"));
    assert!(
        page.text("#link").await.is_none(),
        "the QR goes once linked"
    );

    // The list keeps a keyboard user's focus when it is rebuilt (as the
    // poll does when a status changes).
    let kept = page
        .js("document.querySelector('#session-list button').focus(); \
             document.getElementById('session-list').dataset.shown = ''; \
             renderList(); \
             return document.activeElement.dataset.session || null;")
        .await;
    assert_eq!(kept, "dash");

    // A contact's message shows in the live log.
    sim.contact_send(CONTACT, PHONE, "hello from a contact", Some("Carol"))
        .await
        .unwrap();
    page.wait_text("#log", "hello from a contact").await;
    page.wait_text("#log", "session.status").await;

    // Bad input says what is wrong.
    page.fill("#s-to", "not a number").await;
    page.fill("#s-text", "x").await;
    page.click("#send-form button[type=submit]").await;
    page.wait_text("#send-result", "to:").await;
    assert_eq!(
        page.js("return document.getElementById('send-result').className")
            .await,
        "error"
    );
    // The browser logs the 400 it answered, as it logs any failed request.
    let errors = page.console_errors().await;
    assert!(
        errors
            .iter()
            .all(|e| e.contains("/v1/sessions/dash/messages") && e.contains("400")),
        "{errors:?}"
    );

    // A text from the form reaches the contact.
    page.fill("#s-to", CONTACT).await;
    page.fill("#s-text", "hi from the page").await;
    page.click("#send-form button[type=submit]").await;
    let result = page.wait_text("#send-result", "Sent: ").await;
    let id = result.trim_start_matches("Sent: ").to_string();
    eventually(DEADLINE, "the contact's inbox", || async {
        sim.inbox(CONTACT)
            .iter()
            .any(|m| m.id == id && m.text == "hi from the page")
            .then_some(())
    })
    .await;
    // And a file, with its caption.
    let picture = tempfile::Builder::new().suffix(".png").tempfile().unwrap();
    std::fs::write(picture.path(), wapi::qr::png("a picture").unwrap()).unwrap();
    page.fill("#s-text", "a picture").await;
    page.fill("#s-file", picture.path().to_str().unwrap()).await;
    page.click("#send-form button[type=submit]").await;
    let result = eventually(DEADLINE, "a second id", || async {
        page.text("#send-result")
            .await
            .filter(|t| t.starts_with("Sent: ") && !t.ends_with(&id))
    })
    .await;
    let image_id = result.trim_start_matches("Sent: ").to_string();
    eventually(DEADLINE, "the picture in the contact's inbox", || async {
        sim.inbox(CONTACT)
            .iter()
            .any(|m| m.id == image_id && m.kind == "image" && m.text == "a picture")
            .then_some(())
    })
    .await;

    // The receiver fails: two messages become dead letters on the page;
    // replaying one, then all, from there delivers them.
    page.wait_text("#queue", "0 waiting, 0 retrying").await;
    hook.down.store(true, Ordering::SeqCst);
    let mut lost = Vec::new();
    for text in ["lost one", "lost two"] {
        lost.push(sim.contact_send(CONTACT, PHONE, text, None).await.unwrap());
    }
    // (Receipts of the sends above may die beside them: the rows of
    // message events are the ones to look at.)
    let rows = page
        .wait_js(
            "two dead messages listed",
            "const rows = [...document.querySelectorAll('#dead tbody tr')] \
               .filter(r => r.cells[0].textContent === 'message'); \
             return rows.length === 2 \
               ? rows.map(r => [...r.cells].slice(0, 3).map(c => c.textContent) \
                   .concat([r.querySelector('button').dataset.event])) \
               : null;",
        )
        .await;
    for row in rows.as_array().unwrap() {
        // Kind, attempts (WAPI_WEBHOOK_MAX_ATTEMPTS), last status.
        assert_eq!(
            row.as_array().unwrap()[0..3],
            [json!("message"), json!("2"), json!("503")],
            "{rows}"
        );
    }
    page.wait_js(
        "a dead count in the queue line",
        "return /[1-9][0-9]* dead/.test(document.getElementById('queue').textContent);",
    )
    .await;
    hook.down.store(false, Ordering::SeqCst);
    let first = rows[0][3].as_str().unwrap();
    page.click(&format!("#dead button[data-event={first}]"))
        .await;
    page.wait_text("#replay-result", "Replayed 1").await;
    eventually(DEADLINE, "one delivered", || async {
        let n = lost
            .iter()
            .filter(|id| {
                hook.of("dash", "message")
                    .iter()
                    .any(|e| e["payload"]["id"] == **id)
            })
            .count();
        (n == 1).then_some(())
    })
    .await;
    page.click("#replay-all").await;
    for id in &lost {
        event_of(&hook, id, DEADLINE).await;
    }
    page.wait_text("#no-dead", "None").await;

    // The webhook form: a secret is set (never shown back), then cleared.
    page.fill("#w-secret", "s3cret").await;
    page.click("#hook-form button[type=submit]").await;
    page.wait_text("#hook-result", "Saved").await;
    page.wait_text("#w-secret-state", "set").await;
    let v = bridge
        .http
        .get(format!("{base}/v1/sessions/dash"))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(v["webhook_secret_set"], true, "{v}");
    assert!(
        !page
            .js("return document.body.innerHTML")
            .await
            .as_str()
            .unwrap()
            .contains("s3cret")
    );

    // The page as the README shows it: from the top, the form closed.
    page.js("document.getElementById('create').open = false; window.scrollTo(0, 0); return null;")
        .await;
    page.client.set_window_size(1280, 1100).await.unwrap();
    let shot = page.screenshot().await;
    assert!(shot.starts_with(b"\x89PNG"), "a PNG screenshot");
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&out, &shot).unwrap();
    if std::env::var_os("WAPI_UPDATE_SCREENSHOT").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::write(docs, &shot).unwrap();
    }

    // Readable on a 375 px phone: nothing wider than the screen.
    page.client.set_window_size(375, 800).await.unwrap();
    let overflow = page
        .wait_js(
            "the narrow layout",
            "return window.innerWidth <= 400 ? [document.documentElement.scrollWidth, window.innerWidth] : null;",
        )
        .await;
    assert!(
        overflow[0].as_u64() <= overflow[1].as_u64(),
        "wider than the screen: {overflow}"
    );
    // Every control is named for a screen reader.
    let unnamed = page
        .js(
            "return [...document.querySelectorAll('input, select, textarea, button')] \
               .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') \
                 && !e.textContent.trim()) \
               .map(e => e.id || e.outerHTML);",
        )
        .await;
    assert_eq!(unnamed, json!([]), "controls without a name");
    assert_eq!(page.js("return window.notReloaded === true").await, true);

    // A session key sees its own session only, and cannot create.
    let key = sessions_and_key(&bridge, ADMIN_KEY, &["other"]).await;
    page.click("#signout").await;
    page.wait_text("#signin-h", "Sign in").await;
    // Signed out means forgotten: a reload asks again.
    page.client.refresh().await.unwrap();
    page.wait_text("#signin-h", "Sign in").await;
    page.fill("#key", &key).await;
    page.click("#key-form button").await;
    page.wait_text("#d-name", "other").await;
    let names = page
        .js("return [...document.querySelectorAll('#session-list .name')].map(e => e.textContent)")
        .await;
    assert_eq!(names, json!(["other"]));
    assert!(
        page.text("#create").await.is_none(),
        "no create form for a session key"
    );

    // The admin's user and password become a login token, which signing
    // out revokes.
    page.click("#signout").await;
    page.fill("#user", "admin").await;
    page.fill("#password", "admin-password").await;
    page.click("#user-form button").await;
    page.wait_text("#session-list", "dash").await;
    page.wait_text("#session-list", "other").await;
    assert!(page.text("#create").await.is_some(), "the admin may create");
    let saved = page
        .js("return sessionStorage.getItem('wapi.credential')")
        .await;
    let token = serde_json::from_str::<Value>(saved.as_str().unwrap()).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let with_token = || {
        bridge
            .http
            .get(format!("{base}/v1/sessions"))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(with_token().await.unwrap().status(), 200);
    page.click("#signout").await;
    page.wait_text("#signin-h", "Sign in").await;
    assert_eq!(page.js("return sessionStorage.length").await, 0);
    eventually(DEADLINE, "the token revoked", || async {
        (with_token().await.unwrap().status() == 401).then_some(())
    })
    .await;

    let errors = page.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    same_origin(&page.requested_urls().await, &base);
    page.close().await;
    bridge.stop().await;
}

/// With no credential configured the page opens straight away; a session
/// that cannot reach WhatsApp shows why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_why_a_session_cannot_connect() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, dir.path(), &StoreKind::Embedded);
    // Nothing listens there.
    cfg.whatsapp_url = format!("ws://127.0.0.1:{}/ws/chat", port());
    cfg.connection_timeout = std::time::Duration::from_secs(2);
    let bridge = Bridge::start(cfg).await;
    let page = Browser::start().await;
    page.goto(&format!("{}/", bridge.base)).await;
    page.wait_text("#sessions-h", "Sessions").await;
    assert!(
        page.text("#signout").await.is_none(),
        "no sign-out without credentials"
    );
    page.click("#create summary").await;
    page.fill("#c-name", "offline").await;
    page.click("#create-form button[type=submit]").await;
    page.wait_text("#d-status", "STARTING").await;
    let reason = page.wait_text("#d-reason", "cannot reach WhatsApp").await;
    assert!(reason.to_lowercase().contains("refused"), "{reason}");

    // Delete asks first.
    page.click("[data-action=delete]").await;
    page.wait_text("#confirm-text", "Delete this session?")
        .await;
    page.click("#confirm-cancel").await;
    assert_eq!(bridge.get("/v1/sessions/offline").await.status(), 200);
    page.click("[data-action=delete]").await;
    page.click("#confirm-ok").await;
    page.wait_text("#no-sessions", "No sessions").await;
    eventually(DEADLINE, "the session deleted", || async {
        (bridge.get("/v1/sessions/offline").await.status() == 404).then_some(())
    })
    .await;
    let errors = page.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    same_origin(&page.requested_urls().await, &bridge.base);
    page.close().await;
    bridge.stop().await;
}
