/*
 * A bundle unpacked into DIR/NAME; see kvmbox/bundle/unpack.h.
 *
 * Each member is SHA-256-hashed while it is written into a staging directory
 * on the destination filesystem (by a thread of its own, from the buffers the
 * bundle is read into, so the writing and the hashing run on two cores),
 * runs of zeros become holes, then the digests
 * are checked against SHA256SUMS, qcow2 headers and raw images are examined,
 * domain.xml's disk paths are rewritten, and the staging directory is renamed
 * into place. On any failure nothing is left behind.
 */
#include <stdatomic.h>
#include <blkid/blkid.h>
#include <dirent.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "kvmbox/bundle/archive.h"
#include "kvmbox/bundle/bundle.h"
#include "kvmbox/bundle/unpack.h"
#include "kvmbox/core/print.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/cli.h"
#include "kvmbox/virt/diskuse.h"
#include "kvmbox/bundle/domguard.h"
#include "kvmbox/virt/domxml.h"
#include "kvmbox/net/fetch.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/output.h"
#include "kvmbox/core/run.h"
#include "kvmbox/bundle/sha256.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/core/xml.h"

#define HASH_THREADS_MAX 4
#define BLOCK (64u * 1024)
#define SOURCE_BUF (1u << 20)
#define SOURCE_BUFS 8 /* a reader's buffers: blocks queued for hashing while the next are read */
#define HOLE_GRAIN 4096u
/*
 * Written into the tree beside the members: the source it was unpacked from
 * and the SHA-256 it was pinned to ("-" when none). A provision run that
 * finds the tree compares its own words with it (kb_unpack_plan,
 * keep_existing), never the disks, which are the guest's to change.
 */
#define SOURCE_RECORD ".kvmbox-source"
#define SOURCE_RECORD_MAX 4096

struct worker;

/*
 * One reading of the bundle: libarchive's, the buffers it reads into and the
 * hashing threads hash from, and where it reads. The main one reads the bundle
 * from start to end; a worker's reads one member of a local bundle from its
 * header on, by offset, while the main one goes on past it.
 */
struct reader {
	struct unpack *u;
	struct archive *a;
	struct kb_hash_pool *pool;
	uint8_t *buf;   /* the buffer libarchive reads from now, held */
	int fd;
	bool at_offset; /* pread() from offset, not read() */
	uint64_t offset;
};

struct member {
	char name[KB_BUNDLE_NAME_MAX];
	uint64_t size, allocated;
	uint8_t digest[32];
	/* Written, still being hashed: the thread, and the file to fsync once it is done; else NULL, -1. */
	struct kb_hasher *hasher;
	int fd;
	struct worker *worker; /* extracted by a worker of its own (whose pool the hasher uses), or NULL */
	bool qcow2;
	struct kb_qcow2 qcow2_header;
	char probe[160]; /* raw images: what libblkid found */
};

struct unpack {
	const struct kb_ctx *ctx;
	struct kb_archive ar;
	struct kb_sha256_api sha;
	struct kb_xml xml;
	char dest[PATH_MAX];  /* as the installed system sees it (for domain.xml) */
	char name[KB_BUNDLE_NAME_MAX];
	struct kb_path dest_dir, final_dir;
	char staging[PATH_MAX];
	int staging_lock;     /* the staging directory, flock()ed while this run owns it */
	uint64_t max_size;    /* the most all members may declare together; 0: DIR's filesystem size */
	bool force;           /* --force: --replace even under a defined, stopped domain */
	bool allow_external_cdrom; /* a CD-ROM may name an ISO on the host */
	char emulator[256];   /* the <emulator> domain.xml named, dropped: the host's own is used */
	struct member members[KB_BUNDLE_MAX_MEMBERS];
	int count;
	int hash_threads;  /* how many members may be hashed at once: one per core, up to HASH_THREADS_MAX */
	uint64_t bundle_size;
	struct kb_progress progress;
	/* The bundle as it is read: from a file or an http:// stream, hashed when --sha256 pins it. */
	struct reader main;
	bool seekable;    /* a local file: each disk member is read by a worker of its own */
	atomic_int abandon; /* a worker failed: the others stop */
	bool stalled; /* the source sent nothing for STALL_SECONDS */
	bool hashing;
	struct kb_sha256 source_sha;
	char pinned_sha256[65];
	char source[PATH_MAX + 256]; /* as the spec names it: the tree's SOURCE_RECORD keeps it */
};

/*
 * The signal (SIGINT, SIGTERM, SIGHUP) that interrupted this unpack, 0 while
 * none has: set by the handler, seen by the copy loop and the hashing thread,
 * which stop so the staging directory can be removed before the signal is
 * delivered again.
 */
static atomic_int interrupted; /* lock-free: for the handler and every thread alike */
static const int stop_signals[] = { SIGINT, SIGTERM, SIGHUP };

static void on_stop_signal(int sig)
{
	interrupted = sig;
}

static void catch_stop_signals(struct sigaction saved[3])
{
	struct sigaction sa = { .sa_handler = on_stop_signal }; /* no SA_RESTART: a blocked call returns EINTR */
	sigemptyset(&sa.sa_mask);
	interrupted = 0;
	for (int i = 0; i < 3; i++) {
		sigaction(stop_signals[i], &sa, &saved[i]);
		if (saved[i].sa_handler == SIG_IGN) /* ignored by whoever started us (nohup): it stays so */
			sigaction(stop_signals[i], &saved[i], NULL);
	}
}

static void restore_stop_signals(const struct sigaction saved[3])
{
	for (int i = 0; i < 3; i++)
		sigaction(stop_signals[i], &saved[i], NULL);
}

static int fail_interrupted(struct kb_error *err)
{
	return kb_fail(err, EINTR, NULL, "interrupted by %s: nothing was unpacked", strsignal(interrupted));
}

static bool is_zero(const uint8_t *p, size_t n)
{
	/* Compare the block against itself shifted by one: all bytes equal and the first is zero. */
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/*
 * Where a member's data goes: its file, and where the filesystem takes it
 * (statx STATX_DIOALIGN) the same file opened O_DIRECT. Data aligned as the
 * filesystem asks goes from the buffer it was read into straight to the
 * device: no copy into the page cache and no writeback for the cores that
 * hash. Anything else (a tail, a block of a compressed stream) goes through
 * the page cache; the kernel keeps the two coherent, and fsync covers both.
 */
struct member_out {
	int fd;
	int direct; /* -1: none */
	unsigned mem_align, offset_align;
};

#ifndef STATX_DIOALIGN
#define STATX_DIOALIGN 0x00002000U
#endif

static int open_member(const struct unpack *u, const char *name, int flags, mode_t mode);

static void open_direct(const struct unpack *u, const char *name, struct member_out *out)
{
	out->direct = open_member(u, name, O_WRONLY | O_DIRECT, 0);
	struct statx st;
	if (out->direct < 0)
		return; /* tmpfs and the like: EINVAL, written as before */
	if (statx(out->direct, "", AT_EMPTY_PATH, STATX_DIOALIGN, &st) == 0 && (st.stx_mask & STATX_DIOALIGN) &&
	    st.stx_dio_mem_align && st.stx_dio_offset_align) {
		out->mem_align = st.stx_dio_mem_align;
		out->offset_align = st.stx_dio_offset_align;
		return;
	}
	close(out->direct);
	out->direct = -1;
}

static bool direct_fits(const struct member_out *out, const uint8_t *data, uint64_t offset, size_t len)
{
	return out->direct >= 0 && (uintptr_t)data % out->mem_align == 0 && offset % out->offset_align == 0 &&
	       len % out->offset_align == 0;
}

/* Write @len bytes of @data at @offset, leaving HOLE_GRAIN blocks of zeros as holes. */
static int write_sparse(struct member_out *out, const uint8_t *data, size_t len, uint64_t offset, const char *name,
			struct kb_error *err)
{
	size_t pos = 0;
	while (pos < len) {
		/* Align grains to the file offset so holes line up with filesystem blocks. */
		size_t grain = HOLE_GRAIN - (size_t)((offset + pos) % HOLE_GRAIN);
		if (grain > len - pos)
			grain = len - pos;
		if (is_zero(data + pos, grain)) {
			pos += grain;
			continue;
		}
		size_t start = pos;
		pos += grain;
		while (pos < len) {
			size_t g = HOLE_GRAIN < len - pos ? HOLE_GRAIN : len - pos;
			if (is_zero(data + pos, g))
				break;
			pos += g;
		}
		int fd = direct_fits(out, data + start, offset + start, pos - start) ? out->direct : out->fd;
		for (size_t done = start; done < pos;) {
			ssize_t n = pwrite(fd, data + done, pos - done, (off_t)(offset + done));
			if (n < 0 && errno == EINVAL && fd == out->direct) {
				/* The filesystem refused what statx said it takes: the page cache from here on. */
				out->direct = -1;
				fd = out->fd;
				continue;
			}
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return kb_fail(err, errno, name, "writing member");
			}
			done += (size_t)n;
		}
	}
	return 0;
}

/* Why a member cannot be in a bundle, or NULL. */
static const char *refusal(struct unpack *u, struct archive_entry *e, const char *name)
{
	if (name[0] == '/')
		return "is an absolute path";
	if (!strcmp(name, "..") || strstr(name, "../") || strstr(name, "/.."))
		return "has '..' in its path";
	if (u->ar.entry_hardlink(e))
		return "is a hard link";
	switch (u->ar.entry_filetype(e)) {
	case AE_IFREG: break;
	case AE_IFLNK: return "is a symbolic link";
	case AE_IFCHR:
	case AE_IFBLK: return "is a device";
	case AE_IFIFO: return "is a FIFO";
	case AE_IFDIR: return "is a directory (members are plain files at the top)";
	default: return "is not a regular file";
	}
	if (!kb_member_name_valid(name))
		return "is not a plain file name at the top of the bundle";
	for (int i = 0; i < u->count; i++)
		if (!strcmp(u->members[i].name, name))
			return "appears twice";
	if (!u->ar.entry_size_is_set(e) || u->ar.entry_size(e) < 0)
		return "has no size";
	if (!strcmp(name, KB_BUNDLE_DOMAIN_XML) && u->ar.entry_size(e) > KB_BUNDLE_DOMAIN_MAX)
		return "is over 1 MiB";
	return NULL;
}

