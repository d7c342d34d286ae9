//! An RFC 2849 LDIF reader for content records (and `changetype: add`
//! records), and a writer for tests and generated forests.
//!
//! Read: the `version: 1` line; comments (`#`, their folded continuations
//! too); folded lines (a line starting with one space continues the one
//! before); `dn:` and `dn::` (base64); `attr: text` (leading spaces
//! trimmed), `attr:: base64`; attribute options (`cn;lang-en:`); blank
//! lines between entries; CRLF line ends. `<GUID=…>;` and `<SID=…>;`
//! prefixes of a dn (`ldifde -x`-style extended dns) are stripped.
//!
//! Not read, on purpose (an error naming the line): values by URL
//! (`attr:< file:///…`: an import never reads other files), change records
//! other than `changetype: add` (`modify`, `delete`, `modrdn`, `moddn`:
//! not an export). `control:` lines of change records are skipped.
//! Entries whose dn is not an LDAP dn (`@ROOTDSE`, the empty dn) are
//! skipped.
//!
//! ```
//! use backsync::import::ldif::{parse, write_entry, Attribute, Entry};
//! let text = "version: 1\n# a comment\n\
//!             dn: <GUID=1a2b>;CN=WIN01,CN=Servers,DC=example\n\
//!             cn;lang-en: WI\n N01\n\
//!             description:: aMOpbGxv\n";
//! let entries = parse(text).unwrap();
//! assert_eq!(entries[0].dn, "CN=WIN01,CN=Servers,DC=example");
//! assert_eq!(entries[0].line, 3);
//! assert_eq!(entries[0].first_str("cn"), Some("WIN01"));
//! assert_eq!(entries[0].attrs[0].options, ["lang-en"]);
//! assert_eq!(entries[0].first("description"), Some("héllo".as_bytes()));
//!
//! let mut out = String::new();
//! write_entry(&mut out, &entries[0], 20);
//! assert_eq!(parse(&out).unwrap(), entries.iter().map(|e| Entry { line: 1, ..e.clone() }).collect::<Vec<_>>());
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{ErrorKind, ImportError};
use crate::limits;

/// One attribute value of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute's name as written (`cn`, `objectClass`), without
    /// options.
    pub name: String,
    /// Its options (`lang-en` of `cn;lang-en`), as written.
    pub options: Vec<String>,
    /// The value's bytes (decoded from base64 when written with `::`).
    pub value: Vec<u8>,
}

/// One LDIF entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The dn, without `<GUID=…>;` and `<SID=…>;` prefixes.
    pub dn: String,
    /// The line its `dn:` is on, from 1.
    pub line: usize,
    /// Its attribute values, in file order (one per line).
    pub attrs: Vec<Attribute>,
}

impl Entry {
    /// All values of attribute `name` (case-insensitive, any options).
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.attrs
            .iter()
            .filter(move |a| a.name.eq_ignore_ascii_case(name))
            .map(|a| a.value.as_slice())
    }

    /// The first value of attribute `name`.
    pub fn first(&self, name: &str) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .map(|a| a.value.as_slice())
    }

    /// The first value of attribute `name`, if it is UTF-8.
    pub fn first_str(&self, name: &str) -> Option<&str> {
        self.first(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether `objectClass` has value `class` (case-insensitive).
    pub fn is_a(&self, class: &str) -> bool {
        self.values("objectClass")
            .any(|v| v.eq_ignore_ascii_case(class.as_bytes()))
    }
}

/// One relative distinguished name: `CN=WIN01` is `("CN", "WIN01")`, the
/// value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rdn {
    /// The attribute type, as written.
    pub attr: String,
    /// The value, with `\,`-style and `\2C`-style escapes undone.
    pub value: String,
}

/// Strips the `<GUID=…>;`, `<SID=…>;` (any `<…>;`) prefixes of an
/// extended dn.
pub fn strip_extended(dn: &str) -> &str {
    let mut s = dn.trim_start();
    while s.starts_with('<') {
        match s.find(">;") {
            Some(end) => s = s[end + 2..].trim_start(),
            None => break,
        }
    }
    s
}

