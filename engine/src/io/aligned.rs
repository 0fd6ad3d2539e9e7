//! A heap buffer whose start is aligned for O_DIRECT, built from a plain `Vec` (no `unsafe`):
//! the vector is over-allocated and the buffer starts at the first aligned byte inside it.

use std::ops::{Deref, DerefMut};

pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// The alignment of buffer addresses, file offsets and lengths for direct I/O.
    pub const ALIGN: usize = 4096;

    /// A zeroed buffer of `len` bytes (`len` is rounded up to `ALIGN`).
    pub fn new(len: usize) -> Self {
        let len = len.next_multiple_of(Self::ALIGN);
        let storage = vec![0u8; len + Self::ALIGN];
        let misalignment = storage.as_ptr() as usize % Self::ALIGN;
        let start = (Self::ALIGN - misalignment) % Self::ALIGN;
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    /// Grows (never shrinks) the usable length to at least `len`, rounded up to `ALIGN`.
    pub fn ensure_len(&mut self, len: usize) {
        let len = len.next_multiple_of(Self::ALIGN);
        if len > self.len {
            *self = AlignedBuf::new(len);
        }
    }

    /// Sets the usable length to `len` rounded up to `ALIGN`, reallocating only to grow.
    pub fn set_len(&mut self, len: usize) {
        let len = len.next_multiple_of(Self::ALIGN);
        if self.start + len > self.storage.len() {
            *self = AlignedBuf::new(len);
        }
        self.len = len;
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_aligned() {
        for len in [1, 4096, 5000, 65536] {
            let buf = AlignedBuf::new(len);
            assert_eq!(buf.as_ptr() as usize % AlignedBuf::ALIGN, 0);
            assert!(buf.len() >= len && buf.len().is_multiple_of(AlignedBuf::ALIGN));
        }
    }
}
