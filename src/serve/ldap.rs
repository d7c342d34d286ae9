//! The LDAP side of the lab: one listener per simulated server, one task
//! per connection, each LDAP operation turned into a call on the lab
//! ([`super::lab`]) and its answer into LDAP messages.
//!
//! Bounds: a message over [`MAX_MESSAGE`] or one the codec cannot read
//! closes that connection only; each connection handles one operation at a
//! time (so at most one is in flight, and the codec buffers at most twice
//! [`MAX_MESSAGE`]); a server takes at most [`MAX_CONNECTIONS`] at once; a
//! search returns at most [`MAX_ENTRIES`] entries per answer or page.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use ldap3_proto::LdapCodec;
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindResponse, LdapExtendedResponse, LdapFilter, LdapModifyType, LdapMsg,
    LdapOp, LdapResult, LdapResultCode, LdapSearchRequest, LdapSearchScope,
};
use ldap3_proto::simple::DisconnectionNotice;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::entry::{normalize_dn, text_value};
use super::lab::{Call, Change, LabHandle, LdapFail, Search, Write};
use crate::core::tree::split_dn;

/// The Show Deleted control (AD): tombstones become visible.
pub const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";
/// The simple paged results control (RFC 2696).
pub const PAGED_RESULTS_OID: &str = "1.2.840.113556.1.4.319";
/// The tree delete control (AD): delete an entry and its subtree.
pub const TREE_DELETE_OID: &str = "1.2.840.113556.1.4.805";
/// The Who am I? extended operation (RFC 4532).
const WHOAMI_OID: &str = "1.3.6.1.4.1.4203.1.11.3";

/// The largest LDAP message a connection reads (8 MiB).
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;
/// Connections one server takes at once; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 1024;
/// Entries one search answer (or page) returns at most.
pub const MAX_ENTRIES: usize = 10_000;

/// Who may write.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// `--bind-password`: writes need a simple bind with it.
    pub password: Option<String>,
}

/// A server's open port: the listener's task and what ends its connections.
struct Life {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The servers' LDAP ports: opened at start and at a restore, closed at a
/// crash (with every connection of that server).
pub(crate) struct Ports {
    /// Each server's address; a port of 0 becomes the one the system gave
    /// at the first open, and stays that server's.
    addrs: Mutex<Vec<SocketAddr>>,
    lives: Mutex<Vec<Option<Life>>>,
    lab: LabHandle,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
}

impl Ports {
    pub(crate) fn new(
        addrs: Vec<SocketAddr>,
        lab: LabHandle,
        auth: Auth,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let lives = addrs.iter().map(|_| None).collect();
        Arc::new(Ports {
            addrs: Mutex::new(addrs),
            lives: Mutex::new(lives),
            lab,
            auth: Arc::new(auth),
            shutdown,
        })
    }

    /// Server `i`'s address.
    pub(crate) fn addr(&self, i: usize) -> SocketAddr {
        self.addrs.lock().expect("ports lock")[i]
    }

    /// Opens server `i`'s port (a no-op when open).
    pub(crate) async fn open(self: &Arc<Self>, i: usize) -> io::Result<SocketAddr> {
        if self.lives.lock().expect("ports lock")[i].is_some() {
            return Ok(self.addr(i));
        }
        let listener = TcpListener::bind(self.addr(i)).await?;
        let addr = listener.local_addr()?;
        self.addrs.lock().expect("ports lock")[i] = addr;
        let stop = self.shutdown.child_token();
        let task = tokio::spawn(accept(
            listener,
            i,
            self.lab.clone(),
            self.auth.clone(),
            stop.clone(),
        ));
        self.lives.lock().expect("ports lock")[i] = Some(Life { stop, task });
        Ok(addr)
    }

