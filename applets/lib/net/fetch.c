/* HTTP through busybox's wget; see kvmbox/net/fetch.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/net/fetch.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/process.h"

extern char **environ;

bool kb_url_host(const char *url, char *hostport, size_t size)
{
	if (strncmp(url, "http://", 7) != 0)
		return false;
	const char *host = url + 7, *end = host + strcspn(host, "/?#");
	if (end == host || (size_t)(end - host) >= size)
		return false;
	for (const char *c = host; c < end; c++)
		if (!(*c >= 'a' && *c <= 'z') && !(*c >= 'A' && *c <= 'Z') && !(*c >= '0' && *c <= '9') && !strchr(".-:[]", *c))
			return false; /* no user@, no spaces: a plain host and port */
	for (const char *c = end; *c; c++)
		if (*c <= ' ' || *c == 0x7f)
			return false;
	snprintf(hostport, size, "%.*s", (int)(end - host), host);
	return true;
}

/*
 * An anonymous file for wget's response headers (its stderr): no name in a
 * shared directory that another user could have made first or linked elsewhere.
 */
static int headers_file(const char *url, struct kb_error *err)
{
	int fd = memfd_create("kvmbox-wget-headers", MFD_CLOEXEC);
	return fd >= 0 ? fd : kb_fail(err, errno, NULL, "making a file for the headers of %s", url);
}

/* Start busybox wget with @extra arguments then @url; stdout to @out_fd (-1: /dev/null), headers to @headers_fd. */
static int spawn_wget(const char *url, const char *const extra[], int out_fd, int headers_fd, pid_t *pid,
		      struct kb_error *err)
{
	char hostport[256];
	if (!kb_url_host(url, hostport, sizeof(hostport)))
		return kb_fail(err, 0, NULL, "'%s' is not an http:// URL kvmbox fetches", url);
	const char *argv[16];
	size_t n = 0;
	argv[n++] = "busybox";
	argv[n++] = "wget";
	argv[n++] = "-S"; /* response headers, on stderr: which hosts answered */
	for (size_t i = 0; extra[i] && n < 12; i++)
		argv[n++] = extra[i];
	argv[n++] = url;
	argv[n] = NULL;
	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	if (out_fd >= 0)
		posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
	else
		posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&actions, headers_fd, STDERR_FILENO);
	posix_spawnattr_t attr;
	kb_spawnattr_init(&attr);
	fflush(NULL);
	int rc = posix_spawnp(pid, "busybox", &actions, &attr, (char *const *)argv, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&actions);
	return rc ? kb_fail(err, rc, NULL, "starting busybox wget for %s", url) : 0;
}

