//! The fuzz targets of `fuzz/` as bounded property tests on stable (docs/fuzzing.md).
//!
//! Each target's properties live in `scim_sync::fuzzing`, which the libFuzzer targets call too.
//! Here they run over every committed corpus file, then over inputs generated from a fixed seed:
//! grammar-built filters, JSON-level mutations of the corpus bodies, generated config files, and
//! byte-level mutations of everything. A failure names the seed and the input, so it replays.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scim_sync::fuzzing;
use scim_sync::scim::filter::{self, MAX_FILTER_COMPARISONS, MAX_SUBSTRING_COMPARISONS};
use scim_sync::scim::patch::{self, MAX_OPERATIONS, MAX_VALUES_PER_REQUEST};
use scim_sync::scim::resource::{MAX_MULTI_VALUES, MAX_STRING_BYTES};
use scim_sync::scim::ScimType;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

const SEED: u64 = 0x5c1a_f022;
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

type Target = fn(&[u8]) -> Result<(), String>;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path.display().to_string(), bytes)
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{}: corpus too small", dir.display());
    files
}

/// Runs every input and fails with the first few violations (a panic inside the library fails
/// the test by itself, naming the input through the last `what` printed).
fn check(target: &str, f: Target, inputs: impl IntoIterator<Item = (String, Vec<u8>)>) -> usize {
    let mut failures = Vec::new();
    let mut n = 0;
    for (what, input) in inputs {
        n += 1;
        let outcome = std::panic::catch_unwind(|| f(&input));
        let shown = String::from_utf8_lossy(&input);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(v)) => failures.push(format!("{what}: {shown:.300}\n  -> {v:.600}")),
            Err(_) => failures.push(format!("{what}: {shown:.300}\n  -> panicked")),
        }
        if failures.len() >= 5 {
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{target} (seed {SEED:#x}):\n{}",
        failures.join("\n")
    );
    n
}

#[test]
fn the_committed_corpus_holds_every_property() {
    for (target, f) in [
        ("filter", fuzzing::filter as Target),
        ("patch", fuzzing::patch),
        ("resource", fuzzing::resource),
        ("config", fuzzing::config),
    ] {
        check(target, f, corpus(target));
    }
}

// ---- byte-level mutation (what libFuzzer does first) -----------------------------------------

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"(",
    b")",
    b"[",
    b"]",
    b" ",
    b"  ",
    b"\\",
    b".",
    b":",
    b" and ",
    b" or ",
    b"not ",
    b" eq ",
    b" pr",
    b"\"\\u0000\"",
    b"\xff",
    b"\xc3\xa9",
    b"{",
    b"}",
    b",",
    b"null",
    b"[[",
    b"=",
    b"\n",
    b"-1e999",
    b"18446744073709551616",
];

fn mutate_bytes(rng: &mut StdRng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let at = rng.gen_range(0..=v.len());
        match rng.gen_range(0..6) {
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let piece = INTERESTING[rng.gen_range(0..INTERESTING.len())];
                v.splice(at..at, piece.iter().copied());
            }
            2 if at < v.len() => {
                let end = rng.gen_range(at..=v.len().min(at + 16));
                v.drain(at..end);
            }
            3 if at < v.len() => {
                let end = rng.gen_range(at..=v.len().min(at + 32));
                let piece = v[at..end].to_vec();
                v.splice(at..at, piece);
            }
            4 if !other.is_empty() => {
                let from = rng.gen_range(0..other.len());
                let end = rng.gen_range(from..=other.len().min(from + 64));
                v.splice(at..at, other[from..end].iter().copied());
            }
            _ => v.truncate(at),
        }
    }
    v
}

fn byte_mutants(target: &str, rng: &mut StdRng, n: usize) -> Vec<(String, Vec<u8>)> {
    let seeds = corpus(target);
    (0..n)
        .map(|i| {
            let (name, a) = &seeds[rng.gen_range(0..seeds.len())];
            let (_, b) = &seeds[rng.gen_range(0..seeds.len())];
            (
                format!("byte mutant {i} of {name}"),
                mutate_bytes(rng, a, b),
            )
        })
        .collect()
}

