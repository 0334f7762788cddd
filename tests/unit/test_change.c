/*
 * Typed changes: status from before/after, rows, and line diffs judged by
 * their consumer: GNU patch applies kb_diff_print's output to the old text
 * and must give the new one, for random edits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "kvmbox/core/change.h"

extern char **environ;

static void status_from_before_and_after(void **state)
{
	(void)state;
	struct kb_plan plan = { 0 };
	struct kb_error err = { 0 };
	struct kb_change *same = kb_plan_add(&plan, "mode", KB_CHANGE_VALUE, "0660", "0660", &err);
	assert_non_null(same);
	assert_int_equal(same->status, KB_UNCHANGED);
	assert_false(kb_plan_changes(&plan));
	struct kb_change *made = kb_plan_add(&plan, "node", KB_CHANGE_VALUE, NULL, "char 10:232", &err);
	assert_non_null(made);
	assert_int_equal(made->status, KB_WOULD_CHANGE);
	kb_change_note(made, "made %s", "now");
	assert_true(kb_plan_changes(&plan));
	assert_ptr_equal(kb_plan_find(&plan, "node"), &plan.change[1]);
	assert_null(kb_plan_find(&plan, "owner"));

	struct kb_row row;
	kb_change_row(&plan.change[1], &row);
	assert_string_equal(row.id, "node");
	assert_string_equal(row.message, "absent -> char 10:232 (made now)");
	kb_change_row(&plan.change[0], &row);
	assert_string_equal(row.message, "0660");
	struct kb_change *file = kb_plan_add(&plan, "rule", KB_CHANGE_FILE, "a\nb\nc\n", "a\nB\nc\nd\n", &err);
	file->path = strdup("/etc/x");
	kb_change_row(file, &row);
	assert_string_equal(row.message, "/etc/x: 2 lines added, 1 removed");
	kb_plan_free(&plan);
	assert_int_equal(plan.count, 0);
}

static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/kvmbox-test-change.XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t len = strlen(text);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *text = calloc(1, 1 << 16);
	size_t n = fread(text, 1, (1 << 16) - 1, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

/* patch -s -o OUT BEFORE DIFF, run without a shell. */
static int run_patch(const char *before, const char *diff, const char *out)
{
	const char *const argv[] = { "patch", "-s", "-f", "-o", out, before, diff, NULL };
	pid_t pid;
	/* posix_spawn never writes to the strings (POSIX): its char *const[] is only historical. */
	if (posix_spawnp(&pid, "patch", NULL, NULL, (char *const *)argv, environ) != 0)
		return -1;
	int status;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Random text of @lines lines from a small alphabet, so that lines repeat (the hard case for a diff). */
static void random_text(char *buf, size_t size, int lines, unsigned *seed)
{
	size_t used = 0;
	for (int i = 0; i < lines && used + 16 < size; i++)
		used += (size_t)snprintf(buf + used, size - used, "line %c%c\n", 'a' + rand_r(seed) % 4, 'a' + rand_r(seed) % 3);
	buf[used] = '\0';
}

/* Edit @in into @out: delete, change and insert lines at random. */
static void random_edit(const char *in, char *out, size_t size, unsigned *seed)
{
	size_t used = 0;
	for (const char *p = in; *p && used + 32 < size;) {
		const char *nl = strchr(p, '\n');
		size_t n = (size_t)(nl - p) + 1;
		int dice = rand_r(seed) % 10;
		if (dice == 0)
			; /* deleted */
		else if (dice == 1)
			used += (size_t)snprintf(out + used, size - used, "changed %d\n", rand_r(seed) % 5);
		else
			used += (size_t)snprintf(out + used, size - used, "%.*s", (int)n, p);
		if (rand_r(seed) % 12 == 0)
			used += (size_t)snprintf(out + used, size - used, "inserted %d\n", rand_r(seed) % 5);
		p += n;
	}
	out[used] = '\0';
}

static void diff_is_applied_by_patch(void **state)
{
	(void)state;
	unsigned seed = 26;
	for (int round = 0; round < 60; round++) {
		char before[4096], after[4096];
		random_text(before, sizeof(before), round % 7 == 0 ? 0 : 1 + rand_r(&seed) % 40, &seed);
		random_edit(before, after, sizeof(after), &seed);
		if (round % 9 == 0)
			after[0] = '\0'; /* everything removed */
		char *old_path = write_temp(before);
		char *diff_text = NULL;
		size_t diff_len = 0;
		FILE *diff = open_memstream(&diff_text, &diff_len);
		fprintf(diff, "--- a\n+++ b\n");
		size_t changed = kb_diff_print(diff, before, after, round % 4);
		fclose(diff);
		size_t added, removed;
		kb_diff_count(before, after, &added, &removed);
		assert_int_equal(changed, added + removed);
		if (strcmp(before, after) == 0) {
			assert_int_equal(changed, 0);
		} else {
			char *diff_path = write_temp(diff_text);
			char out_path[] = "/tmp/kvmbox-test-change-out.XXXXXX";
			close(mkstemp(out_path));
			if (run_patch(old_path, diff_path, out_path) != 0)
				fail_msg("patch refused the diff of round %d:\n%s", round, diff_text);
			char *patched = read_all(out_path);
			if (strcmp(patched, after) != 0)
				fail_msg("round %d: patched text differs\n-- before\n%s-- after\n%s-- diff\n%s-- patched\n%s", round,
					 before, after, diff_text, patched);
			free(patched);
			unlink(diff_path);
			unlink(out_path);
			free(diff_path);
		}
		unlink(old_path);
		free(old_path);
		free(diff_text);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(status_from_before_and_after),
		cmocka_unit_test(diff_is_applied_by_patch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
