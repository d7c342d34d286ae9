//! Objects as LDAP entries: values, filters (RFC 4511 section 4.5.1),
//! attribute selection, dns as clients type them, generalized time. Plain
//! functions over [`ObjectView`]s, tested without a socket.

use ldap3_proto::proto::{LdapFilter, LdapPartialAttribute, LdapSearchResultEntry};
use std::cmp::Ordering;

use crate::core::tree::{cmp_ci, eq_ci, rdns, split_dn};
use crate::view::ObjectView;

/// The separator of an attribute's values in the replicated string.
///
/// The directory replicates one string per attribute, as Exchange 5.5 and
/// AD replicate a non-linked multi-valued attribute whole, with one stamp.
/// LDAP values of one attribute are joined with NUL, which no text value a
/// client sends over LDAP contains (such a value is refused).
pub const VALUE_SEPARATOR: char = '\0';

/// The values of one stored attribute.
///
/// ```
/// use backsync::serve::entry::{join_values, values};
/// let v = join_values(&["top", "person"]);
/// assert_eq!(values(&v).collect::<Vec<_>>(), ["top", "person"]);
/// ```
pub fn values(stored: &str) -> impl Iterator<Item = &str> {
    stored.split(VALUE_SEPARATOR)
}

/// Joins values as they are stored.
pub fn join_values<S: AsRef<str>>(vals: &[S]) -> String {
    let mut out = String::new();
    for (i, v) in vals.iter().enumerate() {
        if i > 0 {
            out.push(VALUE_SEPARATOR);
        }
        out.push_str(v.as_ref());
    }
    out
}

/// A value a client sent, as text: `None` when it is not UTF-8 or holds
/// the separator (the lab stores text values only).
pub fn text_value(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v)
        .ok()
        .filter(|s| !s.contains(VALUE_SEPARATOR))
}

/// A dn as a client typed it, in the form the directory compares: each rdn
/// trimmed, and the spaces around its `=` removed (`cn = Ann, ou=Sales` is
/// `cn=Ann,ou=Sales`). Case is kept; names compare ignoring it.
///
/// ```
/// use backsync::serve::entry::normalize_dn;
/// assert_eq!(normalize_dn(" cn = Ann , ou=Sales "), "cn=Ann,ou=Sales");
/// assert_eq!(normalize_dn(r"cn=Smith\, Ann,ou=Sales"), r"cn=Smith\, Ann,ou=Sales");
/// assert_eq!(normalize_dn(""), "");
/// ```
pub fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    for (i, rdn) in rdns(dn.trim()).enumerate() {
        if i > 0 {
            out.push(',');
        }
        match rdn.split_once('=') {
            Some((ty, value)) => {
                out.push_str(ty.trim());
                out.push('=');
                out.push_str(trim_unescaped(value));
            }
            None => out.push_str(rdn.trim()),
        }
    }
    out
}

/// Trims spaces, but not one a backslash escapes (`cn=a\ ` keeps its space).
fn trim_unescaped(v: &str) -> &str {
    let v = v.trim_start();
    let t = v.trim_end();
    if t.ends_with('\\') && t.len() < v.len() {
        &v[..t.len() + 1]
    } else {
        t
    }
}

/// Whether `dn` is `base` or below it (ignoring case; `""` is above all).
pub fn within(dn: &str, base: &str) -> bool {
    if base.is_empty() {
        return true;
    }
    if dn.len() < base.len() {
        return false;
    }
    let cut = dn.len() - base.len();
    dn.is_char_boundary(cut)
        && eq_ci(&dn[cut..], base)
        && (cut == 0 || (dn.as_bytes()[cut - 1] == b',' && !escaped_at(dn, cut - 1)))
}

/// Whether the byte at `i` is escaped by an odd run of backslashes.
fn escaped_at(s: &str, i: usize) -> bool {
    s.as_bytes()[..i]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count()
        % 2
        == 1
}

