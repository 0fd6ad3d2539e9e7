//! Whiteouts, as OCI layers carry them (image-spec `layer.md`): an empty file `.wh.NAME`
//! deletes NAME from the layers below; `.wh..wh..opq` in a directory hides every entry the
//! layers below have there. Import applies them, export writes them.

/// The prefix of a whiteout's name.
pub const PREFIX: &[u8] = b".wh.";
/// The name of the opaque-directory marker.
pub const OPAQUE: &[u8] = b".wh..wh..opq";

/// The name a whiteout hides, if `name` is a whiteout (the opaque marker is not one).
pub fn hidden(name: &[u8]) -> Option<&[u8]> {
    match name {
        OPAQUE => None,
        name => name.strip_prefix(PREFIX),
    }
}

/// Whether a name is a whiteout or the opaque marker (an entry that is not content).
pub fn is_marker(name: &[u8]) -> bool {
    name.starts_with(PREFIX)
}

/// The whiteout's name for `name`: `.wh.NAME`.
pub fn of(name: &[u8]) -> Vec<u8> {
    [PREFIX, name].concat()
}

/// The whiteout's path for the path `dir/name` (a trailing `/` ignored): `dir/.wh.name`.
pub fn path_of(path: &[u8]) -> Vec<u8> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    match trimmed.iter().rposition(|b| *b == b'/') {
        Some(i) => [&trimmed[..=i], &of(&trimmed[i + 1..])].concat(),
        None => of(trimmed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(hidden(b".wh.a"), Some(&b"a"[..]));
        assert_eq!(hidden(OPAQUE), None);
        assert_eq!(hidden(b"a"), None);
        assert!(is_marker(OPAQUE) && is_marker(b".wh.x") && !is_marker(b"x.wh."));
        assert_eq!(path_of(b"d/e/f"), b"d/e/.wh.f");
        assert_eq!(path_of(b"d/e/"), b"d/.wh.e");
        assert_eq!(path_of(b"f"), b".wh.f");
    }
}
