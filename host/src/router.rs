//! `serve`'s session registry and stanza router (RFC 6120 §8, §10; RFC 6121 §8.5).
//!
//! * A bound session is registered under its full JID. A newer session binding the same
//!   full JID replaces the old one, which is told to end with `<conflict/>` (§7.7.2.2).
//! * `<message/>` to a full JID goes to that session; to a bare JID (or a full JID with no
//!   such resource) to every session of the account; with nobody online the sender gets
//!   `<service-unavailable/>`; another domain gets `<remote-server-not-found/>`, or, when
//!   federating ([`Registry::set_remote`], [`crate::federation`]), any stanza for another
//!   domain goes over server-to-server, and stanzas from peers are routed here. The
//!   server stamps `from` with the sender's full JID (§8.1.2.1).
//! * `<iq/>` to the server or to the sender's own account is answered here: roster (an
//!   empty one), ping, legacy session, disco#info; anything else `<service-unavailable/>`.
//!   An `<iq/>` to another full JID is routed like a message.
//! * `<presence/>` without `to` is accepted and not broadcast (there are no rosters);
//!   directed presence to an online full JID is delivered.
//! * Errors never answer errors (§8.3.1).
//! * Each session's queue of stanzas not yet written is bounded in bytes; a stanza that
//!   would overflow it is not queued and its sender gets `<resource-constraint/>`
//!   (§8.3.3.18: the recipient is busy); that answer goes through the sender's own queue
//!   and is dropped when that one is full too.
//! * Stream management (XEP-0198 §5): a session whose connection broke is kept, detached,
//!   under its session id (`previd`) until it is resumed or its `max` seconds pass; at most
//!   a bounded number of them (past it, the one closest to expiry goes). Stanzas routed to
//!   a detached session join its unacknowledged queue, sent when it resumes; one more than
//!   the queue's bound is bounced with `<resource-constraint/>`, and so is a stanza for a
//!   bound session whose client has not acknowledged that many. A session that expires, is
//!   pushed out, or is replaced by a new binding of its full JID bounces what it still
//!   held with `<service-unavailable/>` (§8.3.3.19): nothing is dropped unsaid.
//! * A `<resume/>` may come before the server has seen the old link die (it went silent
//!   without closing): as Prosody's mod_smacks does, the old link of the same account is
//!   dropped ([`ToSession::TakeOver`]), its session detached and then resumed; never
//!   `<item-not-found/>` for a session that is still there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use xmpp_handshake_core::driver::SessionTable;
use xmpp_handshake_core::sm::SmState;
use xmpp_handshake_core::stanza::qualified;
use xmpp_handshake_core::stream::header::Framing;
use xmpp_handshake_core::xml::escape::escape_attr;
use xmpp_handshake_core::Jid;

/// What the router tells a session task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToSession {
    /// Write this stanza to the client.
    Stanza(String),
    /// A newer session bound the same full JID: send `<conflict/>` and close (§7.7.2.2).
    Conflict,
    /// The session's client resumed it on a new connection (XEP-0198 §5): drop this link
    /// as broken (no stream error, as Prosody's mod_smacks closes the old connection), so
    /// that the session is detached and the resumption takes it.
    TakeOver,
}

/// How long a `<resume/>` waits for a live session's old link to let go of it.
const TAKE_OVER_WAIT: Duration = Duration::from_secs(5);

struct Entry {
    id: u64,
    tx: mpsc::UnboundedSender<ToSession>,
    /// Its stream-management session id (XEP-0198), once known.
    sm_id: Option<String>,
    /// Bytes of stanzas sent to `tx` and not yet written by the session.
    queued: Arc<AtomicUsize>,
}

impl Entry {
    /// Queues `stanza` unless that would pass `limit` bytes.
    fn offer(&self, stanza: &str, limit: usize) -> bool {
        let len = stanza.len();
        let reserved = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                q.checked_add(len).filter(|&n| n <= limit)
            });
        if reserved.is_err() {
            return false;
        }
        if self.tx.send(ToSession::Stanza(stanza.to_string())).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
        }
        true
    }
}

/// A session whose connection broke, kept for resumption (XEP-0198 §5).
struct Detached {
    /// Its full JID, as [`normalize`]d.
    jid: String,
    state: SmState,
    expires: Instant,
}

/// Bound and detached sessions, under one lock: a session moves from one to the other
/// without a stanza routed in between finding neither.
#[derive(Default)]
struct Sessions {
    /// By full JID.
    online: HashMap<String, Entry>,
    /// By session id (`previd`).
    detached: HashMap<String, Detached>,
}

/// Where stanzas for other domains go when `serve` federates ([`crate::federation`]).
pub trait Remote: Send + Sync {
    /// Hands `stanza` (its `from` stamped, its `to` in `domain`) to the server-to-server
    /// link of `domain`; `Err` names the stanza error condition to answer with at once
    /// (`remote-server-not-found`, `resource-constraint`).
    fn send(&self, domain: &str, stanza: String) -> Result<(), &'static str>;
}

/// The bound sessions of one domain, and its detached ones.
pub struct Registry {
    domain: String,
    /// Other domains' route, when federating.
    remote: OnceLock<Arc<dyn Remote>>,
    sessions: Mutex<Sessions>,
    /// Woken whenever a session is detached (for a take-over waiting on it).
    detaching: tokio::sync::Notify,
    next_id: AtomicU64,
    max_queue_bytes: usize,
    max_detached: usize,
}

