//! `scim-sync demo --walkthrough`: the whole story runs by itself, and README shows what it
//! prints.

use crate::common::cli::run_with;

/// Ids and the elapsed time differ from run to run; the rest of the story does not.
fn normalise(text: &str) -> String {
    text.lines()
        .map(|l| {
            let mut out = String::new();
            let mut rest = l;
            while let Some(i) = find_uuid(rest) {
                out.push_str(&rest[..i]);
                out.push_str("<id>");
                rest = &rest[i + 36..];
            }
            out.push_str(rest);
            match out.find("Done in ") {
                Some(i) => {
                    let tail = out[i..].split_once(" s.").map_or("", |x| x.1).to_string();
                    format!("{}Done in <t> s.{tail}", &out[..i])
                }
                None => out,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn find_uuid(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(35)).find(|&i| {
        b[i..i + 36].iter().enumerate().all(|(k, c)| match k {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        })
    })
}

fn readme_block() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("<!-- walkthrough-output -->\n```text\n")
        .expect("README has the walkthrough's output block");
    let body = &readme[start..];
    let body = &body[body.find("```text\n").unwrap() + 8..];
    body[..body.find("\n```").unwrap()].to_string()
}

#[tokio::test]
async fn the_walkthrough_tells_the_whole_story_and_readme_shows_it() {
    let out = run_with(&["demo", "--walkthrough"], &[], None).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for line in [
        "   Portkey: + invite alice@example.com (org member, pending)",
        "   Portkey: + user alice@example.com (org member)",
        "   Portkey: + workspace Demo: alice@example.com (member)",
        "   Portkey: - user alice@example.com (org member)",
        "   Portkey: - workspace Demo: alice@example.com (member)",
    ] {
        assert!(
            out.stdout.contains(line),
            "missing {line:?} in:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout
            .contains("remove_user alice@example.com: ok (deactivated in the IdP)"),
        "{}",
        out.stdout
    );
    assert_eq!(
        normalise(&readme_block()),
        normalise(out.stdout.trim_end()),
        "README's walkthrough output differs from what the command prints; paste the new output"
    );
}