/*
 * A member of the staging directory, opened through the directory's fd and
 * never through a symlink: whoever can write to DIR may rename or swap the
 * staging path while this runs, but not the directory this process holds open.
 */
static int open_member(const struct unpack *u, const char *name, int flags, mode_t mode)
{
	return openat(u->staging_lock, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
}

/* The fd in *@fd, which is left -1 so its cleanup no longer closes it. */
static int take_fd(int *fd)
{
	int taken = *fd;
	*fd = -1;
	return taken;
}

/* Wait for the digest of @m, written and being hashed. */
static int settle(struct member *m, struct kb_error *err)
{
	int rc = kb_hasher_finish(m->hasher, m->size, m->digest, m->name, err);
	m->hasher = NULL;
	if (rc < 0 && interrupted)
		rc = fail_interrupted(err);
	return rc;
}

/* How many members the main reader extracted are being hashed; the oldest of them in *@oldest. */
static int hashing(struct unpack *u, struct member **oldest)
{
	int n = 0;
	*oldest = NULL;
	for (int i = 0; i < u->count; i++)
		if (!u->members[i].worker && u->members[i].hasher && !n++)
			*oldest = &u->members[i];
	return n;
}

/*
 * A disk member of a local bundle, read by a thread of its own from its
 * header's offset while the main reader seeks past it: with two disks, each
 * is read, written and hashed on a core of its own.
 */
struct worker {
	struct reader r;
	struct member *m;
	pthread_t thread;
	bool running; /* not joined yet */
	int rc;
	struct kb_error err;
};

static int stream_member(struct unpack *u, struct reader *r, struct member *m, struct kb_error *err);
static la_ssize_t read_source(struct archive *a, void *opaque, const void **buffer);
static la_int64_t skip_source(struct archive *a, void *opaque, la_int64_t request);

/* The member name of an entry: a leading "./" dropped. */
static const char *entry_name(struct unpack *u, struct archive_entry *e)
{
	const char *name = u->ar.entry_pathname(e);
	if (!name)
		return "";
	return !strncmp(name, "./", 2) && name[2] ? name + 2 : name;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct unpack *u = w->r.u;
	struct archive *a = u->ar.read_new();
	struct archive_entry *e = NULL;
	w->rc = -1;
	if (!a) {
		kb_fail(&w->err, ENOMEM, w->m->name, "reading member");
		return NULL;
	}
	u->ar.read_support_format_tar(a); /* an uncompressed tar: the offset is the file's */
	w->r.a = a;
	int r = u->ar.read_open2(a, &w->r, NULL, read_source, skip_source, NULL);
	if (r == ARCHIVE_OK)
		r = u->ar.read_next_header(a, &e);
	/* The header the main reader saw, or the bundle changed under us. */
	if ((r == ARCHIVE_OK || r == ARCHIVE_WARN) && e && !strcmp(entry_name(u, e), w->m->name) &&
	    u->ar.entry_size(e) == (la_int64_t)w->m->size)
		w->rc = stream_member(u, &w->r, w->m, &w->err);
	else if (interrupted)
		fail_interrupted(&w->err);
	else
		kb_fail(&w->err, 0, w->m->name, "reading member: %s:", kb_archive_error(&u->ar, a, "the bundle changed while it was read"));
	u->ar.read_free(a);
	w->r.a = NULL;
	kb_hash_pool_release(w->r.pool, w->r.buf);
	w->r.buf = NULL;
	if (w->rc < 0)
		u->abandon = 1;
	return NULL;
}

/* Wait for @m's worker to have read it; its failure in @err. */
static int join_worker(struct member *m, struct kb_error *err)
{
	struct worker *w = m->worker;
	if (w->running) {
		pthread_join(w->thread, NULL);
		w->running = false;
		if (w->rc < 0)
			*err = w->err;
	}
	return w->rc;
}

/* How many members workers are reading or hashing; the oldest of them in *@oldest. */
static int working(struct unpack *u, struct member **oldest)
{
	int n = 0;
	*oldest = NULL;
	for (int i = 0; i < u->count; i++) {
		const struct member *m = &u->members[i];
		if (m->worker && (m->worker->running || m->hasher) && !n++)
			*oldest = &u->members[i];
	}
	return n;
}

/* @m, whose header the main reader read at @header_at, handed to a worker; one member per core at once. */
static int dispatch(struct unpack *u, struct member *m, uint64_t header_at, struct kb_error *err)
{
	struct member *oldest;
	while (working(u, &oldest) >= u->hash_threads && oldest)
		if (join_worker(oldest, err) < 0 || settle(oldest, err) < 0)
			return -1;
	struct worker *w = calloc(1, sizeof(*w));
	if (!w)
		return kb_fail(err, ENOMEM, m->name, "reading member");
	w->r = (struct reader){ .u = u, .fd = u->main.fd, .at_offset = true, .offset = header_at };
	w->m = m;
	w->r.pool = kb_hash_pool_new(SOURCE_BUFS, SOURCE_BUF, &interrupted, err);
	if (!w->r.pool) {
		free(w);
		return -1;
	}
	m->worker = w; /* freed with the member's pool in settle_all */
	if (pthread_create(&w->thread, NULL, worker_run, w) != 0) {
		w->rc = -1;
		return kb_fail(err, EAGAIN, m->name, "starting a thread to read");
	}
	w->running = true;
	return 0;
}

/*
 * The end of the bundle: every member synced to disk (writeback started as it
 * streamed, and ext4 commits the data of all files with the first fsync: so
 * here, once, while the last ones are still being hashed; domain.xml is
 * rewritten and synced after), every digest waited for, what each occupies
 * noted. After a failure: the threads stopped.
 */
static int settle_all(struct unpack *u, bool failed, struct kb_error *err)
{
	int rc = failed ? -1 : 0;
	if (failed)
		u->abandon = 1;
	/*
	 * The workers: the first that failed of itself (not stopped because another did) says why,
	 * also when the main reader failed only because a worker had (ECANCELED).
	 */
	bool why = !failed || err->errnum == ECANCELED;
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < u->count; i++) {
			struct worker *w = u->members[i].worker;
			struct kb_error ignored;
			if (w && join_worker(&u->members[i], &ignored) < 0 && why &&
			    (pass == 1 || w->err.errnum != ECANCELED)) {
				*err = w->err;
				rc = -1;
				why = false;
			}
		}
	for (int i = 0; rc == 0 && i < u->count; i++)
		if (strcmp(u->members[i].name, KB_BUNDLE_DOMAIN_XML) && fsync(u->members[i].fd) < 0)
			rc = kb_fail(err, errno, u->members[i].name, "finishing member");
	for (int i = 0; rc == 0 && i < u->count; i++)
		if (u->members[i].hasher)
			rc = settle(&u->members[i], err);
	for (int i = 0; i < u->count; i++) {
		struct member *m = &u->members[i];
		struct stat st;
		if (rc == 0 && fstat(m->fd, &st) < 0)
			rc = kb_fail(err, errno, m->name, "finishing member");
		else if (rc == 0)
			m->allocated = (uint64_t)st.st_blocks * 512;
		kb_hasher_cancel(m->hasher); /* after a failure: still running */
		m->hasher = NULL;
		if (m->worker) {
			kb_hash_pool_free(m->worker->r.pool);
			free(m->worker);
			m->worker = NULL;
		}
		if (m->fd >= 0)
			close(m->fd);
		m->fd = -1;
	}
	return rc;
}

/*
 * Stream one member into the staging directory. A thread of its own hashes
 * each block from the buffer it is written from, while it is written, so this
 * returns once the member is written and the last blocks are queued, and the
 * next member streams while they are hashed. At most one member per core is
 * in hashing at once; the oldest is waited for when another would start.
 */
static int extract(struct unpack *u, struct member *m, struct kb_error *err)
{
	struct member *oldest;
	while (m->size > BLOCK && hashing(u, &oldest) >= u->hash_threads && oldest)
		if (settle(oldest, err) < 0)
			return -1;
	if (stream_member(u, &u->main, m, err) < 0)
		return -1;
	/* A small member (domain.xml, SHA256SUMS) is hashed by now: it keeps no thread waiting. */
	return m->size <= BLOCK ? settle(m, err) : 0;
}

/* @m's data from @r into the staging directory, each block queued for its hashing thread as it is written. */
static int stream_member(struct unpack *u, struct reader *r, struct member *m, struct kb_error *err)
{
	bool config = !strcmp(m->name, KB_BUNDLE_DOMAIN_XML) || !strcmp(m->name, KB_BUNDLE_SUMS);
	struct archive *a = r->a;
	autoclose_fd fd = open_member(u, m->name, O_WRONLY | O_CREAT | O_EXCL, config ? 0644 : 0600);
	if (fd < 0)
		return kb_fail(err, errno, m->name, "creating member");
	m->hasher = kb_hasher_start(&u->sha, r->pool, &interrupted, m->size, err);
	if (!m->hasher)
		return -1;
	struct member_out out = { .fd = fd, .direct = -1 };
	if (!config)
		open_direct(u, m->name, &out);
	autoclose_fd direct = out.direct; /* closed when written: the fd above is the one kept to fsync */

	uint64_t written = 0, synced = 0;
	int rc = 0;
	for (;;) {
		const void *buf;
		size_t len;
		la_int64_t offset;
		if (interrupted) {
			rc = fail_interrupted(err);
			break;
		}
		if (u->abandon) {
			rc = kb_fail(err, ECANCELED, m->name, "reading member");
			break;
		}
		int got = u->ar.read_data_block(a, &buf, &len, &offset);
		if (got == ARCHIVE_EOF)
			break;
		if (got != ARCHIVE_OK) {
			rc = kb_fail(err, 0, m->name, "reading member: %s:",
				     kb_archive_error(&u->ar, a, "truncated or corrupt archive"));
			break;
		}
		if ((uint64_t)offset < written || (uint64_t)offset + len > m->size) {
			rc = kb_fail(err, 0, m->name, "corrupt sparse map in member");
			break;
		}
		/*
		 * Queued for the hash before it is written: the thread hashes it on
		 * the other core meanwhile, from the same buffer. Skipped bytes (a
		 * hole of a sparse entry) stay a hole of the file, and hash as zeros.
		 */
		if (kb_hasher_add(m->hasher, buf, len, (uint64_t)offset) < 0) {
			rc = fail_interrupted(err);
			break;
		}
		if ((rc = write_sparse(&out, buf, len, (uint64_t)offset, m->name, err)) < 0)
			break;
		written = (uint64_t)offset + len;
		/* Start writeback as we go, so the fsync at the end has little left to wait for. */
		if (written - synced >= (64u << 20)) {
			sync_file_range(fd, (off_t)synced, (off_t)(written - synced), SYNC_FILE_RANGE_WRITE);
			synced = written;
		}
		if (r == &u->main) /* a worker's progress shows when the main reader passes it */
			kb_progress_update(u->ctx, &u->progress, (uint64_t)u->ar.filter_bytes(a, -1), u->bundle_size);
	}
	if (rc == 0 && ftruncate(fd, (off_t)m->size) < 0)
		rc = kb_fail(err, errno, m->name, "finishing member");
	if (rc < 0)
		return -1; /* settle_all stops the thread */
	m->fd = take_fd(&fd); /* synced and closed at the end */
	return 0;
}

