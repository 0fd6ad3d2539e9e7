//! Keeping a store healthy: marking what is reachable, garbage collection, and checking.

pub mod evict;
pub mod fsck;
pub mod gc;
pub mod mark;
pub mod reclaimer;

pub use evict::EvictReport;
pub use fsck::{FsckOptions, FsckReport};
pub use gc::{GcOptions, GcReport};
pub use reclaimer::ReclaimStatus;