/* Wait for @pid at most @timeout_s seconds, then kill it. Its exit status, or -1 when it was killed. */
static int wait_bounded(pid_t pid, int timeout_s, bool *timed_out)
{
	struct timespec step = { 0, 20 * 1000 * 1000 };
	*timed_out = false;
	for (long waited = 0;; waited += 20) {
		int status;
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		if (r < 0 && errno != EINTR)
			return -1;
		if (waited >= timeout_s * 1000L) {
			*timed_out = true;
			kill(pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			return -1;
		}
		nanosleep(&step, NULL);
	}
}

/*
 * What wget's response headers say: the last status code, and whether a
 * Location sent it to another host than @url's.
 */
static int read_headers(const char *url, int headers_fd, int *status, char *elsewhere, size_t size)
{
	char text[1 << 16];
	char own[256], other[256];
	*status = 0;
	elsewhere[0] = '\0';
	kb_url_host(url, own, sizeof(own));
	ssize_t len = pread(headers_fd, text, sizeof(text) - 1, 0);
	if (len < 0)
		return -1;
	text[len] = '\0';
	for (char *save = NULL, *line = strtok_r(text, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
		while (*line == ' ')
			line++;
		int code;
		if (sscanf(line, "HTTP/%*d.%*d %d", &code) == 1)
			*status = code;
		if (!strncasecmp(line, "Location:", 9)) {
			const char *to = line + 9 + strspn(line + 9, " \t");
			if (!strncmp(to, "http://", 7) || !strncmp(to, "https://", 8) || !strncmp(to, "//", 2)) {
				char scratch[1024];
				snprintf(scratch, sizeof(scratch), "http://%s",
					 to + (!strncmp(to, "//", 2) ? 2 : strchr(to, ':') - to + 3));
				if (!kb_url_host(scratch, other, sizeof(other)) || strcasecmp(other, own) || !strncmp(to, "https", 5))
					snprintf(elsewhere, size, "%s", to);
			}
		}
	}
	return 0;
}

/*
 * The verdict on a finished transfer; *@transient when trying again later may
 * succeed (no answer in time, no server, a 5xx, a transfer cut off), not when
 * the server gave its answer (a 404, a redirect elsewhere, another status).
 */
static int judge(const char *url, int headers_fd, int exit_status, bool timed_out, int timeout_s, bool *transient,
		 struct kb_error *err)
{
	int status;
	char elsewhere[512];
	read_headers(url, headers_fd, &status, elsewhere, sizeof(elsewhere));
	*transient = timed_out || status >= 500 || (exit_status != 0 && (!status || (status >= 200 && status <= 299)));
	if (timed_out)
		return kb_fail(err, ETIMEDOUT, NULL, "fetching %s: no complete answer within %d s", url, timeout_s);
	if (elsewhere[0])
		return kb_fail(err, 0, NULL, "fetching %s: redirected to another host (%s): refused", url, elsewhere);
	if (status == 404)
		return kb_fail(err, ENOENT, NULL, "fetching %s (the server answered 404)", url);
	if (status && (status < 200 || status > 299))
		return kb_fail(err, 0, NULL, "fetching %s: the server answered %d", url, status);
	if (exit_status != 0 && status)
		return kb_fail(err, EPIPE, NULL, "fetching %s: the transfer broke off", url);
	if (exit_status != 0)
		return kb_fail(err, 0, NULL, "fetching %s: the server could not be reached", url);
	return 0;
}

static int fetch_file_once(const char *url, const char *dest, int timeout_s, bool *transient, struct kb_error *err)
{
	*transient = false;
	char temp[PATH_MAX];
	if (snprintf(temp, sizeof(temp), "%s.part", dest) >= (int)sizeof(temp))
		return kb_fail(err, ENAMETOOLONG, dest, "fetching into");
	autoclose_fd headers = headers_file(url, err);
	if (headers < 0)
		return -1;
	int fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return kb_fail(err, errno, temp, "creating");
	pid_t pid;
	const char *extra[] = { "-q", "-O", "-", NULL };
	int rc = spawn_wget(url, extra, fd, headers, &pid, err);
	close(fd);
	if (rc == 0) {
		bool timed_out;
		int status = wait_bounded(pid, timeout_s, &timed_out);
		rc = judge(url, headers, status, timed_out, timeout_s, transient, err);
	}
	if (rc == 0 && rename(temp, dest) < 0)
		rc = kb_fail(err, errno, dest, "replacing");
	if (rc < 0)
		unlink(temp);
	return rc;
}

static int fetch_post_once(const char *url, const char *body, int timeout_s, bool *transient, struct kb_error *err)
{
	*transient = false;
	autoclose_fd headers = headers_file(url, err);
	if (headers < 0)
		return -1;
	pid_t pid;
	const char *extra[] = { "-q", "-O", "-", "--header", "Content-Type: application/json", "--post-file", body, NULL };
	if (spawn_wget(url, extra, -1, headers, &pid, err) < 0)
		return -1;
	bool timed_out;
	int status = wait_bounded(pid, timeout_s, &timed_out);
	return judge(url, headers, status, timed_out, timeout_s, transient, err);
}

static int fetch_probe_once(const char *url, int timeout_s, bool *transient, struct kb_error *err)
{
	*transient = false;
	autoclose_fd headers = headers_file(url, err);
	if (headers < 0)
		return -1;
	pid_t pid;
	/* --spider: busybox sends the GET and stops after the response headers, the body unread. */
	const char *extra[] = { "-q", "--spider", NULL };
	if (spawn_wget(url, extra, -1, headers, &pid, err) < 0)
		return -1;
	bool timed_out;
	int status = wait_bounded(pid, timeout_s, &timed_out);
	return judge(url, headers, status, timed_out, timeout_s, transient, err);
}

/* ---- retries ---- */

static struct {
	int window_s;
	kb_fetch_note *note;
	void *data;
} retry_policy;

void kb_fetch_retry(int window_s, kb_fetch_note *note, void *data)
{
	retry_policy.window_s = window_s > 0 ? window_s : 0;
	retry_policy.note = note;
	retry_policy.data = data;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

struct retrier {
	double start;
	int delay_s, tries;
};

#define RETRY_MAX_DELAY 16

/*
 * After a failed try: whether to try again (a transient failure with time
 * left in the window), after waiting the backoff (1, 2, 4 ... 16 s). When
 * it gives up after retrying, @err says for how long.
 */
static bool retry_again(struct retrier *r, bool transient, struct kb_error *err)
{
	r->tries++;
	double left = r->start + retry_policy.window_s - now_s();
	if (!transient || !retry_policy.window_s)
		return false;
	if (left < 1) {
		size_t len = strlen(err->what);
		snprintf(err->what + len, sizeof(err->what) - len, " (%d tries in %d s)", r->tries,
			 (int)(now_s() - r->start + 0.5));
		return false;
	}
	r->delay_s = r->delay_s ? r->delay_s * 2 : 1;
	if (r->delay_s > RETRY_MAX_DELAY)
		r->delay_s = RETRY_MAX_DELAY;
	int delay = r->delay_s < left ? r->delay_s : (int)left;
	if (retry_policy.note)
		retry_policy.note(err, delay, (int)left, retry_policy.data);
	struct timespec pause = { delay, 0 };
	while (nanosleep(&pause, &pause) < 0 && errno == EINTR)
		;
	return true;
}

int kb_fetch_file(const char *url, const char *dest, int timeout_s, struct kb_error *err)
{
	struct kb_error scratch;
	struct retrier r = { .start = now_s() };
	bool transient = false;
	int rc;
	err = err ? err : &scratch;
	while ((rc = fetch_file_once(url, dest, timeout_s, &transient, err)) < 0 && retry_again(&r, transient, err))
		;
	return rc;
}

int kb_fetch_post(const char *url, const char *body, int timeout_s, struct kb_error *err)
{
	struct kb_error scratch;
	struct retrier r = { .start = now_s() };
	bool transient = false;
	int rc;
	err = err ? err : &scratch;
	while ((rc = fetch_post_once(url, body, timeout_s, &transient, err)) < 0 && retry_again(&r, transient, err))
		;
	return rc;
}

int kb_fetch_probe(const char *url, int timeout_s, struct kb_error *err)
{
	struct kb_error scratch;
	struct retrier r = { .start = now_s() };
	bool transient = false;
	int rc;
	err = err ? err : &scratch;
	while ((rc = fetch_probe_once(url, timeout_s, &transient, err)) < 0 && retry_again(&r, transient, err))
		;
	return rc;
}

int kb_fetch_stream_start(const char *url, struct kb_fetch_stream *s, struct kb_error *err)
{
	int pipefd[2];
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->headers_fd = -1;
	snprintf(s->url, sizeof(s->url), "%s", url);
	if ((s->headers_fd = headers_file(url, err)) < 0)
		return -1;
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		int e = errno;
		close(s->headers_fd);
		s->headers_fd = -1;
		return kb_fail(err, e, NULL, "making a pipe for %s", url);
	}
	const char *extra[] = { "-q", "-O", "-", NULL };
	int rc = spawn_wget(url, extra, pipefd[1], s->headers_fd, &s->pid, err);
	close(pipefd[1]);
	if (rc < 0) {
		close(pipefd[0]);
		close(s->headers_fd);
		s->headers_fd = -1;
		return -1;
	}
	s->fd = pipefd[0];
	return 0;
}

int kb_fetch_stream_end(struct kb_fetch_stream *s, int timeout_s, struct kb_error *err)
{
	if (s->fd >= 0)
		close(s->fd); /* wget still writing gets EPIPE and stops */
	s->fd = -1;
	int rc = 0;
	if (s->pid > 0) {
		bool timed_out;
		bool transient;
		int status = wait_bounded(s->pid, timeout_s, &timed_out);
		rc = judge(s->url, s->headers_fd, status, timed_out, timeout_s, &transient, err);
	}
	s->pid = 0;
	if (s->headers_fd >= 0)
		close(s->headers_fd);
	s->headers_fd = -1;
	return rc;
}
