//! Typed access to the metadata tables: one place that knows which table holds what.

use std::collections::BTreeMap;

use super::{MetaRead, Table, Writer};
use crate::error::{Error, Result};
use crate::format::node;
use crate::format::records::{
    self as rec, ContainerRecord, Dirent, ImageRecord, LayerRecord, PackRecord,
};
use crate::ids::{LayerId, NodeId, PackId, PageId};
use crate::tree::node::NodeRecord;

/// Counter names in the `counters` table.
pub const NEXT_NODE: &str = "next_node";
pub const NEXT_LAYER: &str = "next_layer";

pub trait Records: MetaRead {
    fn node(&self, layer: LayerId, node: NodeId) -> Result<Option<NodeRecord>> {
        self.get(Table::Nodes, &rec::node_key(layer, node))?
            .map(|bytes| node::decode(&bytes))
            .transpose()
    }

    fn dirent(&self, layer: LayerId, parent: NodeId, name: &[u8]) -> Result<Option<Dirent>> {
        self.get(Table::Dirents, &rec::dirent_key(layer, parent, name))?
            .map(|bytes| Dirent::decode(&bytes))
            .transpose()
    }

    /// The entries one layer records for one directory, sorted by name.
    fn dirents(&self, layer: LayerId, parent: NodeId) -> Result<Vec<(Vec<u8>, Dirent)>> {
        let prefix = rec::node_key(layer, parent);
        self.scan(Table::Dirents, &prefix)?
            .into_iter()
            .map(|(key, value)| Ok((key[16..].to_vec(), Dirent::decode(&value)?)))
            .collect()
    }

    /// Every node record of a layer.
    fn layer_nodes(&self, layer: LayerId) -> Result<Vec<(NodeId, NodeRecord)>> {
        self.scan(Table::Nodes, &rec::layer_prefix(layer))?
            .into_iter()
            .map(|(key, value)| Ok((rec::split_node_key(&key)?.1, node::decode(&value)?)))
            .collect()
    }

    /// Every directory entry of a layer: (parent, name, entry).
    fn layer_dirents(&self, layer: LayerId) -> Result<Vec<(NodeId, Vec<u8>, Dirent)>> {
        self.scan(Table::Dirents, &rec::layer_prefix(layer))?
            .into_iter()
            .map(|(key, value)| {
                let (_, parent, name) = rec::split_dirent_key(&key)?;
                Ok((parent, name.to_vec(), Dirent::decode(&value)?))
            })
            .collect()
    }

    fn page_bytes(&self, id: &PageId) -> Result<Vec<u8>> {
        self.get(Table::Pages, id.as_bytes())?
            .ok_or_else(|| Error::Corrupt(format!("block-map page {id} is missing")))
    }

    fn has_page(&self, id: &PageId) -> Result<bool> {
        Ok(self.get(Table::Pages, id.as_bytes())?.is_some())
    }

    fn layer(&self, id: LayerId) -> Result<Option<LayerRecord>> {
        self.get(Table::Layers, &rec::layer_prefix(id))?
            .map(|bytes| rec::from_json(&bytes, "layer"))
            .transpose()
    }

    fn layers(&self) -> Result<Vec<(LayerId, LayerRecord)>> {
        self.scan(Table::Layers, &[])?
            .into_iter()
            .map(|(key, value)| {
                let id =
                    LayerId(u64::from_be_bytes(key.as_slice().try_into().map_err(
                        |_| Error::Corrupt("layer key has the wrong length".into()),
                    )?));
                Ok((id, rec::from_json(&value, "layer")?))
            })
            .collect()
    }

    /// The layers of a stack, top first, following parent links down from `top`.
    fn stack_of(&self, top: Option<LayerId>) -> Result<Vec<LayerId>> {
        let mut out = Vec::new();
        let mut next = top;
        while let Some(id) = next {
            let record = self
                .layer(id)?
                .ok_or_else(|| Error::Corrupt(format!("layer {id} is missing")))?;
            out.push(id);
            next = record.parent;
            if out.len() > 10_000 {
                return Err(Error::Corrupt(format!("layer {id}: parent chain loops")));
            }
        }
        Ok(out)
    }

    fn image(&self, name: &str) -> Result<Option<ImageRecord>> {
        self.get(Table::Images, name.as_bytes())?
            .map(|bytes| rec::from_json(&bytes, "image"))
            .transpose()
    }

    fn images(&self) -> Result<Vec<(String, ImageRecord)>> {
        named(self.scan(Table::Images, &[])?, "image")
    }

    fn container(&self, name: &str) -> Result<Option<ContainerRecord>> {
        self.get(Table::Containers, name.as_bytes())?
            .map(|bytes| rec::from_json(&bytes, "container"))
            .transpose()
    }

    fn containers(&self) -> Result<Vec<(String, ContainerRecord)>> {
        named(self.scan(Table::Containers, &[])?, "container")
    }