static int read_member(struct unpack *u, const char *name, size_t max, char **text, size_t *len,
		       struct kb_error *err)
{
	autoclose_fd fd = open_member(u, name, O_RDONLY, 0);
	if (fd < 0)
		return kb_fail(err, errno, name, "opening member");
	return kb_read_fd(fd, name, max, text, len, err);
}

/* Every member but SHA256SUMS is listed, every listed one is there, and the digests match. */
static int verify_sums(struct unpack *u, struct kb_error *err)
{
	autofree char *text = NULL;
	size_t len;
	struct kb_sums *sums = calloc(1, sizeof(*sums));
	if (!sums)
		return kb_fail(err, ENOMEM, NULL, "checking digests");
	int rc = read_member(u, KB_BUNDLE_SUMS, 1 << 20, &text, &len, err);
	if (rc == 0 && kb_sums_parse(text, len, sums, err) < 0) {
		snprintf(err->path, sizeof(err->path), "%s", KB_BUNDLE_SUMS);
		rc = -1;
	}
	for (int i = 0; rc == 0 && i < u->count; i++) {
		const struct member *m = &u->members[i];
		if (!strcmp(m->name, KB_BUNDLE_SUMS))
			continue;
		const struct kb_sum *s = kb_sums_find(sums, m->name);
		if (!s)
			rc = kb_fail(err, 0, m->name, "member is not listed in SHA256SUMS:");
		else if (memcmp(s->digest, m->digest, 32) != 0) {
			char want[65], got[65];
			kb_digest_hex(s->digest, want);
			kb_digest_hex(m->digest, got);
			rc = kb_fail(err, 0, m->name, "digest mismatch (SHA256SUMS says %.12s..., content is %.12s...):", want, got);
		}
	}
	for (int i = 0; rc == 0 && i < sums->count; i++) {
		bool present = false;
		for (int j = 0; j < u->count && !present; j++)
			present = !strcmp(u->members[j].name, sums->sum[i].name);
		if (!present)
			rc = kb_fail(err, 0, sums->sum[i].name, "listed in SHA256SUMS but missing from the bundle:");
	}
	free(sums);
	return rc;
}

static struct member *find_member(struct unpack *u, const char *name)
{
	for (int i = 0; i < u->count; i++)
		if (!strcmp(u->members[i].name, name))
			return &u->members[i];
	return NULL;
}

/* A member that may be a disk image: neither SHA256SUMS nor domain.xml. */
static struct member *disk_member(struct unpack *u, const char *name)
{
	struct member *m = find_member(u, name);
	return m && strcmp(name, KB_BUNDLE_SUMS) && strcmp(name, KB_BUNDLE_DOMAIN_XML) ? m : NULL;
}

/*
 * Once every disk is examined: each backing chain ends, without a loop, and
 * a backing format a qcow2 header declares (QEMU opens the backing file as
 * that, whatever the file is) is the backing member's own format.
 */
static int check_backing_chains(struct unpack *u, struct kb_error *err)
{
	for (int i = 0; i < u->count; i++) {
		struct member *m = &u->members[i];
		if (!m->qcow2 || !m->qcow2_header.backing[0])
			continue;
		const struct member *backing = disk_member(u, m->qcow2_header.backing);
		const char *declared = m->qcow2_header.backing_format, *actual = backing->qcow2 ? "qcow2" : "raw";
		if (declared[0] && strcmp(declared, actual))
			return kb_fail(err, 0, m->name, "backing file '%s' is declared %.15s but is a %s image: refused in",
				       backing->name, declared, actual);
		/* A chain longer than the members has come back to one of them. */
		const struct member *next = m;
		for (int depth = 0; next && next->qcow2 && next->qcow2_header.backing[0]; depth++) {
			if (depth == u->count)
				return kb_fail(err, 0, m->name, "its backing chain loops: refused in");
			next = disk_member(u, next->qcow2_header.backing);
		}
	}
	return 0;
}

/* qcow2 headers (a backing file must be another disk member) and libblkid's view of raw images. */
static int examine_disks(struct unpack *u, struct kb_error *err)
{
	for (int i = 0; i < u->count; i++) {
		struct member *m = &u->members[i];
		if (!strcmp(m->name, KB_BUNDLE_SUMS) || !strcmp(m->name, KB_BUNDLE_DOMAIN_XML))
			continue;
		uint8_t head[65536];
		autoclose_fd fd = open_member(u, m->name, O_RDONLY, 0);
		ssize_t n = fd < 0 ? -1 : pread(fd, head, sizeof(head), 0);
		if (n < 0)
			return kb_fail(err, errno, m->name, "reading member");
		/* Formats that carry paths (VMDK extents, QED backing files, ...) would reach outside the bundle. */
		const char *format = kb_image_format(head, (size_t)n);
		size_t name_len = strlen(m->name);
		if (name_len > 4 && !strcmp(m->name + name_len - 4, ".dmg"))
			format = "dmg"; /* QEMU's dmg probe goes by the name */
		if (strcmp(format, "raw") && strcmp(format, "qcow2"))
			return kb_fail(err, 0, m->name, "a %s image, and a bundle carries only raw and qcow2 disks: refused:", format);
		int q = kb_qcow2_parse(head, (size_t)n, &m->qcow2_header, err);
		if (q < 0) {
			char why[KB_ERROR_WHAT_MAX];
			snprintf(why, sizeof(why), "%s", err->what);
			return kb_fail(err, 0, m->name, "%s in", why);
		}
		if (q == 1) {
			m->qcow2 = true;
			const char *backing = m->qcow2_header.backing;
			if (backing[0] && (!kb_member_name_valid(backing) || !disk_member(u, backing) || !strcmp(backing, m->name)))
				return kb_fail(err, 0, m->name, "backing file '%s' is not another disk image member of the bundle: refused in",
					       backing);
			continue;
		}
		blkid_probe pr = blkid_new_probe();
		if (pr && blkid_probe_set_device(pr, fd, 0, 0) != 0) {
			blkid_free_probe(pr);
			pr = NULL;
		}
		if (!pr) {
			snprintf(m->probe, sizeof(m->probe), "raw (not probed)");
			continue;
		}
		blkid_probe_enable_partitions(pr, 1);
		blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
		blkid_probe_enable_superblocks(pr, 1);
		const char *pttype = NULL, *type = NULL;
		if (blkid_do_safeprobe(pr) == 0) {
			blkid_probe_lookup_value(pr, "PTTYPE", &pttype, NULL);
			blkid_probe_lookup_value(pr, "TYPE", &type, NULL);
		}
		int used = snprintf(m->probe, sizeof(m->probe), "raw, %s", pttype ? pttype : type ? type : "no partition table or filesystem");
		blkid_partlist parts = pttype ? blkid_probe_get_partitions(pr) : NULL;
		int nparts = parts ? blkid_partlist_numof_partitions(parts) : 0;
		for (int p = 0; p < nparts && used < (int)sizeof(m->probe); p++) {
			blkid_partition part = blkid_partlist_get_partition(parts, p);
			blkid_probe sub = blkid_new_probe();
			const char *fs = NULL;
			if (sub && blkid_probe_set_device(sub, fd, blkid_partition_get_start(part) * 512,
							  blkid_partition_get_size(part) * 512) == 0) {
				blkid_probe_enable_superblocks(sub, 1);
				if (blkid_do_safeprobe(sub) == 0)
					blkid_probe_lookup_value(sub, "TYPE", &fs, NULL);
			}
			used += snprintf(m->probe + used, sizeof(m->probe) - (size_t)used, "%s%d: %s", p ? ", " : " (",
					 blkid_partition_get_partno(part), fs ? fs : "unknown");
			if (sub)
				blkid_free_probe(sub);
		}
		if (nparts && used < (int)sizeof(m->probe))
			snprintf(m->probe + used, sizeof(m->probe) - (size_t)used, ")");
		blkid_free_probe(pr);
	}
	return check_backing_chains(u, err);
}

/* domain.xml: well-formed, no DTD, a <domain>; disk sources that name members point into DIR/NAME. */
/*
 * A file domain.xml names, as a member: the plain member name pack writes. The
 * unpacked path goes into @unpacked; NULL when it is not a member.
 */
static struct member *member_of(struct unpack *u, const char *file, char *unpacked, size_t size)
{
	struct member *m = find_member(u, file);
	if (!m || !strcmp(file, KB_BUNDLE_SUMS) || !strcmp(file, KB_BUNDLE_DOMAIN_XML))
		return NULL;
	snprintf(unpacked, size, "%s/%s/%s", u->dest, u->name, file);
	return m;
}

