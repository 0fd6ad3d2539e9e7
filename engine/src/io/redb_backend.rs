//! redb's `StorageBackend` on top of the I/O seam, so a simulated crash drops unsynced database
//! writes together with unsynced pack writes.

use std::io;
use std::sync::Arc;

use super::IoFile;

#[derive(Debug)]
pub struct IoBackend(pub Arc<dyn IoFile>);

impl redb::StorageBackend for IoBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.0.read_exact_at(out, offset)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.0.write_all_at(data, offset)
    }
}
