//! `scim-sync demo --walkthrough`: the whole story of one person, told by the running parts
//! themselves. This process plays the IdP (SCIM over HTTP to the daemon) and the operator
//! (`POST /admin/resync?wait=true`); the bundled simulator is the control plane, and after each
//! step the walkthrough prints what changed in it.

use super::{random_token, secrets, sim_options, DemoError};
use crate::config::Config;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

/// What went wrong while telling the story: a step the daemon or the simulator did not answer
/// as the story needs.
fn step_failed(what: &str, detail: impl std::fmt::Display) -> DemoError {
    DemoError::Walkthrough(format!("{what}: {detail}"))
}

/// The control plane as facts an admin reads: one line per user, pending invite, workspace and
/// explicit workspace membership.
fn facts(state: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let list = |key: &str| state[key].as_array().cloned().unwrap_or_default();
    for u in list("users") {
        out.insert(format!(
            "user {} (org {})",
            u["email"].as_str().unwrap_or("?"),
            u["role"].as_str().unwrap_or("?")
        ));
    }
    for i in list("invites") {
        if i["status"] == "pending" {
            out.insert(format!(
                "invite {} (org {}, pending)",
                i["email"].as_str().unwrap_or("?"),
                i["role"].as_str().unwrap_or("?")
            ));
        }
    }
    for w in list("workspaces") {
        let name = w["name"].as_str().unwrap_or("?");
        out.insert(format!("workspace {name}"));
        for m in w["members"].as_array().into_iter().flatten() {
            if m["implicit"] == true {
                continue;
            }
            out.insert(format!(
                "workspace {name}: {} ({})",
                m["email"].as_str().unwrap_or("?"),
                m["role"].as_str().unwrap_or("?")
            ));
        }
    }
    out
}

/// The parts, started on ports the system picks, and an HTTP client for each role.
struct Stage {
    http: reqwest::Client,
    scim: String,
    scim_token: String,
    admin: String,
    admin_token: String,
    control: String,
    facts: BTreeSet<String>,
}