/* One <disk>: its source must be a member (a CD-ROM outside only with --allow-external-cdrom). */
static int check_disk(struct unpack *u, xmlNode *disk, struct kb_error *err)
{
	const struct kb_xml *x = &u->xml;
	autofree char *type = kb_xml_prop(x, disk, "type");
	autofree char *device = kb_xml_prop(x, disk, "device");
	autofree char *target_dev = kb_xml_prop(x, kb_xml_child(disk, "target"), "dev");
	const char *which = target_dev ? target_dev : "?";
	bool cdrom = device && (!strcmp(device, "cdrom") || !strcmp(device, "floppy"));
	xmlNode *source = kb_xml_child(disk, "source");
	for (xmlNode *b = kb_xml_child(disk, "backingStore"); b; b = kb_xml_next(b, "backingStore"))
		if (kb_xml_child(b, "source"))
			return kb_fail(err, 0, KB_BUNDLE_DOMAIN_XML, "disk %s has a <backingStore> with a source (the qcow2 headers say what backs what): refused in", which);
	if (!source)
		return 0; /* an empty CD-ROM drive */
	autofree char *file = kb_xml_prop(x, source, "file");
	if ((type && strcmp(type, "file")) || !file) {
		if (cdrom && u->allow_external_cdrom)
			return 0;
		return kb_fail(err, 0, KB_BUNDLE_DOMAIN_XML, "disk %s is type='%s', not a file of the bundle: refused in", which,
			       type ? type : "file");
	}
	char unpacked[PATH_MAX + 2 * KB_BUNDLE_NAME_MAX];
	struct member *m = member_of(u, file, unpacked, sizeof(unpacked));
	if (!m) {
		if (cdrom && u->allow_external_cdrom)
			return 0;
		return kb_fail(err, 0, KB_BUNDLE_DOMAIN_XML, "disk %s names '%.200s', which is not a member%s: refused in", which, file,
			       cdrom ? " (--allow-external-cdrom for an ISO on the host)" : "");
	}
	/* The format QEMU is told must be the one the member has; unsaid, it is said. */
	const char *format = m->qcow2 ? "qcow2" : "raw";
	xmlNode *driver = kb_xml_child(disk, "driver");
	autofree char *driver_type = kb_xml_prop(x, driver, "type");
	if (driver_type && strcmp(driver_type, format))
		return kb_fail(err, 0, KB_BUNDLE_DOMAIN_XML, "disk %s says type='%s' but %s is %s: refused in", which, driver_type,
			       file, format);
	if (!driver) {
		driver = x->new_child(disk, NULL, (const xmlChar *)"driver", NULL);
		x->set_prop(driver, (const xmlChar *)"name", (const xmlChar *)"qemu");
	}
	if (!driver_type)
		x->set_prop(driver, (const xmlChar *)"type", (const xmlChar *)format);
	x->set_prop(source, (const xmlChar *)"file", (const xmlChar *)unpacked);
	return 0;
}

/* <os>'s kernel, initrd, dtb, loader and nvram: members, or refused. */
static int check_boot_files(struct unpack *u, xmlNode *os, struct kb_error *err)
{
	static const char *const elements[] = { "kernel", "initrd", "dtb", "loader", "nvram" };
	for (size_t i = 0; i < sizeof(elements) / sizeof(elements[0]); i++) {
		for (xmlNode *e = kb_xml_child(os, elements[i]); e; e = kb_xml_next(e, elements[i])) {
			autofree char *path = kb_xml_text(&u->xml, e);
			autofree char *template = kb_xml_prop(&u->xml, e, "template");
			if (template)
				return kb_fail(err, 0, KB_BUNDLE_DOMAIN_XML, "<%s template='%.200s'> names a host file: refused in",
					       elements[i], template);
			if (!path || !path[0])
				continue;
			char unpacked[PATH_MAX + 2 * KB_BUNDLE_NAME_MAX];
			if (!member_of(u, path, unpacked, sizeof(unpacked)))
				return kb_fail(err, 0, KB_BUNDLE_DOMAIN_XML, "<%s> names '%.200s', which is not a member: refused in",
					       elements[i], path);
			/* The element's text becomes the unpacked path. */
			u->xml.node_set_content(e, (const xmlChar *)unpacked);
		}
	}
	return 0;
}

static bool is_domain_member(void *opaque, const char *name)
{
	char unpacked[PATH_MAX + 2 * KB_BUNDLE_NAME_MAX];
	return member_of(opaque, name, unpacked, sizeof(unpacked)) != NULL;
}

/*
 * domain.xml holds only what kvmbox allows (kvmbox/bundle/domguard.h) and points at
 * the unpacked files, and at nothing else: every disk, kernel, initrd, loader
 * and NVRAM must be a member. Its <emulator> is dropped.
 */
static int rewrite_domain(struct unpack *u, struct kb_error *err)
{
	autofree char *text = NULL;
	size_t len;
	if (read_member(u, KB_BUNDLE_DOMAIN_XML, KB_BUNDLE_DOMAIN_MAX, &text, &len, err) < 0)
		return -1;
	if (kb_xml_load(&u->xml, err) < 0)
		return -1;
	xmlDoc *doc = kb_xml_parse(&u->xml, text, len, KB_BUNDLE_DOMAIN_XML, err);
	if (!doc)
		return -1;
	int rc = 0;
	xmlNode *domain = u->xml.root_element(doc);
	struct kb_domguard guard = { .is_member = is_domain_member, .opaque = u,
				     .allow_external_cdrom = u->allow_external_cdrom, .what = KB_BUNDLE_DOMAIN_XML };
	if (!domain || strcmp((const char *)domain->name, "domain"))
		rc = kb_fail(err, 0, KB_BUNDLE_DOMAIN_XML, "the root element is not <domain> in");
	if (rc == 0)
		rc = kb_domguard_check(&u->xml, doc, &guard, err);
	snprintf(u->emulator, sizeof(u->emulator), "%s", guard.emulator);
	xmlNode *devices = rc == 0 ? kb_xml_child(domain, "devices") : NULL;
	for (xmlNode *disk = kb_xml_child(devices, "disk"); rc == 0 && disk; disk = kb_xml_next(disk, "disk"))
		rc = check_disk(u, disk, err);
	if (rc == 0)
		rc = check_boot_files(u, kb_xml_child(domain, "os"), err);
	xmlChar *out = NULL;
	int out_len = 0;
	if (rc == 0) {
		u->xml.dump_memory(doc, &out, &out_len);
		if (!out)
			rc = kb_fail(err, ENOMEM, KB_BUNDLE_DOMAIN_XML, "writing");
	}
	if (rc == 0) {
		autoclose_fd fd = open_member(u, KB_BUNDLE_DOMAIN_XML, O_WRONLY | O_TRUNC, 0);
		if (fd < 0 || write(fd, out, (size_t)out_len) != out_len || fsync(fd) < 0)
			rc = kb_fail(err, errno, KB_BUNDLE_DOMAIN_XML, "writing");
	}
	if (out)
		(*u->xml.free)(out);
	u->xml.free_doc(doc);
	return rc;
}

/*
 * Whether DIR/NAME may be swapped out: not while a running domain (a QEMU
 * process) has one of its files open, since the guest would go on writing to
 * a deleted file, nor while a defined domain's disks name one, unless --force
 * (for a domain that is not running).
 */
static int check_replace(const struct kb_ctx *ctx, struct kb_xml *xml, const char *dir, bool force,
			 struct kb_error *err)
{
	struct kb_disk_set *set = calloc(1, sizeof(*set));
	if (!set)
		return kb_fail(err, ENOMEM, dir, "checking who uses");
	int rc = kb_disk_set_add_dir(set, dir, err);
	if (rc == 0 && set->count)
		kb_disk_set_mark_open(ctx, set);
	if (rc == 0 && set->count && (rc = kb_xml_load(xml, err)) == 0)
		rc = kb_disk_set_mark_libvirt_files(ctx, xml, set, err);
	size_t i;
	if (rc == 0 && kb_disk_set_used(set, true, &i))
		rc = kb_fail(err, 0, dir, "%s is in use by %s: refusing to replace", strrchr(set->file[i].path, '/') + 1,
			     set->file[i].user);
	else if (rc == 0 && !force && kb_disk_set_used(set, false, &i))
		rc = kb_fail(err, 0, dir, "%s is in use by %s (--force, while it is not running): refusing to replace",
			     strrchr(set->file[i].path, '/') + 1, set->file[i].user);
	free(set);
	return rc;
}

/* The staging directory becomes DIR/NAME; with --replace an existing one is swapped out atomically. */
/*
 * A source as SOURCE_RECORD keeps it: a URL as written, a file by its
 * canonical path (`a.tar` in one directory is `/srv/a.tar` named from
 * another), or as written when it cannot be resolved (gone since).
 */
static void source_identity(const char *source, char *out, size_t size)
{
	char resolved[PATH_MAX];
	if (strncmp(source, "http://", 7) && realpath(source, resolved))
		snprintf(out, size, "%s", resolved);
	else
		snprintf(out, size, "%s", source);
}

/* SOURCE_RECORD into the staging directory, synced (the directory is synced after it). */
static int write_source_record(struct unpack *u, struct kb_error *err)
{
	char text[SOURCE_RECORD_MAX], source[PATH_MAX + 256];
	source_identity(u->source, source, sizeof(source));
	int n = snprintf(text, sizeof(text), "source %s\nsha256 %s\n", source, u->pinned_sha256[0] ? u->pinned_sha256 : "-");
	if (n < 0 || (size_t)n >= sizeof(text))
		return kb_fail(err, ENAMETOOLONG, u->staging, "recording the source of");
	/* O_EXCL: a member of that name (never a bundle's own) is not overwritten, and fails the unpack. */
	autoclose_fd fd = openat(u->staging_lock, SOURCE_RECORD, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0 || kb_write_all(fd, text, (size_t)n) < 0 || fsync(fd) < 0)
		return kb_fail(err, errno, u->staging, "writing %s into", SOURCE_RECORD);
	return 0;
}

