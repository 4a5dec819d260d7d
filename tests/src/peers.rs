//! Other XMPP clients built or found here, for the suites and for `tests/bench`.
//!
//! [`compile_strophe_client`] compiles a small libstrophe client (Debian's libstrophe-dev)
//! with `cc`. It runs in one of two modes:
//! - `peer JID PASSWORD HOST PORT CAFILE TO BODY`: logs in (STARTTLS required, the CA from
//!   CAFILE), prints `CONNECTED <jid> secured=<0|1>`, sends BODY to TO, prints
//!   `RECEIVED <from> <body>` for the first message with a body and exits 0 after it;
//! - `peer JID PASSWORD HOST PORT CAFILE --logins N`: logs in N times in a row, printing
//!   `BOUND <microseconds>` for each, from the call that starts the TCP connect to the
//!   resource being bound, and disconnects after each.
//!
//! `STROPHE_NODELAY=1` turns Nagle's algorithm off on its socket (libstrophe leaves it on);
//! `STROPHE_DEBUG=1` logs libstrophe's debug output on stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const STROPHE_CLIENT: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <strophe.h>

static const char *to, *body;
static int received = 0, bench = 0, bound = 0;
static struct timespec started;

static long micros_since(const struct timespec *t0) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0->tv_sec) * 1000000L + (now.tv_nsec - t0->tv_nsec) / 1000L;
}

/* STROPHE_NODELAY set: Nagle off on the socket (libstrophe leaves it on). */
static int nodelay(xmpp_conn_t *conn, void *sock) {
    int one = 1;
    (void)conn;
    return setsockopt(*(int *)sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int on_message(xmpp_conn_t *conn, xmpp_stanza_t *stanza, void *data) {
    xmpp_ctx_t *ctx = data;
    xmpp_stanza_t *b = xmpp_stanza_get_child_by_name(stanza, "body");
    if (!b) return 1;
    char *text = xmpp_stanza_get_text(b);
    printf("RECEIVED %s %s\n", xmpp_stanza_get_from(stanza), text ? text : "");
    fflush(stdout);
    if (text) xmpp_free(ctx, text);
    received = 1;
    xmpp_disconnect(conn);
    return 0;
}

static void on_conn(xmpp_conn_t *conn, xmpp_conn_event_t status, int error,
                    xmpp_stream_error_t *stream_error, void *data) {
    xmpp_ctx_t *ctx = data;
    (void)stream_error;
    if (status == XMPP_CONN_CONNECT && bench) {
        printf("BOUND %ld\n", micros_since(&started));
        fflush(stdout);
        bound = 1;
        xmpp_disconnect(conn);
    } else if (status == XMPP_CONN_CONNECT) {
        printf("CONNECTED %s secured=%d\n", xmpp_conn_get_bound_jid(conn), xmpp_conn_is_secured(conn));
        fflush(stdout);
        xmpp_handler_add(conn, on_message, NULL, "message", NULL, ctx);
        xmpp_stanza_t *m = xmpp_message_new(ctx, "chat", to, "strophe-1");
        xmpp_message_set_body(m, body);
        xmpp_send(conn, m);
        xmpp_stanza_release(m);
    } else {
        if (!bench) {
            printf("DISCONNECTED status=%d error=%d\n", (int)status, error);
            fflush(stdout);
        }
        xmpp_stop(ctx);
    }
}

int main(int argc, char **argv) {
    if (argc < 8) return 2;
    int logins = 1;
    if (strcmp(argv[6], "--logins") == 0) {
        bench = 1;
        logins = atoi(argv[7]);
    } else {
        to = argv[6];
        body = argv[7];
    }
    xmpp_initialize();
    xmpp_log_t *log = getenv("STROPHE_DEBUG") ? xmpp_get_default_logger(XMPP_LEVEL_DEBUG) : NULL;
    xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, log);
    for (int i = 0; i < logins; i++) {
        xmpp_conn_t *conn = xmpp_conn_new(ctx);
        xmpp_conn_set_flags(conn, XMPP_CONN_FLAG_MANDATORY_TLS);
        xmpp_conn_set_jid(conn, argv[1]);
        xmpp_conn_set_pass(conn, argv[2]);
        xmpp_conn_set_cafile(conn, argv[5]);
        if (getenv("STROPHE_NODELAY")) xmpp_conn_set_sockopt_callback(conn, nodelay);
        bound = 0;
        clock_gettime(CLOCK_MONOTONIC, &started);
        if (xmpp_connect_client(conn, argv[3], (unsigned short)atoi(argv[4]), on_conn, ctx) != XMPP_EOK) {
            printf("CONNECT FAILED\n");
            return 1;
        }
        xmpp_run(ctx);
        xmpp_conn_release(conn);
        if (bench && !bound) return 1;
    }
    xmpp_ctx_free(ctx);
    xmpp_shutdown();
    return bench || received ? 0 : 1;
}
"#;

/// Compiles the libstrophe client (see the module docs) into `dir`; `None` (with the
/// compiler's message on stderr) without `cc` or libstrophe-dev.
pub fn compile_strophe_client(dir: &Path) -> Option<PathBuf> {
    let src = dir.join("peer.c");
    let bin = dir.join("peer");
    std::fs::write(&src, STROPHE_CLIENT).ok()?;
    let out = Command::new("cc")
        .arg(&src)
        .arg("-O2")
        .arg("-o")
        .arg(&bin)
        .arg("-lstrophe")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("cc: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(bin)
}

/// A Python interpreter that imports slixmpp: the one on PATH first, then the system's
/// (Debian's python3-slixmpp lives there).
pub fn python_with_slixmpp() -> Option<PathBuf> {
    let candidates = ["python3", "/usr/bin/python3"];
    candidates.iter().map(PathBuf::from).find(|p| {
        Command::new(p)
            .args(["-c", "import slixmpp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}