/// Whether `dn`'s parent is `base`.
pub fn child_of(dn: &str, base: &str) -> bool {
    eq_ci(split_dn(dn).1, base)
}

/// Simulated milliseconds since `epoch_unix_ms` as LDAP's generalized time
/// (`YYYYMMDDHHMMSS.0Z`, UTC), as AD writes `whenChanged`.
///
/// ```
/// use backsync::serve::entry::generalized_time;
/// assert_eq!(generalized_time(0, 0), "19700101000000.0Z");
/// // 2026-12-02 19:42:25 UTC, then 90 simulated seconds later.
/// assert_eq!(generalized_time(1_796_240_545_000, 90_000), "20261202194355.0Z");
/// ```
pub fn generalized_time(epoch_unix_ms: u64, sim_ms: u64) -> String {
    let secs = epoch_unix_ms.saturating_add(sim_ms) / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::report::civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}.0Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An object as a search sees it: its attributes with their values, the
/// rdn's value among them (LDAP's rule that an rdn is an attribute value),
/// `objectClass` (`top` when the client gave none), and the operational
/// attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The dn shown on that server.
    pub dn: String,
    /// User attributes, in name order, each with its values as text.
    pub user: Vec<(String, Vec<String>)>,
    /// Operational attributes (`+`): name and binary values.
    pub operational: Vec<(&'static str, Vec<Vec<u8>>)>,
}

impl Entry {
    /// The entry of an object; `epoch_unix_ms` dates simulated time zero.
    pub fn of(o: &ObjectView, epoch_unix_ms: u64) -> Self {
        let mut user: Vec<(String, Vec<String>)> = o
            .attrs
            .iter()
            .map(|(k, v)| (k.clone(), values(v).map(str::to_string).collect()))
            .collect();
        if !user.iter().any(|(k, _)| eq_ci(k, "objectClass")) {
            user.push(("objectClass".into(), vec!["top".into()]));
        }
        if let Some((ty, value)) = split_dn(&o.dn).0.split_once('=') {
            let value = unescape(value);
            match user.iter_mut().find(|(k, _)| eq_ci(k, ty)) {
                Some((_, vals)) if !vals.iter().any(|v| eq_ci(v, &value)) => vals.push(value),
                Some(_) => {}
                None => user.push((ty.to_string(), vec![value])),
            }
        }
        if o.deleted {
            user.push(("isDeleted".into(), vec!["TRUE".into()]));
        }
        user.sort_by(|a, b| cmp_ci(&a.0, &b.0));
        let operational = vec![
            ("objectGUID", vec![guid_bytes(o.guid.0).to_vec()]),
            ("uSNCreated", vec![o.usn_created.to_string().into_bytes()]),
            ("uSNChanged", vec![o.usn_changed.to_string().into_bytes()]),
            (
                "whenChanged",
                vec![generalized_time(epoch_unix_ms, o.when_changed).into_bytes()],
            ),
        ];
        Entry {
            dn: o.dn.clone(),
            user,
            operational,
        }
    }

    /// The values of an attribute, user or operational, by name (ignoring case).
    fn get(&self, name: &str) -> Option<Vec<&[u8]>> {
        if let Some((_, v)) = self.user.iter().find(|(k, _)| eq_ci(k, name)) {
            return Some(v.iter().map(|s| s.as_bytes()).collect());
        }
        self.operational
            .iter()
            .find(|(k, _)| eq_ci(k, name))
            .map(|(_, v)| v.iter().map(Vec::as_slice).collect())
    }