static int commit(struct unpack *u, bool replace, struct kb_error *err)
{
	if (write_source_record(u, err) < 0)
		return -1;
	/* mkdtemp made it 0700; QEMU under libvirt must be able to reach the images inside. */
	if (fchmod(u->staging_lock, 0755) < 0)
		return kb_fail(err, errno, u->staging, "setting the mode of");
	if (fsync(u->staging_lock) < 0)
		return kb_fail(err, errno, u->staging, "syncing directory");
	/* The staging name must still be this directory: never rename something put in its place. */
	struct stat ours, named;
	if (fstat(u->staging_lock, &ours) < 0 || lstat(u->staging, &named) < 0 || !S_ISDIR(named.st_mode) ||
	    ours.st_dev != named.st_dev || ours.st_ino != named.st_ino)
		return kb_fail(err, 0, u->staging, "the staging directory was replaced while unpacking:");
	if (replace && access(u->final_dir.s, F_OK) == 0) {
		/* Again (the plan checked): a guest may have started while this unpacked. */
		if (check_replace(u->ctx, &u->xml, u->final_dir.s, u->force, err) < 0)
			return -1;
		/* The old tree must go whole or not at all: nothing immutable, no mount inside it. */
		if (kb_tree_removable(u->final_dir.s, err) < 0)
			return -1;
		if (renameat2(AT_FDCWD, u->staging, AT_FDCWD, u->final_dir.s, RENAME_EXCHANGE) < 0)
			return kb_fail(err, errno, u->final_dir.s, "swapping in the new");
		/*
		 * The staging name now holds the old tree. Something mounted in it
		 * since the check: swapped back whole, and the new tree goes instead.
		 */
		if (kb_tree_removable(u->staging, err) < 0) {
			if (renameat2(AT_FDCWD, u->staging, AT_FDCWD, u->final_dir.s, RENAME_EXCHANGE) < 0)
				u->staging[0] = '\0'; /* never remove the old tree: it stays, under the staging name */
			return -1;
		}
		if (kb_remove_tree(u->staging, err) < 0)
			return -1;
	} else if (rename(u->staging, u->final_dir.s) < 0) {
		return kb_fail(err, errno, u->final_dir.s, "renaming the staging directory to");
	}
	autoclose_fd dest = open(u->dest_dir.s, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dest < 0)
		return kb_fail(err, errno, u->dest_dir.s, "syncing directory");
	return kb_sync_dir_entry(u->ctx, dest, u->dest_dir.s, err);
}

/* What a member will occupy: the data regions of a sparse entry, else its whole size. */
static uint64_t data_size(struct unpack *u, struct archive_entry *e, uint64_t size)
{
	int regions = u->ar.entry_sparse_reset(e);
	if (regions <= 0)
		return size;
	uint64_t data = 0;
	la_int64_t offset, length;
	while (u->ar.entry_sparse_next(e, &offset, &length) == ARCHIVE_OK)
		data += (uint64_t)length;
	return data < size ? data : size;
}

/* Whether @name is a staging directory's: ".NAME.kvmbox-XXXXXX". */
static bool is_staging_name(const char *name)
{
	const char *tag = strstr(name, ".kvmbox-");
	return name[0] == '.' && tag && tag > name + 1 && strlen(tag + 8) == 6 && !strchr(tag + 8, '/');
}

/*
 * Whether the staging directory @name in @dir is one no running unpack owns:
 * its owner held a flock() on it until it died (SIGKILL, power loss), so a
 * lock that can be taken means nobody is writing there. The lock is held in
 * *@fd (closed by the caller) while it is removed.
 */
static bool is_stale_staging(int dir, const char *name, int *fd)
{
	*fd = -1;
	if (!is_staging_name(name))
		return false;
	*fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return *fd >= 0 && flock(*fd, LOCK_EX | LOCK_NB) == 0;
}

static int run_archive(struct unpack *u, const char *bundle, bool replace, struct kb_error *err);
static int run_source(struct unpack *u, const char *bundle, bool replace, struct kb_error *err);

/*
 * libarchive reads the bundle through here: every byte is hashed on its way
 * when --sha256 pins the bundle (a stream from a server is never stored to be
 * hashed afterwards). A stream that stalls for STALL_SECONDS fails the read.
 */
#define STALL_SECONDS 60
static la_ssize_t read_source(struct archive *a, void *opaque, const void **buffer)
{
	(void)a;
	struct reader *r = opaque;
	struct unpack *u = r->u;
	/* libarchive is done with the last buffer: it stays only while blocks queued from it are hashed. */
	kb_hash_pool_release(r->pool, r->buf);
	r->buf = kb_hash_pool_take(r->pool);
	*buffer = r->buf;
	if (!r->buf) {
		errno = EINTR;
		return -1;
	}
	if (r->at_offset) {
		ssize_t n = pread(r->fd, r->buf, SOURCE_BUF, (off_t)r->offset);
		r->offset += n > 0 ? (uint64_t)n : 0;
		return n;
	}
	struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
	int ready = poll(&pfd, 1, STALL_SECONDS * 1000);
	if (ready == 0) {
		u->stalled = true;
		errno = ETIMEDOUT;
		return -1;
	}
	ssize_t n = ready < 0 ? -1 : read(r->fd, r->buf, SOURCE_BUF);
	if (n > 0 && u->hashing)
		kb_sha256_update(&u->source_sha, r->buf, (size_t)n);
	return n;
}

/* The main reader of a local bundle seeks past a member a worker reads (0: it reads through instead). */
static la_int64_t skip_source(struct archive *a, void *opaque, la_int64_t request)
{
	(void)a;
	struct reader *r = opaque;
	if (r->at_offset) {
		r->offset += (uint64_t)request;
		return request;
	}
	if (!r->u->seekable)
		return 0;
	return lseek(r->fd, request, SEEK_CUR) < 0 ? 0 : request;
}

/* The rest of the bundle after the archive's end (tar pads with zero blocks): hashed too. */
static void read_rest(struct unpack *u)
{
	const void *buffer;
	while (u->hashing && read_source(NULL, &u->main, &buffer) > 0)
		;
}

/* --sha256: the bundle as read must be the one pinned. */
static int check_pinned(struct unpack *u, const char *bundle, struct kb_error *err)
{
	if (!u->hashing)
		return 0;
	uint8_t digest[32];
	char hex[65];
	read_rest(u);
	kb_sha256_final(&u->source_sha, digest);
	kb_digest_hex(digest, hex);
	if (strcmp(hex, u->pinned_sha256) != 0)
		return kb_fail(err, 0, NULL, "%s has SHA-256 %s, but %s was pinned (--sha256): nothing unpacked", bundle, hex,
			       u->pinned_sha256);
	return 0;
}

/* The bundle read (or fetched) into the staging directory and checked there: all but the rename. */
static int run(struct unpack *u, const char *bundle, bool replace, struct kb_error *err)
{
	u->main = (struct reader){ .u = u, .fd = -1 };
	u->main.pool = kb_hash_pool_new(SOURCE_BUFS, SOURCE_BUF, &interrupted, err);
	if (!u->main.pool)
		return -1;
	int rc = run_source(u, bundle, replace, err);
	/* Every member's hashing thread has ended by now (settle_all). */
	kb_hash_pool_free(u->main.pool);
	u->main.pool = NULL;
	u->main.buf = NULL;
	return rc;
}

static int run_source(struct unpack *u, const char *bundle, bool replace, struct kb_error *err)
{
	struct kb_fetch_stream stream = { .fd = -1 };
	bool remote = !strncmp(bundle, "http://", 7);
	struct stat st = { 0 };
	if (remote ? kb_fetch_stream_start(bundle, &stream, err) < 0 : 0)
		return -1;
	autoclose_fd fd = remote ? stream.fd : open(bundle, O_RDONLY | O_CLOEXEC);
	stream.fd = -1; /* closed here, after the archive */
	if (fd < 0 || (!remote && fstat(fd, &st) < 0)) {
		kb_fail(err, errno, bundle, "opening");
		kb_fetch_stream_end(&stream, 1, NULL);
		return -1;
	}
	/* A pipe from wget as large as a read: fewer, fuller buffers to hash from (best effort). */
	if (remote)
		fcntl(fd, F_SETPIPE_SZ, (int)SOURCE_BUF);
	u->main.fd = fd;
	u->bundle_size = (uint64_t)st.st_size;
	/* Every byte is read in order when --sha256 pins the bundle: no worker reads a member by offset then. */
	u->seekable = !remote && S_ISREG(st.st_mode) && !u->pinned_sha256[0] && u->hash_threads > 1;
	int rc = run_archive(u, bundle, replace, err);
	if (remote && interrupted) {
		/* Stopped by a signal: wget is given a second, then killed; the signal is the reason. */
		kb_fetch_stream_end(&stream, 1, NULL);
		return fail_interrupted(err);
	}
	if (remote && u->stalled) {
		/* wget is stalled as well: no point in waiting for it. */
		kb_fetch_stream_end(&stream, 1, NULL);
		return kb_fail(err, 0, NULL, "fetching %s: no data for %d s, the transfer stalled: nothing unpacked",
			       bundle, STALL_SECONDS);
	}
	if (remote) {
		/*
		 * The transfer must have ended well too: all of it, from the server
		 * asked. When it did not, that is why the archive failed as well,
		 * unless the archive stopped reading first (a refused member).
		 */
		struct kb_error fetch_err = { 0 };
		if (kb_fetch_stream_end(&stream, 30, &fetch_err) < 0 && (rc == 0 || fetch_err.errnum != EPIPE)) {
			*err = fetch_err;
			rc = -1;
		}
	}
	return rc;
}

