//! The MS-ASWBXML code pages: page number, namespace and tag tokens.
//!
//! One macro invocation below is the single source of truth. It produces the [`Page`] enum,
//! the static token tables behind [`Page::tags`], and one module of [`Tag`] constants per
//! page under [`tag`], so requests can be built without raw tokens and a misspelt tag is a
//! compile error.
//!
//! Names follow MS-ASWBXML (protocol 16.1 revision). Tokens the current specification
//! retired (ActiveSync 2.5 era) are kept so old servers still decode. Where libwbxml2 names a
//! token differently (`Reply-To`, `MIME`, `Recurrence_Type`, …) the specification's name wins.

use std::fmt;

macro_rules! code_pages {
    ($(
        $num:literal $page:ident $ns:literal $module:ident {
            $( $tok:literal $tag:ident ),* $(,)?
        }
    )*) => {
        /// An ActiveSync WBXML code page; each is one XML namespace.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Page {
            $(
                #[doc = concat!("Code page ", stringify!($num), ", namespace `", $ns, "`.")]
                $page = $num,
            )*
        }

        impl Page {
            /// Every page, in page-number order.
            pub const ALL: &'static [Page] = &[$(Page::$page),*];

            /// The page for a SWITCH_PAGE operand, if it is one we know.
            pub const fn from_number(number: u8) -> Option<Page> {
                match number {
                    $( $num => Some(Page::$page), )*
                    _ => None,
                }
            }

            /// The XML namespace name as ActiveSync writes it, with its trailing colon
            /// (`"AirSync:"`).
            pub const fn namespace(self) -> &'static str {
                match self {
                    $( Page::$page => $ns, )*
                }
            }

            /// The page's name (`"AirSync"`).
            pub const fn name(self) -> &'static str {
                match self {
                    $( Page::$page => stringify!($page), )*
                }
            }

            /// The page's `(token, tag name)` pairs, sorted by token.
            pub const fn tags(self) -> &'static [(u8, &'static str)] {
                match self {
                    $( Page::$page => &[ $( ($tok, stringify!($tag)) ),* ], )*
                }
            }
        }

        /// One module of [`Tag`] constants per code page, named like the tags themselves:
        /// `tag::airsync::Sync`, `tag::email::Subject`.
        pub mod tag {
            $(
                #[doc = concat!("Tags of code page ", stringify!($num), " (`", $ns, "`).")]
                #[allow(non_upper_case_globals)]
                pub mod $module {
                    use crate::{Page, Tag};
                    $(
                        #[doc = concat!("`", stringify!($tag), "`, token ", stringify!($tok), ".")]
                        pub const $tag: Tag = Tag::from_known(Page::$page, $tok);
                    )*
                }
            )*
        }
    };
}

