//! Nodes and block maps: what a file is made of.

pub mod acl;
pub mod block_map;
pub mod node;
pub mod pages;