static int run_archive(struct unpack *u, const char *bundle, bool replace, struct kb_error *err)
{
	if (!replace && access(u->final_dir.s, F_OK) == 0)
		return kb_fail(err, EEXIST, u->final_dir.s, "refusing to overwrite (--replace swaps it):");
	/* With replace, the plan has checked who uses the old tree: commit checks again, just before the swap. */
	struct statvfs vfs;
	if (statvfs(u->dest_dir.s, &vfs) < 0)
		return kb_fail(err, errno, u->dest_dir.s, "checking free space in");
	uint64_t free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize, declared = 0, apparent = 0;
	uint64_t max_size = u->max_size ? u->max_size : (uint64_t)vfs.f_blocks * vfs.f_frsize;
	if (kb_archive_load(&u->ar, err) < 0 || kb_sha256_load(&u->sha, err) < 0)
		return -1;
	if (u->pinned_sha256[0]) {
		if (kb_sha256_init(&u->source_sha, &u->sha, err) < 0)
			return -1;
		u->hashing = true;
	}
	if (snprintf(u->staging, sizeof(u->staging), "%s/.%s.kvmbox-XXXXXX", u->dest_dir.s, u->name) >=
	    (int)sizeof(u->staging)) {
		u->staging[0] = '\0';
		return kb_fail(err, ENAMETOOLONG, u->dest_dir.s, "creating a staging directory in");
	}
	if (!mkdtemp(u->staging)) {
		u->staging[0] = '\0';
		return kb_fail(err, errno, u->dest_dir.s, "creating a staging directory in");
	}
	/* Held until this process ends: the next unpack tells a live staging directory from a dead one's. */
	u->staging_lock = open(u->staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (u->staging_lock < 0 || flock(u->staging_lock, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		rmdir(u->staging);
		u->staging[0] = '\0';
		return kb_fail(err, e, u->dest_dir.s, "locking the staging directory in");
	}

	struct archive *a = u->ar.read_new();
	u->ar.read_support_filter_all(a);
	u->ar.read_support_format_tar(a);
	int rc = 0;
	u->main.a = a;
	if (u->ar.read_open2(a, &u->main, NULL, read_source, skip_source, NULL) != ARCHIVE_OK)
		rc = interrupted ? fail_interrupted(err)
				 : kb_fail(err, 0, bundle, "not a readable bundle (%s):",
					   kb_archive_error(&u->ar, a, "unknown error"));
	kb_progress_start(u->ctx, &u->progress, "unpack");
	struct archive_entry *e;
	while (rc == 0) {
		if (interrupted) {
			rc = fail_interrupted(err);
			break;
		}
		int r = u->ar.read_next_header(a, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
			rc = kb_fail(err, 0, bundle, "truncated or corrupt (%s):", kb_archive_error(&u->ar, a, "unreadable header"));
			break;
		}
		const char *name = entry_name(u, e);
		const char *why = refusal(u, e, name);
		if (!why && u->count == KB_BUNDLE_MAX_MEMBERS)
			why = "is one member more than the 64 a bundle may have";
		if (why) {
			rc = kb_fail(err, 0, NULL, "member %s %s", name, why);
			break;
		}
		struct member *m = &u->members[u->count++];
		*m = (struct member){ .size = (uint64_t)u->ar.entry_size(e), .fd = -1 };
		snprintf(m->name, sizeof(m->name), "%s", name);
		/* The apparent size, holes included: a sparse member declaring a terabyte is refused from its header. */
		if (u->ar.entry_size(e) < 0 || m->size > max_size) {
			rc = kb_fail(err, 0, NULL, "member %s declares %lld bytes, more than the %llu %s (--max-size)", name,
				     (long long)u->ar.entry_size(e), (unsigned long long)max_size,
				     u->max_size ? "allowed" : "of the destination filesystem");
			break;
		}
		/* And all of them together: many members just under the bound would otherwise be hashed for hours. */
		if (m->size > max_size - apparent) {
			rc = kb_fail(err, 0, NULL, "member %s: the members declare %llu bytes in all, more than the %llu %s (--max-size)",
				     name, (unsigned long long)(apparent + m->size), (unsigned long long)max_size,
				     u->max_size ? "allowed" : "of the destination filesystem");
			break;
		}
		apparent += m->size;
		declared += data_size(u, e, m->size);
		if (declared > free_bytes) {
			rc = kb_fail(err, ENOSPC, u->dest_dir.s, "member %s: the bundle needs %llu bytes, more than the %llu free in", name,
				     (unsigned long long)declared, (unsigned long long)free_bytes);
			break;
		}
		/* A disk of a local, uncompressed bundle: read by a worker while this reader seeks past it. */
		if (u->seekable && m->size > BLOCK && u->ar.filter_code(a, 0) == ARCHIVE_FILTER_NONE)
			rc = dispatch(u, m, (uint64_t)u->ar.read_header_position(a), err);
		else
			rc = extract(u, m, err);
		if (u->abandon) /* a worker failed: settle_all says why */
			break;
	}
	rc = settle_all(u, rc < 0, err);
	u->ar.read_free(a);
	kb_progress_end(u->ctx, &u->progress);
	if (rc == 0 && !find_member(u, KB_BUNDLE_SUMS))
		rc = kb_fail(err, 0, bundle, "no SHA256SUMS member in");
	if (rc == 0 && !find_member(u, KB_BUNDLE_DOMAIN_XML))
		rc = kb_fail(err, 0, bundle, "no domain.xml member in");
	if (rc == 0)
		rc = check_pinned(u, bundle, err);
	if (u->hashing)
		kb_sha256_free(&u->source_sha);
	u->hashing = false;
	if (rc == 0)
		rc = verify_sums(u, err);
	if (rc == 0)
		rc = examine_disks(u, err);
	if (rc == 0)
		rc = rewrite_domain(u, err);
	if (rc == 0 && interrupted)
		rc = fail_interrupted(err);
	if (rc < 0 && u->staging[0])
		kb_remove_tree(u->staging, NULL);
	if (rc < 0)
		u->staging[0] = '\0';
	return rc;
}


/* ---- the spec ---------------------------------------------------------------------------------- */

void kb_unpack_spec_init(struct kb_unpack_spec *spec)
{
	memset(spec, 0, sizeof(*spec)); /* padding too: a spec is compared and copied byte for byte */
	snprintf(spec->dest, sizeof(spec->dest), "%s", KB_UNPACK_DEFAULT_DEST);
}

int kb_unpack_spec_set(struct kb_unpack_spec *spec, const char *key, const char *value, struct kb_error *err)
{
	if (!strcmp(key, "source")) {
		char host[256];
		bool url = !strncmp(value, "http://", 7);
		if (url && (!kb_url_host(value, host, sizeof(host)) || strlen(value) >= sizeof(spec->source)))
			return kb_fail(err, EINVAL, NULL, "source: '%.200s' is not an http:// URL kvmbox fetches", value);
		if (!value[0] || strlen(value) >= sizeof(spec->source))
			return kb_fail(err, EINVAL, NULL, "source: '%.200s' is not a path", value);
		snprintf(spec->source, sizeof(spec->source), "%s", value);
		return 0;
	}
	if (!strcmp(key, "dest")) {
		if (value[0] != '/' || strlen(value) >= sizeof(spec->dest))
			return kb_fail(err, EINVAL, NULL, "dest: '%.200s' is not an absolute path", value);
		snprintf(spec->dest, sizeof(spec->dest), "%s", value);
		return 0;
	}
	if (!strcmp(key, "name")) {
		/* A member name is a plain file name; a hidden one would pass for a staging directory. */
		if (!kb_member_name_valid(value) || value[0] == '.')
			return kb_fail(err, EINVAL, NULL, "name: '%.200s' cannot name the directory (letters, digits, '._-+')", value);
		snprintf(spec->name, sizeof(spec->name), "%s", value);
		return 0;
	}
	if (!strcmp(key, "sha256")) {
		if (strlen(value) != 64 || strspn(value, "0123456789abcdefABCDEF") != 64)
			return kb_fail(err, EINVAL, NULL, "sha256: '%.200s' is not 64 hex digits", value);
		for (int i = 0; i < 64; i++)
			spec->sha256[i] = (char)tolower((unsigned char)value[i]);
		spec->sha256[64] = '\0';
		return 0;
	}
	if (!strcmp(key, "max-size")) {
		unsigned long long bytes = 0;
		if (kb_size_parse(value, &bytes) < 0 || bytes == 0)
			return kb_fail(err, EINVAL, NULL, "max-size: '%.64s' is not a size (64G, 2T)", value);
		spec->max_size = bytes;
		return 0;
	}
	if (!strcmp(key, "replace"))
		return kb_set_yes_no(key, value, &spec->replace, err);
	if (!strcmp(key, "force"))
		return kb_set_yes_no(key, value, &spec->force, err);
	if (!strcmp(key, "allow-external-cdrom"))
		return kb_set_yes_no(key, value, &spec->allow_external_cdrom, err);
	return kb_fail(err, EINVAL, NULL,
		       "unknown key '%.64s' (a bundle takes source, dest, name, sha256, max-size, replace, force, "
		       "allow-external-cdrom)", key);
}

/* ---- plan and apply ---------------------------------------------------------------------------- */

enum unpack_action { UNPACK_STALE = 1, UNPACK_DIR };

/* Where a spec unpacks: NAME, DIR/NAME as the installed system sees it, and both resolved on the host. */
struct where {
	char name[KB_BUNDLE_NAME_MAX];
	char dir[PATH_MAX + KB_BUNDLE_NAME_MAX];
	struct kb_path dest_dir, final_dir;
};

/*
 * The destination is resolved confined once, here, to the host path it really is
 * (no link left in it): a link at any component of DIR stays inside the root.
 * Everything below DIR is then made, renamed and removed by that path and NAME.
 */
static int locate(const struct kb_ctx *ctx, const struct kb_unpack_spec *spec, struct where *w, struct kb_error *err)
{
	if (!spec->source[0])
		return kb_fail(err, EINVAL, NULL, "no bundle to unpack (source)");
	if (spec->name[0])
		snprintf(w->name, sizeof(w->name), "%s", spec->name);
	else
		kb_bundle_default_name(spec->source, w->name, sizeof(w->name));
	if (!kb_member_name_valid(w->name) || w->name[0] == '.')
		return kb_fail(err, EINVAL, NULL, "'%s' cannot name the directory (--name sets it)", w->name);
	snprintf(w->dir, sizeof(w->dir), "%s/%s", spec->dest, w->name);
	if (kb_sysroot_resolved_path(ctx, spec->dest, true, &w->dest_dir, err) < 0 ||
	    kb_sysroot_resolved_path(ctx, w->dir, false, &w->final_dir, err) < 0)
		return -1;
	return 0;
}

/* What a directory holds, in the words of the plan: "3 files, 69632 bytes". */
static int describe_dir(const char *path, char *buf, size_t size, struct kb_error *err)
{
	autoclose_dir d = opendir(path);
	if (!d)
		return kb_fail(err, errno, path, "reading");
	unsigned long files = 0;
	unsigned long long bytes = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, SOURCE_RECORD))
			continue;
		files++;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
			bytes += (unsigned long long)st.st_size;
	}
	snprintf(buf, size, "%lu file%s, %llu bytes", files, files == 1 ? "" : "s", bytes);
	return 0;
}

