//! Nodes and block maps: what a file is made of.

pub mod node;
