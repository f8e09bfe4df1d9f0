//! WBXML global tokens and header constants (WAP-192-WBXML section 7).

pub(crate) const SWITCH_PAGE: u8 = 0x00;
pub(crate) const END: u8 = 0x01;
pub(crate) const STR_I: u8 = 0x03;
pub(crate) const STR_T: u8 = 0x83;
pub(crate) const OPAQUE: u8 = 0xC3;
/// Tag tokens start here; below are global tokens in every code space.
pub(crate) const FIRST_TAG: u8 = 0x05;
pub(crate) const HAS_CONTENT: u8 = 0x40;
pub(crate) const HAS_ATTRIBUTES: u8 = 0x80;

/// WBXML 1.3.
pub(crate) const VERSION_1_3: u8 = 0x03;
/// Public identifier 1: "unknown", what ActiveSync clients and servers send.
pub(crate) const PUBLIC_ID_UNKNOWN: u8 = 0x01;
/// IANA MIBenum of UTF-8.
pub(crate) const CHARSET_UTF8: u32 = 106;