/// A registration; pass it back to [`Registry::end`].
#[derive(Debug, Clone)]
pub struct Registration {
    /// The full JID.
    pub jid: String,
    id: u64,
    queued: Arc<AtomicUsize>,
}

impl Registration {
    /// The session wrote (or dropped) `message`: its bytes leave the queue.
    pub fn dequeued(&self, message: &ToSession) {
        if let ToSession::Stanza(s) = message {
            self.queued.fetch_sub(s.len(), Ordering::AcqRel);
        }
    }

    /// Bytes queued for this session and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

impl Registry {
    /// An empty registry for `domain`, with the default queue bound
    /// ([`crate::limits::ServeLimits`]).
    pub fn new(domain: &str) -> Self {
        Self::with_queue_limit(
            domain,
            crate::limits::ServeLimits::default().max_queue_bytes,
        )
    }

    /// An empty registry for `domain` queueing at most `max_queue_bytes` per session.
    pub fn with_queue_limit(domain: &str, max_queue_bytes: usize) -> Self {
        Self::with_limits(
            domain,
            max_queue_bytes,
            crate::limits::ServeLimits::default().max_detached_sessions,
        )
    }

    /// An empty registry for `domain` queueing at most `max_queue_bytes` per bound session
    /// and keeping at most `max_detached` sessions for resumption (XEP-0198 §5).
    pub fn with_limits(domain: &str, max_queue_bytes: usize, max_detached: usize) -> Self {
        Registry {
            domain: canonical_domain(domain),
            remote: OnceLock::new(),
            sessions: Mutex::new(Sessions::default()),
            detaching: tokio::sync::Notify::new(),
            next_id: AtomicU64::new(1),
            max_queue_bytes,
            max_detached,
        }
    }

    /// The served domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Routes stanzas to other domains through `remote` (once; later calls are ignored).
    pub fn set_remote(&self, remote: Arc<dyn Remote>) {
        let _ = self.remote.set(remote);
    }

    /// Delivers `stanza` from elsewhere (a bounce, a peer server's stanza) to the session
    /// of the full JID `to`, bound or detached; `false` when its queue is full.
    pub fn deliver_local(&self, to: &str, stanza: &str) -> bool {
        let mut sessions = self.lock();
        self.deliver(&mut sessions, &normalize(to), stanza)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a session bound to `full_jid`; an older one with that JID is told
    /// [`ToSession::Conflict`] and forgotten, and a detached one with that JID ends
    /// (XEP-0198 §5: the new binding replaces it), bouncing what it held.
    pub fn bind(&self, full_jid: &str, tx: mpsc::UnboundedSender<ToSession>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = normalize(full_jid);
        let queued = Arc::new(AtomicUsize::new(0));
        let entry = Entry {
            id,
            tx,
            sm_id: None,
            queued: queued.clone(),
        };
        let mut sessions = self.lock();
        let replaced: Vec<String> = sessions
            .detached
            .iter()
            .filter(|(_, d)| d.jid == key)
            .map(|(previd, _)| previd.clone())
            .collect();
        for previd in replaced {
            if let Some(detached) = sessions.detached.remove(&previd) {
                self.bounce(&mut sessions, detached.state);
            }
        }
        if let Some(old) = sessions.online.insert(key.clone(), entry) {
            let _ = old.tx.send(ToSession::Conflict);
        }
        Registration {
            jid: key,
            id,
            queued,
        }
    }

    /// The session of `registration` has stream-management session id `id` (XEP-0198
    /// §3), under which a `<resume/>` may take it over.
    pub fn set_sm_id(&self, registration: &Registration, id: &str) {
        let mut sessions = self.lock();
        if let Some(e) = sessions.online.get_mut(&registration.jid) {
            if e.id == registration.id {
                e.sm_id = Some(id.to_string());
            }
        }
    }

    /// The session of `registration` ended. With `resumable` (its connection broke) and a
    /// resumable stream-management `state`, it is kept, detached, under its
    /// [`SmState::previd`] until resumed or `state`'s `max` seconds pass (XEP-0198 §5).
    /// What was routed to it and not written joins the state's queue, oldest first:
    /// `pending` (taken from `rx`, not written), then what `rx` still holds. Otherwise (a
    /// clean close, no stream management, a session a newer binding replaced) whatever it
    /// held is bounced to the senders. Returns whether the session was kept.
    pub fn end(
        &self,
        registration: &Registration,
        rx: &mut mpsc::UnboundedReceiver<ToSession>,
        pending: Option<String>,
        state: Option<SmState>,
        resumable: bool,
    ) -> bool {
        let mut sessions = self.lock();
        let current = sessions
            .online
            .get(&registration.jid)
            .is_some_and(|e| e.id == registration.id);
        if current {
            sessions.online.remove(&registration.jid);
        }
        // Nothing is routed to `rx` from here on: the entry is gone, the lock held.
        rx.close();
        let mut waiting: Vec<String> = pending.into_iter().collect();
        while let Ok(message) = rx.try_recv() {
            registration.dequeued(&message);
            if let ToSession::Stanza(stanza) = message {
                waiting.push(stanza);
            }
        }
        let now = Instant::now();
        self.expire(&mut sessions, now);
        let keep = resumable
            && current
            && self.max_detached > 0
            && state.as_ref().is_some_and(|s| s.previd().is_some());
        let mut state = match state {
            Some(state) if keep => state,
            gone => {
                for stanza in waiting {
                    self.bounce_one(&mut sessions, &stanza, "service-unavailable", "cancel");
                }
                if let Some(state) = gone {
                    self.bounce(&mut sessions, state);
                }
                return false;
            }
        };
        for stanza in waiting {
            if state
                .queue(&qualified(&stanza, Framing::WebSocket))
                .is_err()
            {
                self.bounce_one(&mut sessions, &stanza, "resource-constraint", "wait");
            }
        }
        while sessions.detached.len() >= self.max_detached {
            let Some(soonest) = sessions
                .detached
                .iter()
                .min_by_key(|(_, d)| d.expires)
                .map(|(previd, _)| previd.clone())
            else {
                break;
            };
            if let Some(gone) = sessions.detached.remove(&soonest) {
                self.bounce(&mut sessions, gone.state);
            }
        }
        let previd = state.previd().unwrap_or_default().to_string();
        let window = Duration::from_secs(u64::from(state.max().unwrap_or_default()));
        let detached = Detached {
            jid: registration.jid.clone(),
            state,
            expires: now + window,
        };
        if let Some(old) = sessions.detached.insert(previd, detached) {
            self.bounce(&mut sessions, old.state);
        }
        self.detaching.notify_waiters();
        true
    }

    /// A stanza routed to a bound session that its connection refused (the client has
    /// not acknowledged as many stanzas as stream management keeps, XEP-0198): its sender
    /// gets `<resource-constraint/>` (RFC 6120 §8.3.3.18: the recipient is busy, try
    /// later), errors excepted (§8.3.1).
    pub fn refused(&self, stanza: &str) {
        let mut sessions = self.lock();
        self.bounce_one(&mut sessions, stanza, "resource-constraint", "wait");
    }

    /// Sessions kept for resumption now (expired ones are let go first).
    pub fn detached(&self) -> usize {
        let mut sessions = self.lock();
        self.expire(&mut sessions, Instant::now());
        sessions.detached.len()
    }

    /// A handle through which one connection's `<resume/>` finds its session
    /// ([`SessionTable`], XEP-0198 §5).
    pub fn session_table(&self) -> DetachedSessions<'_> {
        DetachedSessions {
            registry: self,
            taken: None,
        }
    }

