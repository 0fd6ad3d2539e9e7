//! Export: a view as a tar archive (`tessera export`).

mod tar;

pub use self::tar::ExportReport;