    /// Whether the entry matches an RFC 4511 filter. Values compare ignoring
    /// case (every attribute is treated as a case-ignore string); ordering
    /// compares integers as numbers; approximate match is equality; an
    /// extensible match compares by equality on its attribute, or on the
    /// rdn's value when it asks for dn attributes.
    pub fn matches(&self, f: &LdapFilter) -> bool {
        match f {
            LdapFilter::And(fs) => fs.iter().all(|f| self.matches(f)),
            LdapFilter::Or(fs) => fs.iter().any(|f| self.matches(f)),
            LdapFilter::Not(f) => !self.matches(f),
            LdapFilter::Present(a) => self.get(a).is_some(),
            LdapFilter::Equality(a, v) | LdapFilter::Approx(a, v) => self.any(a, |x| {
                eq_ci(x, v) || numeric_cmp(x, v) == Some(Ordering::Equal)
            }),
            LdapFilter::GreaterOrEqual(a, v) => self.any(a, |x| order(x, v) != Ordering::Less),
            LdapFilter::LessOrEqual(a, v) => self.any(a, |x| order(x, v) != Ordering::Greater),
            LdapFilter::Substring(a, s) => self.any(a, |x| {
                substring_match(x, s.initial.as_deref(), &s.any, s.final_.as_deref())
            }),
            LdapFilter::Extensible(m) => {
                let Some(a) = &m.type_ else { return false };
                self.any(a, |x| eq_ci(x, &m.match_value))
                    || (m.dn_attributes
                        && split_dn(&self.dn).0.split_once('=').is_some_and(|(t, v)| {
                            eq_ci(t, a) && eq_ci(&unescape(v), &m.match_value)
                        }))
            }
        }
    }

    fn any(&self, attr: &str, pred: impl Fn(&str) -> bool) -> bool {
        self.get(attr)
            .is_some_and(|vals| vals.iter().any(|v| std::str::from_utf8(v).is_ok_and(&pred)))
    }

    /// The entry as a search returns it, with the attributes asked for:
    /// none asked or `*`: every user attribute; `+`: every operational one;
    /// `1.1` alone: none; others by name.
    pub fn select(&self, attrs: &[String], types_only: bool) -> LdapSearchResultEntry {
        let all_user = attrs.is_empty() || attrs.iter().any(|a| a == "*");
        let all_oper = attrs.iter().any(|a| a == "+");
        let named = |n: &str| attrs.iter().any(|a| eq_ci(a, n));
        let vals = |v: Vec<Vec<u8>>| if types_only { Vec::new() } else { v };
        let mut out = Vec::new();
        for (k, v) in &self.user {
            if all_user || named(k) {
                out.push(LdapPartialAttribute {
                    atype: k.clone(),
                    vals: vals(v.iter().map(|s| s.as_bytes().to_vec()).collect()),
                });
            }
        }
        for (k, v) in &self.operational {
            if all_oper || named(k) {
                out.push(LdapPartialAttribute {
                    atype: (*k).to_string(),
                    vals: vals(v.clone()),
                });
            }
        }
        LdapSearchResultEntry {
            dn: self.dn.clone(),
            attributes: out,
        }
    }
}

/// AD's byte order of a guid (`objectGUID`): the first three fields little
/// endian, the rest as written, so the bytes read back as the guid's text.
pub fn guid_bytes(g: u128) -> [u8; 16] {
    let b = g.to_be_bytes();
    [
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15],
    ]
}

/// An rdn value without its backslash escapes (`Smith\, Ann` is `Smith, Ann`).
pub(crate) fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut it = v.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => out.extend(it.next()),
            c => out.push(c),
        }
    }
    out
}

fn numeric_cmp(a: &str, b: &str) -> Option<Ordering> {
    Some(
        a.trim()
            .parse::<i64>()
            .ok()?
            .cmp(&b.trim().parse::<i64>().ok()?),
    )
}

fn order(a: &str, b: &str) -> Ordering {
    numeric_cmp(a, b).unwrap_or_else(|| cmp_ci(a, b))
}

