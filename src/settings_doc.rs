//! `docs/settings.md`, generated from the command line's own definitions so
//! that it cannot drift: every flag of every subcommand, its environment
//! variable, default and help. A test compares the file with what this
//! renders; `FRAMEWORKS_UPDATE_DOCS=1 cargo test -p frameworks settings_doc`
//! rewrites it. `frameworks settings` prints the same table.

use std::collections::BTreeMap;
use std::fmt::Write;

use clap::Command;

/// One setting: a flag, the variable beside it, and where it applies.
struct Setting {
    env: Option<String>,
    flag: String,
    default: String,
    help: String,
    commands: Vec<String>,
}

/// The settings table of `cli` (the `frameworks` command) as Markdown.
pub fn render(cli: &Command) -> String {
    let mut settings: Vec<Setting> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    collect(cli, "", &mut settings, &mut index);
    let mut table = String::from(
        "| setting | flag | default | subcommands | what |\n| --- | --- | --- | --- | --- |\n",
    );
    for setting in &settings {
        let env = setting
            .env
            .as_deref()
            .map_or_else(|| "none".to_owned(), |env| format!("`{env}`"));
        let default = if setting.default.is_empty() {
            String::new()
        } else {
            format!("`{}`", setting.default)
        };
        let _ = writeln!(
            table,
            "| {env} | `--{}` | {default} | {} | {} |",
            setting.flag,
            if setting.commands == [""] {
                "every one".to_owned()
            } else {
                setting.commands.join(", ")
            },
            setting.help.replace('|', "\\|"),
        );
    }
    table
}

fn collect(
    command: &Command,
    path: &str,
    settings: &mut Vec<Setting>,
    index: &mut BTreeMap<String, usize>,
) {
    for arg in command.get_arguments() {
        let Some(flag) = arg.get_long() else {
            continue;
        };
        if matches!(flag, "help" | "version") {
            continue;
        }
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        // The same setting on several subcommands is one row listing them.
        let key = env.clone().unwrap_or_else(|| format!("{path} --{flag}"));
        if let Some(&at) = index.get(&key) {
            if !settings[at].commands.iter().any(|c| c == path) {
                settings[at].commands.push(path.to_owned());
            }
            continue;
        }
        let default = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy())
            .collect::<Vec<_>>()
            .join(",");
        let help = arg
            .get_help()
            .map(|h| h.to_string())
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        index.insert(key, settings.len());
        settings.push(Setting {
            env,
            flag: flag.to_owned(),
            default,
            help,
            commands: vec![path.to_owned()],
        });
    }
    for sub in command.get_subcommands() {
        let path = format!("{path} {}", sub.get_name());
        collect(sub, path.trim_start(), settings, index);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::CommandFactory;

    use super::*;

    /// Where the generated table starts and ends in `docs/settings.md`.
    const BEGIN: &str = "<!-- settings: generated from the clap definitions, do not edit -->";
    const END: &str = "<!-- end of generated settings -->";

    fn docs_path() -> PathBuf {
        // Read at run time: the target dir is shared between clones.
        std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
            .join("docs/settings.md")
    }

    #[test]
    fn docs_settings_match_the_command_line() {
        let table = render(&crate::Cli::command());
        let path = docs_path();
        let doc = std::fs::read_to_string(&path).unwrap_or_default();
        let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
            panic!("{} lacks the markers {BEGIN} and {END}", path.display());
        };
        let current = &doc[begin + BEGIN.len()..end];
        let wanted = format!("\n{table}");
        if current != wanted && std::env::var_os("FRAMEWORKS_UPDATE_DOCS").is_some() {
            let rewritten = format!("{}{BEGIN}{wanted}{}", &doc[..begin], &doc[end..]);
            std::fs::write(&path, rewritten).expect("writing docs/settings.md");
            return;
        }
        assert!(
            current == wanted,
            "{} differs from the command line's settings; run with FRAMEWORKS_UPDATE_DOCS=1",
            path.display()
        );
    }

    #[test]
    fn every_role_setting_has_its_variable() {
        // A flag without an environment variable cannot be set by a unit
        // file or compose: only one-off operator flags may lack one.
        let table = render(&crate::Cli::command());
        for row in table.lines().skip(2) {
            if row.starts_with("| none |") {
                let commands = row.split('|').nth(4).unwrap_or_default();
                assert!(
                    [
                        "replay",
                        "projections",
                        "topics",
                        "dead-letters",
                        "db",
                        "mist-config"
                    ]
                    .iter()
                    .any(|c| commands.contains(c)),
                    "a role flag without an environment variable: {row}"
                );
            }
        }
    }
}
