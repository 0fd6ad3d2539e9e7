//! A filesystem's whole visible state and the comparison of two of them. A [`Snapshot`] holds,
//! for every path: the file type, permission bits, owner, link count, size, content, symlink
//! target, xattrs and directory listing, plus the inode number (compared only as "which paths
//! are one node"). It never reads a filesystem itself: the `FsUnderTest` implementations fill it.

use std::collections::BTreeMap;

/// File types as the tests tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Other,
}

/// One path's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// `st_mode & 0o7777`.
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    /// Compared only through the sets of paths sharing one (hard links).
    pub ino: u64,
    /// Regular files and symlinks (a directory's size is filesystem-specific and not compared).
    pub size: u64,
    pub content: Vec<u8>,
    pub target: Vec<u8>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Directory entries' names, sorted.
    pub children: Vec<Vec<u8>>,
}

impl Entry {
    /// An entry with the given attributes and nothing read yet.
    pub fn new(kind: Kind, perm: u32, uid: u32, gid: u32, nlink: u64, ino: u64) -> Entry {
        Entry {
            kind,
            perm,
            uid,
            gid,
            nlink,
            ino,
            size: 0,
            content: Vec::new(),
            target: Vec::new(),
            xattrs: BTreeMap::new(),
            children: Vec::new(),
        }
    }
}

/// Every path of a tree ("/" is the root, others "/a/b"), the files behind the open handles
/// (by slot; they may have no name left), and whatever a reader found inconsistent on the way
/// (such as a listing that disagrees with a lookup).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub entries: BTreeMap<String, Entry>,
    pub handles: BTreeMap<u8, Entry>,
    pub problems: Vec<String>,
}

impl Snapshot {
    /// For each non-directory path, every path naming the same node (itself included).
    fn link_groups(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut by_ino: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        for (path, entry) in &self.entries {
            if entry.kind != Kind::Dir {
                by_ino.entry(entry.ino).or_default().push(path);
            }
        }
        let mut groups = BTreeMap::new();
        for paths in by_ino.values() {
            for path in paths {
                groups.insert(*path, paths.clone());
            }
        }
        groups
    }

    /// The paths naming the file behind handle `slot`.
    fn names_of_handle(&self, slot: u8) -> Vec<&str> {
        let Some(handle) = self.handles.get(&slot) else {
            return Vec::new();
        };
        self.entries
            .iter()
            .filter(|(_, e)| e.kind != Kind::Dir && e.ino == handle.ino)
            .map(|(path, _)| path.as_str())
            .collect()
    }
}

/// Every difference between the system under test and the model, one line each (empty when
/// they agree). Inconsistencies the SUT's reader found count as differences.
pub fn compare(sut: &Snapshot, model: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> = sut
        .problems
        .iter()
        .map(|p| format!("inconsistent: {p}"))
        .collect();
    out.extend(model.problems.iter().map(|p| format!("model: {p}")));
    let (sut_links, model_links) = (sut.link_groups(), model.link_groups());
    let paths: std::collections::BTreeSet<&String> =
        sut.entries.keys().chain(model.entries.keys()).collect();
    for path in paths {
        match (sut.entries.get(path), model.entries.get(path)) {
            (Some(_), None) => out.push(format!("{path}: exists, but not in the model")),
            (None, Some(m)) => out.push(format!("{path}: missing (the model has a {:?})", m.kind)),
            (Some(s), Some(m)) => {
                compare_entry(path, s, m, &mut out);
                let (a, b) = (sut_links.get(path.as_str()), model_links.get(path.as_str()));
                if a != b {
                    out.push(format!("{path}: hard links {a:?}, model {b:?}"));
                }
            }
            (None, None) => unreachable!(),
        }
    }
    let slots: std::collections::BTreeSet<&u8> =
        sut.handles.keys().chain(model.handles.keys()).collect();
    for slot in slots {
        let what = format!("handle {slot}");
        match (sut.handles.get(slot), model.handles.get(slot)) {
            (Some(s), Some(m)) => compare_entry(&what, s, m, &mut out),
            (s, m) => out.push(format!(
                "{what}: open {}, model {}",
                s.is_some(),
                m.is_some()
            )),
        }
        let (a, b) = (sut.names_of_handle(*slot), model.names_of_handle(*slot));
        if a != b {
            out.push(format!("{what}: names {a:?}, model {b:?}"));
        }
    }
    out
}