code_pages! {
    0 AirSync "AirSync:" airsync {
        0x05 Sync, 0x06 Responses, 0x07 Add, 0x08 Change, 0x09 Delete, 0x0A Fetch,
        0x0B SyncKey, 0x0C ClientId, 0x0D ServerId, 0x0E Status, 0x0F Collection, 0x10 Class,
        0x11 Version, 0x12 CollectionId, 0x13 GetChanges, 0x14 MoreAvailable, 0x15 WindowSize,
        0x16 Commands, 0x17 Options, 0x18 FilterType, 0x19 Truncation, 0x1A RTFTruncation,
        0x1B Conflict, 0x1C Collections, 0x1D ApplicationData, 0x1E DeletesAsMoves,
        0x1F NotifyGUID, 0x20 Supported, 0x21 SoftDelete, 0x22 MIMESupport,
        0x23 MIMETruncation, 0x24 Wait, 0x25 Limit, 0x26 Partial, 0x27 ConversationMode,
        0x28 MaxItems, 0x29 HeartbeatInterval,
    }
    1 Contacts "Contacts:" contacts {
        0x05 Anniversary, 0x06 AssistantName, 0x07 AssistantTelephoneNumber, 0x08 Birthday,
        0x09 Body, 0x0A BodySize, 0x0B BodyTruncated, 0x0C Business2PhoneNumber,
        0x0D BusinessCity, 0x0E BusinessCountry, 0x0F BusinessPostalCode, 0x10 BusinessState,
        0x11 BusinessStreet, 0x12 BusinessFaxNumber, 0x13 BusinessPhoneNumber,
        0x14 CarPhoneNumber, 0x15 Categories, 0x16 Category, 0x17 Children, 0x18 Child,
        0x19 CompanyName, 0x1A Department, 0x1B Email1Address, 0x1C Email2Address,
        0x1D Email3Address, 0x1E FileAs, 0x1F FirstName, 0x20 Home2PhoneNumber,
        0x21 HomeCity, 0x22 HomeCountry, 0x23 HomePostalCode, 0x24 HomeState,
        0x25 HomeStreet, 0x26 HomeFaxNumber, 0x27 HomePhoneNumber, 0x28 JobTitle,
        0x29 LastName, 0x2A MiddleName, 0x2B MobilePhoneNumber, 0x2C OfficeLocation,
        0x2D OtherCity, 0x2E OtherCountry, 0x2F OtherPostalCode, 0x30 OtherState,
        0x31 OtherStreet, 0x32 PagerNumber, 0x33 RadioPhoneNumber, 0x34 Spouse, 0x35 Suffix,
        0x36 Title, 0x37 WebPage, 0x38 YomiCompanyName, 0x39 YomiFirstName,
        0x3A YomiLastName, 0x3B CompressedRTF, 0x3C Picture, 0x3D Alias, 0x3E WeightedRank,
    }
    2 Email "Email:" email {
        0x05 Attachment, 0x06 Attachments, 0x07 AttName, 0x08 AttSize, 0x09 AttOid,
        0x0A AttMethod, 0x0B AttRemoved, 0x0C Body, 0x0D BodySize, 0x0E BodyTruncated,
        0x0F DateReceived, 0x10 DisplayName, 0x11 DisplayTo, 0x12 Importance,
        0x13 MessageClass, 0x14 Subject, 0x15 Read, 0x16 To, 0x17 Cc, 0x18 From,
        0x19 ReplyTo, 0x1A AllDayEvent, 0x1B Categories, 0x1C Category, 0x1D DtStamp,
        0x1E EndTime, 0x1F InstanceType, 0x20 BusyStatus, 0x21 Location, 0x22 MeetingRequest,
        0x23 Organizer, 0x24 RecurrenceId, 0x25 Reminder, 0x26 ResponseRequested,
        0x27 Recurrences, 0x28 Recurrence, 0x29 Type, 0x2A Until, 0x2B Occurrences,
        0x2C Interval, 0x2D DayOfWeek, 0x2E DayOfMonth, 0x2F WeekOfMonth, 0x30 MonthOfYear,
        0x31 StartTime, 0x32 Sensitivity, 0x33 TimeZone, 0x34 GlobalObjId, 0x35 ThreadTopic,
        0x36 MIMEData, 0x37 MIMETruncated, 0x38 MIMESize, 0x39 InternetCPID, 0x3A Flag,
        0x3B FlagStatus, 0x3C ContentClass, 0x3D FlagType, 0x3E CompleteTime,
        0x3F DisallowNewTimeProposal,
    }
    3 AirNotify "AirNotify:" airnotify {
        0x05 Notify, 0x06 Notification, 0x07 Version, 0x08 LifeTime, 0x09 DeviceInfo,
        0x0A Enable, 0x0B Folder, 0x0C ServerId, 0x0D DeviceAddress,
        0x0E ValidCarrierProfiles, 0x0F CarrierProfile, 0x10 Status, 0x11 Responses,
        0x12 Devices, 0x13 Device, 0x14 Id, 0x15 Expiry, 0x16 NotifyGUID,
        0x17 DeviceFriendlyName,
    }
    4 Calendar "Calendar:" calendar {
        0x05 TimeZone, 0x06 AllDayEvent, 0x07 Attendees, 0x08 Attendee, 0x09 Email,
        0x0A Name, 0x0B Body, 0x0C BodyTruncated, 0x0D BusyStatus, 0x0E Categories,
        0x0F Category, 0x10 CompressedRTF, 0x11 DtStamp, 0x12 EndTime, 0x13 Exception,
        0x14 Exceptions, 0x15 Deleted, 0x16 ExceptionStartTime, 0x17 Location,
        0x18 MeetingStatus, 0x19 OrganizerEmail, 0x1A OrganizerName, 0x1B Recurrence,
        0x1C Type, 0x1D Until, 0x1E Occurrences, 0x1F Interval, 0x20 DayOfWeek,
        0x21 DayOfMonth, 0x22 WeekOfMonth, 0x23 MonthOfYear, 0x24 Reminder, 0x25 Sensitivity,
        0x26 Subject, 0x27 StartTime, 0x28 UID, 0x29 AttendeeStatus, 0x2A AttendeeType,
        0x33 DisallowNewTimeProposal, 0x34 ResponseRequested, 0x35 AppointmentReplyTime,
        0x36 ResponseType, 0x37 CalendarType, 0x38 IsLeapMonth, 0x39 FirstDayOfWeek,
        0x3A OnlineMeetingConfLink, 0x3B OnlineMeetingExternalLink, 0x3C ClientUid,
    }
    5 Move "Move:" r#move {
        0x05 MoveItems, 0x06 Move, 0x07 SrcMsgId, 0x08 SrcFldId, 0x09 DstFldId,
        0x0A Response, 0x0B Status, 0x0C DstMsgId,
    }
    6 GetItemEstimate "GetItemEstimate:" getitemestimate {
        0x05 GetItemEstimate, 0x06 Version, 0x07 Collections, 0x08 Collection, 0x09 Class,
        0x0A CollectionId, 0x0B DateTime, 0x0C Estimate, 0x0D Response, 0x0E Status,
    }
    7 FolderHierarchy "FolderHierarchy:" folderhierarchy {
        0x05 Folders, 0x06 Folder, 0x07 DisplayName, 0x08 ServerId, 0x09 ParentId, 0x0A Type,
        0x0B Response, 0x0C Status, 0x0D ContentClass, 0x0E Changes, 0x0F Add, 0x10 Delete,
        0x11 Update, 0x12 SyncKey, 0x13 FolderCreate, 0x14 FolderDelete, 0x15 FolderUpdate,
        0x16 FolderSync, 0x17 Count, 0x18 Version,
    }
    8 MeetingResponse "MeetingResponse:" meetingresponse {
        0x05 CalendarId, 0x06 CollectionId, 0x07 MeetingResponse, 0x08 RequestId,
        0x09 Request, 0x0A Result, 0x0B Status, 0x0C UserResponse, 0x0D Version,
        0x0E InstanceId, 0x10 ProposedStartTime, 0x11 ProposedEndTime, 0x12 SendResponse,
    }
    9 Tasks "Tasks:" tasks {
        0x05 Body, 0x06 BodySize, 0x07 BodyTruncated, 0x08 Categories, 0x09 Category,
        0x0A Complete, 0x0B DateCompleted, 0x0C DueDate, 0x0D UtcDueDate, 0x0E Importance,
        0x0F Recurrence, 0x10 Type, 0x11 Start, 0x12 Until, 0x13 Occurrences, 0x14 Interval,
        0x15 DayOfMonth, 0x16 DayOfWeek, 0x17 WeekOfMonth, 0x18 MonthOfYear, 0x19 Regenerate,
        0x1A DeadOccur, 0x1B ReminderSet, 0x1C ReminderTime, 0x1D Sensitivity,
        0x1E StartDate, 0x1F UtcStartDate, 0x20 Subject, 0x21 CompressedRTF,
        0x22 OrdinalDate, 0x23 SubOrdinalDate, 0x24 CalendarType, 0x25 IsLeapMonth,
        0x26 FirstDayOfWeek,
    }
    10 ResolveRecipients "ResolveRecipients:" resolverecipients {
        0x05 ResolveRecipients, 0x06 Response, 0x07 Status, 0x08 Type, 0x09 Recipient,
        0x0A DisplayName, 0x0B EmailAddress, 0x0C Certificates, 0x0D Certificate,
        0x0E MiniCertificate, 0x0F Options, 0x10 To, 0x11 CertificateRetrieval,
        0x12 RecipientCount, 0x13 MaxCertificates, 0x14 MaxAmbiguousRecipients,
        0x15 CertificateCount, 0x16 Availability, 0x17 StartTime, 0x18 EndTime,
        0x19 MergedFreeBusy, 0x1A Picture, 0x1B MaxSize, 0x1C Data, 0x1D MaxPictures,
    }
    11 ValidateCert "ValidateCert:" validatecert {
        0x05 ValidateCert, 0x06 Certificates, 0x07 Certificate, 0x08 CertificateChain,
        0x09 CheckCRL, 0x0A Status,
    }
    12 Contacts2 "Contacts2:" contacts2 {
        0x05 CustomerId, 0x06 GovernmentId, 0x07 IMAddress, 0x08 IMAddress2, 0x09 IMAddress3,
        0x0A ManagerName, 0x0B CompanyMainPhone, 0x0C AccountName, 0x0D NickName, 0x0E MMS,
    }
    13 Ping "Ping:" ping {
        0x05 Ping, 0x06 AutdState, 0x07 Status, 0x08 HeartbeatInterval, 0x09 Folders,
        0x0A Folder, 0x0B Id, 0x0C Class, 0x0D MaxFolders,
    }
    14 Provision "Provision:" provision {
        0x05 Provision, 0x06 Policies, 0x07 Policy, 0x08 PolicyType, 0x09 PolicyKey,
        0x0A Data, 0x0B Status, 0x0C RemoteWipe, 0x0D EASProvisionDoc,
        0x0E DevicePasswordEnabled, 0x0F AlphanumericDevicePasswordRequired,
        0x10 RequireStorageCardEncryption, 0x11 PasswordRecoveryEnabled,
        0x12 DocumentBrowseEnabled, 0x13 AttachmentsEnabled, 0x14 MinDevicePasswordLength,
        0x15 MaxInactivityTimeDeviceLock, 0x16 MaxDevicePasswordFailedAttempts,
        0x17 MaxAttachmentSize, 0x18 AllowSimpleDevicePassword, 0x19 DevicePasswordExpiration,
        0x1A DevicePasswordHistory, 0x1B AllowStorageCard, 0x1C AllowCamera,
        0x1D RequireDeviceEncryption, 0x1E AllowUnsignedApplications,
        0x1F AllowUnsignedInstallationPackages, 0x20 MinDevicePasswordComplexCharacters,
        0x21 AllowWiFi, 0x22 AllowTextMessaging, 0x23 AllowPOPIMAPEmail, 0x24 AllowBluetooth,
        0x25 AllowIrDA, 0x26 RequireManualSyncWhenRoaming, 0x27 AllowDesktopSync,
        0x28 MaxCalendarAgeFilter, 0x29 AllowHTMLEmail, 0x2A MaxEmailAgeFilter,
        0x2B MaxEmailBodyTruncationSize, 0x2C MaxEmailHTMLBodyTruncationSize,
        0x2D RequireSignedSMIMEMessages, 0x2E RequireEncryptedSMIMEMessages,
        0x2F RequireSignedSMIMEAlgorithm, 0x30 RequireEncryptionSMIMEAlgorithm,
        0x31 AllowSMIMEEncryptionAlgorithmNegotiation, 0x32 AllowSMIMESoftCerts,
        0x33 AllowBrowser, 0x34 AllowConsumerEmail, 0x35 AllowRemoteDesktop,
        0x36 AllowInternetSharing, 0x37 UnapprovedInROMApplicationList, 0x38 ApplicationName,
        0x39 ApprovedApplicationList, 0x3A Hash, 0x3B AccountOnlyRemoteWipe,
    }
    15 Search "Search:" search {
        0x05 Search, 0x07 Store, 0x08 Name, 0x09 Query, 0x0A Options, 0x0B Range,
        0x0C Status, 0x0D Response, 0x0E Result, 0x0F Properties, 0x10 Total, 0x11 EqualTo,
        0x12 Value, 0x13 And, 0x14 Or, 0x15 FreeText, 0x17 DeepTraversal, 0x18 LongId,
        0x19 RebuildResults, 0x1A LessThan, 0x1B GreaterThan, 0x1C Schema, 0x1D Supported,
        0x1E UserName, 0x1F Password, 0x20 ConversationId, 0x21 Picture, 0x22 MaxSize,
        0x23 MaxPictures,
    }
    16 Gal "GAL:" gal {
        0x05 DisplayName, 0x06 Phone, 0x07 Office, 0x08 Title, 0x09 Company, 0x0A Alias,
        0x0B FirstName, 0x0C LastName, 0x0D HomePhone, 0x0E MobilePhone, 0x0F EmailAddress,
        0x10 Picture, 0x11 Status, 0x12 Data,
    }
    17 AirSyncBase "AirSyncBase:" airsyncbase {
        0x05 BodyPreference, 0x06 Type, 0x07 TruncationSize, 0x08 AllOrNone, 0x0A Body,
        0x0B Data, 0x0C EstimatedDataSize, 0x0D Truncated, 0x0E Attachments, 0x0F Attachment,
        0x10 DisplayName, 0x11 FileReference, 0x12 Method, 0x13 ContentId,
        0x14 ContentLocation, 0x15 IsInline, 0x16 NativeBodyType, 0x17 ContentType,
        0x18 Preview, 0x19 BodyPartPreference, 0x1A BodyPart, 0x1B Status, 0x1C Add,
        0x1D Delete, 0x1E ClientId, 0x1F Content, 0x20 Location, 0x21 Annotation,
        0x22 Street, 0x23 City, 0x24 State, 0x25 Country, 0x26 PostalCode, 0x27 Latitude,
        0x28 Longitude, 0x29 Accuracy, 0x2A Altitude, 0x2B AltitudeAccuracy,
        0x2C LocationUri, 0x2D InstanceId,
    }
    18 Settings "Settings:" settings {
        0x05 Settings, 0x06 Status, 0x07 Get, 0x08 Set, 0x09 Oof, 0x0A OofState,
        0x0B StartTime, 0x0C EndTime, 0x0D OofMessage, 0x0E AppliesToInternal,
        0x0F AppliesToExternalKnown, 0x10 AppliesToExternalUnknown, 0x11 Enabled,
        0x12 ReplyMessage, 0x13 BodyType, 0x14 DevicePassword, 0x15 Password,
        0x16 DeviceInformation, 0x17 Model, 0x18 IMEI, 0x19 FriendlyName, 0x1A OS,
        0x1B OSLanguage, 0x1C PhoneNumber, 0x1D UserInformation, 0x1E EmailAddresses,
        0x1F SmtpAddress, 0x20 UserAgent, 0x21 EnableOutboundSMS, 0x22 MobileOperator,
        0x23 PrimarySmtpAddress, 0x24 Accounts, 0x25 Account, 0x26 AccountId,
        0x27 AccountName, 0x28 UserDisplayName, 0x29 SendDisabled,
        0x2B RightsManagementInformation,
    }
    19 DocumentLibrary "DocumentLibrary:" documentlibrary {
        0x05 LinkId, 0x06 DisplayName, 0x07 IsFolder, 0x08 CreationDate,
        0x09 LastModifiedDate, 0x0A IsHidden, 0x0B ContentLength, 0x0C ContentType,
    }
    20 ItemOperations "ItemOperations:" itemoperations {
        0x05 ItemOperations, 0x06 Fetch, 0x07 Store, 0x08 Options, 0x09 Range, 0x0A Total,
        0x0B Properties, 0x0C Data, 0x0D Status, 0x0E Response, 0x0F Version, 0x10 Schema,
        0x11 Part, 0x12 EmptyFolderContents, 0x13 DeleteSubFolders, 0x14 UserName,
        0x15 Password, 0x16 Move, 0x17 DstFldId, 0x18 ConversationId, 0x19 MoveAlways,
    }
    21 ComposeMail "ComposeMail:" composemail {
        0x05 SendMail, 0x06 SmartForward, 0x07 SmartReply, 0x08 SaveInSentItems,
        0x09 ReplaceMime, 0x0B Source, 0x0C FolderId, 0x0D ItemId, 0x0E LongId,
        0x0F InstanceId, 0x10 Mime, 0x11 ClientId, 0x12 Status, 0x13 AccountId,
        0x15 Forwardees, 0x16 Forwardee, 0x17 ForwardeeName, 0x18 ForwardeeEmail,
    }
    22 Email2 "Email2:" email2 {
        0x05 UmCallerID, 0x06 UmUserNotes, 0x07 UmAttDuration, 0x08 UmAttOrder,
        0x09 ConversationId, 0x0A ConversationIndex, 0x0B LastVerbExecuted,
        0x0C LastVerbExecutionTime, 0x0D ReceivedAsBcc, 0x0E Sender, 0x0F CalendarType,
        0x10 IsLeapMonth, 0x11 AccountId, 0x12 FirstDayOfWeek, 0x13 MeetingMessageType,
        0x15 IsDraft, 0x16 Bcc, 0x17 Send,
    }
    23 Notes "Notes:" notes {
        0x05 Subject, 0x06 MessageClass, 0x07 LastModifiedDate, 0x08 Categories,
        0x09 Category,
    }
    24 RightsManagement "RightsManagement:" rightsmanagement {
        0x05 RightsManagementSupport, 0x06 RightsManagementTemplates,
        0x07 RightsManagementTemplate, 0x08 RightsManagementLicense, 0x09 EditAllowed,
        0x0A ReplyAllowed, 0x0B ReplyAllAllowed, 0x0C ForwardAllowed,
        0x0D ModifyRecipientsAllowed, 0x0E ExtractAllowed, 0x0F PrintAllowed,
        0x10 ExportAllowed, 0x11 ProgrammaticAccessAllowed, 0x12 Owner,
        0x13 ContentExpiryDate, 0x14 TemplateID, 0x15 TemplateName, 0x16 TemplateDescription,
        0x17 ContentOwner, 0x18 RemoveRightsManagementDistribution,
    }
}

