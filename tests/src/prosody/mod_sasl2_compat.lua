-- Written by the xmpp-handshake test harness (tests/src/prosody.rs) next to Debian's
-- prosody-modules snapshot (0.0~hg20230223), whose mod_sasl2 family expects a newer
-- Prosody than Debian 12's 0.12.3. Measured on 0.12.3 with Lua 5.4, without this module:
--   mod_sasl2: `conn:ssl_info()` does not exist: no <stream:features/> at all after TLS;
--   mod_sasl2_fast: the stream-features event has no `stream` (no FAST offered), stanzas
--     have no `get_child_attr` (FAST logins crash), `util.datetime.datetime` refuses the
--     float expiry (token requests crash);
--   mod_sasl2_sm: mod_smacks 0.12.3 has no `do_enable`/`do_resume` (inline <enable/> and
--     <resume/> crash the success): not shimmed, not loaded.
-- Each shim supplies the missing piece and nothing else.
local filters = require "util.filters";
local dt = require "util.datetime";
local st = require "util.stanza";
if not st.stanza_mt.get_child_attr then
	function st.stanza_mt.get_child_attr(self, name, xmlns, attr)
		local child = self:get_child(name, xmlns);
		return child and child.attr[attr] or nil;
	end
end
if not dt.compat_floored then
	local datetime = dt.datetime;
	dt.datetime = function(t) return datetime(t and math.floor(t)); end
	dt.compat_floored = true;
end
local function sniff_from(data, session)
	local header = data:match("<[%w:]*stream[^>]*>");
	if header then
		session.compat_stream_from = header:match("%sfrom%s*=%s*'([^']*)'") or header:match('%sfrom%s*=%s*"([^"]*)"');
	end
	return data;
end
filters.add_filter_hook(function(session) filters.add_filter(session, "bytes/in", sniff_from, 1000); end);
module:hook("stream-features", function(event)
	local origin = event.origin;
	local conn = origin.conn;
	if conn and not conn.ssl_info then
		conn.ssl_info = function(self)
			local sock = self:socket();
			return sock and sock.info and sock:info() or nil;
		end
	end
	if not event.stream then
		event.stream = { from = origin.compat_stream_from };
	end
end, 10);
