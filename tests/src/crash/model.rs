//! The model of `crash_random.rs`: what a container shows, what each node held at its last
//! flush, and what each durability point made durable — `fsync(node)` that node's data,
//! `Store::sync`, commit and gc every node's, and every point the whole namespace (commit also
//! the new image).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Entry, Point, Tree};

/// A container's namespace and contents at one moment. Hard links share a model node.
#[derive(Clone, Default)]
pub struct State {
    pub dirs: BTreeSet<String>,
    pub files: BTreeMap<String, u64>,
    pub data: HashMap<u64, Vec<u8>>,
}

impl State {
    pub fn tree(&self) -> Tree {
        let mut tree: Tree = self.dirs.iter().map(|d| (d.clone(), Entry::Dir)).collect();
        for (path, node) in &self.files {
            tree.insert(path.clone(), Entry::File(self.data[node].clone()));
        }
        tree
    }
}

/// A state a crash may leave behind: the container's view and every image.
#[derive(Clone)]
pub struct Outcome {
    pub state: State,
    pub images: BTreeMap<String, Tree>,
}

/// What the view shows, each node's data as of its last flush, and what is durable.
#[derive(Clone)]
pub struct Model {
    pub live: State,
    pub flushed: HashMap<u64, Vec<u8>>,
    pub durable: Outcome,
    pub next_node: u64,
}

impl Model {
    pub fn new(base: &Tree) -> Model {
        let mut live = State::default();
        for (path, entry) in base {
            match entry {
                Entry::Dir => {
                    live.dirs.insert(path.clone());
                }
                Entry::File(data) => {
                    let node = live.files.len() as u64;
                    live.files.insert(path.clone(), node);
                    live.data.insert(node, data.clone());
                }
            }
        }
        let images = BTreeMap::from([("base".to_string(), base.clone())]);
        Model {
            flushed: live.data.clone(),
            next_node: live.files.len() as u64,
            durable: Outcome {
                state: live.clone(),
                images,
            },
            live,
        }
    }

    /// Forgets nodes that lost their last name.
    pub fn drop_unnamed(&mut self) {
        let named: BTreeSet<u64> = self.live.files.values().copied().collect();
        self.live.data.retain(|n, _| named.contains(n));
        self.flushed.retain(|n, _| named.contains(n));
    }

    /// A durability point's effect: what it flushes, then one metadata commit of everything.
    pub fn apply(&mut self, point: Point, file: Option<&str>, image: &str) {
        match point {
            Point::Fsync => {
                let node = self.live.files[file.expect("a file")];
                self.flushed.insert(node, self.live.data[&node].clone());
            }
            Point::Fsyncdir => {}
            Point::Sync | Point::Commit | Point::Reclaim => self.flushed = self.live.data.clone(),
        }
        let mut state = self.live.clone();
        state.data = state
            .files
            .values()
            .map(|n| (*n, self.flushed[n].clone()))
            .collect();
        self.durable.state = state;
        if let Point::Commit = point {
            self.durable
                .images
                .insert(image.to_string(), self.live.tree());
        }
    }
}