    /// Lets go of the detached sessions whose time passed, bouncing what they held.
    fn expire(&self, sessions: &mut Sessions, now: Instant) {
        let expired: Vec<String> = sessions
            .detached
            .iter()
            .filter(|(_, d)| d.expires <= now)
            .map(|(previd, _)| previd.clone())
            .collect();
        for previd in expired {
            if let Some(gone) = sessions.detached.remove(&previd) {
                self.bounce(sessions, gone.state);
            }
        }
    }

    /// A session is over for good: each stanza it still held is answered to its sender
    /// with `<service-unavailable/>` (RFC 6120 §8.3.3.19), errors excepted (§8.3.1).
    fn bounce(&self, sessions: &mut Sessions, state: SmState) {
        let held: Vec<String> = state.unacked().map(|(_, s)| s.to_string()).collect();
        for stanza in held {
            self.bounce_one(sessions, &stanza, "service-unavailable", "cancel");
        }
    }

    /// Answers `stanza` (which was routed from a session of ours) to its `from` with
    /// `condition`, when that sender is still here; errors are not answered (§8.3.1).
    fn bounce_one(&self, sessions: &mut Sessions, stanza: &str, condition: &str, kind: &str) {
        let Some(head) = parse_head(stanza) else {
            return;
        };
        let Some(sender) = head.attr("from").and_then(|f| Jid::parse(f).ok()) else {
            return;
        };
        if head.attr("type") == Some("error") {
            return;
        }
        let reply = error_reply(&head, &self.domain, sender.as_str(), condition, kind);
        self.deliver(sessions, &key(&sender), &reply);
    }

    /// Delivers `stanza` to the session of `to`, bound or detached; `false` when its queue
    /// is full (`true` when there is no such session: nobody to be busy).
    fn deliver(&self, sessions: &mut Sessions, to: &str, stanza: &str) -> bool {
        if let Some(e) = sessions.online.get(to) {
            return e.offer(stanza, self.max_queue_bytes);
        }
        match sessions.detached.values_mut().find(|d| d.jid == to) {
            Some(d) => d
                .state
                .queue(&qualified(stanza, Framing::WebSocket))
                .is_ok(),
            None => true,
        }
    }

    /// Full JIDs online, sorted.
    pub fn online(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().online.keys().cloned().collect();
        v.sort();
        v
    }

    /// Handles a stanza from the session bound to `from`: delivers it or answers it.
    /// A detached session (XEP-0198 §5) is a recipient like a bound one: what is routed to
    /// it waits in its queue. Returns what it did, for logs.
    pub fn route(&self, from: &str, element: &str) -> Routed {
        if let Some(routed) = self.route_remote(from, element) {
            return routed;
        }
        let decision = self.route_here(from, element);
        if let Some(reply) = &decision.reply {
            if let Some(e) = self.lock().online.get(&normalize(from)) {
                e.offer(reply, self.max_queue_bytes);
            }
        }
        decision
    }