/// Parses an LDAP dn (RFC 4514, leniently: multi-valued RDNs are kept as
/// one value) into its RDNs, the leaf first. `None` when it is not a dn
/// (`@ROOTDSE`, empty, a component without `type=`).
pub fn parse_dn(dn: &str) -> Option<Vec<Rdn>> {
    let dn = strip_extended(dn);
    if dn.trim().is_empty() {
        return None;
    }
    let mut rdns = Vec::new();
    let mut chars = dn.chars().peekable();
    loop {
        // Type.
        let mut attr = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            attr.push(c);
        }
        let attr = attr.trim().to_string();
        let oid = !attr.is_empty() && attr.chars().all(|c| c.is_ascii_digit() || c == '.');
        let name = attr.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !(oid || name) {
            return None;
        }
        // Value.
        let mut value = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut ended = true;
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '"' => quoted = !quoted,
                '\\' => match chars.next() {
                    Some(h) if h.is_ascii_hexdigit() => {
                        let l = chars.next().filter(|l| l.is_ascii_hexdigit())?;
                        let b = u8::from_str_radix(&format!("{h}{l}"), 16).ok()?;
                        bytes.push(b);
                        continue;
                    }
                    Some(e) => {
                        flush(&mut bytes, &mut value)?;
                        value.push(e);
                    }
                    None => return None,
                },
                ',' | ';' if !quoted => {
                    ended = false;
                    break;
                }
                c => {
                    flush(&mut bytes, &mut value)?;
                    value.push(c);
                }
            }
            flush(&mut bytes, &mut value)?;
        }
        flush(&mut bytes, &mut value)?;
        rdns.push(Rdn {
            attr,
            value: value.trim().to_string(),
        });
        if ended {
            return Some(rdns);
        }
    }
}

fn flush(bytes: &mut Vec<u8>, value: &mut String) -> Option<()> {
    if !bytes.is_empty() {
        value.push_str(std::str::from_utf8(bytes).ok()?);
        bytes.clear();
    }
    Some(())
}

/// A dn's comparison key: its RDNs lowercased, joined by `,`; `None` when
/// it is not a dn.
pub fn dn_key(dn: &str) -> Option<String> {
    parse_dn(dn).map(|rdns| rdns_key(&rdns))
}

/// The comparison key of a list of RDNs (see [`dn_key`]).
pub fn rdns_key(rdns: &[Rdn]) -> String {
    let mut key = String::new();
    for (i, r) in rdns.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        key.push_str(&r.attr.to_lowercase());
        key.push('=');
        key.push_str(&r.value.to_lowercase());
    }
    key
}

fn not_ldif(line: usize, dn: Option<&str>, what: String) -> ImportError {
    ImportError::new(line, dn, ErrorKind::NotLdif(what))
}

/// Unfolds `text` into logical lines `(line number, text)`, without
/// comments; blank lines are kept as empty strings (entry separators).
fn logical_lines(text: &str) -> Result<Vec<(usize, String)>, ImportError> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut in_comment = false;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.len() > limits::MAX_LDIF_LINE {
            return Err(ImportError::new(
                n,
                None,
                ErrorKind::TooLarge(format!(
                    "a line of more than {} bytes",
                    limits::MAX_LDIF_LINE
                )),
            ));
        }
        if let Some(rest) = line.strip_prefix(' ') {
            if in_comment {
                continue;
            }
            match out.last_mut() {
                Some((_, prev)) if !prev.is_empty() => {
                    if prev.len() + rest.len() > limits::MAX_LDIF_LINE {
                        return Err(ImportError::new(
                            n,
                            None,
                            ErrorKind::TooLarge(format!(
                                "a line of more than {} bytes once unfolded",
                                limits::MAX_LDIF_LINE
                            )),
                        ));
                    }
                    prev.push_str(rest);
                }
                _ => {
                    return Err(not_ldif(
                        n,
                        None,
                        "a continuation line (starting with a space) follows no line".into(),
                    ));
                }
            }
            continue;
        }
        in_comment = line.starts_with('#');
        if in_comment {
            continue;
        }
        out.push((n, line.to_string()));
    }
    Ok(out)
}

