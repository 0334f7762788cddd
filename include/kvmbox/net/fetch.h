/*
 * HTTP for the fleet (netboot configs, bundles, reports) through busybox's
 * wget, which the rescue image carries anyway: no HTTP library of its own
 * (libcurl's closure alone would break the image's 12 MB budget).
 *
 * Only http:// URLs. Every transfer is bounded in time (the child is killed
 * when its time is up: this wget has no -T). wget follows redirects by itself,
 * so its response headers (-S) are read afterwards: a transfer that was
 * redirected to another host is refused and what it fetched is discarded.
 * Whatever is fetched is checked against a pinned digest before it is used.
 */
#ifndef KVMBOX_FETCH_H
#define KVMBOX_FETCH_H

#include <stdbool.h>
#include <sys/types.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

/* Whether @url is http://HOST[:PORT]/... with a plain host; its "HOST:PORT" into @hostport. */
bool kb_url_host(const char *url, char *hostport, size_t size);

/*
 * Retries: kb_fetch_file, kb_fetch_post and kb_fetch_probe try again after a
 * transient failure (no answer in time, no server, a 5xx, a transfer cut
 * off; not a 404 or another answer) with backoff (1, 2, 4 ... 16 s) for up to
 * @window_s seconds per call (0, the default: one try). Before each wait,
 * @note (may be NULL) is told why, the wait and the seconds left: the
 * caller says so on its console. The rescue image's init sets it
 * (kvmbox.timeout=): fleets power on together, switch ports sit in STP.
 */
typedef void kb_fetch_note(const struct kb_error *err, int delay_s, int left_s, void *data);
void kb_fetch_retry(int window_s, kb_fetch_note *note, void *data);

/*
 * GET @url into the file @dest (replaced only when the transfer succeeded)
 * within @timeout_s seconds. Returns 0; -1 with @err; err->errnum ENOENT when
 * the server answered 404 (a file that is not there, not a failure to reach it).
 */
int kb_fetch_file(const char *url, const char *dest, int timeout_s, struct kb_error *err);

/* POST the file @body to @url within @timeout_s seconds (the answer is discarded). */
int kb_fetch_post(const char *url, const char *body, int timeout_s, struct kb_error *err);

/*
 * Whether @url is there, without its body: a GET whose answer is judged as
 * kb_fetch_file judges it (a 404 is ENOENT; an unreachable server, another
 * status or a redirect to another host fail), within @timeout_s seconds.
 */
int kb_fetch_probe(const char *url, int timeout_s, struct kb_error *err);

/* A GET streamed through a pipe: read @fd until EOF, then kb_fetch_stream_end. */
struct kb_fetch_stream {
	pid_t pid;
	int fd;
	char url[1024];
	int headers_fd;   /* an anonymous file wget writes its response headers to */
};
int kb_fetch_stream_start(const char *url, struct kb_fetch_stream *s, struct kb_error *err);
/*
 * Wait for wget (killed after @timeout_s more seconds); 0 when the whole body
 * came from @url's host. err->errnum EPIPE: the body was cut off (by the
 * server, or by the reader closing early).
 */
int kb_fetch_stream_end(struct kb_fetch_stream *s, int timeout_s, struct kb_error *err);

#endif
