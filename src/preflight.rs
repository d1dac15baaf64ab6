//! `check-config --online`: reach the control plane with the configured key and find out,
//! before the daemon runs, whether the key may make the reads every run needs.
//!
//! The Admin API has no call that lists a key's scopes, so each read the daemon makes is tried
//! once (one page, filtered where the API allows) and a `403` is taken as the scope it needs
//! being absent. Writes are not tried: they would change the control plane. They are listed
//! with their scopes, so the key can be given all of them at once.

use crate::config::PortkeyConfig;
use crate::portkey::{self, Client, ErrorKind, InviteFilter, MemberFilter, UserFilter};
use std::time::Duration;

/// The writes the reconciler makes and the Admin-API scope each needs (KEYS scope names).
pub const WRITE_SCOPES: [(&str, &str); 7] = [
    (
        "organisation_users.create",
        "invite a person (POST /admin/users/invites)",
    ),
    (
        "organisation_users.update",
        "change an org role (PUT /admin/users/{id})",
    ),
    (
        "organisation_users.delete",
        "remove a person, revoke an invite (DELETE /admin/users/{id}, /admin/users/invites/{id})",
    ),
    (
        "workspaces.create",
        "create a mapped workspace that does not exist ([sync] create_workspaces)",
    ),
    (
        "workspace_users.create",
        "add people to a workspace (POST /admin/workspaces/{id}/users)",
    ),
    (
        "workspace_users.update",
        "change a workspace role (PUT /admin/workspaces/{id}/users/{user})",
    ),
    (
        "workspace_users.delete",
        "remove people from a workspace (DELETE /admin/workspaces/{id}/users/{user})",
    ),
];

/// How one read went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answered; the text says what came back.
    Allowed(String),
    /// `403`: the key lacks the scope.
    Refused(String),
    /// Not tried: there was nothing to try it on, or an earlier failure made it pointless.
    Skipped(String),
    /// Answered with something else that stops the daemon (404, 401, a body that is not the
    /// Admin API's).
    Failed(String),
}

/// One read the daemon makes.
#[derive(Debug, Clone)]
pub struct Probe {
    pub what: &'static str,
    pub call: &'static str,
    pub scope: &'static str,
    pub verdict: Verdict,
}

/// Everything `check-config --online` found.
#[derive(Debug, Clone)]
pub struct Report {
    pub base_url: String,
    pub probes: Vec<Probe>,
    /// The control plane did not answer at all (connect error, timeout).
    pub unreachable: Option<String>,
}

/// Process exit codes of `check-config --online` (the offline part exits 2 on a bad config).
pub mod exit {
    pub const OK: u8 = 0;
    /// The control plane answered but refused a read the daemon needs, or the key.
    pub const REFUSED: u8 = 1;
    /// The control plane did not answer.
    pub const UNREACHABLE: u8 = 3;
}

impl Report {
    pub fn ok(&self) -> bool {
        self.unreachable.is_none()
            && self
                .probes
                .iter()
                .all(|p| matches!(p.verdict, Verdict::Allowed(_) | Verdict::Skipped(_)))
    }

    pub fn exit_code(&self) -> u8 {
        if self.unreachable.is_some() {
            exit::UNREACHABLE
        } else if self.ok() {
            exit::OK
        } else {
            exit::REFUSED
        }
    }

    /// Scopes whose reads were refused.
    pub fn missing_scopes(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = self
            .probes
            .iter()
            .filter(|p| matches!(p.verdict, Verdict::Refused(_)))
            .map(|p| p.scope)
            .collect();
        out.dedup();
        out
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        push_line!(
            s,
            "Control plane {} (key from PORTKEY_API_KEY):",
            self.base_url
        );
        if let Some(e) = &self.unreachable {
            push_line!(s, "  UNREACHABLE: {e}");
            push_line!(
                s,
                "Fix: check [portkey] base_url, DNS, and that this host may connect to it \
                 (firewall, proxy); then run this again."
            );
            return s;
        }
        push_line!(s, "  Reads every run makes (tried now):");
        for p in &self.probes {
            let (word, detail) = match &p.verdict {
                Verdict::Allowed(d) => ("allowed", d.as_str()),
                Verdict::Refused(d) => ("REFUSED", d.as_str()),
                Verdict::Skipped(d) => ("skipped", d.as_str()),
                Verdict::Failed(d) => ("FAILED", d.as_str()),
            };
            push_line!(
                s,
                "    {:<26} {:<34} {:<26} {word}: {detail}",
                p.what,
                p.call,
                p.scope
            );
        }
        push_line!(
            s,
            "  Writes the daemon makes (not tried: they would change the control plane); the key \
             needs these scopes too:"
        );
        for (scope, what) in WRITE_SCOPES {
            push_line!(s, "    {scope:<26} {what}");
        }
        let missing = self.missing_scopes();
        if !missing.is_empty() {
            push_line!(
                s,
                "The key lacks {} scope(s) every run needs: {}.\nFix: give the Admin API key \
                 these scopes and the write scopes above (an org owner or admin edits Admin API \
                 keys in Portkey; see \
                 https://portkey.ai/docs/product/enterprise-offering/org-management/api-keys-authn-and-authz), \
                 or create a key that has them and put it in PORTKEY_API_KEY.",
                missing.len(),
                missing.join(", ")
            );
        }
        if self
            .probes
            .iter()
            .any(|p| matches!(p.verdict, Verdict::Failed(_)))
        {
            push_line!(s, "Some reads failed; see FAILED above.");
        }
        if self.ok() {
            push_line!(
                s,
                "Control plane OK: every read the daemon needs is allowed."
            );
        }
        s
    }
}