// ---- filters ---------------------------------------------------------------------------------

const FILTER_ATTRS: &[&str] = &[
    "userName",
    "USERNAME",
    "name.givenName",
    "name.familyName",
    "emails",
    "emails.value",
    "emails.type",
    "emails.primary",
    "active",
    "id",
    "externalId",
    "displayName",
    "title",
    "meta.lastModified",
    "meta.created",
    "members",
    "members.value",
    "roles",
    "roles.primary",
    "phoneNumbers.value",
    "x509Certificates.value",
    "schemas",
    "nickName",
    "noSuchAttr",
    "name.noSuchSub",
    "urn:ietf:params:scim:schemas:core:2.0:User:userName",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    "urn:example:other:attr",
];
const SUB_ATTRS: &[&str] = &[
    "value",
    "type",
    "primary",
    "display",
    "$ref",
    "formatted",
    "x",
];
const OPS: &[&str] = &[
    "eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le", "EQ", "Co",
];
const VALUES: &[&str] = &[
    "\"alice@example.com\"",
    "\"ALICE@EXAMPLE.COM\"",
    "\"work\"",
    "\"True\"",
    "\"false\"",
    "true",
    "false",
    "null",
    "42",
    "-0.5",
    "1e308",
    "\"\"",
    "\"2011-05-13T04:42:34Z\"",
    "\"2011-05-13\"",
    "\"\\u00e9\\\"\\\\\"",
    "\"g1\"",
    "\"b1\"",
    "\"Sales\"",
    "\"00u1a2b3c4d5e6f7g8h9\"",
    "\"ı\"",
    "\"İ\"",
    "\"ß\"",
    "\"2819c223-7f76-453a-919d-413861904646\"",
];

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

fn sp(rng: &mut StdRng) -> &'static str {
    pick(rng, &[" ", " ", " ", "  ", "\t"])
}

fn gen_comparison(rng: &mut StdRng, attrs: &[&str]) -> String {
    let attr = pick(rng, attrs);
    if rng.gen_ratio(1, 6) {
        return format!("{attr}{}pr", sp(rng));
    }
    let (s1, s2) = (sp(rng), sp(rng));
    format!("{attr}{s1}{}{s2}{}", pick(rng, OPS), pick(rng, VALUES))
}

fn gen_filter(rng: &mut StdRng, depth: u32, attrs: &[&str], in_brackets: bool) -> String {
    let choice = if depth >= 4 { 0 } else { rng.gen_range(0..10) };
    match choice {
        5 | 6 => {
            let joiner = pick(rng, &["and", "or", "AND", "Or"]);
            let parts: Vec<String> = (0..rng.gen_range(2..=4))
                .map(|_| gen_filter(rng, depth + 1, attrs, in_brackets))
                .collect();
            parts.join(&format!(" {joiner} "))
        }
        7 => format!(
            "{}({})",
            pick(rng, &["not ", "NOT ", "not  "]),
            gen_filter(rng, depth + 1, attrs, in_brackets)
        ),
        8 => format!("({})", gen_filter(rng, depth + 1, attrs, in_brackets)),
        9 if !in_brackets => {
            let parent = pick(
                rng,
                &["emails", "members", "roles", "phoneNumbers", "name", "x"],
            );
            let inner = gen_filter(rng, depth + 1, SUB_ATTRS, true);
            if rng.gen_bool(0.5) {
                format!("{parent}[{inner}]")
            } else {
                // Entra's `emails[type eq "work"].value eq "…"`.
                format!("{parent}[{inner}].{}", gen_comparison(rng, SUB_ATTRS))
            }
        }
        _ => gen_comparison(rng, attrs),
    }
}

