//! POSIX ACLs as Linux stores them in the `system.posix_acl_access` and
//! `system.posix_acl_default` xattrs, and the three rules a file system keeps with them (the
//! kernel checks access against them; keeping them and the mode in step is the file
//! system's job, as ext4's `posix_acl_*` helpers do it):
//! - a node created in a directory with a default ACL gets that ACL masked by the requested
//!   mode as its access ACL (a directory also inherits the default ACL), and the umask does
//!   not apply; without one, the umask does;
//! - setting an access ACL sets the mode's permission bits (group bits = the mask entry), and an
//!   ACL the mode expresses exactly is not stored at all;
//! - chmod sets the owner, mask (or group) and other entries of the access ACL.
//!
//! ```text
//! xattr value: version u32 (2) | entries: tag u16 | perm u16 | id u32 — little-endian,
//!              sorted by tag, then id
//! ```

use crate::error::{Error, Result};

pub const ACCESS: &[u8] = b"system.posix_acl_access";
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// A valid ACL: one owner, owning-group and other entry, a mask when there are named
/// entries, permissions of at most rwx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<Entry>,
}

impl Acl {
    pub fn decode(bytes: &[u8]) -> Result<Acl> {
        let bad = |why: &str| Error::InvalidInput(format!("POSIX ACL xattr: {why}"));
        if bytes.len() < 4 || !(bytes.len() - 4).is_multiple_of(8) {
            return Err(bad("not a version and whole entries"));
        }
        if u32::from_le_bytes(bytes[..4].try_into().unwrap()) != VERSION {
            return Err(bad("not version 2"));
        }
        let entries: Vec<Entry> = bytes[4..]
            .chunks_exact(8)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        let count = |tag| entries.iter().filter(|e| e.tag == tag).count();
        if [USER_OBJ, GROUP_OBJ, OTHER].iter().any(|t| count(*t) != 1) || count(MASK) > 1 {
            return Err(bad("needs one owner, owning group and other entry"));
        }
        if count(USER) + count(GROUP) > 0 && count(MASK) == 0 {
            return Err(bad("named entries without a mask"));
        }
        let known = [USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER];
        if entries
            .iter()
            .any(|e| !known.contains(&e.tag) || e.perm & !7 != 0)
        {
            return Err(bad("unknown tag or permission"));
        }
        if entries
            .windows(2)
            .any(|w| (w[0].tag, w[0].id) >= (w[1].tag, w[1].id))
        {
            return Err(bad("entries out of order"));
        }
        Ok(Acl { entries })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 * self.entries.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
        out
    }

    fn get(&mut self, tag: u16) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.tag == tag)
    }

    /// The entry the mode's group bits stand for: the mask, else the owning group.
    fn group_class(&mut self) -> &mut Entry {
        let tag = if self.entries.iter().any(|e| e.tag == MASK) {
            MASK
        } else {
            GROUP_OBJ
        };
        self.get(tag).expect("a valid ACL has both")
    }

    /// The permission bits (0o777) the mode shows for this ACL.
    pub fn perm_bits(&self) -> u16 {
        let mut acl = self.clone();
        let user = acl.get(USER_OBJ).map_or(0, |e| e.perm);
        let other = acl.get(OTHER).map_or(0, |e| e.perm);
        (user << 6) | (acl.group_class().perm << 3) | other
    }

    /// Whether the mode alone says all this ACL says (owner, group and other entries only).
    pub fn is_minimal(&self) -> bool {
        self.entries.len() == 3
    }

    /// chmod: the owner, group-class and other entries take the new permission bits.
    pub fn chmod(&mut self, perm: u16) {
        self.get(USER_OBJ).expect("valid").perm = (perm >> 6) & 7;
        self.group_class().perm = (perm >> 3) & 7;
        self.get(OTHER).expect("valid").perm = perm & 7;
    }

    /// A default ACL applied to a new node asking for `perm`: each of the owner, group-class
    /// and other entries keeps only what `perm` allows. Returns the node's permission bits
    /// (set-ID and sticky bits of `perm` kept).
    fn create_masq(&mut self, perm: u16) -> u16 {
        for (tag, shift) in [(USER_OBJ, 6), (OTHER, 0)] {
            let entry = self.get(tag).expect("valid");
            entry.perm &= (perm >> shift) & 7;
        }
        self.group_class().perm &= (perm >> 3) & 7;
        (perm & !0o777) | self.perm_bits()
    }
}