/// The lowest token a tag can have; 0x00–0x04 are WBXML global tokens.
pub const MIN_TAG_TOKEN: u8 = 0x05;
/// The highest token a tag can have; bits 0x40 and 0x80 are content and attribute flags.
pub const MAX_TAG_TOKEN: u8 = 0x3F;

impl Page {
    /// The page whose namespace is `namespace`, with or without the trailing colon
    /// (`"AirSync:"` as ActiveSync writes it, `"AirSync"` as the specification's examples do),
    /// ignoring ASCII case (libwbxml writes `"Gal:"` for `"GAL:"`).
    pub fn from_namespace(namespace: &str) -> Option<Page> {
        let bare = namespace.strip_suffix(':').unwrap_or(namespace);
        Page::ALL.iter().copied().find(|page| {
            let ns = page.namespace();
            ns[..ns.len() - 1].eq_ignore_ascii_case(bare)
        })
    }

    /// The token of tag `name` on this page.
    pub fn token(self, name: &str) -> Option<u8> {
        self.tags()
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(t, _)| *t)
    }

    /// The name of tag `token` on this page.
    pub fn tag_name(self, token: u8) -> Option<&'static str> {
        let tags = self.tags();
        tags.binary_search_by_key(&token, |(t, _)| *t)
            .ok()
            .map(|i| tags[i].1)
    }
}

