//! The TOML configuration file of `tetherd serve`.
//!
//! The file is not a second configuration system: every key is the long name
//! of a `serve` flag with `_` for `-` (`scheduler_tick = "5s"` is
//! `--scheduler-tick 5s`), so flags, environment variables and the file share
//! one list of settings, one set of value parsers and one set of defaults.
//! Precedence: command line, then environment, then file, then default.
//! Each key's value is checked with the flag's own parser before anything
//! starts, so a wrong value stops the start with an error naming the key.

use clap::Command;
use std::ffi::OsString;
use std::path::Path;

/// The flag that names the file; it is also a key-less setting itself.
pub const CONFIG_FLAG: &str = "config";
/// Its environment variable.
pub const CONFIG_ENV: &str = "TETHER_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the configuration file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: unknown key `{key}`; the keys are the `tetherd serve` flags with _ for - (see docs/operating.md)")]
    UnknownKey { path: String, key: String },
    #[error("{path}: key `{key}`: {message}")]
    BadValue { path: String, key: String, message: String },
}

/// Finds the configuration file named on the command line (`--config FILE`
/// or `--config=FILE` after the `serve` subcommand) or in `TETHER_CONFIG`.
pub fn config_path(args: &[OsString]) -> Option<OsString> {
    let flag = format!("--{CONFIG_FLAG}");
    let prefix = format!("--{CONFIG_FLAG}=");
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == flag {
            return iter.next().cloned();
        }
        if let Some(value) = text.strip_prefix(&prefix) {
            return Some(OsString::from(value));
        }
    }
    std::env::var_os(CONFIG_ENV)
}

/// Reads `path`, validates every key against `serve` (the subcommand's clap
/// definition) and returns the command line with the file's settings added
/// for every flag that neither the command line nor the environment sets.
pub fn merge(serve: &Command, args: Vec<OsString>, path: &Path) -> Result<Vec<OsString>, ConfigFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read { path: shown.clone(), source })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigFileError::Syntax { path: shown.clone(), message: e.to_string() })?;
    let mut merged = args;
    for (key, value) in &table {
        let bad = |message: String| ConfigFileError::BadValue { path: shown.clone(), key: key.clone(), message };
        let long = key.replace('_', "-");
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != CONFIG_FLAG)
            .ok_or_else(|| ConfigFileError::UnknownKey { path: shown.clone(), key: key.clone() })?;
        let values = scalar_values(value).map_err(&bad)?;
        let takes_value = arg.get_action().takes_values();
        if !takes_value && values.len() != 1 {
            return Err(bad("expected true or false".into()));
        }
        let repeatable = matches!(arg.get_action(), clap::ArgAction::Append);
        if takes_value && values.len() != 1 && !repeatable {
            return Err(bad("expected a single value, not a list".into()));
        }
        for one in &values {
            if !takes_value && one != "true" && one != "false" {
                return Err(bad(format!("expected true or false, not {one}")));
            }
        }
        if takes_value {
            check_values(serve, &long, &values).map_err(&bad)?;
        }
        if given_elsewhere(arg, &merged) {
            continue;
        }
        let flag = OsString::from(format!("--{long}"));
        for one in values {
            if takes_value {
                merged.push(flag.clone());
                merged.push(OsString::from(one));
            } else if one == "true" {
                merged.push(flag.clone());
            }
        }
    }
    Ok(merged)
}

/// Runs the flag's own parser over the values (clap exposes parsers only
/// through a parse), reporting only errors about this flag.
fn check_values(serve: &Command, long: &str, values: &[String]) -> Result<(), String> {
    let flag = format!("--{long}");
    let mut argv = vec![OsString::from("serve")];
    for one in values {
        argv.push(OsString::from(&flag));
        argv.push(OsString::from(one));
    }
    match serve.clone().try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(e) => {
            let message = first_line(&e.to_string());
            if message.contains(&flag) { Err(message) } else { Ok(()) }
        }
    }
}

/// True when the command line or the environment already sets `arg`.
fn given_elsewhere(arg: &clap::Arg, args: &[OsString]) -> bool {
    let Some(long) = arg.get_long() else { return false };
    let flag = format!("--{long}");
    let prefix = format!("--{long}=");
    let on_command_line = args.iter().any(|a| {
        let text = a.to_string_lossy();
        text == flag || text.starts_with(&prefix)
    });
    let in_environment = arg.get_env().is_some_and(|name| std::env::var_os(name).is_some());
    on_command_line || in_environment
}

fn scalar_values(value: &toml::Value) -> Result<Vec<String>, String> {
    match value {
        toml::Value::Array(items) => items.iter().map(scalar).collect(),
        other => scalar(other).map(|one| vec![one]),
    }
}

fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => {
            Err(format!("expected a string, number or boolean, not a {}", value.type_str()))
        }
    }
}

fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message);
    line.trim_start_matches("error: ").to_string()
}

/// Every key the file accepts, with its environment variable and help, for
/// the table in docs/operating.md and its completeness test.
pub fn keys(serve: &Command) -> Vec<(String, Option<String>, String)> {
    serve
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            if long == CONFIG_FLAG || long == "help" {
                return None;
            }
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            Some((long.replace('-', "_"), env, help))
        })
        .collect()
}