/// Whether `name` is an attribute description's type: a name
/// (`[A-Za-z][A-Za-z0-9-]*`) or a numeric OID.
fn valid_type(name: &str) -> bool {
    let mut c = name.chars();
    match c.next() {
        Some(f) if f.is_ascii_alphabetic() => {
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        }
        Some(f) if f.is_ascii_digit() => name.chars().all(|c| c.is_ascii_digit() || c == '.'),
        _ => false,
    }
}

/// One `name[;options]:[:|<] value` line, split.
struct Line<'a> {
    name: &'a str,
    options: Vec<&'a str>,
    value: Vec<u8>,
}

fn split_line<'a>(n: usize, dn: Option<&str>, line: &'a str) -> Result<Line<'a>, ImportError> {
    let Some(colon) = line.find(':') else {
        let shown: String = line.chars().take(40).collect();
        return Err(not_ldif(n, dn, format!("`{shown}` is not `name: value`")));
    };
    let desc = &line[..colon];
    let mut parts = desc.split(';');
    let name = parts.next().unwrap_or_default();
    let options: Vec<&str> = parts.collect();
    if !valid_type(name)
        || options
            .iter()
            .any(|o| o.is_empty() || !o.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        let shown: String = desc.chars().take(40).collect();
        return Err(not_ldif(
            n,
            dn,
            format!("`{shown}` is not an attribute description"),
        ));
    }
    let rest = &line[colon + 1..];
    let value = if let Some(b64) = rest.strip_prefix(':') {
        let b64 = b64.trim_matches(' ');
        if b64.len() / 4 * 3 > limits::MAX_LDIF_VALUE + 3 {
            return Err(too_large_value(n, dn, name));
        }
        STANDARD
            .decode(b64)
            .map_err(|_| ImportError::new(n, dn, ErrorKind::BadBase64(name.to_string())))?
    } else if rest.starts_with('<') {
        return Err(ImportError::new(
            n,
            dn,
            ErrorKind::UrlValue(name.to_string()),
        ));
    } else {
        rest.trim_start_matches(' ').as_bytes().to_vec()
    };
    if value.len() > limits::MAX_LDIF_VALUE {
        return Err(too_large_value(n, dn, name));
    }
    Ok(Line {
        name,
        options,
        value,
    })
}

fn too_large_value(n: usize, dn: Option<&str>, name: &str) -> ImportError {
    ImportError::new(
        n,
        dn,
        ErrorKind::TooLarge(format!(
            "a value of `{name}` larger than {} bytes",
            limits::MAX_LDIF_VALUE
        )),
    )
}