    /// A stanza of a local session for another domain, when federating: `from` stamped,
    /// handed to [`Remote::send`]; refused at once, the sender gets the error. `None` when
    /// the stanza stays here.
    fn route_remote(&self, from: &str, element: &str) -> Option<Routed> {
        let remote = self.remote.get()?;
        let head = parse_head(element)?;
        let to = Jid::parse(head.attr("to")?).ok()?;
        if to.domain() == self.domain {
            return None;
        }
        let sender = Jid::parse(from).ok()?.into_string();
        let stanza = with_addresses(element, Some(&sender), None);
        let mut routed = Routed {
            note: format!("{} {sender} -> {to} (server-to-server)", head.name),
            ..Routed::default()
        };
        if let Err(condition) = remote.send(to.domain(), stanza) {
            let kind = if condition == "resource-constraint" {
                "wait"
            } else {
                "cancel"
            };
            if head.attr("type") != Some("error") {
                let reply = error_reply(&head, &self.domain, &sender, condition, kind);
                self.deliver_local(&sender, &reply);
                routed.reply = Some(reply);
            }
            routed.note.push_str(&format!(": {condition}"));
        }
        Some(routed)
    }

    /// A stanza from the peer server of `from`'s domain (its `to` is ours, its `from`
    /// checked by the caller): delivered to local sessions as one from a local session
    /// would be. The answer, if any, is in [`Routed::reply`], for the caller to send back.
    pub fn route_from_peer(&self, from: &str, element: &str) -> Routed {
        self.route_here(from, element)
    }

    /// Decides and delivers; the answer is left to the caller.
    fn route_here(&self, from: &str, element: &str) -> Routed {
        let mut sessions = self.lock();
        self.expire(&mut sessions, Instant::now());
        let reachable: Vec<String> = sessions
            .online
            .keys()
            .chain(sessions.detached.values().map(|d| &d.jid))
            .cloned()
            .collect();
        let mut decision = decide(&self.domain, &reachable, from, element);
        let mut busy = false;
        for (to, stanza) in &decision.deliveries {
            busy |= !self.deliver(&mut sessions, to, stanza);
        }
        if busy && decision.reply.is_none() {
            decision.reply = busy_reply(&self.domain, from, element);
            decision.note.push_str(" (a recipient's queue is full)");
        }
        decision
    }
}

/// One connection's view of the detached sessions, for
/// [`receive_with_sessions`](xmpp_handshake_tokio::server::receive_with_sessions): a
/// `<resume/>` takes the session it names (XEP-0198 §5); the core checks that the
/// authenticated account owns it and, when not, puts it back, with its time left as it
/// was.
pub struct DetachedSessions<'a> {
    registry: &'a Registry,
    /// The session taken and not put back (its full JID and expiry, for
    /// [`SessionTable::put_back`]), and its id.
    taken: Option<(String, Instant, String)>,
}

impl DetachedSessions<'_> {
    /// Whether a session was taken and not put back: after the negotiation, whether it
    /// resumed one.
    pub fn resumed(&self) -> bool {
        self.taken.is_some()
    }

    /// The id of the session resumed, if one was.
    pub fn resumed_id(&self) -> Option<&str> {
        self.taken.as_ref().map(|(_, _, id)| id.as_str())
    }
}

impl SessionTable for DetachedSessions<'_> {
    /// The detached session `previd`; or, when a bound session of `account` has that id
    /// (its link went silent and was not seen to die yet), that link is dropped
    /// ([`ToSession::TakeOver`]) and its session taken once detached (within 5 s).
    async fn take(&mut self, previd: &str, account: Option<&str>) -> Option<SmState> {
        let detaching = self.registry.detaching.notified();
        let mut detaching = std::pin::pin!(detaching);
        {
            let mut sessions = self.registry.lock();
            self.registry.expire(&mut sessions, Instant::now());
            if let Some(detached) = sessions.detached.remove(previd) {
                self.taken = Some((detached.jid, detached.expires, previd.to_string()));
                return Some(detached.state);
            }
            let account = normalize(account?);
            let live = sessions.online.iter().find(|(jid, e)| {
                e.sm_id.as_deref() == Some(previd)
                    && jid.split('/').next() == Some(account.as_str())
            });
            let (_, entry) = live?;
            // Registered before the lock is let go: the detaching cannot be missed.
            detaching.as_mut().enable();
            entry.tx.send(ToSession::TakeOver).ok()?;
        }
        let deadline = tokio::time::Instant::now() + TAKE_OVER_WAIT;
        loop {
            tokio::time::timeout_at(deadline, detaching.as_mut())
                .await
                .ok()?;
            let mut sessions = self.registry.lock();
            if let Some(detached) = sessions.detached.remove(previd) {
                self.taken = Some((detached.jid, detached.expires, previd.to_string()));
                return Some(detached.state);
            }
            detaching.set(self.registry.detaching.notified());
            detaching.as_mut().enable();
        }
    }

    fn put_back(&mut self, state: SmState) {
        let mut sessions = self.registry.lock();
        match (self.taken.take(), state.previd()) {
            (Some((jid, expires, _)), Some(previd)) => {
                let previd = previd.to_string();
                let detached = Detached {
                    jid,
                    state,
                    expires,
                };
                if let Some(old) = sessions.detached.insert(previd, detached) {
                    self.registry.bounce(&mut sessions, old.state);
                }
            }
            _ => self.registry.bounce(&mut sessions, state),
        }
    }
}

