// tests/bench peer: node login.mjs JID PASSWORD HOST PORT CAFILE --logins N
//
// Logs in N times with @xmpp/client over STARTTLS (xmpp://HOST:PORT), printing
// `BOUND <microseconds>` from start() to the "online" event (resource bound) for each,
// then stops the client. The CA comes in through NODE_EXTRA_CA_CERTS (Node reads it at
// start-up); CAFILE is checked to be that file.
import { client } from "@xmpp/client";

const [jid, password, host, port, cafile, flag, count] = process.argv.slice(2);
if (flag !== "--logins" || process.env.NODE_EXTRA_CA_CERTS !== cafile) {
  console.error("usage: NODE_EXTRA_CA_CERTS=CAFILE node login.mjs JID PASSWORD HOST PORT CAFILE --logins N");
  process.exit(2);
}
const [username, domain] = jid.split("@");
for (let i = 0; i < Number(count); i++) {
  const xmpp = client({ service: `xmpp://${host}:${port}`, domain, username, password });
  xmpp.on("error", (e) => {
    console.error(`error: ${e}`);
    process.exit(1);
  });
  const started = performance.now();
  const online = new Promise((resolve) => xmpp.on("online", () => resolve(performance.now())));
  await xmpp.start();
  const bound = await online;
  console.log(`BOUND ${Math.round((bound - started) * 1000)}`);
  await xmpp.stop();
}
