//! The configuration documentation agrees with the code: every variable the binaries read is in
//! the README's configuration table and in `.env.example`, and neither lists a variable the
//! binaries do not read.
//!
//! "What the code reads" comes from the code itself: [`Settings::from_lookup`] and
//! [`collect_keys`] run with a lookup that records every name asked for (for several
//! environments, so that reads behind a condition — webhook mode, the YooKassa rail, PostgreSQL
//! — are reached), plus [`PROCESS_VARIABLES`], the variables read straight from the process
//! environment. `.env.example` may also hold the variables `compose.yaml` interpolates, and
//! must hold all of them. A default written in `.env.example` must be the code's default.

use neurocards_core::config::{Settings, PROCESS_VARIABLES};
use neurocards_core::kie::collect_keys;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// How the numbered KIE key variables (`KIE_API_KEY_1` .. `KIE_API_KEY_64`) are written in both
/// documents: one row for all of them.
const NUMBERED_KIE_KEY: &str = "KIE_API_KEY_<n>";

/// Environments that together reach every read in [`Settings::from_lookup`]; each is valid.
const ENVIRONMENTS: &[&[(&str, &str)]] = &[
    &[("BOT_TOKEN", "1:abc")],
    &[("BOT_TOKEN", "1:abc"), ("DATABASE_URL", "postgres://localhost/x")],
    &[
        ("BOT_TOKEN", "1:abc"),
        ("BOT_MODE", "webhook"),
        ("PUBLIC_BASE_URL", "https://bot.example.com"),
        ("WEBHOOK_SECRET", "0123456789abcdef"),
        ("KIE_CALLBACK_SECRET", "0123456789abcdef"),
    ],
    &[("BOT_TOKEN", "1:abc"), ("YOOKASSA_SHOP_ID", "12345"), ("YOOKASSA_SECRET_KEY", "live_x")],
];

fn repo_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Collapses `KIE_API_KEY_1..N`, `KIE_API_KEY_<n>` and `KIE_API_KEY_7` into one name.
fn normalize(name: &str) -> String {
    match name.strip_prefix("KIE_API_KEY_") {
        Some(rest)
            if rest == "1..N"
                || rest == "<n>"
                || (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())) =>
        {
            NUMBERED_KIE_KEY.to_owned()
        }
        _ => name.to_owned(),
    }
}

fn is_variable_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_uppercase())
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Runs `Settings::from_lookup` over `env`, recording every name it asks for.
fn settings_reads(env: &[(&str, &str)]) -> (Result<Settings, String>, BTreeSet<String>) {
    let asked = RefCell::new(BTreeSet::new());
    let lookup = |k: &str| {
        asked.borrow_mut().insert(k.to_owned());
        env.iter().find(|(name, _)| *name == k).map(|(_, v)| (*v).to_owned())
    };
    let result = Settings::from_lookup(&lookup).map_err(|e| e.to_string());
    (result, asked.into_inner())
}

/// Every variable the binaries read, numbered KIE keys collapsed.
fn variables_the_code_reads() -> BTreeSet<String> {
    let mut read = BTreeSet::new();
    for env in ENVIRONMENTS {
        let (result, asked) = settings_reads(env);
        if let Err(e) = result {
            panic!("the environment {env:?} must be valid settings: {e}");
        }
        read.extend(asked);
    }
    let asked = RefCell::new(BTreeSet::new());
    let _ = collect_keys(|k: &str| {
        asked.borrow_mut().insert(k.to_owned());
        None
    });
    read.extend(asked.into_inner());
    read.extend(PROCESS_VARIABLES.iter().map(|v| (*v).to_owned()));
    read.iter().map(|v| normalize(v)).collect()
}

/// The names in the first column of the README's `## Configuration` table.
fn readme_table_variables(readme: &str) -> BTreeSet<String> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Configuration\n"))
        .expect("README.md has a \"## Configuration\" section");
    let mut names = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with('|')) {
        let first_cell = line.trim_start_matches('|').split('|').next().unwrap_or_default();
        // Backticked names: `A`, `B` / `C`; the numbered keys are written `KIE_API_KEY_1..N`.
        for quoted in first_cell.split('`').skip(1).step_by(2) {
            let name = normalize(quoted);
            if is_variable_name(&name) || name == NUMBERED_KIE_KEY {
                names.insert(name);
            }
        }
    }
    assert!(!names.is_empty(), "no variables found in the README's configuration table");
    names
}