/// JIDs are looked up in [`Jid`]'s canonical form (lowercase domain, RFC 7622 §3.2) with a
/// lowercase localpart too (a simplification of PRECIS UsernameCaseMapped, §3.3.2); the
/// resource is case-sensitive.
fn normalize(jid: &str) -> String {
    Jid::parse(jid).map_or_else(|_| jid.to_string(), |j| key(&j))
}

/// [`normalize`] of a parsed JID.
fn key(jid: &Jid) -> String {
    let local = jid.local().map(str::to_lowercase);
    Jid::from_parts(local.as_deref(), jid.domain(), jid.resource())
        .map_or_else(|_| jid.to_string(), Jid::into_string)
}

/// The served domain as a JID domainpart compares (RFC 7622 §3.2): ASCII lowercase, no
/// trailing dot.
fn canonical_domain(domain: &str) -> String {
    Jid::from_parts(None, domain, None).map_or_else(
        |_| domain.trim_end_matches('.').to_ascii_lowercase(),
        Jid::into_string,
    )
}

/// What routing a stanza did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routed {
    /// `(full JID, stanza)` delivered.
    pub deliveries: Vec<(String, String)>,
    /// An answer to the sender.
    pub reply: Option<String>,
    /// A short description, for `serve -v`.
    pub note: String,
}

/// The top-level element's name and attributes.
#[derive(Debug, Default)]
struct Head {
    name: String,
    attrs: Vec<(String, String)>,
    /// `{namespace}name` of the first child element (an iq's payload).
    first_child: Option<(String, String)>,
}

impl Head {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_head(element: &str) -> Option<Head> {
    let wrapped = format!(
        "<w xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>{element}</w>"
    );
    let doc = roxmltree::Document::parse(&wrapped).ok()?;
    let node = doc.root_element().first_element_child()?;
    Some(Head {
        name: node.tag_name().name().to_string(),
        attrs: node
            .attributes()
            .filter(|a| a.namespace().is_none())
            .map(|a| (a.name().to_string(), a.value().to_string()))
            .collect(),
        first_child: node.first_element_child().map(|c| {
            (
                c.tag_name().namespace().unwrap_or_default().to_string(),
                c.tag_name().name().to_string(),
            )
        }),
    })
}

/// A received `<message/>`: its `from` and `<body/>` text (`None` for anything else).
pub fn message_body(element: &str) -> Option<(Option<String>, String)> {
    let wrapped = format!(
        "<w xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>{element}</w>"
    );
    let doc = roxmltree::Document::parse(&wrapped).ok()?;
    let node = doc.root_element().first_element_child()?;
    if node.tag_name().name() != "message" {
        return None;
    }
    let body = node
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "body")?;
    Some((
        node.attribute("from").map(str::to_string),
        body.text().unwrap_or_default().to_string(),
    ))
}

/// `element` with `from`/`to` set (replacing existing ones), other attributes kept.
pub fn with_addresses(element: &str, from: Option<&str>, to: Option<&str>) -> String {
    let Some(rest) = element.strip_prefix('<') else {
        return element.to_string();
    };
    let name_len = rest
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    let mut i = name_len;
    let bytes = rest.as_bytes();
    let mut kept = String::new();
    // Attributes: name = 'value' | "value".
    loop {
        while i < bytes.len() && (bytes[i] as char).is_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] == b'/' || bytes[i] == b'>' {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' {
            i += 1;
        }
        let attr_name = rest[start..i].trim();
        i += 1;
        while i < bytes.len() && (bytes[i] as char).is_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            return element.to_string();
        }
        let quote = bytes[i];
        let value_start = i;
        i += 1;
        while i < bytes.len() && bytes[i] != quote {
            i += 1;
        }
        i += 1;
        let drop = (attr_name == "from" && from.is_some()) || (attr_name == "to" && to.is_some());
        if !drop {
            kept.push(' ');
            kept.push_str(attr_name);
            kept.push('=');
            kept.push_str(&rest[value_start..i.min(rest.len())]);
        }
    }
    let mut out = format!("<{name}");
    for (k, v) in [("from", from), ("to", to)] {
        if let Some(v) = v {
            out.push(' ');
            out.push_str(k);
            out.push_str("='");
            escape_attr(v, &mut out);
            out.push('\'');
        }
    }
    out.push_str(&kept);
    out.push_str(&rest[i.min(rest.len())..]);
    out
}

fn escape(v: &str) -> String {
    let mut s = String::new();
    escape_attr(v, &mut s);
    s
}

/// `<resource-constraint/>` for a stanza a recipient had no room for; `None` for an error
/// stanza (§8.3.1: errors are not answered).
fn busy_reply(domain: &str, from: &str, element: &str) -> Option<String> {
    let head = parse_head(element)?;
    let sender = Jid::parse(from).ok()?.into_string();
    (head.attr("type") != Some("error"))
        .then(|| error_reply(&head, domain, &sender, "resource-constraint", "wait"))
}