static void describe_members(unsigned count, unsigned long long bytes, char *buf, size_t size)
{
	snprintf(buf, size, "%u member%s, %llu bytes", count, count == 1 ? "" : "s", bytes);
}

#define UNLISTED "the bundle's members"

/*
 * The members of a local bundle from its headers, as describe_members puts
 * them (their declared sizes). Only an uncompressed tar is listed: its data is
 * skipped by seeking, where a compressed one would be read whole twice. Else,
 * or when the headers are not all readable, UNLISTED: what is wrong with a
 * bundle is apply's to say.
 */
static void list_members(int fd, char *after, size_t size)
{
	snprintf(after, size, UNLISTED);
	struct kb_archive ar;
	struct kb_error ignored = { 0 };
	if (kb_archive_load(&ar, &ignored) < 0)
		return;
	struct archive *a = ar.read_new();
	if (!a)
		return;
	ar.read_support_filter_all(a);
	ar.read_support_format_tar(a);
	unsigned count = 0;
	unsigned long long bytes = 0;
	bool listed = ar.read_open_fd(a, fd, 10240) == ARCHIVE_OK;
	struct archive_entry *e;
	int r;
	while (listed && (r = ar.read_next_header(a, &e)) != ARCHIVE_EOF) {
		if ((r != ARCHIVE_OK && r != ARCHIVE_WARN) || ar.filter_code(a, 0) != ARCHIVE_FILTER_NONE ||
		    count == KB_BUNDLE_MAX_MEMBERS || ar.entry_size(e) < 0)
			listed = false;
		else
			count++, bytes += (unsigned long long)ar.entry_size(e);
	}
	ar.read_free(a);
	if (listed)
		describe_members(count, bytes, after, size);
}

/* A staging directory left by an unpack that was killed: removed. */
static int plan_stale(const struct kb_unpack_spec *spec, const struct where *w, struct kb_plan *plan,
		      struct kb_error *err)
{
	autoclose_dir d = opendir(w->dest_dir.s);
	if (!d)
		return kb_fail(err, errno, w->dest_dir.s, "reading");
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		int fd;
		bool stale = is_stale_staging(dirfd(d), de->d_name, &fd);
		if (fd >= 0)
			close(fd);
		if (!stale)
			continue;
		char shown[PATH_MAX + NAME_MAX + 2], path[PATH_MAX + NAME_MAX + 2];
		snprintf(shown, sizeof(shown), "%s/%s", spec->dest, de->d_name);
		snprintf(path, sizeof(path), "%s/%s", w->dest_dir.s, de->d_name);
		struct kb_change *c = kb_plan_add(plan, "stale-staging", KB_CHANGE_VALUE, shown, NULL, err);
		if (!c || !(c->path = strdup(path)))
			return c ? kb_fail(err, ENOMEM, NULL, "planning") : -1;
		c->action = UNPACK_STALE;
		kb_change_note(c, "left by an unpack that was killed");
	}
	return 0;
}

int kb_unpack_describe_source(const struct kb_unpack_spec *spec, char *buf, size_t size, struct kb_error *err)
{
	snprintf(buf, size, UNLISTED); /* never fetched to plan */
	if (!strncmp(spec->source, "http://", 7))
		return 0;
	autoclose_fd fd = open(spec->source, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kb_fail(err, errno, spec->source, "opening");
	list_members(fd, buf, size);
	return 0;
}

/*
 * The tree @dir holds, as its SOURCE_RECORD says, against what @spec names:
 * the same SHA-256 when both pin one, else the same source. Another is
 * refused (replacing it would replace a guest's disks); into @known what the
 * plan's note says of it.
 */
static int same_source(const struct kb_unpack_spec *spec, const char *dir, char *known, size_t size, struct kb_error *err)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/%s", dir, SOURCE_RECORD);
	/* A mounted root's tree may hold anything there: never wait on a FIFO, read only a regular file. */
	autoclose_fd fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	char text[SOURCE_RECORD_MAX] = "";
	ssize_t n = fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ? -1 : read(fd, text, sizeof(text) - 1);
	if (n <= 0) {
		snprintf(known, size, " (no record of its source: unpacked by hand, or by an older kvmbox)");
		return 0;
	}
	text[n] = '\0';
	char *source = strstr(text, "source "), *sha = strstr(text, "\nsha256 ");
	if (source != text || !sha) {
		snprintf(known, size, " (its source record is unreadable)");
		return 0;
	}
	*sha = '\0';
	source += strlen("source ");
	sha += strlen("\nsha256 ");
	sha[strcspn(sha, "\n")] = '\0';
	bool pinned_both = spec->sha256[0] && strcmp(sha, "-");
	char named[PATH_MAX + 256];
	source_identity(spec->source, named, sizeof(named));
	bool same = pinned_both ? !strcasecmp(sha, spec->sha256) : !strcmp(source, named);
	if (!same)
		return kb_fail(err, 0, dir, "holds the bundle unpacked from %.200s%s%.64s, not %.200s%s%.64s: refusing to "
					    "replace a guest's disks (kvmbox unpack --replace does, by hand):",
			       source, strcmp(sha, "-") ? " sha256 " : "", strcmp(sha, "-") ? sha : "", named,
			       spec->sha256[0] ? " sha256 " : "", spec->sha256);
	if (spec->sha256[0] && !strcmp(sha, "-"))
		snprintf(known, size, " from the same source, before its SHA-256 was pinned: not checked against it");
	else
		snprintf(known, size, " from the same %s", pinned_both ? "SHA-256" : "source");
	return 0;
}

int kb_unpack_plan(const struct kb_ctx *ctx, const struct kb_unpack_spec *spec, struct kb_plan *plan,
		   struct kb_error *err)
{
	struct where w;
	if (locate(ctx, spec, &w, err) < 0 || plan_stale(spec, &w, plan, err) < 0)
		return -1;
	char before[96], after[96];
	bool exists = access(w.final_dir.s, F_OK) == 0;
	if (exists && !spec->replace && !spec->keep_existing)
		return kb_fail(err, EEXIST, w.final_dir.s, "refusing to overwrite (--replace swaps it):");
	if (exists && describe_dir(w.final_dir.s, before, sizeof(before), err) < 0)
		return -1;
	struct kb_change *c;
	if (exists && !spec->replace) {
		char known[160];
		if (same_source(spec, w.final_dir.s, known, sizeof(known), err) < 0)
			return -1;
		if (!(c = kb_plan_add(plan, w.dir, KB_CHANGE_VALUE, before, before, err)))
			return -1;
		kb_change_note(c, "already unpacked%s (--replace unpacks again)", known);
		c->action = UNPACK_DIR;
		return 0;
	}
	/* The old tree goes whole or not at all, and never from under a domain: refused before anything is read. */
	if (exists) {
		struct kb_xml xml = { 0 };
		if (check_replace(ctx, &xml, w.final_dir.s, spec->force, err) < 0 || kb_tree_removable(w.final_dir.s, err) < 0)
			return -1;
	}
	bool remote = !strncmp(spec->source, "http://", 7);
	if (kb_unpack_describe_source(spec, after, sizeof(after), err) < 0)
		return -1;
	if (!(c = kb_plan_add(plan, w.dir, KB_CHANGE_VALUE, exists ? before : NULL, after, err)) ||
	    !(c->path = strdup(w.dir)))
		return c ? kb_fail(err, ENOMEM, NULL, "planning") : -1;
	c->status = KB_WOULD_CHANGE; /* replaced even when it looks the same */
	c->action = UNPACK_DIR;
	if (spec->sha256[0])
		kb_change_note(c, "from %s, its SHA-256 %.16s... checked as it %s, each member against SHA256SUMS",
			       spec->source, spec->sha256, remote ? "arrives" : "is read");
	else
		kb_change_note(c, "from %s, each member checked against SHA256SUMS", spec->source);
	return 0;
}

/* A stale staging directory, removed while its lock is ours; one in use again is kept. */
static int remove_stale(struct kb_change *c, struct kb_error *err)
{
	autoclose_fd fd = open(c->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
		c->status = KB_UNCHANGED;
		kb_change_note(c, "kept: in use again");
		return 0;
	}
	if (kb_remove_tree(c->path, err) < 0)
		return -1;
	c->status = KB_CHANGED;
	return 0;
}

/* What was unpacked, for the caller's listing. */
static void fill_report(const struct unpack *u, const struct where *w, struct kb_unpack_report *report)
{
	snprintf(report->name, sizeof(report->name), "%s", w->name);
	snprintf(report->dir, sizeof(report->dir), "%s", w->dir);
	snprintf(report->emulator, sizeof(report->emulator), "%s", u->emulator);
	report->count = u->count;
	for (int i = 0; i < u->count; i++) {
		const struct member *m = &u->members[i];
		struct kb_unpack_member *r = &report->member[i];
		snprintf(r->name, sizeof(r->name), "%s", m->name);
		r->size = m->size;
		r->allocated = m->allocated;
		memcpy(r->digest, m->digest, sizeof(r->digest));
		r->qcow2 = m->qcow2;
		r->qcow2_header = m->qcow2_header;
		snprintf(r->probe, sizeof(r->probe), "%s", m->probe);
	}
}