    /// Closes server `i`'s port and its connections; returns once the
    /// listening socket is closed.
    pub(crate) async fn close(&self, i: usize) {
        let life = self.lives.lock().expect("ports lock")[i].take();
        if let Some(life) = life {
            life.stop.cancel();
            let _ = life.task.await;
        }
    }
}

async fn accept(
    listener: TcpListener,
    server: usize,
    lab: LabHandle,
    auth: Arc<Auth>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                // Out of descriptors and the like: this connection only,
                // and a pause so the loop does not spin while it lasts.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closed
        };
        let _ = stream.set_nodelay(true);
        let session = Session {
            server,
            lab: lab.clone(),
            auth: auth.clone(),
            bound_dn: None,
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            session.run(stream, stop).await;
            drop(permit);
        });
    }
}

/// One client connection.
struct Session {
    server: usize,
    lab: LabHandle,
    auth: Arc<Auth>,
    /// The dn of a simple bind that may write (`Some("")` for anonymous
    /// when no password is set).
    bound_dn: Option<String>,
}

fn result(code: LdapResultCode, message: impl Into<String>) -> LdapResult {
    LdapResult {
        code,
        matcheddn: String::new(),
        message: message.into(),
        referral: Vec::new(),
    }
}

fn ok() -> LdapResult {
    result(LdapResultCode::Success, "")
}

fn failed(f: LdapFail) -> LdapResult {
    result(f.code, f.message)
}

fn msg(msgid: i32, op: LdapOp) -> LdapMsg {
    LdapMsg {
        msgid,
        op,
        ctrl: Vec::new(),
    }
}

fn lab_gone() -> LdapFail {
    LdapFail::new(LdapResultCode::Unavailable, "the lab is stopping")
}

/// Whether a control was marked critical (RFC 4511 section 4.1.11).
fn critical(c: &LdapControl) -> bool {
    match c {
        LdapControl::SyncRequest { criticality, .. }
        | LdapControl::ManageDsaIT { criticality }
        | LdapControl::PasswordPolicyRequest { criticality }
        | LdapControl::SearchOptions { criticality, .. }
        | LdapControl::ShowDeleted { criticality }
        | LdapControl::SdFlags { criticality, .. }
        | LdapControl::ExtendedDn { criticality, .. }
        | LdapControl::Unknown { criticality, .. } => *criticality,
        _ => false,
    }
}

/// What a request's controls ask for.
#[derive(Default)]
struct Controls {
    show_deleted: bool,
    tree_delete: bool,
    /// Page size and cookie.
    paged: Option<(i64, Vec<u8>)>,
}

