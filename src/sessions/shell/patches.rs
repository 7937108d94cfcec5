//! Files named by a patch: Codex's `apply_patch` format and unified diffs.
//!
//! Agents edit files by piping a patch into `apply_patch`, `git apply` or `patch`, so the
//! files a patch names are files the command writes. Only headers are read; hunks are not
//! applied or checked.

/// The files a patch creates, changes, deletes or moves to, as written in it (unresolved), in
/// order and without duplicates.
///
/// Codex format: `*** Add File: p`, `*** Update File: p`, `*** Delete File: p`, `*** Move to: p`.
/// Unified diff: a `--- old` line directly followed by `+++ new` (the `a/`/`b/` prefixes of git
/// diffs are dropped, `/dev/null` is skipped), and git's `rename from`/`rename to`.
pub fn patch_files(patch: &str) -> Vec<String> {
    const CODEX: &[&str] = &["*** Add File: ", "*** Update File: ", "*** Delete File: ", "*** Move to: "];
    let mut out: Vec<String> = Vec::new();
    let mut push = |p: &str| {
        let p = p.trim();
        if !p.is_empty() && p != "/dev/null" && !out.iter().any(|o| o == p) {
            out.push(p.to_string());
        }
    };
    let mut lines = patch.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(p) = CODEX.iter().find_map(|prefix| line.strip_prefix(prefix)) {
            push(p);
        } else if let Some(p) = line.strip_prefix("rename from ").or_else(|| line.strip_prefix("rename to "))
        {
            push(p);
        } else if let Some(old) = line.strip_prefix("--- ") {
            // A lone `--- x` can be a removed line `-- x`; a header is always followed by `+++`.
            if let Some(new) = lines.peek().and_then(|n| n.strip_prefix("+++ ")) {
                push(diff_path(old));
                push(diff_path(new));
                lines.next();
            }
        }
    }
    out
}

/// `a/src/x.rs\t2024-01-01 …` → `src/x.rs`.
fn diff_path(header: &str) -> &str {
    let p = header.split('\t').next().unwrap_or(header).trim();
    p.strip_prefix("a/").or_else(|| p.strip_prefix("b/")).unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codex_apply_patch_format() {
        let patch = "*** Begin Patch\n*** Update File: README.md\n@@\n-old\n+new\n*** Add File: src/new.rs\n+fn x() {}\n*** Delete File: old.txt\n*** Update File: a.rs\n*** Move to: b.rs\n*** End Patch\n";
        assert_eq!(patch_files(patch), ["README.md", "src/new.rs", "old.txt", "a.rs", "b.rs"]);
    }

    #[test]
    fn unified_and_git_diffs() {
        let diff = "diff --git a/src/x.rs b/src/x.rs\n--- a/src/x.rs\n+++ b/src/x.rs\n@@ -1 +1 @@\n--- a removed SQL comment\n+new\n--- /dev/null\n+++ b/added.txt\n";
        assert_eq!(patch_files(diff), ["src/x.rs", "added.txt"]);
        let rename = "diff --git a/o.rs b/n.rs\nsimilarity index 100%\nrename from o.rs\nrename to n.rs\n";
        assert_eq!(patch_files(rename), ["o.rs", "n.rs"]);
        assert_eq!(patch_files("--- f.c\t2024-01-01\n+++ f.c\t2024-01-02\n"), ["f.c"]);
        assert!(patch_files("just text").is_empty());
    }
}
