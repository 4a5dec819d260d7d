//! A client's inbound XMPP stream of real-shaped stanzas, generated deterministically.
//!
//! The shapes are what a client receives from Prosody and ejabberd after binding: chat
//! messages with chat states, origin/stanza ids and escaped or non-ASCII bodies (XEP-0085,
//! XEP-0359), carbons (XEP-0280), MUC history with delays (XEP-0045, XEP-0203), presences
//! with entity capabilities (XEP-0115), a roster push and result (RFC 6121), pings
//! (XEP-0199), PEP events (XEP-0163, XEP-0084), disco#info results (XEP-0030), and
//! whitespace keep-alives. The same bytes go to every parser in `framer.rs`.

/// The stream header a client receives (RFC 6120 §4.7), followed by stanzas until the
/// stream holds at least `size` bytes. No closing tag: the stream is still open.
pub fn stream(size: usize) -> Vec<u8> {
    let mut s = String::with_capacity(size + 4096);
    s.push_str(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' id='a1b2c3d4-e5f6' \
         from='example.org' version='1.0' xml:lang='en'>",
    );
    let mut n = 0usize;
    while s.len() < size {
        stanza(n, &mut s);
        n += 1;
    }
    s.into_bytes()
}

const BODIES: [&str; 6] = [
    "Are you coming to the meeting at 3?",
    "ok",
    "The build failed again: &lt;error&gt; expected `;` at line 12 &amp; 13 — see the log",
    "Grüße aus Köln! Das Wetter ist schön ☀️, bis später 👋",
    "Here is the link: https://example.org/some/long/path?query=1&amp;other=2#fragment",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt \
     ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation \
     ullamco laboris nisi ut aliquip ex ea commodo consequat.",
];

const CONTACTS: [&str; 5] = [
    "juliet@capulet.example",
    "romeo@montague.example",
    "nurse@capulet.example",
    "benvolio@montague.example",
    "mercutio@verona.example",
];

fn stanza(n: usize, s: &mut String) {
    use std::fmt::Write as _;
    let from = CONTACTS[n % CONTACTS.len()];
    let body = BODIES[n % BODIES.len()];
    let me = "alice@example.org/laptop-4f2a";
    let _ = match n % 12 {
        0..=2 => write!(
            s,
            "<message xmlns='jabber:client' type='chat' id='msg-{n:08x}' from='{from}/phone' \
             to='{me}'><body>{body}</body><active xmlns='http://jabber.org/protocol/chatstates'/>\
             <origin-id xmlns='urn:xmpp:sid:0' id='0b8e4c9d-{n:012x}'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='alice@example.org' id='Zx{n:010}'/>\
             <markable xmlns='urn:xmpp:chat-markers:0'/></message>"
        ),
        3 => write!(
            s,
            "<presence xmlns='jabber:client' from='{from}/desktop' to='{me}' id='p{n}'>\
             <show>away</show><status>In a meeting</status><priority>5</priority>\
             <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
             node='https://conversations.im' ver='ZzTpyHhVZEGnmKFBP4sdmgH6JWY='/>\
             <x xmlns='vcard-temp:x:update'><photo>8dce1fd5a9c1f9a4e0f1c53e0b1f1e5c7f8b2a33</photo></x>\
             <delay xmlns='urn:xmpp:delay' from='example.org' stamp='2026-11-25T13:0{}:12Z'/></presence>",
            n % 10
        ),
        4 => write!(
            s,
            "<message xmlns='jabber:client' from='alice@example.org' to='{me}' type='chat'>\
             <sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
             <message xmlns='jabber:client' from='alice@example.org/phone' to='{from}' \
             type='chat' id='c{n}'><body>{body}</body>\
             <request xmlns='urn:xmpp:receipts'/></message></forwarded></sent></message>"
        ),
        5 => write!(
            s,
            "<message xmlns='jabber:client' from='coven@chat.example.org/thirdwitch' to='{me}' \
             type='groupchat' id='g{n}'><body>{body}</body>\
             <delay xmlns='urn:xmpp:delay' from='coven@chat.example.org' \
             stamp='2026-11-24T23:12:0{}Z'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='coven@chat.example.org' id='mucid-{n}'/>\
             <occupant-id xmlns='urn:xmpp:occupant-id:0' id='dd72603deec90a38ba552f7c68cbcc61bca202cd'/>\
             </message>",
            n % 10
        ),
        6 => write!(
            s,
            "<iq xmlns='jabber:client' type='get' id='ping-{n}' from='example.org' to='{me}'>\
             <ping xmlns='urn:xmpp:ping'/></iq>"
        ),
        7 => {
            let _ = write!(
                s,
                "<iq xmlns='jabber:client' type='result' id='roster-{n}' to='{me}'>\
                 <query xmlns='jabber:iq:roster' ver='ver{n}'>"
            );
            for (i, c) in CONTACTS.iter().enumerate() {
                let _ = write!(
                    s,
                    "<item jid='{c}' name='Contact {i} &amp; co' subscription='both'>\
                     <group>Friends</group><group>Verona</group></item>"
                );
            }
            s.push_str("</query></iq>");
            Ok(())
        }
        8 => write!(
            s,
            "<message xmlns='jabber:client' from='{from}' to='{me}' type='headline' id='pep-{n}'>\
             <event xmlns='http://jabber.org/protocol/pubsub#event'>\
             <items node='urn:xmpp:avatar:metadata'><item id='8dce1fd5a9c1f9a4e0f1c53e0b1f1e5c7f8b2a33'>\
             <metadata xmlns='urn:xmpp:avatar:metadata'>\
             <info bytes='12345' id='8dce1fd5a9c1f9a4e0f1c53e0b1f1e5c7f8b2a33' height='64' \
             type='image/png' width='64'/></metadata></item></items></event></message>"
        ),
        9 => write!(
            s,
            "<iq xmlns='jabber:client' type='result' id='disco-{n}' from='example.org' to='{me}'>\
             <query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='server' type='im' name='Prosody'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>\
             <feature var='urn:xmpp:ping'/><feature var='urn:xmpp:carbons:2'/>\
             <feature var='urn:xmpp:mam:2'/><feature var='jabber:iq:roster'/>\
             <feature var='urn:xmpp:blocking'/><feature var='vcard-temp'/>\
             </query></iq>"
        ),
        10 => write!(
            s,
            "<message xmlns='jabber:client' type='chat' id='m{n}' from='{from}/phone' to='{me}'>\
             <composing xmlns='http://jabber.org/protocol/chatstates'/>\
             <no-store xmlns='urn:xmpp:hints'/></message>"
        ),
        _ => {
            s.push_str("\n ");
            Ok(())
        }
    };
}
