//! Feeds arbitrary bytes to the decoder. Whatever decodes must re-encode, decode to the
//! same tree, and render to XML that parses back.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = wbxml::decode(data) else {
        return;
    };
    let bytes = wbxml::encode(&tree).expect("a decoded tree encodes");
    assert_eq!(wbxml::decode(&bytes).as_ref(), Ok(&tree));
    let _ = wbxml::from_xml(&wbxml::to_xml(&tree));
});
