//! What to type next: the library crates' errors state facts (they are used by the server and, soon, from
//! Python, where flags mean nothing); this module adds the command or flag that fixes each one, printed
//! under the error.

use soundalike_model::ModelError;
use soundalike_recommend::IndexError;
use soundalike_recommend::VectorError;

/// The hint for the first error in `e`'s chain that has one.
pub fn hint(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|cause| {
        if let Some(ie) = cause.downcast_ref::<IndexError>() {
            return for_store(ie);
        }
        if let Some(VectorError::StaleIndex { .. }) = cause.downcast_ref::<VectorError>() {
            return Some("rebuild it with `soundalike index --rebuild STORE`".into());
        }
        if let Some(ModelError::Mismatch { path, .. }) = cause.downcast_ref::<ModelError>() {
            if path.file_name().is_some_and(|n| n == "train_state.json") {
                return Some("rerun `soundalike train` without --resume, or with the options of the interrupted run".into());
            }
        }
        None
    })
}

fn for_store(e: &IndexError) -> Option<String> {
    Some(match e {
        IndexError::Locked { .. } => "pass --wait to queue behind the other writer".into(),
        IndexError::NotAStore { path, .. } => {
            let dir = path.parent().map(|p| p.display().to_string()).unwrap_or_default();
            format!("make a store with `soundalike embed LIBRARY --out {dir}`")
        }
        IndexError::OtherModel { .. } => "embed into another folder (--out), or move this store away first".into(),
        IndexError::Damaged { path, .. } => {
            let dir = path.parent().map(|p| p.display().to_string()).unwrap_or_default();
            format!("`soundalike store check {dir}` lists the damage and `soundalike store check {dir} --repair` keeps every valid record")
        }
        IndexError::StaleIndex { .. } => "rebuild it with `soundalike index --rebuild STORE`".into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_get_the_command_that_fixes_them() {
        let locked = anyhow::Error::from(IndexError::Locked { path: "s".into(), holder: "pid 1".into() });
        assert!(hint(&locked).is_some_and(|h| h.contains("--wait")));
        let damaged = anyhow::Error::from(IndexError::Damaged { path: "lib/store/songs.jsonl".into(), line: 4, reason: "x".into() })
            .context("opening the store");
        let h = hint(&damaged).unwrap_or_default();
        assert!(h.contains("store check lib/store") && h.contains("--repair"), "{h}");
        let plain = anyhow::Error::from(IndexError::Invalid("k must be at least 1".into()));
        assert_eq!(hint(&plain), None);
    }
}