/// An ACL xattr to store: its name ([`ACCESS`] or [`DEFAULT`]) and value.
pub type AclXattr = (&'static [u8], Vec<u8>);

/// What a new node gets: its permission bits and the ACL xattrs to store with it, given its
/// parent's default ACL (if any), the requested bits and the creator's umask (`None`: the
/// caller applied it already).
pub fn on_create(
    parent_default: Option<&[u8]>,
    is_dir: bool,
    perm: u16,
    umask: Option<u16>,
) -> (u16, Vec<AclXattr>) {
    let inherited = parent_default.and_then(|bytes| match Acl::decode(bytes) {
        Ok(acl) => Some(acl),
        Err(e) => {
            tracing::warn!("ignoring a directory's default ACL: {e}");
            None
        }
    });
    let Some(default) = inherited else {
        return (perm & !umask.unwrap_or(0), Vec::new());
    };
    let mut access = default.clone();
    let perm = access.create_masq(perm);
    let mut xattrs = Vec::new();
    if !access.is_minimal() {
        xattrs.push((ACCESS, access.encode()));
    }
    if is_dir {
        xattrs.push((DEFAULT, default.encode()));
    }
    (perm, xattrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNDEFINED: u32 = u32::MAX;

    fn acl(entries: &[(u16, u16, u32)]) -> Acl {
        Acl {
            entries: entries
                .iter()
                .map(|&(tag, perm, id)| Entry { tag, perm, id })
                .collect(),
        }
    }

    fn named() -> Acl {
        // user::rw- user:1000:r-x group::r-- mask::rwx other::---
        acl(&[
            (USER_OBJ, 6, UNDEFINED),
            (USER, 5, 1000),
            (GROUP_OBJ, 4, UNDEFINED),
            (MASK, 7, UNDEFINED),
            (OTHER, 0, UNDEFINED),
        ])
    }

    #[test]
    fn round_trips_and_rejects_what_the_kernel_would() {
        let a = named();
        assert_eq!(Acl::decode(&a.encode()).unwrap(), a);
        let mut no_mask = a.clone();
        no_mask.entries.retain(|e| e.tag != MASK);
        let mut unordered = a.clone();
        unordered.entries.swap(0, 1);
        let mut wide = a.clone();
        wide.entries[0].perm = 8;
        for bad in [no_mask, unordered, wide] {
            assert!(Acl::decode(&bad.encode()).is_err(), "{bad:?}");
        }
        assert!(Acl::decode(&[2, 0, 0, 0, 1]).is_err());
        assert!(Acl::decode(&[1, 0, 0, 0]).is_err());
    }

    #[test]
    fn the_mode_shows_the_mask_and_chmod_sets_it() {
        let mut a = named();
        assert_eq!(a.perm_bits(), 0o670);
        assert!(!a.is_minimal());
        a.chmod(0o640);
        // The mask, not the owning group, takes the group bits; the named entry stays.
        assert_eq!(a.entries[3].perm, 4);
        assert_eq!(a.entries[2].perm, 4);
        assert_eq!(a.entries[1].perm, 5);
        assert_eq!(a.perm_bits(), 0o640);
    }

    #[test]
    fn a_default_acl_is_inherited_masked_by_the_mode_and_the_umask_ignored() {
        let default = named().encode();
        let (perm, xattrs) = on_create(Some(&default), false, 0o666, Some(0o077));
        assert_eq!(perm, 0o660);
        assert_eq!(xattrs.len(), 1);
        let access = Acl::decode(&xattrs[0].1).unwrap();
        assert_eq!(access.entries[3].perm, 6, "mask limited by the group bits");
        assert_eq!(access.entries[4].perm, 0);
        let (perm, xattrs) = on_create(Some(&default), true, 0o2777, Some(0o077));
        assert_eq!(perm, 0o2670);
        assert_eq!(xattrs[1], (DEFAULT, default.clone()));
        // No default ACL: the umask applies, nothing is stored.
        assert_eq!(on_create(None, false, 0o666, Some(0o027)), (0o640, vec![]));
        // A minimal default ACL gives a mode and no access ACL.
        let minimal = acl(&[
            (USER_OBJ, 7, UNDEFINED),
            (GROUP_OBJ, 5, UNDEFINED),
            (OTHER, 1, UNDEFINED),
        ]);
        let (perm, xattrs) = on_create(Some(&minimal.encode()), false, 0o666, Some(0o077));
        assert_eq!((perm, xattrs), (0o640, vec![]));
    }
}
