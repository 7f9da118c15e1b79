/*
 * sdnotify: the service manager's readiness protocol (sd_notify(3)), spoken
 * directly: one datagram of "KEY=VALUE\n" lines to the AF_UNIX socket named by
 * $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace). This is what
 * lets a systemd unit use Type=notify without linking libsystemd. Without
 * $NOTIFY_SOCKET every call does nothing.
 *
 * Ownership: no state kept; each call opens and closes its own socket.
 */
#ifndef SHAREMAIL_UTIL_SDNOTIFY_H
#define SHAREMAIL_UTIL_SDNOTIFY_H

/*
 * Sends `state` (e.g. "READY=1", "STOPPING=1") as one datagram. Returns 1 when
 * it was sent, 0 when $NOTIFY_SOCKET is unset or empty, -1 on an error (errno set;
 * the caller decides whether that is worth a line: it never is fatal).
 */
int sdnotify_send(const char *state);

/*
 * "RELOADING=1" with the MONOTONIC_USEC= stamp that systemd's Type=notify-reload
 * asks for; the reload ends with sdnotify_send("READY=1"). Returns as
 * sdnotify_send().
 */
int sdnotify_reloading(void);

#endif