/// Reads the entries of an LDIF file. Entries whose dn is not an LDAP dn
/// are left out; see the module docs for what is read.
pub fn parse(text: &str) -> Result<Vec<Entry>, ImportError> {
    if text.len() > limits::MAX_LDIF_BYTES {
        return Err(ImportError::new(
            1,
            None,
            ErrorKind::TooLarge(format!(
                "a file of more than {} bytes",
                limits::MAX_LDIF_BYTES
            )),
        ));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = logical_lines(text)?;
    let mut entries = Vec::new();
    let mut i = 0;
    let mut first = true;
    while i < lines.len() {
        if lines[i].1.is_empty() {
            i += 1;
            continue;
        }
        // version: 1, before the first record.
        if first {
            first = false;
            let (n, line) = &lines[i];
            let l = split_line(*n, None, line)?;
            if l.name.eq_ignore_ascii_case("version") {
                let v = String::from_utf8_lossy(&l.value).trim().to_string();
                if v != "1" {
                    return Err(ImportError::new(*n, None, ErrorKind::Version(v)));
                }
                i += 1;
                continue;
            }
        }
        let end = lines[i..]
            .iter()
            .position(|(_, l)| l.is_empty())
            .map_or(lines.len(), |p| i + p);
        if let Some(e) = record(&lines[i..end])? {
            if entries.len() == limits::MAX_LDIF_ENTRIES {
                return Err(ImportError::new(
                    e.line,
                    Some(&e.dn),
                    ErrorKind::TooLarge(format!("more than {} entries", limits::MAX_LDIF_ENTRIES)),
                ));
            }
            entries.push(e);
        }
        i = end;
    }
    Ok(entries)
}

/// One record: its non-blank logical lines.
fn record(lines: &[(usize, String)]) -> Result<Option<Entry>, ImportError> {
    let (n0, first) = &lines[0];
    let l = split_line(*n0, None, first)?;
    if !l.name.eq_ignore_ascii_case("dn") {
        return Err(not_ldif(
            *n0,
            None,
            format!("an entry starts with `{}:`, not `dn:`", l.name),
        ));
    }
    let dn = String::from_utf8(l.value)
        .map_err(|_| ImportError::new(*n0, None, ErrorKind::NotUtf8("dn".into())))?;
    let dn = strip_extended(&dn).to_string();
    let ldap = parse_dn(&dn).is_some();
    let mut attrs = Vec::new();
    let mut rest = &lines[1..];
    // control: lines, then changetype:.
    while let Some((n, line)) = rest.first() {
        let l = split_line(*n, Some(&dn), line)?;
        if l.name.eq_ignore_ascii_case("control") {
            rest = &rest[1..];
            continue;
        }
        if l.name.eq_ignore_ascii_case("changetype") {
            let ct = String::from_utf8_lossy(&l.value).trim().to_string();
            if !ct.eq_ignore_ascii_case("add") {
                return Err(ImportError::new(*n, Some(&dn), ErrorKind::ChangeType(ct)));
            }
            rest = &rest[1..];
        }
        break;
    }
    for (n, line) in rest {
        if line == "-" {
            return Err(not_ldif(
                *n,
                Some(&dn),
                "`-` outside a modify record".into(),
            ));
        }
        let l = split_line(*n, Some(&dn), line)?;
        if attrs.len() == limits::MAX_LDIF_VALUES_PER_ENTRY {
            return Err(ImportError::new(
                *n,
                Some(&dn),
                ErrorKind::TooLarge(format!(
                    "an entry of more than {} values",
                    limits::MAX_LDIF_VALUES_PER_ENTRY
                )),
            ));
        }
        attrs.push(Attribute {
            name: l.name.to_string(),
            options: l.options.iter().map(|o| o.to_string()).collect(),
            value: l.value,
        });
    }
    Ok(ldap.then_some(Entry {
        dn,
        line: *n0,
        attrs,
    }))
}

/// Whether a value must be written base64 (RFC 2849 SAFE-STRING: no NUL,
/// LF, CR or non-ASCII byte, not starting with space, `:` or `<`; and, so
/// that it reads back the same, not ending with a space).
pub fn needs_base64(v: &[u8]) -> bool {
    matches!(v.first(), Some(b' ' | b':' | b'<'))
        || v.last() == Some(&b' ')
        || v.iter()
            .any(|&b| b == 0 || b == b'\n' || b == b'\r' || b >= 0x80)
}

/// Appends `name: value` (or `name:: base64`) to `out`, folded so that no
/// line is longer than `width` bytes (at least 2).
pub fn write_line(out: &mut String, name: &str, value: &[u8], width: usize) {
    let width = width.max(2);
    let mut line = String::with_capacity(name.len() + value.len() + 3);
    line.push_str(name);
    if needs_base64(value) {
        line.push_str(":: ");
        line.push_str(&STANDARD.encode(value));
    } else if value.is_empty() {
        line.push(':');
    } else {
        line.push_str(": ");
        // Safe strings are ASCII.
        line.push_str(std::str::from_utf8(value).unwrap_or_default());
    }
    let b = line.as_bytes();
    let mut start = 0;
    let mut room = width;
    while b.len() - start > room {
        // Fold on a character boundary (names and dns may be non-ASCII).
        let mut cut = start + room;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == start {
            cut = start + line[start..].chars().next().map_or(1, char::len_utf8);
        }
        out.push_str(&line[start..cut]);
        out.push_str("\n ");
        start = cut;
        room = width - 1;
    }
    out.push_str(&line[start..]);
    out.push('\n');
}

/// Appends one entry (its `dn:`, attributes, then a blank line) to `out`,
/// folded at `width` bytes.
pub fn write_entry(out: &mut String, entry: &Entry, width: usize) {
    write_line(out, "dn", entry.dn.as_bytes(), width);
    for a in &entry.attrs {
        if a.options.is_empty() {
            write_line(out, &a.name, &a.value, width);
        } else {
            let desc = format!("{};{}", a.name, a.options.join(";"));
            write_line(out, &desc, &a.value, width);
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind(text: &str) -> (usize, Option<String>, ErrorKind) {
        let e = parse(text).unwrap_err();
        (e.line, e.dn, e.kind)
    }

    #[test]
    fn reads_version_comments_folds_and_options() {
        let text = "# header\n#  folded comment\n  more of it\nversion: 1\n\n\
                    dn: CN=A,DC=x\r\nobjectClass: top\r\nobjectClass: site\ncn;lang-en:    A\n\
                    description: one\n two\n  three\n\n\n\
                    dn:: Q049QsOpLERDPXg=\ncn:: QsOp\n";
        let e = parse(text).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].line, 6);
        assert!(e[0].is_a("SITE"));
        assert_eq!(e[0].first_str("CN"), Some("A"));
        assert_eq!(e[0].first_str("description"), Some("onetwo three"));
        assert_eq!(e[1].dn, "CN=Bé,DC=x");
        assert_eq!(e[1].line, 15);
        assert_eq!(e[1].first_str("cn"), Some("Bé"));
    }

    #[test]
    fn strips_extended_dn_prefixes_and_skips_non_dns() {
        let text = "dn: @ROOTDSE\nfoo: bar\n\n\
                    dn: <GUID=5f2c0b1e-0000-0000-0000-000000000001>;<SID=S-1-5-21-1>;CN=A,DC=x\n\n\
                    dn:\nx: y\n";
        let e = parse(text).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].dn, "CN=A,DC=x");
    }

    #[test]
    fn change_records() {
        assert_eq!(
            parse("dn: CN=A,DC=x\nchangetype: add\ncn: A\n").unwrap()[0]
                .attrs
                .len(),
            1
        );
        assert_eq!(
            kind("dn: CN=A,DC=x\nchangetype: modify\nreplace: cn\ncn: B\n-\n"),
            (
                2,
                Some("CN=A,DC=x".into()),
                ErrorKind::ChangeType("modify".into())
            )
        );
        assert_eq!(
            parse("dn: CN=A,DC=x\ncontrol: 1.2.3 true\nchangetype: add\ncn: A\n").unwrap()[0]
                .attrs
                .len(),
            1
        );
    }

    #[test]
    fn errors_name_line_and_dn() {
        assert_eq!(
            kind("dn: CN=A,DC=x\njpegPhoto:< file:///tmp/x\n"),
            (
                2,
                Some("CN=A,DC=x".into()),
                ErrorKind::UrlValue("jpegPhoto".into())
            )
        );
        assert_eq!(
            kind("dn: CN=A,DC=x\ncn:: !!!\n"),
            (
                2,
                Some("CN=A,DC=x".into()),
                ErrorKind::BadBase64("cn".into())
            )
        );
        assert_eq!(kind("version: 2\n").2, ErrorKind::Version("2".into()));
        assert!(matches!(
            kind("hello world\n"),
            (1, None, ErrorKind::NotLdif(_))
        ));
        assert!(matches!(
            kind(" leading\n"),
            (1, None, ErrorKind::NotLdif(_))
        ));
        assert!(matches!(kind("cn: A\n"), (1, None, ErrorKind::NotLdif(_))));
        assert!(matches!(
            kind("dn: CN=A,DC=x\nbad name: v\n"),
            (2, Some(_), ErrorKind::NotLdif(_))
        ));
        let long = format!("dn: CN=A,DC=x\ncn: {}\n", "a".repeat(limits::MAX_LDIF_LINE));
        assert!(matches!(kind(&long), (2, None, ErrorKind::TooLarge(_))));
        let big = format!(
            "dn: CN=A,DC=x\ncn: {}\n",
            "a".repeat(limits::MAX_LDIF_VALUE + 1)
        );
        assert!(matches!(kind(&big), (2, Some(_), ErrorKind::TooLarge(_))));
    }

    #[test]
    fn dns_parse_with_escapes() {
        let r = parse_dn("CN=a\\,b,OU=c\\2Cd,DC=x").unwrap();
        assert_eq!(r[0].value, "a,b");
        assert_eq!(r[1].value, "c,d");
        assert_eq!(r.len(), 3);
        assert!(parse_dn("@ROOTDSE").is_none());
        assert!(parse_dn("").is_none());
        assert_eq!(dn_key("CN=A, dc=X"), dn_key("cn=a,DC=x"));
    }

    fn entry() -> impl Strategy<Value = Entry> {
        let name = "[a-zA-Z][a-zA-Z0-9-]{0,8}".prop_filter("reserved", |n| {
            !["dn", "changetype", "control", "version"]
                .iter()
                .any(|r| n.eq_ignore_ascii_case(r))
        });
        let value = prop_oneof![
            "[ -~]{0,30}".prop_map(String::into_bytes),
            "[ :<]?[a-zé\n\r ]{0,20}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..40),
        ];
        let attr = (
            name,
            proptest::collection::vec("[a-z][a-z0-9-]{0,5}", 0..2),
            value,
        )
            .prop_map(|(name, options, value)| Attribute {
                name,
                options,
                value,
            });
        (
            "[a-zA-Z0-9é-][a-zA-Z0-9é -]{0,15}[a-zA-Z0-9é-]",
            proptest::collection::vec(attr, 0..8),
        )
            .prop_map(|(cn, attrs)| Entry {
                dn: format!("CN={cn},CN=Sites,DC=example,DC=com"),
                line: 0,
                attrs,
            })
    }

    proptest! {
        #[test]
        fn never_panics_on_any_text(
            lines in proptest::collection::vec(
                prop_oneof![
                    "[ -~é\t]{0,30}",
                    "(dn|cn|schedule|objectClass|fromServer|version|changetype)(;x)?:{1,2}[<]? ?[ -~é]{0,20}",
                    Just(String::new()),
                    Just(" ".to_string()),
                ],
                0..30,
            ),
        ) {
            let text = lines.join("\n");
            let _ = parse(&text);
            let _ = crate::import::Forest::from_ldif(&text);
        }

        #[test]
        fn folds_non_ascii_names_on_char_boundaries(name in "[a-zé]{1,10}", width in 2usize..12) {
            let mut out = String::new();
            write_line(&mut out, &name, b"v", width);
            prop_assert_eq!(out.replace("\n ", ""), format!("{name}: v\n"));
        }

        #[test]
        fn write_then_parse_round_trips(
            entries in proptest::collection::vec(entry(), 1..6),
            width in 2usize..100,
            version in any::<bool>(),
        ) {
            let mut text = String::new();
            if version {
                text.push_str("version: 1\n\n");
            }
            let mut want = Vec::new();
            for e in &entries {
                let line = text.lines().count() + 1;
                write_entry(&mut text, e, width);
                want.push(Entry { line, ..e.clone() });
            }
            for l in text.lines().filter(|l| *l != "version: 1") {
                prop_assert!(l.len() <= width, "{l:?} longer than {width}");
            }
            prop_assert_eq!(parse(&text).unwrap(), want);
        }
    }
}
