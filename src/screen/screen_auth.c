/* screen_auth: see screen_auth.h. */
#include "screen/screen_auth.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "screen/screen.h"
#include "util/timeutil.h"

/* One check, by its server-wide id; a failure waits on `delay` before its answer. */
struct auth_req {
	struct auth_req *prev, *next;
	struct screen_auth *set;
	void *conn; /* NULL: orphaned */
	uint64_t id; /* the session's */
	uint64_t gid; /* the pool's */
	struct sockaddr_storage peer;
	struct event *delay;
	int screened; /* the failure screened the peer */
};

struct screen_auth {
	struct event_base *base;
	struct password_check *pc;
	struct screen *screen;
	screen_auth_done_fn done;
	struct auth_req *reqs;
	uint64_t next_gid;
};

struct screen_auth *screen_auth_new(struct event_base *base, screen_auth_done_fn done)
{
	struct screen_auth *a = calloc(1, sizeof *a);
	if (!a)
		return NULL;
	a->base = base;
	a->done = done;
	return a;
}

void screen_auth_set(struct screen_auth *a, struct password_check *pc, struct screen *sc)
{
	a->pc = pc;
	a->screen = sc;
}

static void req_free(struct auth_req *r)
{
	struct screen_auth *a = r->set;
	if (r->prev)
		r->prev->next = r->next;
	else
		a->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	if (r->delay)
		event_free(r->delay);
	free(r);
}

static void peer_copy(struct sockaddr_storage *out, const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET6)
		memcpy(out, sa, sizeof(struct sockaddr_in6));
	else if (sa->sa_family == AF_INET)
		memcpy(out, sa, sizeof(struct sockaddr_in));
}

int screen_auth_submit(struct screen_auth *a, void *conn, const struct sockaddr *peer, uint64_t id,
                       const char *identity, const char *password, size_t len)
{
	struct auth_req *r = a->pc ? calloc(1, sizeof *r) : NULL;
	if (!r)
		return -1;
	r->set = a;
	r->conn = conn;
	r->id = id;
	r->gid = ++a->next_gid;
	peer_copy(&r->peer, peer);
	if (password_check_submit_to(a->pc, r->gid, identity ? identity : "",
	                             password ? password : "", identity ? len : 0,
	                             screen_auth_result, a) != 0) {
		free(r);
		return -1;
	}
	r->next = a->reqs;
	if (a->reqs)
		a->reqs->prev = r;
	a->reqs = r;
	return 0;
}

void screen_auth_cancel(struct screen_auth *a, void *conn, uint64_t id)
{
	struct auth_req *next;
	for (struct auth_req *r = a ? a->reqs : NULL; r; r = next) {
		next = r->next;
		if (r->conn != conn || (id != 0 && r->id != id))
			continue;
		if (r->delay)
			req_free(r);
		else
			r->conn = NULL;
	}
}

/* The record goes before the answer: the service may cancel or submit from done. */
static void fail_deliver(struct auth_req *r)
{
	struct screen_auth *a = r->set;
	void *conn = r->conn;
	uint64_t id = r->id;
	int screened = r->screened;
	req_free(r);
	if (conn)
		a->done(conn, id, PASSWORD_CHECK_FAIL, NULL, screened);
}

static void on_delay(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	fail_deliver(arg);
}

static void failed(struct auth_req *r)
{
	struct screen_auth *a = r->set;
	unsigned ms = 0;
	if (a->screen) {
		int n = screen_note(a->screen, (const struct sockaddr *)&r->peer,
		                    SCREEN_EVENT_AUTH_FAILURE, time_wall_s(), &r->screened);
		ms = screen_auth_delay_ms(n);
	}
	if (ms > 0 && (r->delay = evtimer_new(a->base, on_delay, r)) != NULL) {
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		evtimer_add(r->delay, &tv);
		return;
	}
	fail_deliver(r);
}

void screen_auth_result(void *arg, const struct password_check_result *res)
{
	struct screen_auth *a = arg;
	struct auth_req *r = a->reqs;
	while (r && r->gid != res->id)
		r = r->next;
	if (!r)
		return;
	if (!r->conn) { /* its connection went meanwhile */
		req_free(r);
		return;
	}
	if (res->status == PASSWORD_CHECK_FAIL) {
		failed(r);
		return;
	}
	void *conn = r->conn;
	uint64_t id = r->id;
	if (res->status == PASSWORD_CHECK_OK && a->screen)
		screen_forget(a->screen, (const struct sockaddr *)&r->peer,
		              SCREEN_EVENT_AUTH_FAILURE);
	req_free(r);
	if (res->status == PASSWORD_CHECK_OK)
		a->done(conn, id, PASSWORD_CHECK_OK, res, 0);
	else
		a->done(conn, id, PASSWORD_CHECK_TEMPFAIL, NULL, 0);
}

void screen_auth_free(struct screen_auth *a)
{
	if (!a)
		return;
	while (a->reqs)
		req_free(a->reqs);
	free(a);
}
