//! Every decoder of an on-disk byte layout, on arbitrary bytes: an error, never a panic. The
//! first byte picks the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::format::{node, pack, pack_index, records, store_header};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => drop(store_header::StoreHeader::decode(bytes)),
        1 => drop(pack::PackHeader::decode(bytes)),
        2 => drop(pack::decode_segment_header(bytes, 65536)),
        3 => drop(node::decode(bytes)),
        4 => drop(records::Dirent::decode(bytes)),
        5 => drop(records::PackRecord::decode(bytes)),
        _ => {
            for verify in [false, true] {
                if let Ok(view) = pack_index::IndexView::parse(bytes, 1, verify) {
                    for (id, _) in view.iter() {
                        let _ = view.find(&id);
                    }
                }
            }
        }
    }
});