impl Stage {
    async fn send(
        &self,
        method: reqwest::Method,
        url: String,
        token: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), DemoError> {
        let mut rb = self.http.request(method, &url).bearer_auth(token);
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let r = rb.send().await.map_err(|e| step_failed(&url, e))?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await.map_err(|e| step_failed(&url, e))?;
        // An empty body (204) reads as null.
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// A SCIM request as the IdP sends it; prints the request line and the answer's status.
    async fn idp(
        &self,
        out: &mut dyn Write,
        method: reqwest::Method,
        path: &str,
        body: Value,
        expect: u16,
    ) -> Result<Value, DemoError> {
        let shown = body.to_string();
        let url = format!("{}{path}", self.scim);
        let (status, v) = self
            .send(method.clone(), url, &self.scim_token, Some(body))
            .await?;
        say(
            out,
            &format!("   IdP:  {method} {path} {shown}  -> {status}"),
        )?;
        if status != expect {
            return Err(step_failed(&format!("{method} {path}"), v));
        }
        Ok(v)
    }

    /// `POST /admin/resync?wait=true`, as an operator would; prints what the run applied.
    async fn resync(&self, out: &mut dyn Write) -> Result<(), DemoError> {
        let url = format!("{}/admin/resync?wait=true", self.admin);
        let (status, v) = self
            .send(reqwest::Method::POST, url, &self.admin_token, None)
            .await?;
        if status != 200 {
            return Err(step_failed("POST /admin/resync?wait=true", v));
        }
        let results = v["summary"]["results"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if results.is_empty() {
            say(
                out,
                &format!(
                    "   scim-sync: {} found nothing to change",
                    v["run_id"].as_str().unwrap_or("the run")
                ),
            )?;
        }
        for r in results {
            let who = r["email"]
                .as_str()
                .or(r["name"].as_str())
                .or(r["workspace"].as_str())
                .unwrap_or("");
            say(
                out,
                &format!(
                    "   scim-sync: {} {} {who}: {} ({})",
                    v["run_id"].as_str().unwrap_or("run"),
                    r["op"].as_str().unwrap_or("op"),
                    r["result"].as_str().unwrap_or("?"),
                    r["reason"].as_str().unwrap_or("")
                ),
            )?;
        }
        Ok(())
    }

    /// Prints what changed in the control plane since the last look.
    async fn control_plane(&mut self, out: &mut dyn Write) -> Result<(), DemoError> {
        let url = format!("{}/state", self.control);
        let (status, state) = self.send(reqwest::Method::GET, url, "", None).await?;
        if status != 200 {
            return Err(step_failed("simulator state", state));
        }
        let now = facts(&state);
        let mut changed = false;
        for gone in self.facts.difference(&now) {
            say(out, &format!("   Portkey: - {gone}"))?;
            changed = true;
        }
        for new in now.difference(&self.facts) {
            say(out, &format!("   Portkey: + {new}"))?;
            changed = true;
        }
        if !changed {
            say(out, "   Portkey: (unchanged)")?;
        }
        self.facts = now;
        Ok(())
    }
}

fn say(out: &mut dyn Write, line: &str) -> Result<(), DemoError> {
    writeln!(out, "{line}").map_err(|e| step_failed("writing the walkthrough", e))
}

/// Runs the story and stops everything it started. The store is a file in a fresh temporary
/// directory, removed at the end.
pub async fn run(out: &mut dyn Write) -> Result<(), DemoError> {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("scim-sync-walkthrough-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|e| step_failed("temporary directory", e))?;
    let result = story(out, &dir).await;
    // The store is throwaway: a directory left behind is only untidy.
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    say(
        out,
        &format!(
            "\nDone in {:.1} s. `scim-sync demo` (without --walkthrough) keeps the parts running for \
             your own requests.",
            started.elapsed().as_secs_f64()
        ),
    )
}

async fn story(out: &mut dyn Write, dir: &std::path::Path) -> Result<(), DemoError> {
    let api_key = random_token();
    let sim = portkey_sim::spawn(([127, 0, 0, 1], 0).into(), sim_options(&api_key, None))
        .await
        .map_err(|e| step_failed("starting the simulator", e))?;
    let (scim_token, admin_token) = (random_token(), random_token());
    let env = secrets(&scim_token, &admin_token, &api_key);
    // Runs happen when the walkthrough asks (a long debounce keeps change-driven runs out of
    // the way), so each step's output is the run that step caused.
    let toml = format!(
        "[scim]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = {:?}\n\
         [portkey]\nbase_url = \"{}\"\n[sync]\ndebounce_ms = 600000\ndebounce_max_ms = 600000\n",
        dir.join("store.redb").display().to_string(),
        sim.base_url()
    );
    let config = Config::from_toml(&toml, std::path::Path::new("(walkthrough)"), &env)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = crate::app::start(&config, async move {
        // Dropped or sent: either way the story is over.
        let _ = stopped.await;
    })
    .await?;
    let mut stage = Stage {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| step_failed("HTTP client", e))?,
        scim: format!("http://{}{}", running.scim_addr, config.scim.base_path),
        scim_token,
        admin: format!("http://{}", running.admin_addr),
        admin_token,
        control: sim.control_url(),
        facts: BTreeSet::new(),
    };
    let told = tell(out, &mut stage).await;
    drop(stop);
    if let Err(e) = running.done.await {
        tracing::warn!(error = %e, "the walkthrough's daemon did not stop cleanly");
    }
    sim.shutdown().await;
    told
}

async fn tell(out: &mut dyn Write, stage: &mut Stage) -> Result<(), DemoError> {
    use reqwest::Method;
    say(
        out,
        "scim-sync walkthrough: this process plays the IdP and the operator; scim-sync runs for \
         real on a temporary store; the control plane is the bundled simulator.\n",
    )?;
    say(out, "0. Before anything: the control plane has its owner")?;
    stage.resync(out).await?;
    stage.control_plane(out).await?;

    say(out, "\n1. The IdP assigns Alice to the app")?;
    let alice = stage
        .idp(
            out,
            Method::POST,
            "/Users",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "alice@example.com",
                "name": {"givenName": "Alice", "familyName": "Example"},
                "emails": [{"value": "alice@example.com", "primary": true}],
                "active": true
            }),
            201,
        )
        .await?;
    let alice_id = alice["id"].as_str().unwrap_or_default().to_string();
    stage.resync(out).await?;
    stage.control_plane(out).await?;

    say(out, "\n2. Alice accepts the invite (in Portkey)")?;
    let url = format!("{}/invites/accept", stage.control);
    let (status, v) = stage
        .send(
            Method::POST,
            url,
            "",
            Some(json!({"emails": ["alice@example.com"]})),
        )
        .await?;
    if status != 200 {
        return Err(step_failed("accepting the invite", v));
    }
    stage.control_plane(out).await?;
    stage.resync(out).await?;

    say(
        out,
        "\n3. The IdP pushes the group ws-Demo-role-member with Alice in it",
    )?;
    stage
        .idp(
            out,
            Method::POST,
            "/Groups",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "ws-Demo-role-member",
                "members": [{"value": alice_id}]
            }),
            201,
        )
        .await?;
    stage.resync(out).await?;
    stage.control_plane(out).await?;

    say(out, "\n4. The IdP deactivates Alice (she left the company)")?;
    stage
        .idp(
            out,
            Method::PATCH,
            &format!("/Users/{alice_id}"),
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": false}}]
            }),
            200,
        )
        .await?;
    stage.resync(out).await?;
    stage.control_plane(out).await?;
    Ok(())
}
