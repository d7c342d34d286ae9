//! An Active Directory forest read from an `ldifde` export of its
//! configuration partition (`ldifde -f forest.ldif -d
//! "CN=Sites,CN=Configuration,DC=example,DC=com"`): sites, domain
//! controllers (read-only or not), their inbound connections with their
//! schedules, and site links. docs/IMPORT.md says what is read, what is
//! skipped and why.
//!
//! - [`ldif`]: an RFC 2849 LDIF reader (and a writer, for tests and
//!   generated forests).
//! - [`schedule`]: the binary SCHEDULE structure of MS-ADTS.
//! - [`forest`]: the entries mapped onto a [`Forest`].
//!
//! ```
//! use backsync::import::Forest;
//!
//! let ldif = "\
//! version: 1
//!
//! dn: CN=Hub,CN=Sites,CN=Configuration,DC=example,DC=com
//! objectClass: site
//! cn: Hub
//!
//! dn: CN=WIN01,CN=Servers,CN=Hub,CN=Sites,CN=Configuration,DC=example,DC=com
//! objectClass: server
//! cn: WIN01
//! ";
//! let forest = Forest::from_ldif(ldif).unwrap();
//! assert_eq!(forest.servers[0].name, "WIN01");
//! assert_eq!(forest.servers[0].site, "Hub");
//! assert_eq!(
//!     forest.summary(),
//!     "1 site, 1 server (0 read-only), 0 connections (0 disabled, \
//!      0 RODC-topology skipped), 0 site links"
//! );
//!
//! // Errors name the line and the entry.
//! let err = Forest::from_ldif("dn: CN=X,DC=example\ncost:: ***\n").unwrap_err();
//! assert_eq!(err.to_string(), "line 2: entry `CN=X,DC=example`: bad base64 in `cost`");
//! ```

pub mod forest;
pub mod ldif;
pub mod scenario;
pub mod schedule;

pub use forest::{Connection, Forest, Server, Site, SiteLink, synthetic_forest_ldif};
pub use ldif::{Attribute, Entry};
pub use schedule::ScheduleError;

/// Why an LDIF file could not be read as a forest: the problem, the line
/// (1-based) it was found on and, when known, the dn of its entry.
///
/// Displays as ``line N: entry `<dn>`: problem`` (or `line N: problem`
/// outside any entry); the caller prefixes the file's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {}{kind}", dn.as_ref().map(|d| format!("entry `{d}`: ")).unwrap_or_default())]
pub struct ImportError {
    /// The line, from 1.
    pub line: usize,
    /// The entry's dn, without `<GUID=…>;` prefixes.
    pub dn: Option<String>,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl ImportError {
    pub(crate) fn new(line: usize, dn: Option<&str>, kind: ErrorKind) -> Self {
        ImportError {
            line,
            dn: dn.map(str::to_string),
            kind,
        }
    }
}

/// What is wrong, in an [`ImportError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The text is not LDIF (a line that is neither a comment, a
    /// continuation, a blank line nor `name: value`).
    #[error("not LDIF: {0}")]
    NotLdif(String),
    /// A `version:` other than 1.
    #[error("unsupported LDIF version `{0}` (only 1)")]
    Version(String),
    /// A value after `::` that is not base64.
    #[error("bad base64 in `{0}`")]
    BadBase64(String),
    /// A value given by URL (`attr:< file:///…`): not read, on purpose.
    #[error("`{0}` takes its value from a URL (`:<`), which is not read; export the value inline")]
    UrlValue(String),
    /// A change record other than `changetype: add`.
    #[error("`changetype: {0}` is not an export (only `add` is read)")]
    ChangeType(String),
    /// A line longer than [`crate::limits::MAX_LDIF_LINE`] once unfolded,
    /// a value larger than [`crate::limits::MAX_LDIF_VALUE`], an entry with
    /// more than [`crate::limits::MAX_LDIF_VALUES_PER_ENTRY`] values, a file
    /// with more than [`crate::limits::MAX_LDIF_ENTRIES`] entries or
    /// [`crate::limits::MAX_LDIF_BYTES`] bytes, or a forest of more than
    /// [`crate::limits::MAX_SERVERS`] servers.
    #[error("too large: {0}")]
    TooLarge(String),
    /// A dn or a text value that is not UTF-8.
    #[error("`{0}` is not UTF-8")]
    NotUtf8(String),
    /// An attribute that a mapped entry needs and lacks.
    #[error("no `{0}`")]
    Missing(String),
    /// A value of the wrong syntax (a number, a boolean, a GUID, a dn).
    #[error("`{attr}`: {problem}")]
    BadValue {
        /// The attribute.
        attr: String,
        /// What is wrong with its value.
        problem: String,
    },
    /// A `schedule` that is not a valid SCHEDULE.
    #[error("`schedule`: {0}")]
    Schedule(#[from] ScheduleError),
    /// An entry whose place in the tree does not fit its class (a server
    /// outside `CN=Servers,CN=<site>` of a site of the file, NTDS Settings
    /// outside a server, a connection outside NTDS Settings).
    #[error("{0}")]
    Misplaced(String),
    /// A connection whose `fromServer` names no server of the file.
    #[error("`fromServer` `{0}` names no server of the file")]
    UnknownFromServer(String),
    /// A site link whose `siteList` names no site of the file.
    #[error("`siteList` `{0}` names no site of the file")]
    UnknownSite(String),
    /// Two servers of the same name (after CNF renaming).
    #[error("duplicate server name `{0}`")]
    DuplicateServer(String),
    /// No `objectClass: site` entry.
    #[error(
        "no site (no `objectClass: site` entry): is this an export of CN=Sites,CN=Configuration?"
    )]
    NoSite,
    /// No `objectClass: server` entry.
    #[error("no server (no `objectClass: server` entry under a site's CN=Servers)")]
    NoServer,
}