impl fmt::Display for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.namespace())
    }
}

/// A tag: a code page and a token in 0x05..=0x3F.
///
/// Most tags come from the constants in [`tag`] or from [`Tag::new`], and so have a name in
/// the tables. A decoder also accepts a token the tables lack (a newer server may send one);
/// such a tag has no [`name`](Tag::name) and renders as `Token_XX` in XML.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    page: Page,
    token: u8,
}

/// A tag name or token that the code page does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownTag {
    /// No tag of this name on the page.
    #[error("no tag {name:?} in code page {page}")]
    Name {
        /// The page that was searched.
        page: Page,
        /// The name asked for.
        name: String,
    },
    /// The token is outside 0x05..=0x3F.
    #[error("{token:#04x} is not a tag token (tags are 0x05..=0x3F)")]
    Token {
        /// The token given.
        token: u8,
    },
}

impl Tag {
    pub(crate) const fn from_known(page: Page, token: u8) -> Tag {
        Tag { page, token }
    }

    /// The tag called `name` on `page`.
    pub fn new(page: Page, name: &str) -> Result<Tag, UnknownTag> {
        match page.token(name) {
            Some(token) => Ok(Tag { page, token }),
            None => Tag::from_name_fallback(page, name),
        }
    }

    // `Token_XX` is how a tag missing from the tables renders; accept it back.
    fn from_name_fallback(page: Page, name: &str) -> Result<Tag, UnknownTag> {
        let unknown = || UnknownTag::Name {
            page,
            name: name.to_owned(),
        };
        let hex = name.strip_prefix("Token_").ok_or_else(unknown)?;
        if hex.len() != 2 {
            return Err(unknown());
        }
        let token = u8::from_str_radix(hex, 16).map_err(|_| unknown())?;
        let tag = Tag::from_token(page, token).map_err(|_| unknown())?;
        if tag.name().is_some() {
            // A named tag has exactly one spelling.
            return Err(unknown());
        }
        Ok(tag)
    }