/// The stanza error answering `element` (§8.3) with `condition` of `kind`, and its
/// recipient (the stanza's `from`); `None` for an error (§8.3.1) or an element without a
/// sender.
pub fn error_for(
    element: &str,
    own_domain: &str,
    condition: &str,
    kind: &str,
) -> Option<(String, String)> {
    let head = parse_head(element)?;
    let sender = head.attr("from").and_then(|f| Jid::parse(f).ok())?;
    if head.attr("type") == Some("error") {
        return None;
    }
    let reply = error_reply(&head, own_domain, sender.as_str(), condition, kind);
    Some((sender.into_string(), reply))
}

/// A stanza error answering `head` (§8.3): addresses swapped, same id.
fn error_reply(head: &Head, own_domain: &str, sender: &str, condition: &str, kind: &str) -> String {
    let from = head.attr("to").unwrap_or(own_domain);
    let mut s = format!(
        "<{} type='error' from='{}' to='{}'",
        head.name,
        escape(from),
        escape(sender)
    );
    if let Some(id) = head.attr("id") {
        s.push_str(&format!(" id='{}'", escape(id)));
    }
    s.push_str(&format!(
        "><error type='{kind}'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></{}>",
        head.name
    ));
    s
}

fn iq_result(head: &Head, own_domain: &str, sender: &str, payload: &str) -> String {
    let from = head.attr("to").unwrap_or(own_domain);
    let id = head.attr("id").unwrap_or_default();
    if payload.is_empty() {
        format!(
            "<iq type='result' from='{}' to='{}' id='{}'/>",
            escape(from),
            escape(sender),
            escape(id)
        )
    } else {
        format!(
            "<iq type='result' from='{}' to='{}' id='{}'>{payload}</iq>",
            escape(from),
            escape(sender),
            escape(id)
        )
    }
}