/// One variable of `.env.example`: whether it is commented out and the value it shows.
#[derive(Debug)]
struct ExampleEntry {
    commented: bool,
    value: String,
}

/// `NAME=value` and `# NAME=value` lines of `.env.example`, numbered KIE keys collapsed.
fn env_example_entries(text: &str) -> BTreeMap<String, ExampleEntry> {
    let mut entries = BTreeMap::new();
    for line in text.lines() {
        let (commented, rest) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, line.trim()),
        };
        let Some((name, value)) = rest.split_once('=') else { continue };
        if !is_variable_name(name) {
            continue;
        }
        let previous =
            entries.insert(normalize(name), ExampleEntry { commented, value: value.to_owned() });
        if previous.is_some() && normalize(name) != NUMBERED_KIE_KEY {
            panic!(".env.example lists {name} twice");
        }
    }
    entries
}

/// Names `compose.yaml` interpolates (`${NAME}`, `${NAME:-…}`, `${NAME:?…}`).
fn compose_variables(compose: &str) -> BTreeSet<String> {
    compose
        .split("${")
        .skip(1)
        .filter_map(|rest| {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            Some(rest[..end].to_owned()).filter(|n| is_variable_name(n))
        })
        .collect()
}

fn difference(a: &BTreeSet<String>, b: &BTreeSet<String>) -> Vec<String> {
    a.difference(b).cloned().collect()
}

#[test]
fn readme_env_example_and_code_list_the_same_variables() {
    let code = variables_the_code_reads();
    let readme = readme_table_variables(&repo_file("README.md"));
    let example = env_example_entries(&repo_file(".env.example"));
    let compose = compose_variables(&repo_file("compose.yaml"));
    let example_names: BTreeSet<String> =
        example.keys().filter(|n| !compose.contains(*n)).cloned().collect();

    let mut problems = Vec::new();
    let mut report = |what: &str, names: Vec<String>| {
        if !names.is_empty() {
            problems.push(format!("{what}:\n    {}", names.join("\n    ")));
        }
    };
    report("read by the code but missing from the README table", difference(&code, &readme));
    report("in the README table but never read by the code", difference(&readme, &code));
    report("read by the code but missing from .env.example", difference(&code, &example_names));
    report(
        "in .env.example but neither read by the code nor used by compose.yaml",
        difference(&example_names, &code),
    );
    report(
        "interpolated by compose.yaml but missing from .env.example",
        compose.iter().filter(|n| !example.contains_key(*n)).cloned().collect(),
    );
    assert!(problems.is_empty(), "configuration documentation disagrees:\n{}", problems.join("\n"));
}

#[test]
fn env_example_defaults_are_the_codes_defaults() {
    let example = env_example_entries(&repo_file(".env.example"));
    // The richest valid environment: the YooKassa rail on, so its defaults are read too.
    let base: Vec<(&str, &str)> = ENVIRONMENTS[3].to_vec();
    let (reference, settings_vars) = settings_reads(&base);
    let reference = format!("{:?}", reference.expect("the base environment is valid"));

    let mut wrong = Vec::new();
    for (name, entry) in &example {
        let value = entry.value.trim();
        // Only commented-out lines with a value claim a default of the typed settings.
        if !entry.commented || value.is_empty() || !settings_vars.contains(name) {
            continue;
        }
        let mut env = base.clone();
        env.retain(|(k, _)| k != name);
        env.push((name.as_str(), value));
        let (with_value, _) = settings_reads(&env);
        match with_value {
            Ok(s) if format!("{s:?}") == reference => {}
            Ok(_) => wrong.push(format!("{name}={value} is not the default")),
            Err(e) => wrong.push(format!("{name}={value} is refused: {e}")),
        }
    }
    assert!(wrong.is_empty(), ".env.example shows wrong defaults:\n    {}", wrong.join("\n    "));
}

#[test]
fn required_settings_are_present_uncommented_in_env_example() {
    let example = env_example_entries(&repo_file(".env.example"));
    let (result, _) = settings_reads(&[]);
    let err = result.expect_err("an empty environment lacks the bot token");
    assert_eq!(err, "BOT_TOKEN is not set");
    let token = example.get("BOT_TOKEN").expect(".env.example lists BOT_TOKEN");
    assert!(!token.commented && !token.value.trim().is_empty(), "BOT_TOKEN has a placeholder");
}