    fn packs(&self) -> Result<BTreeMap<PackId, PackRecord>> {
        self.scan(Table::Packs, &[])?
            .into_iter()
            .map(|(key, value)| {
                let id = u64::from_be_bytes(
                    key.as_slice()
                        .try_into()
                        .map_err(|_| Error::Corrupt("pack key has the wrong length".into()))?,
                );
                Ok((PackId(id), PackRecord::decode(&value)?))
            })
            .collect()
    }

    fn orphans(&self, layer: LayerId) -> Result<Vec<NodeId>> {
        self.scan(Table::Orphans, &rec::layer_prefix(layer))?
            .into_iter()
            .map(|(key, _)| Ok(rec::split_node_key(&key)?.1))
            .collect()
    }

    fn all_orphans(&self) -> Result<Vec<(LayerId, NodeId)>> {
        self.scan(Table::Orphans, &[])?
            .into_iter()
            .map(|(key, _)| rec::split_node_key(&key))
            .collect()
    }

    fn counter(&self, name: &str) -> Result<u64> {
        match self.get(Table::Counters, name.as_bytes())? {
            None => Ok(0),
            Some(bytes) => Ok(u64::from_le_bytes(bytes.as_slice().try_into().map_err(
                |_| Error::Corrupt(format!("counter {name} has the wrong length")),
            )?)),
        }
    }
}

impl<T: MetaRead + ?Sized> Records for T {}

fn named<T: for<'a> serde::Deserialize<'a>>(
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    what: &str,
) -> Result<Vec<(String, T)>> {
    rows.into_iter()
        .map(|(key, value)| {
            let name = String::from_utf8(key)
                .map_err(|_| Error::Corrupt(format!("{what} name is not UTF-8")))?;
            Ok((name, rec::from_json(&value, what)?))
        })
        .collect()
}

impl Writer<'_> {
    pub fn put_node(&mut self, layer: LayerId, id: NodeId, record: &NodeRecord) {
        self.put(
            Table::Nodes,
            &rec::node_key(layer, id),
            &node::encode(record),
        );
    }

    pub fn delete_node(&mut self, layer: LayerId, id: NodeId) {
        self.delete(Table::Nodes, &rec::node_key(layer, id));
    }

    pub fn put_dirent(&mut self, layer: LayerId, parent: NodeId, name: &[u8], entry: Dirent) {
        self.put(
            Table::Dirents,
            &rec::dirent_key(layer, parent, name),
            &entry.encode(),
        );
    }

    pub fn delete_dirent(&mut self, layer: LayerId, parent: NodeId, name: &[u8]) {
        self.delete(Table::Dirents, &rec::dirent_key(layer, parent, name));
    }

    pub fn put_page(&mut self, id: &PageId, bytes: &[u8]) {
        self.put(Table::Pages, id.as_bytes(), bytes);
    }

    pub fn put_layer(&mut self, id: LayerId, record: &LayerRecord) {
        self.put(Table::Layers, &rec::layer_prefix(id), &rec::to_json(record));
    }

    pub fn delete_layer_record(&mut self, id: LayerId) {
        self.delete(Table::Layers, &rec::layer_prefix(id));
    }

    pub fn put_image(&mut self, name: &str, record: &ImageRecord) {
        self.put(Table::Images, name.as_bytes(), &rec::to_json(record));
    }

    pub fn delete_image(&mut self, name: &str) {
        self.delete(Table::Images, name.as_bytes());
    }

    pub fn put_container(&mut self, name: &str, record: &ContainerRecord) {
        self.put(Table::Containers, name.as_bytes(), &rec::to_json(record));
    }

    pub fn delete_container(&mut self, name: &str) {
        self.delete(Table::Containers, name.as_bytes());
    }

    pub fn put_orphan(&mut self, layer: LayerId, node: NodeId) {
        self.put(Table::Orphans, &rec::node_key(layer, node), &[]);
    }

    pub fn delete_orphan(&mut self, layer: LayerId, node: NodeId) {
        self.delete(Table::Orphans, &rec::node_key(layer, node));
    }

    /// Takes the next value of a counter (which starts at `first`).
    pub fn next_id(&mut self, name: &str, first: u64) -> Result<u64> {
        let value = self.counter(name)?.max(first);
        self.put(Table::Counters, name.as_bytes(), &(value + 1).to_le_bytes());
        Ok(value)
    }

    /// Moves counter `name` on by `by`: ids below the new value are never given out.
    pub fn skip_ids(&mut self, name: &str, by: u64) -> Result<()> {
        let value = self.counter(name)?.saturating_add(by);
        self.put(Table::Counters, name.as_bytes(), &value.to_le_bytes());
        Ok(())
    }

    /// Deletes every node, directory entry and orphan record of a layer, and the layer.
    pub fn delete_layer(&mut self, layer: LayerId) -> Result<()> {
        let prefix = rec::layer_prefix(layer);
        for table in [Table::Nodes, Table::Dirents, Table::Orphans] {
            for (key, _) in self.scan(table, &prefix)? {
                self.delete(table, &key);
            }
        }
        self.delete_layer_record(layer);
        Ok(())
    }
}