/// The routing decision for one stanza (pure: `online` is the list of bound full JIDs).
pub fn decide(domain: &str, online: &[String], from: &str, element: &str) -> Routed {
    let mut routed = Routed::default();
    let Some(head) = parse_head(element) else {
        routed.note = "dropped unparsable element".into();
        return routed;
    };
    let Ok(sender) = Jid::parse(from) else {
        routed.note = "dropped: sender has no JID".into();
        return routed;
    };
    let sender_full = sender.to_string();
    let stanza_type = head.attr("type").unwrap_or_default().to_string();
    let is_error = stanza_type == "error";
    let to = match head.attr("to").map(Jid::parse) {
        Some(Ok(j)) => Some(j),
        Some(Err(_)) => {
            if !is_error {
                routed.reply = Some(error_reply(
                    &head,
                    domain,
                    &sender_full,
                    "jid-malformed",
                    "modify",
                ));
            }
            routed.note = "malformed to".into();
            return routed;
        }
        None => None,
    };
    let online_of = |bare: &str| -> Vec<String> {
        online
            .iter()
            .filter(|j| Jid::parse(j).is_ok_and(|p| p.bare().as_str().eq_ignore_ascii_case(bare)))
            .cloned()
            .collect()
    };
    match head.name.as_str() {
        "message" => {
            let to = to.unwrap_or_else(|| sender.bare());
            if to.domain() != domain {
                if !is_error {
                    routed.reply = Some(error_reply(
                        &head,
                        domain,
                        &sender_full,
                        "remote-server-not-found",
                        "cancel",
                    ));
                }
                routed.note = format!("message to {to}: other domain");
                return routed;
            }
            let exact = key(&to);
            let targets = if !to.is_bare() && online.contains(&exact) {
                vec![exact]
            } else {
                online_of(to.bare().as_str())
            };
            if targets.is_empty() {
                if !is_error {
                    routed.reply = Some(error_reply(
                        &head,
                        domain,
                        &sender_full,
                        "service-unavailable",
                        "cancel",
                    ));
                }
                routed.note = format!("message to {to}: nobody online");
                return routed;
            }
            let stanza = with_addresses(element, Some(&sender_full), None);
            routed.note = format!("message {sender_full} -> {}", targets.join(", "));
            routed.deliveries = targets.into_iter().map(|t| (t, stanza.clone())).collect();
        }
        "iq" => {
            let for_server = match &to {
                None => true,
                Some(j) => {
                    j.is_bare()
                        && (j.local().is_none() && j.domain() == domain
                            || j.as_str().eq_ignore_ascii_case(sender.bare().as_str()))
                }
            };
            if !for_server {
                let target = to.as_ref().map(key).unwrap_or_default();
                if online.contains(&target) {
                    routed.note = format!("iq {sender_full} -> {target}");
                    routed.deliveries =
                        vec![(target, with_addresses(element, Some(&sender_full), None))];
                } else if stanza_type == "get" || stanza_type == "set" {
                    routed.reply = Some(error_reply(
                        &head,
                        domain,
                        &sender_full,
                        "service-unavailable",
                        "cancel",
                    ));
                    routed.note = format!("iq to {target}: not online");
                }
                return routed;
            }
            if stanza_type != "get" && stanza_type != "set" {
                routed.note = "iq result to the server: dropped".into();
                return routed;
            }
            let (ns, name) = head.first_child.clone().unwrap_or_default();
            let payload = match (ns.as_str(), name.as_str(), stanza_type.as_str()) {
                ("jabber:iq:roster", "query", "get") => Some("<query xmlns='jabber:iq:roster'/>".to_string()),
                ("urn:xmpp:ping", "ping", "get") => Some(String::new()),
                ("urn:ietf:params:xml:ns:xmpp-session", "session", "set") => Some(String::new()),
                ("http://jabber.org/protocol/disco#info", "query", "get") => Some(
                    "<query xmlns='http://jabber.org/protocol/disco#info'><identity category='server' type='im' name='xmpp-handshake'/><feature var='http://jabber.org/protocol/disco#info'/><feature var='urn:xmpp:ping'/></query>".to_string(),
                ),
                _ => None,
            };
            routed.note = format!("iq {stanza_type} {{{ns}}}{name} answered");
            routed.reply = Some(match payload {
                Some(p) => iq_result(&head, domain, &sender_full, &p),
                None => error_reply(&head, domain, &sender_full, "service-unavailable", "cancel"),
            });
        }
        "presence" => match to {
            Some(j) if !j.is_bare() => {
                let target = key(&j);
                if online.contains(&target) {
                    routed.deliveries =
                        vec![(target, with_addresses(element, Some(&sender_full), None))];
                }
                routed.note = "directed presence".into();
            }
            _ => routed.note = "presence accepted (no rosters)".into(),
        },
        other => routed.note = format!("dropped <{other}/>"),
    }
    routed
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "example.com";

    fn online() -> Vec<String> {
        vec![
            "juliet@example.com/balcony".into(),
            "juliet@example.com/chamber".into(),
            "romeo@example.com/orchard".into(),
        ]
    }

    #[test]
    fn jids_are_looked_up_with_lowercase_localpart_and_domain() {
        assert_eq!(
            normalize("Juliet@Example.COM./Balcony"),
            "juliet@example.com/Balcony"
        );
        assert_eq!(normalize("example.com"), "example.com");
        assert_eq!(canonical_domain("Example.COM."), "example.com");
    }

    #[test]
    fn malformed_to_gets_jid_malformed() {
        // RFC 7622: empty parts, a second '@', a space in the localpart.
        for to in [
            "@example.com",
            "juliet@example.com/",
            "a@b@example.com",
            "a b@example.com",
        ] {
            let stanza = format!("<message to='{to}' id='m1'><body>x</body></message>");
            let r = decide(D, &online(), "romeo@example.com/orchard", &stanza);
            assert!(r.deliveries.is_empty(), "{to}");
            assert!(
                r.reply
                    .as_deref()
                    .is_some_and(|e| e.contains("<jid-malformed ")),
                "{to}: {r:?}"
            );
        }
    }

    #[test]
    fn message_to_full_jid_goes_to_that_session_with_from_stamped() {
        let r = decide(
            D,
            &online(),
            "romeo@example.com/orchard",
            "<message to='juliet@example.com/balcony' from='forged@evil' type='chat'><body>hi</body></message>",
        );
        assert_eq!(r.reply, None);
        assert_eq!(
            r.deliveries,
            vec![(
                "juliet@example.com/balcony".to_string(),
                "<message from='romeo@example.com/orchard' to='juliet@example.com/balcony' type='chat'><body>hi</body></message>".to_string()
            )]
        );
    }

    #[test]
    fn message_to_bare_jid_goes_to_every_resource() {
        let r = decide(
            D,
            &online(),
            "romeo@example.com/orchard",
            "<message to='juliet@example.com'><body>x</body></message>",
        );
        assert_eq!(r.deliveries.len(), 2);
        // A full JID with no such resource falls back to the bare JID (RFC 6121 §8.5.3.2.1).
        let r = decide(
            D,
            &online(),
            "romeo@example.com/orchard",
            "<message to='juliet@example.com/gone'><body>x</body></message>",
        );
        assert_eq!(r.deliveries.len(), 2);
    }

    #[test]
    fn undeliverable_messages_bounce_but_errors_do_not() {
        let r = decide(
            D,
            &online(),
            "romeo@example.com/orchard",
            "<message to='nurse@example.com' id='m1'><body>x</body></message>",
        );
        assert!(r.deliveries.is_empty());
        let reply = r.reply.unwrap();
        assert!(
            reply.contains("<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"),
            "{reply}"
        );
        assert!(reply.contains("id='m1'") && reply.contains("to='romeo@example.com/orchard'"));
        let r = decide(
            D,
            &online(),
            "romeo@example.com/orchard",
            "<message to='x@other.example'/>",
        );
        assert!(r.reply.unwrap().contains("remote-server-not-found"));
        let r = decide(
            D,
            &online(),
            "romeo@example.com/orchard",
            "<message type='error' to='nurse@example.com'/>",
        );
        assert_eq!(r.reply, None);
    }

    #[test]
    fn server_answers_roster_ping_and_unknown_iqs() {
        let from = "romeo@example.com/orchard";
        let r = decide(
            D,
            &online(),
            from,
            "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
        );
        assert_eq!(
            r.reply.unwrap(),
            "<iq type='result' from='example.com' to='romeo@example.com/orchard' id='r1'><query xmlns='jabber:iq:roster'/></iq>"
        );
        let r = decide(
            D,
            &online(),
            from,
            "<iq type='get' id='p' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>",
        );
        assert!(r
            .reply
            .unwrap()
            .starts_with("<iq type='result' from='example.com'"));
        let r = decide(
            D,
            &online(),
            from,
            "<iq type='get' id='v'><query xmlns='jabber:iq:version'/></iq>",
        );
        assert!(r.reply.unwrap().contains("service-unavailable"));
        let r = decide(D, &online(), from, "<iq type='result' id='v'/>");
        assert_eq!(r.reply, None);
    }

    #[test]
    fn a_full_queue_bounces_to_the_sender_until_the_session_writes() {
        // Room for one message, and for the bounce in the sender's own queue.
        let reg = Registry::with_queue_limit(D, 300);
        let (tx_j, mut rx_j) = mpsc::unbounded_channel();
        let (tx_r, mut rx_r) = mpsc::unbounded_channel();
        let juliet = reg.bind("juliet@example.com/balcony", tx_j);
        let _romeo = reg.bind("romeo@example.com/orchard", tx_r);
        let send = |id: &str| {
            reg.route(
                "romeo@example.com/orchard",
                &format!(
                    "<message to='juliet@example.com/balcony' id='{id}'><body>{}</body></message>",
                    "x".repeat(100)
                ),
            )
        };
        assert_eq!(send("m1").reply, None);
        let queued = juliet.queued_bytes();
        assert!(queued > 150 && queued <= 300, "{queued}");
        let bounced = send("m2").reply.expect("a bounce");
        assert!(
            bounced.contains("<resource-constraint") && bounced.contains("id='m2'"),
            "{bounced}"
        );
        assert!(matches!(rx_r.try_recv(), Ok(ToSession::Stanza(s)) if s == bounced));
        // Errors are never answered, even when they do not fit.
        let error =
            "<message type='error' to='juliet@example.com/balcony' id='e'><body>x</body></message>";
        assert_eq!(reg.route("romeo@example.com/orchard", error).reply, None);
        // The session writes m1: room again.
        let written = rx_j.try_recv().unwrap();
        juliet.dequeued(&written);
        assert_eq!(juliet.queued_bytes(), 0);
        assert_eq!(send("m3").reply, None);
    }

    /// Records what it is given; refuses `refused.example`.
    #[derive(Default)]
    struct FakeRemote(Mutex<Vec<(String, String)>>);

    impl Remote for FakeRemote {
        fn send(&self, domain: &str, stanza: String) -> Result<(), &'static str> {
            if domain == "refused.example" {
                return Err("remote-server-not-found");
            }
            self.0.lock().unwrap().push((domain.to_string(), stanza));
            Ok(())
        }
    }

    #[test]
    fn federating_sends_other_domains_to_the_remote_with_from_stamped() {
        let reg = Registry::new(D);
        let remote = Arc::new(FakeRemote::default());
        reg.set_remote(remote.clone());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _romeo = reg.bind("romeo@example.com/orchard", tx);
        let r = reg.route(
            "romeo@example.com/orchard",
            "<message to='Juliet@Capulet.example' from='forged@evil' id='m1'><body>hi</body></message>",
        );
        assert_eq!(r.reply, None);
        let sent = remote.0.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "capulet.example");
        assert!(
            sent[0].1.starts_with(
                "<message from='romeo@example.com/orchard' to='Juliet@Capulet.example'"
            ),
            "{}",
            sent[0].1
        );
        // Refused at once: the sender gets the error.
        let r = reg.route(
            "romeo@example.com/orchard",
            "<message to='x@refused.example' id='m2'><body>hi</body></message>",
        );
        let bounce = r.reply.expect("a bounce");
        assert!(bounce.contains("<remote-server-not-found") && bounce.contains("id='m2'"));
        assert!(matches!(rx.try_recv(), Ok(ToSession::Stanza(s)) if s == bounce));
        // Our own domain stays here.
        let r = reg.route(
            "romeo@example.com/orchard",
            "<message to='nurse@example.com' id='m3'><body>x</body></message>",
        );
        assert!(r.reply.unwrap().contains("service-unavailable"));
        assert_eq!(remote.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn newer_session_replaces_older_with_conflict() {
        let reg = Registry::new(D);
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let first = reg.bind("juliet@example.com/balcony", tx1);
        let second = reg.bind("juliet@example.com/balcony", tx2);
        assert_eq!(rx1.try_recv().unwrap(), ToSession::Conflict);
        // The old session's cleanup must not remove the new one.
        let (_, mut rx1_rest) = mpsc::unbounded_channel();
        assert!(!reg.end(&first, &mut rx1_rest, None, None, true));
        assert_eq!(reg.online(), vec!["juliet@example.com/balcony".to_string()]);
        let (tx3, _rx3) = mpsc::unbounded_channel();
        let _romeo = reg.bind("romeo@example.com/orchard", tx3);
        reg.route(
            "romeo@example.com/orchard",
            "<message to='juliet@example.com'><body>hi</body></message>",
        );
        assert!(
            matches!(rx2.try_recv().unwrap(), ToSession::Stanza(s) if s.contains("<body>hi</body>"))
        );
        let (_, mut rx2_rest) = mpsc::unbounded_channel();
        assert!(!reg.end(&second, &mut rx2_rest, None, None, false));
        assert_eq!(reg.online(), vec!["romeo@example.com/orchard".to_string()]);
    }
}