fn compare_entry(path: &str, s: &Entry, m: &Entry, out: &mut Vec<String>) {
    let mut differ = |what: &str, got: String, want: String| {
        if got != want {
            out.push(format!("{path}: {what} {got}, model {want}"));
        }
    };
    differ("kind", format!("{:?}", s.kind), format!("{:?}", m.kind));
    if s.kind != m.kind {
        return;
    }
    differ("perm", format!("{:o}", s.perm), format!("{:o}", m.perm));
    differ("uid", s.uid.to_string(), m.uid.to_string());
    differ("gid", s.gid.to_string(), m.gid.to_string());
    // ext4 counts a directory's links as 2 + its subdirectories; the engine keeps the same rule.
    differ("nlink", s.nlink.to_string(), m.nlink.to_string());
    if matches!(s.kind, Kind::File | Kind::Symlink) {
        differ("size", s.size.to_string(), m.size.to_string());
    }
    differ(
        "target",
        String::from_utf8_lossy(&s.target).into_owned(),
        String::from_utf8_lossy(&m.target).into_owned(),
    );
    differ("xattrs", show_xattrs(&s.xattrs), show_xattrs(&m.xattrs));
    differ("listing", show_names(&s.children), show_names(&m.children));
    if let Some(diff) = content_diff(&s.content, &m.content) {
        out.push(format!("{path}: {diff}"));
    }
}

fn show_names(names: &[Vec<u8>]) -> String {
    let names: Vec<_> = names.iter().map(|n| String::from_utf8_lossy(n)).collect();
    format!("{names:?}")
}

fn show_xattrs(xattrs: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    let shown: Vec<String> = xattrs
        .iter()
        .map(|(name, value)| {
            let digest: u64 = value.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
            });
            format!(
                "{}=<{} bytes, fnv {digest:016x}>",
                String::from_utf8_lossy(name),
                value.len()
            )
        })
        .collect();
    format!("{shown:?}")
}

/// Where two contents differ: the first and last differing offsets and the bytes there.
fn content_diff(got: &[u8], want: &[u8]) -> Option<String> {
    if got == want {
        return None;
    }
    let common = got.len().min(want.len());
    let first = (0..common).find(|i| got[*i] != want[*i]).unwrap_or(common);
    let last = (0..common).rev().find(|i| got[*i] != want[*i]);
    let count = (0..common).filter(|i| got[*i] != want[*i]).count();
    Some(format!(
        "content differs: {} bytes vs model {}; {count} of the common bytes differ, first at \
         {first} ({:?} vs {:?}), last at {last:?}",
        got.len(),
        want.len(),
        got.get(first),
        want.get(first),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(ino: u64, content: &[u8]) -> Entry {
        let mut e = Entry::new(Kind::File, 0o644, 0, 0, 1, ino);
        e.size = content.len() as u64;
        e.content = content.to_vec();
        e
    }

    fn snap(entries: Vec<(&str, Entry)>) -> Snapshot {
        Snapshot {
            entries: entries
                .into_iter()
                .map(|(p, e)| (p.to_string(), e))
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn equal_trees_agree_and_inode_numbers_do_not_matter() {
        let a = snap(vec![("/x", file(5, b"abc")), ("/y", file(5, b"abc"))]);
        let b = snap(vec![("/x", file(9, b"abc")), ("/y", file(9, b"abc"))]);
        assert!(compare(&a, &b).is_empty());
    }

    #[test]
    fn every_kind_of_difference_is_reported() {
        let model = snap(vec![("/x", file(1, b"abcd")), ("/y", file(1, b"abcd"))]);
        let mut changed = file(2, b"abXd");
        changed.perm = 0o600;
        changed.xattrs.insert(b"user.a".to_vec(), b"1".to_vec());
        let sut = snap(vec![("/x", changed), ("/y", file(3, b"abcd"))]);
        let diffs = compare(&sut, &model);
        let text = diffs.join("\n");
        for needle in ["perm 600", "xattrs", "first at 2", "hard links"] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
        let missing = compare(&snap(vec![]), &model);
        assert_eq!(missing.len(), 2, "{missing:?}");
    }
}
