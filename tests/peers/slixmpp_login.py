"""tests/bench peer: python3 slixmpp_login.py JID PASSWORD HOST PORT CAFILE --logins N

Logs in N times with slixmpp (Debian's python3-slixmpp) over STARTTLS to HOST:PORT,
printing `BOUND <microseconds>` from connect() to the session_bind event (resource bound)
for each, then disconnects. BENCH_SASL_MECH, if set, is the only SASL mechanism allowed.
"""
import asyncio
import os
import sys
import time

from slixmpp import ClientXMPP


async def login(jid, password, host, port, cafile):
    loop = asyncio.get_running_loop()
    client = ClientXMPP(jid, password, sasl_mech=os.environ.get("BENCH_SASL_MECH"))
    client.ca_certs = cafile
    bound = loop.create_future()

    def settle(value):
        if not bound.done():
            bound.set_result(value)

    client.add_event_handler("session_bind", lambda _: settle(time.perf_counter()))
    client.add_event_handler("failed_auth", lambda _: settle(None))
    client.add_event_handler("connection_failed", lambda _: settle(None))
    started = time.perf_counter()
    client.connect(address=(host, int(port)))
    done = await asyncio.wait_for(bound, 30)
    if done is None:
        print("login failed", file=sys.stderr)
        sys.exit(1)
    print("BOUND", round((done - started) * 1e6), flush=True)
    client.disconnect()
    await asyncio.wait_for(client.disconnected, 10)


async def main():
    jid, password, host, port, cafile, flag, count = sys.argv[1:8]
    if flag != "--logins":
        sys.exit(2)
    for _ in range(int(count)):
        await login(jid, password, host, port, cafile)


asyncio.run(main())
