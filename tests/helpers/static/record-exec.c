/*
 * A recording stand-in for a program kvmbox runs (update-grub, grub-mkconfig):
 * appends its argv and the /etc/default/grub it sees to /var/log/kvmbox-record,
 * then says $RECORD_STDERR (if set) on stderr, as a failing tool says why, and
 * exits with $RECORD_EXIT (default 0). Static, so it also runs inside a
 * chroot into a fixture root that has no libraries.
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	FILE *log = fopen("/var/log/kvmbox-record", "a");
	if (!log)
		return 99;
	fputs("argv:", log);
	for (int i = 0; i < argc; i++)
		fprintf(log, " %s", argv[i]);
	fputc('\n', log);
	FILE *grub = fopen("/etc/default/grub", "r");
	if (grub) {
		char line[4096];
		while (fgets(line, sizeof(line), grub))
			fprintf(log, "grub: %s", line);
		fclose(grub);
	}
	fclose(log);
	const char *say = getenv("RECORD_STDERR");
	if (say)
		fprintf(stderr, "%s\n", say);
	const char *code = getenv("RECORD_EXIT");
	return code ? atoi(code) : 0;
}