#[test]
fn generated_filters_hold_the_properties() {
    let mut rng = StdRng::seed_from_u64(SEED);
    let generated: Vec<(String, Vec<u8>)> = (0..2000)
        .map(|i| {
            let text = gen_filter(&mut rng, 0, FILTER_ATTRS, false);
            (format!("generated filter {i}"), text.into_bytes())
        })
        .collect();
    let mutants = byte_mutants("filter", &mut rng, 2000);
    let n = check(
        "filter",
        fuzzing::filter,
        generated.into_iter().chain(mutants),
    );
    assert_eq!(n, 4000);
}

// ---- JSON bodies -----------------------------------------------------------------------------

const BODY_KEYS: &[&str] = &[
    "userName",
    "USERNAME",
    "displayName",
    "name",
    "name.givenName",
    "givenName",
    "familyName",
    "emails",
    "value",
    "type",
    "primary",
    "display",
    "active",
    "externalId",
    "id",
    "meta",
    "members",
    "groups",
    "password",
    "roles",
    "title",
    "phoneNumbers",
    "addresses",
    "formatted",
    "x509Certificates",
    "manager",
    "employeeNumber",
    "$ref",
    "schemas",
    "Operations",
    "op",
    "path",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    "urn:ietf:params:scim:schemas:core:2.0:User:nickName",
    "unknownThing",
];
const PATHS: &[&str] = &[
    "displayName",
    "name.givenName",
    "emails",
    "emails[type eq \"work\"].value",
    "emails[type eq \"work\"]",
    "emails[value co \"@\"].primary",
    "members",
    "members[value eq \"u1\"]",
    "members[display eq \"alice\"]",
    "roles[primary eq \"True\"].value",
    "active",
    "title",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
    "id",
    "meta",
    "userName",
    "externalId",
    "x509Certificates[value pr].value",
    "phoneNumbers[type eq \"mobile\"]",
    "noSuch",
    "emails[",
    "name.givenName.x",
    "members[value eq \"u1\" or value eq \"u2\"]",
];

fn gen_string(rng: &mut StdRng) -> String {
    match rng.gen_range(0..8) {
        0 => String::new(),
        1 => "x".repeat(rng.gen_range(MAX_STRING_BYTES - 2..MAX_STRING_BYTES + 3)),
        2 => "True".into(),
        3 => "{\"id\":\"06b0\",\"value\":\"25\",\"displayName\":\"R\"}".into(),
        4 => pick(rng, PATHS).to_string(),
        5 => pick(
            rng,
            &[
                "alice@example.com",
                " Bob@Example.COM ",
                "é",
                "\u{0}",
                "u1",
                "g1",
            ],
        )
        .into(),
        _ => format!("v{}", rng.gen_range(0..1000)),
    }
}

