//! PEFT's rule for which modules `target_modules` names, in one place for the page's settings and for
//! `adapter_config.json`. A list names a module when an entry equals its full name or is a suffix of
//! it after a dot (`"5"` and `"layers.5"` both name `layers.5`; `"q_proj"` names every layer's).
//! A single string is a regular expression the whole module name must match (`re.fullmatch`), except
//! `"all-linear"`: every Linear but the output layer.

use serde::{Deserialize, Serialize};

/// `target_modules` as PEFT takes it: a list of names, or one string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    Names(Vec<String>),
    Pattern(String),
}

impl Default for TargetModules {
    fn default() -> Self {
        Self::Names(Vec::new())
    }
}

/// PEFT's shorthand for every Linear but the output layer.
pub const ALL_LINEAR: &str = "all-linear";

/// Whether list entry `target` names `module` under PEFT's rule.
pub fn matches(target: &str, module: &str) -> bool {
    module == target || module.strip_suffix(target).is_some_and(|p| p.ends_with('.'))
}

/// The first of `modules` that list entry `target` names.
pub fn find(target: &str, modules: &[&str]) -> Option<usize> {
    modules.iter().position(|m| matches(target, m))
}

/// Indices into `modules` of every module some entry of `targets` names, in `modules` order and
/// without repeats. An entry that names no module is an error naming it and the modules there are.
pub fn resolve(targets: &[String], modules: &[&str]) -> Result<Vec<usize>, String> {
    if let Some(t) = targets.iter().find(|t| find(t, modules).is_none()) {
        return Err(format!(
            "unknown target module \"{t}\"; this model's adaptable modules are {}",
            modules.join(", ")
        ));
    }
    Ok((0..modules.len()).filter(|&i| targets.iter().any(|t| matches(t, modules[i]))).collect())
}

impl TargetModules {
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Names(v) => v.is_empty(),
            Self::Pattern(p) => p.is_empty(),
        }
    }

    /// The modules named, as ascending indices into `modules` (whose last is the output layer). A
    /// pattern that is not a valid regex, or that names nothing, is an error saying so.
    pub fn resolve(&self, modules: &[&str]) -> Result<Vec<usize>, String> {
        let p = match self {
            Self::Names(names) => return resolve(names, modules),
            Self::Pattern(p) => p,
        };
        let found: Vec<usize> = if p == ALL_LINEAR {
            (0..modules.len().saturating_sub(1)).collect()
        } else {
            let re = regex_lite::Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| format!("target_modules \"{p}\" is not a regular expression: {e}"))?;
            (0..modules.len()).filter(|&i| re.is_match(modules[i])).collect()
        };
        if found.is_empty() {
            return Err(format!(
                "target_modules \"{p}\" matches none of this model's modules ({})",
                modules.join(", ")
            ));
        }
        Ok(found)
    }

    /// The names of a list (empty for a pattern).
    pub fn names(&self) -> &[String] {
        match self {
            Self::Names(v) => v,
            Self::Pattern(_) => &[],
        }
    }
}