/// Reads the controls; a critical one the lab does not know is refused.
fn controls(ctrl: &[LdapControl]) -> Result<Controls, LdapFail> {
    let mut out = Controls::default();
    for c in ctrl {
        match c {
            LdapControl::ShowDeleted { .. } => out.show_deleted = true,
            LdapControl::SimplePagedResults { size, cookie } => {
                out.paged = Some((*size, cookie.clone()))
            }
            LdapControl::Unknown { oid, .. } if oid == TREE_DELETE_OID => out.tree_delete = true,
            LdapControl::Unknown { oid, .. } if oid == SHOW_DELETED_OID => out.show_deleted = true,
            c if critical(c) => {
                return Err(LdapFail::new(
                    LdapResultCode::UnavailableCriticalExtension,
                    format!("unsupported critical control {c:?}"),
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

fn text_values(atype: &str, vals: &[Vec<u8>]) -> Result<Vec<String>, LdapFail> {
    vals.iter()
        .map(|v| {
            text_value(v).map(str::to_string).ok_or_else(|| {
                LdapFail::new(
                    LdapResultCode::InvalidAttributeSyntax,
                    format!("`{atype}`: the lab stores UTF-8 text values without NUL"),
                )
            })
        })
        .collect()
}

impl Session {
    async fn run(mut self, stream: TcpStream, stop: CancellationToken) {
        let (r, w) = stream.into_split();
        let mut reqs = FramedRead::new(r, LdapCodec::new(Some(MAX_MESSAGE), None));
        let mut resp = FramedWrite::new(w, LdapCodec::new(Some(MAX_MESSAGE), None));
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                m = reqs.next() => m,
            };
            let m = match next {
                None => return,
                Some(Ok(m)) => m,
                Some(Err(_)) => {
                    // Malformed or too large: tell the client, close this
                    // connection only (RFC 4511 section 4.4.1).
                    let notice = DisconnectionNotice::gen_response(
                        LdapResultCode::ProtocolError,
                        "malformed or oversized message",
                    );
                    let _ = resp.send(notice).await;
                    return;
                }
            };
            let Some(out) = self.handle(m).await else {
                return;
            };
            for m in out {
                if resp.feed(m).await.is_err() {
                    return;
                }
            }
            if resp.flush().await.is_err() {
                return;
            }
        }
    }

    /// The answers to one request; `None` closes the connection.
    async fn handle(&mut self, m: LdapMsg) -> Option<Vec<LdapMsg>> {
        let id = m.msgid;
        let ctrls = match controls(&m.ctrl) {
            Ok(c) => c,
            Err(f) => {
                return Some(
                    refusal(&m.op, failed(f))
                        .map(|op| msg(id, op))
                        .into_iter()
                        .collect(),
                );
            }
        };
        Some(match m.op {
            LdapOp::BindRequest(b) => {
                let res = self.bind(b.version, &b.dn, &b.cred);
                vec![msg(
                    id,
                    LdapOp::BindResponse(LdapBindResponse {
                        res,
                        saslcreds: None,
                    }),
                )]
            }
            LdapOp::UnbindRequest => return None,
            LdapOp::SearchRequest(s) => self.search(id, s, &ctrls).await,
            LdapOp::AddRequest(a) => {
                let dn = normalize_dn(&a.dn);
                let attrs: Result<Vec<_>, _> = a
                    .attributes
                    .iter()
                    .map(|at| Ok((at.atype.clone(), text_values(&at.atype, &at.vals)?)))
                    .collect();
                let r = match attrs {
                    Ok(attrs) => self.write(Write::Add { dn, attrs }).await,
                    Err(f) => failed(f),
                };
                vec![msg(id, LdapOp::AddResponse(r))]
            }
            LdapOp::ModifyRequest(mr) => {
                let dn = normalize_dn(&mr.dn);
                let mut changes = Vec::new();
                let mut bad = None;
                for c in &mr.changes {
                    let a = c.modification.atype.clone();
                    let vals = match text_values(&a, &c.modification.vals) {
                        Ok(v) => v,
                        Err(f) => {
                            bad = Some(f);
                            break;
                        }
                    };
                    changes.push(match c.operation {
                        LdapModifyType::Add => Change::Add(a, vals),
                        LdapModifyType::Delete => Change::Delete(a, vals),
                        LdapModifyType::Replace => Change::Replace(a, vals),
                        LdapModifyType::Increment => {
                            match vals.first().and_then(|v| v.trim().parse::<i64>().ok()) {
                                Some(by) if vals.len() == 1 => Change::Increment(a, by),
                                _ => {
                                    bad = Some(LdapFail::new(
                                        LdapResultCode::ConstraintViolation,
                                        format!("increment of `{a}` needs one integer"),
                                    ));
                                    break;
                                }
                            }
                        }
                    });
                }
                let r = match bad {
                    Some(f) => failed(f),
                    None => self.write(Write::Modify { dn, changes }).await,
                };
                vec![msg(id, LdapOp::ModifyResponse(r))]
            }
            LdapOp::DelRequest(dn) => {
                let w = Write::Delete {
                    dn: normalize_dn(&dn),
                    tree: ctrls.tree_delete,
                };
                vec![msg(id, LdapOp::DelResponse(self.write(w).await))]
            }
            LdapOp::ModifyDNRequest(r) => {
                let dn = normalize_dn(&r.dn);
                let parent = match &r.new_superior {
                    Some(p) => normalize_dn(p),
                    None => split_dn(&dn).1.to_string(),
                };
                let rdn = normalize_dn(&r.newrdn);
                let new_dn = if parent.is_empty() {
                    rdn
                } else {
                    format!("{rdn},{parent}")
                };
                let w = Write::Rename {
                    dn,
                    new_dn,
                    delete_old_rdn: r.deleteoldrdn,
                };
                let res = self.write(w).await;
                vec![msg(id, LdapOp::ModifyDNResponse(res))]
            }
            LdapOp::CompareRequest(c) => {
                let res = match text_values(&c.atype, std::slice::from_ref(&c.val)) {
                    Err(f) => failed(f),
                    Ok(v) => {
                        let s = Search {
                            base: normalize_dn(&c.dn),
                            scope: LdapSearchScope::Base,
                            filter: LdapFilter::Present("objectClass".into()),
                            tombstones: false,
                        };
                        let test = LdapFilter::Equality(c.atype.clone(), v[0].clone());
                        match self.find(s).await {
                            Err(f) => failed(f),
                            Ok(es) if es.is_empty() => {
                                result(LdapResultCode::NoSuchObject, "no such entry")
                            }
                            Ok(es) if es[0].matches(&test) => {
                                result(LdapResultCode::CompareTrue, "")
                            }
                            Ok(_) => result(LdapResultCode::CompareFalse, ""),
                        }
                    }
                };
                vec![msg(id, LdapOp::CompareResult(res))]
            }
            LdapOp::AbandonRequest(_) => Vec::new(),
            LdapOp::ExtendedRequest(x) => {
                let (res, value) = if x.name == WHOAMI_OID {
                    let who = match &self.bound_dn {
                        Some(dn) if !dn.is_empty() => format!("dn:{dn}"),
                        _ => String::new(),
                    };
                    (ok(), Some(who.into_bytes()))
                } else {
                    let text = format!("unsupported extended operation {}", x.name);
                    (result(LdapResultCode::ProtocolError, text), None)
                };
                vec![msg(
                    id,
                    LdapOp::ExtendedResponse(LdapExtendedResponse {
                        res,
                        name: None,
                        value,
                    }),
                )]
            }
            // A response, or an operation only a server sends: not a request.
            _ => return None,
        })
    }

    fn bind(&mut self, version: i64, dn: &str, cred: &LdapBindCred) -> LdapResult {
        if version != 3 {
            return result(LdapResultCode::ProtocolError, "only LDAP version 3");
        }
        let LdapBindCred::Simple(pw) = cred else {
            self.bound_dn = None;
            return result(
                LdapResultCode::AuthMethodNotSupported,
                "simple binds only: it is a lab",
            );
        };
        match &self.auth.password {
            // Anonymous (RFC 4513 5.1.1, and an unauthenticated bind treated so).
            _ if pw.is_empty() => {
                self.bound_dn = None;
                ok()
            }
            Some(p) if p != pw => {
                self.bound_dn = None;
                result(LdapResultCode::InvalidCredentials, "wrong password")
            }
            _ => {
                self.bound_dn = Some(normalize_dn(dn));
                ok()
            }
        }
    }

    async fn write(&self, w: Write) -> LdapResult {
        if self.auth.password.is_some() && self.bound_dn.is_none() {
            return result(
                LdapResultCode::InsufficentAccessRights,
                "writes need a simple bind with the lab's password",
            );
        }
        let server = self.server;
        let r = self
            .lab
            .call(|reply| Call::Write {
                server,
                write: w,
                reply,
            })
            .await;
        match r.unwrap_or_else(|| Err(lab_gone())) {
            Ok(()) => ok(),
            Err(f) => failed(f),
        }
    }

    async fn find(&self, search: Search) -> Result<Vec<super::entry::Entry>, LdapFail> {
        let server = self.server;
        self.lab
            .call(|reply| Call::Search {
                server,
                search,
                reply,
            })
            .await
            .unwrap_or_else(|| Err(lab_gone()))
    }

    async fn search(&self, id: i32, s: LdapSearchRequest, ctrls: &Controls) -> Vec<LdapMsg> {
        let search = Search {
            base: normalize_dn(&s.base),
            scope: s.scope.clone(),
            filter: s.filter.clone(),
            tombstones: ctrls.show_deleted,
        };
        let done = |res: LdapResult, ctrl: Vec<LdapControl>| LdapMsg {
            msgid: id,
            op: LdapOp::SearchResultDone(res),
            ctrl,
        };
        // RFC 2696: a size of zero abandons the paged search.
        if let Some((0, _)) = ctrls.paged {
            let end = LdapControl::SimplePagedResults {
                size: 0,
                cookie: Vec::new(),
            };
            return vec![done(ok(), vec![end])];
        }
        let entries = match self.find(search).await {
            Ok(e) => e,
            Err(f) => return vec![done(failed(f), Vec::new())],
        };
        let limit = match usize::try_from(s.sizelimit) {
            Ok(n) if n > 0 => n.min(MAX_ENTRIES),
            _ => MAX_ENTRIES,
        };
        let (from, to, paged) = match &ctrls.paged {
            None => (0, entries.len().min(limit), None),
            Some((size, cookie)) => {
                let from = match <[u8; 8]>::try_from(cookie.as_slice()) {
                    Ok(b) => usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX),
                    Err(_) if cookie.is_empty() => 0,
                    Err(_) => {
                        let r = result(LdapResultCode::ProtocolError, "bad paged results cookie");
                        return vec![done(r, Vec::new())];
                    }
                };
                let from = from.min(entries.len());
                let page = usize::try_from(*size)
                    .unwrap_or(MAX_ENTRIES)
                    .clamp(1, MAX_ENTRIES);
                let to = (from + page).min(entries.len());
                let cookie = if to < entries.len() {
                    (to as u64).to_be_bytes().to_vec()
                } else {
                    Vec::new()
                };
                (from, to, Some(cookie))
            }
        };
        let mut out: Vec<LdapMsg> = entries[from..to]
            .iter()
            .map(|e| {
                msg(
                    id,
                    LdapOp::SearchResultEntry(e.select(&s.attrs, s.typesonly)),
                )
            })
            .collect();
        let res = if paged.is_none() && to < entries.len() {
            result(
                LdapResultCode::SizeLimitExceeded,
                format!("{} entries match; {to} returned", entries.len()),
            )
        } else {
            ok()
        };
        let ctrl = match paged {
            Some(cookie) => vec![LdapControl::SimplePagedResults {
                size: entries.len().min(i64::MAX as usize) as i64,
                cookie,
            }],
            None => Vec::new(),
        };
        out.push(done(res, ctrl));
        out
    }
}

/// The response to a refused request of the kind `op` asks (`None` for an
/// unbind or abandon, which get none).
fn refusal(op: &LdapOp, res: LdapResult) -> Option<LdapOp> {
    Some(match op {
        LdapOp::BindRequest(_) => LdapOp::BindResponse(LdapBindResponse {
            res,
            saslcreds: None,
        }),
        LdapOp::SearchRequest(_) => LdapOp::SearchResultDone(res),
        LdapOp::ModifyRequest(_) => LdapOp::ModifyResponse(res),
        LdapOp::AddRequest(_) => LdapOp::AddResponse(res),
        LdapOp::DelRequest(_) => LdapOp::DelResponse(res),
        LdapOp::ModifyDNRequest(_) => LdapOp::ModifyDNResponse(res),
        LdapOp::CompareRequest(_) => LdapOp::CompareResult(res),
        LdapOp::ExtendedRequest(_) => LdapOp::ExtendedResponse(LdapExtendedResponse {
            res,
            name: None,
            value: None,
        }),
        _ => return None,
    })
}