/// Tries the reads. Waits at most a few seconds per call, however the config sets its retries:
/// this is a check run by a person, not a run that must get through.
pub async fn check(p: &PortkeyConfig) -> Report {
    let mut cfg = crate::reconcile::run::client_config(p);
    cfg.request_timeout = cfg.request_timeout.min(Duration::from_secs(10));
    cfg.retry.max_elapsed = cfg.retry.max_elapsed.min(Duration::from_secs(5));
    cfg.retry.initial_interval = cfg.retry.initial_interval.min(Duration::from_millis(200));
    cfg.retry.max_interval = cfg.retry.max_interval.min(Duration::from_secs(1));
    let mut report = Report {
        base_url: p.base_url.clone(),
        probes: Vec::new(),
        unreachable: None,
    };
    let client = match Client::new(cfg) {
        Ok(c) => c,
        Err(e) => {
            report.probes.push(Probe {
                what: "build the client",
                call: "-",
                scope: "-",
                verdict: Verdict::Failed(e.to_string()),
            });
            return report;
        }
    };

    // Owners: every organisation has one, so a user to read back, and the list stays short.
    let users = client
        .list_users(&UserFilter {
            email: None,
            role: Some(portkey::OrgRole::Owner),
        })
        .await;
    let owner = users.as_ref().ok().and_then(|u| u.first().cloned());
    let first = judge(
        &users,
        |u| format!("{} owner(s) listed", u.len()),
        "organisation_users.list",
    );
    if let Some(why) = stop_reason(&users) {
        report.unreachable = Some(why);
        return report;
    }
    let key_refused = matches!(&users, Err(e) if e.status() == Some(401));
    report.probes.push(Probe {
        what: "list users",
        call: "GET /admin/users",
        scope: "organisation_users.list",
        verdict: first,
    });
    if key_refused {
        report.probes.push(Probe {
            what: "(the other reads)",
            call: "-",
            scope: "-",
            verdict: Verdict::Skipped(
                "not tried: the control plane refused the key itself (401). Fix: set \
                 PORTKEY_API_KEY to an Admin API key of this organisation"
                    .into(),
            ),
        });
        return report;
    }

    other_reads(&client, owner.as_ref(), &mut report).await;
    report
}

/// The reads after the first list: one user, invites, workspaces, one workspace's members.
async fn other_reads(client: &Client, owner: Option<&portkey::User>, report: &mut Report) {
    let read_user = match owner {
        Some(u) => judge(
            &client.get_user(&u.id).await,
            |_| "read an owner back".into(),
            "organisation_users.read",
        ),
        None => Verdict::Skipped("no user listed to read back".into()),
    };
    report.probes.push(Probe {
        what: "read a user",
        call: "GET /admin/users/{id}",
        scope: "organisation_users.read",
        verdict: read_user,
    });

    let invites = client
        .list_invites(&InviteFilter {
            status: Some(portkey::InviteStatus::Pending),
            ..InviteFilter::default()
        })
        .await;
    report.probes.push(Probe {
        what: "list invites",
        call: "GET /admin/users/invites",
        scope: "organisation_users.list",
        verdict: judge(
            &invites,
            |i| format!("{} pending", i.len()),
            "organisation_users.list",
        ),
    });

    let workspaces = client
        .list_workspaces(&portkey::WorkspaceFilter::default())
        .await;
    report.probes.push(Probe {
        what: "list workspaces",
        call: "GET /admin/workspaces",
        scope: "workspaces.list",
        verdict: judge(
            &workspaces,
            |w| format!("{} workspace(s)", w.len()),
            "workspaces.list",
        ),
    });

    let members = match workspaces.as_ref().ok().and_then(|w| w.first()) {
        Some(ws) => {
            // Filtered to one person: one short page, whatever the workspace's size.
            let filter = MemberFilter {
                email: owner.map(|o| o.email.clone()),
                role: None,
            };
            judge(
                &client.list_members(&ws.id, &filter).await,
                |_| format!("listed members of '{}'", ws.name),
                "workspace_users.list",
            )
        }
        None if workspaces.is_ok() => Verdict::Skipped(
            "no workspace yet to list; the daemon needs this scope once it manages one".into(),
        ),
        None => Verdict::Skipped("no workspace could be listed".into()),
    };
    report.probes.push(Probe {
        what: "list workspace members",
        call: "GET /admin/workspaces/{id}/users",
        scope: "workspace_users.list",
        verdict: members,
    });
}

/// A connect error or timeout on the first call: nothing else will get through either.
fn stop_reason<T>(r: &Result<T, portkey::Error>) -> Option<String> {
    match r {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::Connect(_) | ErrorKind::Timeout(_) | ErrorKind::Network(_)
            ) =>
        {
            Some(e.to_string())
        }
        _ => None,
    }
}

fn judge<T>(
    r: &Result<T, portkey::Error>,
    allowed: impl FnOnce(&T) -> String,
    scope: &str,
) -> Verdict {
    match r {
        Ok(v) => Verdict::Allowed(allowed(v)),
        Err(e) => match e.status() {
            Some(403) => Verdict::Refused(format!("{e}; the key lacks {scope}")),
            Some(401) => Verdict::Failed(format!(
                "{e}; the key is not accepted (wrong, revoked, or not an Admin API key)"
            )),
            Some(404) => Verdict::Failed(format!(
                "{e}; is [portkey] base_url the Admin API base (ending in /v1)?"
            )),
            _ if matches!(e.kind(), ErrorKind::Decode(_) | ErrorKind::Redirect { .. }) => {
                Verdict::Failed(format!(
                    "{e}; the answer is not the Admin API's: check [portkey] base_url"
                ))
            }
            _ => Verdict::Failed(e.to_string()),
        },
    }
}