fn gen_value(rng: &mut StdRng, depth: u32) -> Value {
    let top = if depth >= 3 { 5 } else { 8 };
    match rng.gen_range(0..top) {
        0 => Value::Null,
        1 => json!(rng.gen_bool(0.5)),
        2 => match rng.gen_range(0..3) {
            0 => json!(rng.gen_range(-5i64..5)),
            1 => json!(u64::MAX),
            _ => json!(rng.gen_range(-1e6f64..1e6)),
        },
        3 | 4 => Value::String(gen_string(rng)),
        5 => {
            let n = if rng.gen_ratio(1, 20) {
                MAX_MULTI_VALUES + 1
            } else {
                rng.gen_range(0..4)
            };
            let item = gen_value(rng, depth + 1);
            Value::Array(
                (0..n)
                    .map(|i| {
                        if i % 2 == 0 {
                            item.clone()
                        } else {
                            gen_value(rng, 3)
                        }
                    })
                    .collect(),
            )
        }
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.gen_range(0..5) {
                m.insert(pick(rng, BODY_KEYS).to_string(), gen_value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// Changes one node of `v`: replaces it, drops or re-cases a key, or repeats a list element.
fn mutate_json(rng: &mut StdRng, v: &mut Value, depth: u32) {
    let descend = depth < 6 && rng.gen_ratio(2, 3);
    match v {
        Value::Object(m) if !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let key = keys[rng.gen_range(0..keys.len())].clone();
            match rng.gen_range(0..6) {
                0 => {
                    m.remove(&key);
                }
                1 => {
                    if let Some(x) = m.remove(&key) {
                        m.insert(key.to_uppercase(), x);
                    }
                }
                2 => {
                    m.insert(pick(rng, BODY_KEYS).to_string(), gen_value(rng, depth));
                }
                _ if descend => {
                    if let Some(x) = m.get_mut(&key) {
                        mutate_json(rng, x, depth + 1);
                    }
                }
                _ => {
                    m.insert(key, gen_value(rng, depth));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = rng.gen_range(0..a.len());
            match rng.gen_range(0..4) {
                0 => {
                    let x = a[i].clone();
                    let times = if rng.gen_bool(0.5) {
                        1
                    } else {
                        MAX_MULTI_VALUES
                    };
                    a.extend(std::iter::repeat_n(x, times));
                }
                1 => {
                    a.remove(i);
                }
                _ if descend => mutate_json(rng, &mut a[i], depth + 1),
                _ => a[i] = gen_value(rng, depth),
            }
        }
        _ => *v = gen_value(rng, depth),
    }
}

fn json_mutants(target: &str, rng: &mut StdRng, n: usize) -> Vec<(String, Vec<u8>)> {
    let seeds: Vec<(String, Value)> = corpus(target)
        .into_iter()
        .filter_map(|(name, b)| Some((name, serde_json::from_slice(&b).ok()?)))
        .collect();
    (0..n)
        .map(|i| {
            let (name, seed) = &seeds[rng.gen_range(0..seeds.len())];
            let mut v = seed.clone();
            for _ in 0..rng.gen_range(1..=4) {
                mutate_json(rng, &mut v, 0);
            }
            (
                format!("json mutant {i} of {name}"),
                v.to_string().into_bytes(),
            )
        })
        .collect()
}

fn gen_patch(rng: &mut StdRng) -> Value {
    let ops: Vec<Value> = (0..rng.gen_range(0..5))
        .map(|_| {
            let mut op = Map::new();
            op.insert(
                "op".into(),
                json!(pick(
                    rng,
                    &["add", "replace", "remove", "Add", "Replace", "Remove", "move"]
                )),
            );
            if rng.gen_ratio(4, 5) {
                op.insert("path".into(), json!(pick(rng, PATHS)));
            }
            if rng.gen_ratio(3, 4) {
                op.insert("value".into(), gen_value(rng, 0));
            }
            Value::Object(op)
        })
        .collect();
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

#[test]
fn generated_patches_hold_the_properties() {
    let mut rng = StdRng::seed_from_u64(SEED ^ 1);
    let generated: Vec<(String, Vec<u8>)> = (0..1500)
        .map(|i| {
            (
                format!("generated patch {i}"),
                gen_patch(&mut rng).to_string().into_bytes(),
            )
        })
        .collect();
    let mutants = json_mutants("patch", &mut rng, 1500);
    let bytes = byte_mutants("patch", &mut rng, 1000);
    check(
        "patch",
        fuzzing::patch,
        generated.into_iter().chain(mutants).chain(bytes),
    );
}

#[test]
fn generated_bodies_hold_the_properties() {
    let mut rng = StdRng::seed_from_u64(SEED ^ 2);
    let generated: Vec<(String, Vec<u8>)> = (0..1500)
        .map(|i| {
            let mut body = Map::new();
            body.insert("userName".into(), json!(gen_string(&mut rng)));
            body.insert("displayName".into(), json!(gen_string(&mut rng)));
            for _ in 0..rng.gen_range(0..6) {
                body.insert(
                    pick(&mut rng, BODY_KEYS).to_string(),
                    gen_value(&mut rng, 0),
                );
            }
            (
                format!("generated body {i}"),
                Value::Object(body).to_string().into_bytes(),
            )
        })
        .collect();
    let mutants = json_mutants("resource", &mut rng, 2000);
    let bytes = byte_mutants("resource", &mut rng, 1000);
    check(
        "resource",
        fuzzing::resource,
        generated.into_iter().chain(mutants).chain(bytes),
    );
}

// ---- config ----------------------------------------------------------------------------------

const CONFIG_KEYS: &[(&str, &[&str])] = &[
    (
        "scim",
        &[
            "listen",
            "base_path",
            "token_hashes",
            "public_url",
            "max_body_bytes",
            "max_results",
            "nope",
        ],
    ),
    ("admin", &["listen", "token_hashes"]),
    (
        "store",
        &[
            "path",
            "keep_changes",
            "audit_retention_days",
            "audit_max_entries",
        ],
    ),
    (
        "portkey",
        &[
            "base_url",
            "allow_insecure_http",
            "request_timeout_ms",
            "max_in_flight",
            "requests_per_second",
            "retry_initial_ms",
            "retry_max_interval_ms",
            "retry_give_up_secs",
            "page_size",
        ],
    ),
    (
        "sync",
        &[
            "debounce_ms",
            "debounce_max_ms",
            "fuse_floor",
            "fuse_window_minutes",
            "full_resync_cron",
            "max_deletions",
            "max_deletion_percent",
            "dry_run",
            "protected_emails",
            "create_workspaces",
            "default_org_role",
        ],
    ),
    ("log", &["format", "level"]),
    ("bogus", &["x"]),
];
const CONFIG_VALUES: &[&str] = &[
    "0",
    "1",
    "1023",
    "1024",
    "-1",
    "18446744073709551615",
    "1.5",
    "nan",
    "inf",
    "-0.0",
    "true",
    "\"\"",
    "\"127.0.0.1:8080\"",
    "\"127.0.0.1:8081\"",
    "\"[::1]:0\"",
    "\"0.0.0.0:99999\"",
    "\"/scim/v2\"",
    "\"/scim_v2/\"",
    "\"scim\"",
    "\"https://portkey.example.com/v1\"",
    "\"http://10.0.0.1/v1\"",
    "\"http://localhost:8090/v1/\"",
    "\"ftp://x\"",
    "\"0 */15 * * * *\"",
    "\"* * *\"",
    "\"member\"",
    "\"owner\"",
    "\"json\"",
    "\"info,scim_sync=debug\"",
    "\"[[\"",
    "[]",
    "[\"a@example.com\", 1]",
    "[\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"]",
    "[\"zz\"]",
    "\"/nonexistent-dir/x.redb\"",
    "\"/tmp/fuzz-props.redb\"",
    "{ a = 1 }",
    "1979-05-27",
];

fn gen_config(rng: &mut StdRng) -> String {
    let mut out = String::new();
    if rng.gen_ratio(4, 5) {
        out.push_str("[portkey]\nbase_url = \"https://portkey.example.com/v1\"\n");
    }
    for _ in 0..rng.gen_range(1..5) {
        let (section, keys) = CONFIG_KEYS[rng.gen_range(0..CONFIG_KEYS.len())];
        out.push_str(&format!("[{section}]\n"));
        for _ in 0..rng.gen_range(1..4) {
            out.push_str(&format!(
                "{} = {}\n",
                pick(rng, keys),
                pick(rng, CONFIG_VALUES)
            ));
        }
    }
    for _ in 0..rng.gen_range(0..3) {
        out.push_str(&format!(
            "[[mapping.groups]]\ngroup = {}\nworkspace = {}\nrole = {}\n",
            pick(rng, &["\"Eng\"", "\" \"", "1"]),
            pick(rng, &["\"Eng\"", "\"\""]),
            pick(
                rng,
                &["\"admin\"", "\"manager\"", "\"owner\"", "\"member\""]
            ),
        ));
    }
    out
}

#[test]
fn generated_configs_hold_the_properties() {
    let mut rng = StdRng::seed_from_u64(SEED ^ 3);
    let generated: Vec<(String, Vec<u8>)> = (0..1000)
        .map(|i| {
            (
                format!("generated config {i}"),
                gen_config(&mut rng).into_bytes(),
            )
        })
        .collect();
    let bytes = byte_mutants("config", &mut rng, 1000);
    check(
        "config",
        fuzzing::config,
        generated.into_iter().chain(bytes),
    );
}

// ---- limits ----------------------------------------------------------------------------------

fn or_terms(n: usize, op: &str) -> String {
    (0..n)
        .map(|i| format!("userName {op} \"u{i}\""))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The README's limits table, checked at each limit and one past it, through the same property
/// functions (which also check that a refusal carries the right `scimType`).
#[test]
fn limits_hold_at_and_past_each_bound() {
    let refused = |r: Result<filter::Filter, scim_sync::scim::ScimError>, t: ScimType| match r {
        Err(e) => assert_eq!(e.scim_type, Some(t), "{e}"),
        Ok(f) => panic!("accepted: {f:.200}"),
    };
    for (n, ok) in [
        (MAX_FILTER_COMPARISONS, true),
        (MAX_FILTER_COMPARISONS + 1, false),
    ] {
        let text = or_terms(n, "eq");
        fuzzing::filter(text.as_bytes()).unwrap();
        match ok {
            true => assert!(filter::parse_filter(&text).is_ok()),
            false => refused(filter::parse_filter(&text), ScimType::TooMany),
        }
        let path = format!("emails[{}]", or_terms(n, "eq").replace("userName", "value"));
        assert_eq!(filter::parse_path(&path).is_ok(), ok, "{n}");
    }
    let co = or_terms(MAX_SUBSTRING_COMPARISONS + 1, "co");
    fuzzing::filter(co.as_bytes()).unwrap();
    refused(filter::parse_filter(&co), ScimType::TooMany);
    let long = format!("userName eq \"{}\"", "x".repeat(filter::MAX_FILTER_LEN));
    fuzzing::filter(long.as_bytes()).unwrap();
    refused(filter::parse_filter(&long), ScimType::InvalidFilter);
    let deep = format!("{}userName pr{}", "(".repeat(65), ")".repeat(65));
    fuzzing::filter(deep.as_bytes()).unwrap();
    refused(filter::parse_filter(&deep), ScimType::InvalidFilter);

    let patch_limit = |body: Value| {
        fuzzing::patch(body.to_string().as_bytes()).unwrap();
        let e = patch::parse_request(&body).expect_err("over the limit");
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{e}");
        assert!(e.detail.contains("the limit is"), "{e}");
    };
    let title = json!({"op": "replace", "path": "title", "value": "t"});
    let ops = vec![title; MAX_OPERATIONS + 1];
    patch_limit(json!({"Operations": ops}));
    let members: Vec<Value> = (0..=MAX_VALUES_PER_REQUEST)
        .map(|i| json!({"value": format!("u{i}")}))
        .collect();
    patch_limit(json!({"Operations": [{"op": "add", "path": "members", "value": members}]}));
    let emails: Vec<Value> = (0..=MAX_MULTI_VALUES)
        .map(|i| json!({"value": format!("e{i}@x.example")}))
        .collect();
    patch_limit(json!({"Operations": [{"op": "add", "path": "emails", "value": emails}]}));
    let long_title = "t".repeat(MAX_STRING_BYTES + 1);
    patch_limit(json!({"Operations": [{"op": "replace", "path": "title", "value": long_title}]}));
    let body = json!({"userName": "u", "title": "t".repeat(MAX_STRING_BYTES + 1)});
    fuzzing::resource(body.to_string().as_bytes()).unwrap();
    let at_limit = json!({"userName": "u", "title": "t".repeat(MAX_STRING_BYTES),
                          ENTERPRISE: {"department": "d"}});
    fuzzing::resource(at_limit.to_string().as_bytes()).unwrap();
}

/// The parsers' shortcuts (one comparison; a plain attribute name as a PATCH path) against the
/// grammar, on inputs built to sit on their edges: names spelt like keywords, operators in any
/// case, tabs and runs of spaces, values with quotes, escapes, control and non-ASCII characters.
/// Each part is a plain one three times in four, so that whole inputs the shortcut takes are
/// common and the edges still meet each other.
#[test]
fn the_parsers_shortcuts_agree_with_the_grammar() {
    const NAMES: (&[&str], &[&str]) = (
        &[
            "userName",
            "externalId",
            "displayName",
            "id",
            "x-y_z9",
            "notes",
            "trueish",
            "Y",
        ],
        &[
            "true",
            "True",
            "null",
            "not",
            "NOT",
            "and",
            "or",
            "eq",
            "pr",
            "9lives",
            "_x",
            "émail",
            "name.givenName",
            "urn:ietf:params:scim:schemas:core:2.0:User:userName",
            "a.b.c",
            "",
        ],
    );
    const OPS: (&[&str], &[&str]) = (
        &[
            "eq", "EQ", "Eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le",
        ],
        &["pr", "ſw", "equals", "="],
    );
    const GAPS: (&[&str], &[&str]) = (&[" ", "  "], &["\t", "", " \u{a0}", "\n"]);
    const VALUES: (&[&str], &[&str]) = (
        &[
            "\"a@example.com\"",
            "\"\"",
            "\"ünïcødé 名前\"",
            "\"\u{7f}\"",
            "\"x y\"",
        ],
        &[
            "\"",
            "\"a\"b\"",
            "\"a\\\"b\"",
            "\"a\\u0041\"",
            "\"tab\there\"",
            "\"a\" and x eq \"b\"",
            "\"a\")",
            "true",
            "42",
            "null",
            "\"line\nbreak\"",
            "'single'",
        ],
    );
    fn part<'a>(rng: &mut StdRng, (plain, edge): (&[&'a str], &[&'a str])) -> &'a str {
        if rng.gen_ratio(3, 4) {
            pick(rng, plain)
        } else {
            pick(rng, edge)
        }
    }
    let mut rng = StdRng::seed_from_u64(SEED ^ 0x5407);
    let mut inputs = Vec::new();
    for i in 0..3000 {
        let text = format!(
            "{}{}{}{}{}{}{}",
            pick(&mut rng, &["", "", " ", "\n"]),
            part(&mut rng, NAMES),
            part(&mut rng, GAPS),
            part(&mut rng, OPS),
            part(&mut rng, GAPS),
            part(&mut rng, VALUES),
            pick(&mut rng, &["", "", " ", "\t"]),
        );
        inputs.push((format!("edge filter {i}"), text.into_bytes()));
    }
    for (i, name) in NAMES.0.iter().chain(NAMES.1).enumerate() {
        inputs.push((format!("path {i}"), name.as_bytes().to_vec()));
    }
    // Not vacuous: the shortcuts answer a good share of these inputs, and decline the rest.
    let answered = inputs
        .iter()
        .filter_map(|(_, b)| std::str::from_utf8(b).ok())
        .filter(|t| filter::simple_comparison(t.trim()).is_some())
        .count();
    assert!(
        (300..2700).contains(&answered),
        "the shortcut answered {answered} of 3000"
    );
    let total = inputs.len();
    let n = check("filter", fuzzing::filter, inputs);
    assert_eq!(n, total);
    // The Okta and Entra lookups themselves take the shortcut.
    for text in [
        "userName eq \"jane@example.com\"",
        "externalId eq \"00u1abcd\"",
        "displayName eq \"ws-Sales-role-admin\"",
    ] {
        assert_eq!(
            filter::simple_comparison(text),
            Some(filter::parse_filter_by_grammar(text).unwrap()),
            "{text}"
        );
    }
}
