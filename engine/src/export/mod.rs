//! Export: a view as a tar archive (`tessera export`); an image or container as an OCI image
//! layout, and one layer's diff as an OCI layer tar (`oci`, `layer_diff`).

mod layer_diff;
mod oci;
mod tar;

pub use self::oci::{ExportedLayer, OciExportReport};
pub use self::tar::ExportReport;
