//! PEFT's rule for which modules a `target_modules` entry names, in one place for the page's settings
//! and for `adapter_config.json`: a module is targeted when its full name equals the entry or ends
//! with `.` + the entry (`"5"` and `"layers.5"` both name `layers.5`).

/// Whether `target` names `module` under PEFT's rule.
pub fn matches(target: &str, module: &str) -> bool {
    module == target || module.strip_suffix(target).is_some_and(|p| p.ends_with('.'))
}

/// The first of `modules` that `target` names.
pub fn find(target: &str, modules: &[&str]) -> Option<usize> {
    modules.iter().position(|m| matches(target, m))
}

/// Indices into `modules` of every module some entry of `targets` names, in `modules` order and
/// without repeats. An entry that names no module is an error naming it and the modules there are.
pub fn resolve(targets: &[String], modules: &[&str]) -> Result<Vec<usize>, String> {
    if let Some(t) = targets.iter().find(|t| !modules.iter().any(|m| matches(t, m))) {
        return Err(format!(
            "unknown target module \"{t}\"; this model's adaptable modules are {}",
            modules.join(", ")
        ));
    }
    Ok((0..modules.len()).filter(|&i| targets.iter().any(|t| matches(t, modules[i]))).collect())
}
