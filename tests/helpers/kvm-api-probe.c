/*
 * kvm-api-probe DEVICE: what the kernel answers for a KVM device node, found
 * independently of kvmbox so the tests can tell what kvmbox check must report
 * for a node made with mknod in a fixture root, or for the host's own. Prints
 * "usable 12" (a VM was created), or "open <strerror>", "ioctl <strerror>",
 * "api <version>", "vm <strerror>" at the step that failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: kvm-api-probe DEVICE\n");
		return 2;
	}
	int fd = open(argv[1], O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("open %s\n", strerror(errno));
		return 0;
	}
	int version = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (version < 0) {
		printf("ioctl %s\n", strerror(errno));
	} else if (version != KVM_API_VERSION) {
		printf("api %d\n", version);
	} else {
		int vm = ioctl(fd, KVM_CREATE_VM, 0);
		if (vm < 0) {
			printf("vm %s\n", strerror(errno));
		} else {
			printf("usable %d\n", version);
			close(vm);
		}
	}
	close(fd);
	return 0;
}
