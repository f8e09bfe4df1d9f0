//! The byte-by-byte example of MS-ASWBXML (section 4, "server response that contains a new
//! contact"), written as the specification writes it: prefixed namespaces without colons.

use wbxml::{decode, encode, from_xml};

const EXAMPLE_XML: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<Sync xmlns="AirSync" xmlns:airsyncbase="AirSyncBase" xmlns:contacts="Contacts">
  <Collections>
    <Collection>
      <Class>Contacts</Class>
      <SyncKey>2</SyncKey>
      <CollectionId>2</CollectionId>
      <Status>1</Status>
      <Commands>
        <Add>
          <ServerId>2:1</ServerId>
          <ApplicationData>
            <airsyncbase:Body>
              <airsyncbase:Type>1</airsyncbase:Type>
              <airsyncbase:EstimatedDataSize>0</airsyncbase:EstimatedDataSize>
              <airsyncbase:Truncated>1</airsyncbase:Truncated>
            </airsyncbase:Body>
            <contacts:FileAs>Funk, Don</contacts:FileAs>
            <contacts:FirstName>Don</contacts:FirstName>
            <contacts:LastName>Funk</contacts:LastName>
            <airsyncbase:NativeBodyType>1</airsyncbase:NativeBodyType>
          </ApplicationData>
        </Add>
      </Commands>
    </Collection>
  </Collections>
</Sync>"#;

/// The encoding as the specification prints it. The copy consulted showed the bytes through
/// `5E 03 46 75 6E 6B` (FileAs "Funk"); the rest follows from the same code pages.
const EXAMPLE_WBXML: &[u8] = &[
    0x03, 0x01, 0x6A, 0x00, // WBXML 1.3, public id 1, UTF-8, no string table
    0x45, 0x5C, 0x4F, // <Sync> <Collections> <Collection>
    0x50, 0x03, b'C', b'o', b'n', b't', b'a', b'c', b't', b's', 0x00, 0x01, // <Class>
    0x4B, 0x03, b'2', 0x00, 0x01, // <SyncKey>2
    0x52, 0x03, b'2', 0x00, 0x01, // <CollectionId>2
    0x4E, 0x03, b'1', 0x00, 0x01, // <Status>1
    0x56, 0x47, // <Commands> <Add>
    0x4D, 0x03, b'2', b':', b'1', 0x00, 0x01, // <ServerId>2:1
    0x5D, // <ApplicationData>
    0x00, 0x11, 0x4A, // page 17, <airsyncbase:Body>
    0x46, 0x03, b'1', 0x00, 0x01, // <Type>1
    0x4C, 0x03, b'0', 0x00, 0x01, // <EstimatedDataSize>0
    0x4D, 0x03, b'1', 0x00, 0x01, // <Truncated>1
    0x01, // </Body>
    0x00, 0x01, 0x5E, // page 1, <contacts:FileAs>
    0x03, b'F', b'u', b'n', b'k', b',', b' ', b'D', b'o', b'n', 0x00, 0x01, 0x5F, 0x03, b'D', b'o',
    b'n', 0x00, 0x01, // <FirstName>Don
    0x69, 0x03, b'F', b'u', b'n', b'k', 0x00, 0x01, // <LastName>Funk
    0x00, 0x11, 0x56, 0x03, b'1', 0x00, 0x01, // page 17, <NativeBodyType>1
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, // </ApplicationData> … </Sync>
];

#[test]
fn contact_example_encodes_and_decodes_as_printed() {
    let tree = from_xml(EXAMPLE_XML).unwrap();
    assert_eq!(encode(&tree).unwrap(), EXAMPLE_WBXML);
    assert_eq!(decode(EXAMPLE_WBXML).unwrap(), tree);
}