/* Read back: DIR/NAME holds what was unpacked; the plan's listing is corrected when the bundle changed since. */
static int read_back(const struct unpack *u, struct kb_change *c, struct kb_error *err)
{
	char now[96], listed[96];
	unsigned long long bytes = 0;
	if (describe_dir(u->final_dir.s, now, sizeof(now), err) < 0)
		return -1;
	for (int i = 0; i < u->count; i++)
		bytes += u->members[i].size;
	char expected[96];
	snprintf(expected, sizeof(expected), "%d file%s, ", u->count, u->count == 1 ? "" : "s");
	if (strncmp(now, expected, strlen(expected)))
		return kb_fail(err, EIO, u->final_dir.s, "reading back: %s, not the %d members unpacked, in", now, u->count);
	describe_members((unsigned)u->count, bytes, listed, sizeof(listed));
	if (strcmp(c->after, UNLISTED) && strcmp(c->after, listed)) {
		if (kb_change_set_after(c, listed, err) < 0)
			return -1;
		kb_change_note(c, "%s; the bundle changed since it was planned", c->note);
	}
	if (u->emulator[0])
		kb_change_note(c, "%s; its <emulator> %s dropped: libvirt uses the host's own", c->note, u->emulator);
	return 0;
}

struct kb_unpack_staged {
	struct unpack *u; /* the verified tree in its locked staging directory (staging "" once committed or gone) */
	struct where w;
	bool replace;
};

void kb_unpack_staged_free(struct kb_unpack_staged *s)
{
	if (!s)
		return;
	if (s->u->staging[0])
		kb_remove_tree(s->u->staging, NULL);
	if (s->u->staging_lock >= 0)
		close(s->u->staging_lock);
	free(s->u);
	free(s);
}

/* The stop signals are caught around @stage and @commit: the staging directory goes before the process does. */
static void stop_signals_caught(const struct kb_ctx *ctx, bool catch, struct sigaction saved[3])
{
	if (catch) {
		catch_stop_signals(saved);
		return;
	}
	restore_stop_signals(saved);
	/*
	 * The staging directory is gone: main re-raises the signal once the output
	 * is out (exit 128+N). The one field of the context apply sets.
	 */
	if (interrupted)
		((struct kb_ctx *)ctx)->stop_signal = interrupted;
}

/* DIR/NAME unpacked into a staging directory and verified there: everything but the rename. */
static int stage_dir(const struct kb_ctx *ctx, const struct kb_unpack_spec *spec, const struct where *w,
		     struct kb_unpack_staged **out, struct kb_error *err)
{
	struct kb_unpack_staged *s = calloc(1, sizeof(*s));
	struct unpack *u = s ? calloc(1, sizeof(*u)) : NULL;
	if (!u) {
		free(s);
		return kb_fail(err, ENOMEM, NULL, "unpacking");
	}
	s->u = u;
	s->w = *w;
	s->replace = spec->replace;
	u->ctx = ctx;
	snprintf(u->source, sizeof(u->source), "%s", spec->source);
	snprintf(u->dest, sizeof(u->dest), "%s", spec->dest);
	snprintf(u->name, sizeof(u->name), "%s", w->name);
	u->dest_dir = w->dest_dir;
	u->final_dir = w->final_dir;
	u->max_size = spec->max_size;
	u->force = spec->force;
	u->allow_external_cdrom = spec->allow_external_cdrom;
	snprintf(u->pinned_sha256, sizeof(u->pinned_sha256), "%s", spec->sha256);
	/* One per core, at most HASH_THREADS_MAX: each reader has its own 8 MiB of buffers and
	 * its own offset in the bundle, and past a few the disk, not the CPU, sets the pace. */
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	u->hash_threads = cores < 1 ? 1 : cores > HASH_THREADS_MAX ? HASH_THREADS_MAX : (int)cores;
	u->staging_lock = -1;
	if (run(u, spec->source, spec->replace, err) < 0) {
		kb_unpack_staged_free(s);
		return -1;
	}
	*out = s;
	return 0;
}

/* The staged tree renamed into DIR/NAME (swapped with --replace), then read back. */
static int commit_staged(struct kb_unpack_staged *s, struct kb_change *c, struct kb_unpack_report *report,
			 struct kb_error *err)
{
	struct unpack *u = s->u;
	/* Staged ahead of its step (provision): DIR/NAME may have appeared since. */
	if (!s->replace && access(u->final_dir.s, F_OK) == 0)
		return kb_fail(err, EEXIST, u->final_dir.s, "refusing to overwrite (--replace swaps it):");
	if (commit(u, s->replace, err) < 0)
		return -1;
	u->staging[0] = '\0';
	if (read_back(u, c, err) < 0)
		return -1;
	if (report)
		fill_report(u, &s->w, report);
	return 0;
}

/* The change a plan unpacks DIR/NAME with, while it is still to be made; else NULL. */
static struct kb_change *planned_unpack(struct kb_plan *plan)
{
	for (size_t i = 0; i < plan->count; i++)
		if (plan->change[i].action == UNPACK_DIR && plan->change[i].status == KB_WOULD_CHANGE)
			return &plan->change[i];
	return NULL;
}

/* A change that failed: its status, and why in its note. */
static int change_failed(struct kb_change *c, struct kb_error *err)
{
	char message[sizeof(err->what) + PATH_MAX + 64];
	c->status = KB_FAILED;
	kb_change_note(c, "%s", kb_error_message(err, message, sizeof(message)));
	return -1;
}

int kb_unpack_stage(const struct kb_ctx *ctx, const struct kb_unpack_spec *spec, struct kb_plan *plan,
		    struct kb_unpack_staged **staged, struct kb_error *err)
{
	struct where w;
	*staged = NULL;
	if (locate(ctx, spec, &w, err) < 0)
		return -1;
	struct kb_change *c = planned_unpack(plan);
	if (!c)
		return 0;
	struct sigaction saved[3];
	stop_signals_caught(ctx, true, saved);
	int rc = stage_dir(ctx, spec, &w, staged, err);
	stop_signals_caught(ctx, false, saved);
	return rc < 0 ? change_failed(c, err) : 0;
}

int kb_unpack_apply_staged(const struct kb_ctx *ctx, const struct kb_unpack_spec *spec, struct kb_plan *plan,
			   struct kb_unpack_staged *staged, struct kb_unpack_report *report, struct kb_error *err)
{
	struct where w;
	if (report)
		report->count = 0;
	if (locate(ctx, spec, &w, err) < 0)
		return -1;
	for (size_t i = 0; i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->status != KB_WOULD_CHANGE)
			continue;
		int rc = 0;
		switch (c->action) {
		case UNPACK_STALE: rc = remove_stale(c, err); break;
		case UNPACK_DIR: {
			/* Not staged ahead (kvmbox unpack, domain up): staged now, under the same signal handlers. */
			struct kb_unpack_staged *own = NULL;
			struct sigaction saved[3];
			stop_signals_caught(ctx, true, saved);
			rc = staged ? 0 : stage_dir(ctx, spec, &w, &own, err);
			if (rc == 0)
				rc = commit_staged(staged ? staged : own, c, report, err);
			kb_unpack_staged_free(own);
			stop_signals_caught(ctx, false, saved);
			if (rc == 0)
				c->status = KB_CHANGED;
			break;
		}
		default: continue;
		}
		if (rc < 0)
			return change_failed(c, err);
	}
	return 0;
}

int kb_unpack_apply_report(const struct kb_ctx *ctx, const struct kb_unpack_spec *spec, struct kb_plan *plan,
			   struct kb_unpack_report *report, struct kb_error *err)
{
	return kb_unpack_apply_staged(ctx, spec, plan, NULL, report, err);
}

int kb_unpack_apply(const struct kb_ctx *ctx, const struct kb_unpack_spec *spec, struct kb_plan *plan,
		    struct kb_error *err)
{
	return kb_unpack_apply_staged(ctx, spec, plan, NULL, NULL, err);
}

void kb_unpack_report_print(const struct kb_ctx *ctx, const struct kb_unpack_report *r)
{
	char xml[sizeof(r->dir) + 16];
	snprintf(xml, sizeof(xml), "%s/%s", r->dir, KB_BUNDLE_DOMAIN_XML);
	struct kb_printer pr;
	kb_print_begin_members(&pr, ctx);
	kb_print_string(&pr, KB_PRINT_JSON, "name", "", r->name);
	kb_print_string(&pr, KB_PRINT_JSON, "dir", "", r->dir);
	kb_print_string(&pr, KB_PRINT_JSON, "domain_xml", "", xml);
	if (r->emulator[0])
		kb_print_string(&pr, KB_PRINT_JSON, "emulator_dropped", "", r->emulator);
	kb_print_open_array(&pr, "members");
	for (int i = 0; i < r->count; i++) {
		const struct kb_unpack_member *m = &r->member[i];
		char hex[65];
		kb_digest_hex(m->digest, hex);
		kb_print_open_object(&pr, NULL);
		kb_print_string(&pr, KB_PRINT_ANY, "name", "  %-20s", m->name);
		kb_print_uint(&pr, KB_PRINT_ANY, "size", " %14llu bytes", m->size);
		kb_print_uint(&pr, KB_PRINT_ANY, "allocated", ", %14llu allocated", m->allocated);
		kb_print_uint(&pr, KB_PRINT_JSON, "holes", "", m->size > m->allocated ? m->size - m->allocated : 0);
		kb_print_string(&pr, KB_PRINT_ANY, "sha256", ", sha256 %.16s", hex);
		if (m->qcow2) {
			kb_print_string(&pr, KB_PRINT_ANY, "format", ", %s", "qcow2");
			kb_print_uint(&pr, KB_PRINT_TEXT, "version", " v%llu", m->qcow2_header.version);
			kb_print_uint(&pr, KB_PRINT_ANY, "virtual_size", ", virtual %llu", m->qcow2_header.virtual_size);
			kb_print_string(&pr, KB_PRINT_JSON, "backing", "", m->qcow2_header.backing);
			if (m->qcow2_header.backing[0])
				kb_print_string(&pr, KB_PRINT_TEXT, "backing", ", backing %s", m->qcow2_header.backing);
		} else if (m->probe[0]) {
			kb_print_string(&pr, KB_PRINT_JSON, "format", "", "raw");
			kb_print_string(&pr, KB_PRINT_ANY, "probe", ", %s", m->probe);
		}
		kb_print_text(&pr, "\n");
		kb_print_close_object(&pr);
	}
	kb_print_close_array(&pr);
	kb_print_end(&pr);
}