    /// The tag with `token` on `page`, named in the tables or not.
    pub fn from_token(page: Page, token: u8) -> Result<Tag, UnknownTag> {
        if (MIN_TAG_TOKEN..=MAX_TAG_TOKEN).contains(&token) {
            Ok(Tag { page, token })
        } else {
            Err(UnknownTag::Token { token })
        }
    }

    /// The code page.
    pub const fn page(self) -> Page {
        self.page
    }

    /// The token, without content or attribute flags.
    pub const fn token(self) -> u8 {
        self.token
    }

    /// The tag's name, if the tables define this token.
    pub fn name(self) -> Option<&'static str> {
        self.page.tag_name(self.token)
    }

    /// The name used in XML: the table's name, or `Token_XX` for a token the tables lack.
    pub fn xml_name(self) -> std::borrow::Cow<'static, str> {
        match self.name() {
            Some(name) => name.into(),
            None => format!("Token_{:02X}", self.token).into(),
        }
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.page.namespace(), self.xml_name())
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_unique_and_in_range() {
        for (i, page) in Page::ALL.iter().enumerate() {
            assert_eq!(*page as usize, i, "pages are numbered in order");
            assert_eq!(Page::from_number(i as u8), Some(*page));
            let tags = page.tags();
            assert!(!tags.is_empty());
            for pair in tags.windows(2) {
                assert!(pair[0].0 < pair[1].0, "{page:?} tokens sorted and unique");
            }
            for (token, name) in tags {
                assert!((MIN_TAG_TOKEN..=MAX_TAG_TOKEN).contains(token));
                assert_eq!(page.token(name), Some(*token), "{page:?} {name} unique");
            }
        }
    }

    #[test]
    fn namespaces_resolve_with_and_without_colon() {
        assert_eq!(Page::from_namespace("AirSync:"), Some(Page::AirSync));
        assert_eq!(Page::from_namespace("AirSyncBase"), Some(Page::AirSyncBase));
        assert_eq!(Page::from_namespace("GAL:"), Some(Page::Gal));
        assert_eq!(Page::from_namespace("Nope:"), None);
    }

    #[test]
    fn tag_constants_match_tables() {
        assert_eq!(tag::airsync::Sync.token(), 0x05);
        assert_eq!(tag::email::ReplyTo.name(), Some("ReplyTo"));
        assert_eq!(tag::r#move::MoveItems.page(), Page::Move);
        assert_eq!(
            Tag::new(Page::Email2, "ConversationId"),
            Ok(tag::email2::ConversationId)
        );
        assert!(Tag::new(Page::AirSync, "Nope").is_err());
        assert_eq!(
            Tag::new(Page::AirSync, "Token_3F").map(|t| t.token()),
            Ok(0x3F)
        );
        assert!(Tag::new(Page::AirSync, "Token_05").is_err());
    }
}
