//! `serve`'s admin status page over real sockets: its token, escaping, and never on the webhook
//! port. (The browser test is in tests/e2e/operate.rs.)

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{client, Server, BIN};
use crate::operate::{config, contains, spool_bytes};

const ADMIN_TOKEN: &str = "admin-token-secret-0003";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_needs_its_token_escapes_bodies_and_is_not_on_the_webhook_port() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        json!({"admin_listen_address": "127.0.0.1:0", "admin_tokens": [ADMIN_TOKEN]}),
    );
    let server = Server::start(&cfg);
    let admin = admin_base(&server);
    let http = client();
    let r = http
        .post(server.url("/webhooks/data"))
        .body(r#"{"x":"<script>alert(1)</script>"}"#);
    let id = r.send().await.unwrap().json::<Value>().await.unwrap()["data"]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        "/admin",
        "/admin/",
        &format!("/admin/delivery/{id}"),
        "/admin/refused/1",
    ] {
        let s = http.get(server.url(path)).send().await.unwrap().status();
        assert_eq!(s, 404, "{path} on the webhook port");
    }
    let s = http
        .get(format!("{admin}/admin"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, 401);
    let s = http
        .get(format!("{admin}/admin?token=wrong-token-xxxxxxxx"))
        .send()
        .await
        .unwrap();
    assert_eq!(s.status(), 401);
    let page = http
        .get(format!("{admin}/admin/delivery/{id}"))
        .bearer_auth(ADMIN_TOKEN);
    let page = page.send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    let with_query = http
        .get(format!("{admin}/admin?token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    let cookie = with_query.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let html = with_query.text().await.unwrap();
    assert!(
        html.contains(&format!("/admin/delivery/{id}")) && html.contains(">data<"),
        "{html}"
    );
    let by_cookie = http
        .get(format!("{admin}/admin"))
        .header("Cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), 200);
    // The scheme's name is case-insensitive.
    let s = http
        .get(format!("{admin}/admin"))
        .header("Authorization", format!("bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, 200);
    // A hostile ledger id: the token is checked first, and the answer is the inert page.
    let hostile = format!("{admin}/admin/refused/%3Cscript%3Ex");
    let r = http.get(&hostile).send().await.unwrap();
    assert_eq!(r.status(), 401, "checked before the id is parsed");
    let r = http
        .get(&hostile)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("content-security-policy"));
    assert!(!r.text().await.unwrap().contains("<script>"));
    // The admin token is never in the spool.
    assert!(!contains(&spool_bytes(dir.path()), ADMIN_TOKEN));
}

/// The admin page's base URL, from the server's log line.
pub fn admin_base(server: &Server) -> String {
    for _ in 0..200 {
        let found = server.log.lock().unwrap().iter().find_map(|l| {
            let rest = l.split("admin status page on ").nth(1)?;
            Some(rest.split("/admin").next()?.to_owned())
        });
        if let Some(base) = found {
            return base;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("no admin address in the server's log");
}

#[test]
fn serve_refuses_an_open_admin_address_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), json!({"admin_listen_address": "0.0.0.0:0"}));
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("admin_tokens") && e.contains("loopback"), "{e}");
}