/// RFC 4517's substring match, ignoring case: `initial`, then each of
/// `any` in order without overlap, then `final`.
fn substring_match(v: &str, initial: Option<&str>, any: &[String], fin: Option<&str>) -> bool {
    let v = crate::core::tree::lower(v);
    let mut rest = v.as_str();
    if let Some(i) = initial {
        match rest.strip_prefix(crate::core::tree::lower(i).as_str()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    for a in any {
        let a = crate::core::tree::lower(a);
        match rest.find(&a) {
            Some(at) => rest = &rest[at + a.len()..],
            None => return false,
        }
    }
    fin.is_none_or(|f| rest.ends_with(crate::core::tree::lower(f).as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Guid, InvocationId};
    use ldap3_proto::parse_ldap_filter_str;
    use std::collections::BTreeMap;

    fn view(dn: &str, attrs: &[(&str, &str)], deleted: bool) -> ObjectView {
        ObjectView {
            guid: Guid(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
            dn: dn.into(),
            deleted,
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            version: 1,
            origin: InvocationId(7),
            usn_changed: 42,
            usn_created: 40,
            when_changed: 90_000,
        }
    }

    // The string parser takes no spaces in values; clients send BER.
    fn f(s: &str) -> LdapFilter {
        parse_ldap_filter_str(s).unwrap()
    }

    #[test]
    fn filters_follow_rfc4511() {
        let e = Entry::of(
            &view(
                "cn=AnnSmith,ou=Sales",
                &[("mail", "ann@example.com"), ("objectClass", "top\0person")],
                false,
            ),
            0,
        );
        for (filter, want) in [
            ("(objectClass=*)", true),
            ("(objectclass=PERSON)", true),
            ("(cn=annsmith)", true),
            ("(cn=Ann*)", true),
            ("(cn=*Smith)", true),
            ("(cn=A*n*S*h)", true),
            ("(cn=A*h*S)", false),
            ("(mail=*@example.*)", true),
            ("(&(mail=*)(cn=Bob))", false),
            ("(|(mail=x)(cn=AnnSmith))", true),
            ("(!(mail=*))", false),
            ("(uSNChanged>=42)", true),
            ("(uSNChanged>=100)", false),
            ("(uSNChanged<=9)", false),
            ("(telephoneNumber=*)", false),
            ("(cn~=ANNSMITH)", true),
            ("(isDeleted=TRUE)", false),
        ] {
            assert_eq!(e.matches(&f(filter)), want, "{filter}");
        }
    }

    #[test]
    fn selection_of_user_and_operational_attributes() {
        let e = Entry::of(&view("cn=Ann,ou=Sales", &[("mail", "a@x")], true), 0);
        let names = |attrs: &[&str]| -> Vec<String> {
            let a: Vec<String> = attrs.iter().map(|s| s.to_string()).collect();
            e.select(&a, false)
                .attributes
                .into_iter()
                .map(|a| a.atype)
                .collect()
        };
        assert_eq!(names(&[]), ["cn", "isDeleted", "mail", "objectClass"]);
        assert_eq!(
            names(&["+"]),
            ["objectGUID", "uSNCreated", "uSNChanged", "whenChanged"]
        );
        assert_eq!(names(&["1.1"]), Vec::<String>::new());
        assert_eq!(names(&["MAIL", "usnchanged"]), ["mail", "uSNChanged"]);
        let typed = e.select(&["mail".to_string()], true);
        assert!(typed.attributes[0].vals.is_empty());
    }

    #[test]
    fn guid_bytes_read_back_as_ad_shows_them() {
        // AD shows {33221100-5544-7766-8899-aabbccddeeff} for these bytes.
        assert_eq!(
            guid_bytes(0x3322_1100_5544_7766_8899_aabb_ccdd_eeff),
            [
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
    }

    #[test]
    fn subtree_and_children_by_dn() {
        assert!(within("cn=Ann,ou=Sales", "OU=sales"));
        assert!(within("ou=Sales", "ou=Sales"));
        assert!(!within("ou=PreSales", "ou=Sales"));
        assert!(!within(r"cn=a\,ou=Sales", "ou=Sales"));
        assert!(within("cn=a", ""));
        assert!(child_of("cn=Ann,ou=Sales", "ou=sales"));
        assert!(!child_of("cn=Ann,ou=Sales,o=X", "o=X"));
        assert!(child_of("o=X", ""));
    }
}
