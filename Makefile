# kvmbox — build, test, install.
#   make            build ./kvmbox
#   make deps       install the Debian packages the build, tests and `make run` need (root)
#   make run        the main job on this machine: check, plan configs/example.conf, provision
#                   configs/demo.conf in a throwaway sandbox (twice: the second changes nothing)
#   make check      every test tier; ends with "N passed, N failed"   (SAN=1: ASan+UBSan build)
#   make analyze    gcc -fanalyzer and clang's analyser over every source: no findings
#   make bench      benchmarks against the tools kvmbox replaces
#   make install    PREFIX=/usr DESTDIR=...: binary, applet symlinks, man page
#   make initramfs  the rescue image build/kvmbox-initramfs.img [KVER=...]

VERSION    := 0.1.0
PREFIX     ?= /usr/local
DESTDIR    ?=
CC         ?= cc
CFLAGS     ?= -O2 -g
PKG_CONFIG ?= pkg-config

# Debian packages: the build, the tests (cmocka, valgrind, clang's libFuzzer, ansible-test sanity's linters) and the
# benchmarks' competitors (kvm-ok, virt-host-validate, hyperfine).
DEBIAN_PACKAGES := build-essential pkg-config libcmocka-dev libkmod-dev libxml2-dev kmod \
                   libnl-3-dev libnl-route-3-dev libinih-dev iproute2 iputils-ping \
                   libarchive-dev libblkid-dev libssl-dev qemu-utils fdisk e2fsprogs libarchive-tools \
                   zstd xz-utils time python3 patch \
                   valgrind clang libclang-rt-14-dev \
                   cpu-checker libvirt-clients hyperfine jq \
                   libvirt-dev libvirt-daemon-system qemu-system-x86 busybox-static cpio ifupdown mdadm lvm2 \
                   libpci-dev pci.ids virtinst ipxe-qemu ansible-core ovmf mtools dosfstools \
                   osinfo-db xorriso pylint yamllint pycodestyle python3-voluptuous

# Headers only: libkmod, libxml2, libarchive, libcrypto, libvirt and libpci are dlopen()ed by the applets that use them (applets/lib/core/dynlib.c).
DLOPEN_PKGS := libkmod libxml-2.0 libarchive libcrypto libvirt libpci
DLOPEN_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(DLOPEN_PKGS) 2>/dev/null)
# Small libraries linked statically from Debian's .a files: no dynamic-loader cost at every start
# (libnl measured at +0.17 ms per exec when linked dynamically, 0 statically).
STATIC_PKGS   := libnl-route-3.0 inih blkid
STATIC_CFLAGS  = $(shell $(PKG_CONFIG) --cflags $(STATIC_PKGS) 2>/dev/null)
STATIC_LIBS    = -Wl,-Bstatic $(shell $(PKG_CONFIG) --libs $(STATIC_PKGS) 2>/dev/null) -Wl,-Bdynamic -lpthread -lm
# Warnings are errors for the tests and CI (make check, make analyze), not for a user's or a
# distribution's build with flags of its own (make CFLAGS="-O0 -g", dpkg-buildflags).
WERROR     :=
check analyze: WERROR := -Werror
KB_CFLAGS   = -std=gnu11 -Wall -Wextra -Wshadow -Wmissing-prototypes -Wformat=2 -Wwrite-strings $(WERROR) -D_GNU_SOURCE -Iinclude $(DLOPEN_CFLAGS) $(STATIC_CFLAGS) \
              -DKVMBOX_VERSION=\"$(VERSION)\" -MMD -MP
KB_LDFLAGS := -ldl

ifeq ($(SAN),1)
BUILD      := build/san
BIN        := $(BUILD)/kvmbox
KB_CFLAGS  += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
KB_LDFLAGS += -fsanitize=address,undefined
# ASan intercepts the XDR functions libvirt's RPC calls; it finds the real ones (in libtirpc)
# only if libtirpc is loaded at start-up, not when libvirt is dlopen()ed later.
KB_LDFLAGS += -Wl,--no-as-needed -l:libtirpc.so.3 -Wl,--as-needed
else
BUILD      := build
BIN        := kvmbox
endif

LIB_SRCS    := $(sort $(wildcard applets/lib/*/*.c))
APPLET_SRCS := $(sort $(wildcard applets/*.c))
LIB_OBJS    := $(LIB_SRCS:%.c=$(BUILD)/%.o)
APPLET_OBJS := $(APPLET_SRCS:%.c=$(BUILD)/%.o)
LIBKVMBOX   := $(BUILD)/libkvmbox.a

UNIT_SRCS   := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS   := $(UNIT_SRCS:%.c=$(BUILD)/%)
HELPER_SRCS := $(sort $(wildcard tests/helpers/*.c))
HELPER_BINS := $(HELPER_SRCS:%.c=$(BUILD)/%)
STATIC_SRCS := $(sort $(wildcard tests/helpers/static/*.c))
HELPER_BINS += $(STATIC_SRCS:%.c=$(BUILD)/%)
PRELOAD_SRCS := $(sort $(wildcard tests/helpers/preload/*.c))
HELPER_BINS += $(PRELOAD_SRCS:%.c=$(BUILD)/%.so)
FUZZ_SRCS   := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS   := $(FUZZ_SRCS:%.c=build/fuzz/%)
CLI_TESTS   := $(sort $(wildcard tests/cli/*.sh tests/net/*.sh tests/virt/*.sh tests/boot/*.sh))

.PHONY: all deps run check bench fuzz install clean initramfs analyze test-programs FORCE
all: $(BIN)

# The flags the objects were built with: when they change (make, then make check with
# -Werror; another CFLAGS), everything is built again with the new ones.
$(BUILD)/flags: FORCE
	@mkdir -p $(@D)
	@echo '$(CC) $(KB_CFLAGS) $(CPPFLAGS) $(CFLAGS)' | cmp -s - $@ || echo '$(CC) $(KB_CFLAGS) $(CPPFLAGS) $(CFLAGS)' >$@
FORCE:

$(BUILD)/%.o: %.c $(BUILD)/flags
	@mkdir -p $(@D)
	$(CC) $(KB_CFLAGS) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIBKVMBOX): $(LIB_OBJS)
	$(AR) rcs $@ $^

# The applet table must stay sorted by name (--list and the man page rely on it);
# a duplicate identifier is already a compile error (include/kvmbox/applet.h).
$(BUILD)/applets-sorted.stamp: include/kvmbox/applets.def
	@mkdir -p $(@D)
	@grep -oE '^APPLET\([a-z_]+, *"[^"]+"' $< | sed 's/.*"\(.*\)"/\1/' | LC_ALL=C sort -c 2>/dev/null || \
		{ echo "$<: applets must be sorted by name" >&2; exit 1; }
	@touch $@

$(BIN): $(BUILD)/applets-sorted.stamp $(APPLET_OBJS) $(LIBKVMBOX)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(APPLET_OBJS) $(LIBKVMBOX) $(STATIC_LIBS) $(KB_LDFLAGS)

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIBKVMBOX)
	@mkdir -p $(@D)
	$(CC) $(KB_CFLAGS) $(CFLAGS) $(shell $(PKG_CONFIG) --cflags cmocka) -o $@ $< $(LIBKVMBOX) \
		$(STATIC_LIBS) $(KB_LDFLAGS) $(shell $(PKG_CONFIG) --libs cmocka)

$(BUILD)/tests/helpers/%: tests/helpers/%.c
	@mkdir -p $(@D)
	$(CC) $(KB_CFLAGS) $(CFLAGS) $(KB_LDFLAGS) -o $@ $<

# LD_PRELOAD shims (no sanitizers: they are loaded into other programs).
$(BUILD)/tests/helpers/preload/%.so: tests/helpers/preload/%.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -Wall -Wextra -Werror -O2 -fPIC -shared -o $@ $< -ldl

# Static stand-ins that run inside chroots of fixture roots (no sanitizers: they must be static).
$(BUILD)/tests/helpers/static/%: tests/helpers/static/%.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -Wall -Wextra -Werror -O2 -static -o $@ $<

# libFuzzer targets: the parsers built with clang, linked with their sources directly.
build/fuzz/tests/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_SRCS)
	@mkdir -p $(@D)
	clang -std=gnu11 -D_GNU_SOURCE -Iinclude $(DLOPEN_CFLAGS) $(STATIC_CFLAGS) -g -O1 \
		-fsanitize=fuzzer,address,undefined -o $@ $< $(LIB_SRCS) $(STATIC_LIBS)

fuzz: $(FUZZ_BINS)

# Static analysis: gcc's -fanalyzer and clang's analyser over every source file, each
# finding an error. One stamp per file and analyser, so `make -j analyze` runs them side by side.
ANALYZE_SRCS   := $(LIB_SRCS) $(APPLET_SRCS)
ANALYZE_STAMPS := $(ANALYZE_SRCS:%.c=build/analyze/%.gcc) $(ANALYZE_SRCS:%.c=build/analyze/%.clang)
ANALYZE_DEPS   := $(wildcard include/kvmbox/*.h include/kvmbox/*/*.h include/kvmbox/*.def) Makefile
ANALYZE_FLAGS   = -std=gnu11 -D_GNU_SOURCE -Iinclude $(DLOPEN_CFLAGS) $(STATIC_CFLAGS) -DKVMBOX_VERSION=\"$(VERSION)\"

analyze: $(ANALYZE_STAMPS)
	@echo "make analyze: $(words $(ANALYZE_SRCS)) files, gcc -fanalyzer and clang --analyze: no findings"

build/analyze/%.gcc: %.c $(ANALYZE_DEPS)
	@mkdir -p $(@D)
	gcc $(ANALYZE_FLAGS) -Wall -Wextra -Werror -O2 -fanalyzer -c -o /dev/null $<
	@touch $@

build/analyze/%.clang: %.c $(ANALYZE_DEPS)
	@mkdir -p $(@D)
	clang $(ANALYZE_FLAGS) --analyze -Xclang -analyzer-output=text -Xclang -analyzer-werror -o /dev/null $<
	@touch $@

# The man page is generated from the applets' own --help texts.
$(BUILD)/kvmbox.1: $(BIN)
	./$(BIN) --man > $@.tmp && mv $@.tmp $@

# The rescue image. With KVER, that installed kernel's modules (/lib/modules/KVER); without,
# Debian's current kernel package, downloaded and unpacked once (initramfs/fetch-kernel.sh),
# the kernel the boot test runs.
initramfs: $(BIN)
	@if [ -n "$(KVER)" ]; then modroot=/; kver=$(KVER); \
	else modroot=$$(initramfs/fetch-kernel.sh) && kver=$$(ls "$$modroot/lib/modules" | head -1); fi; \
	initramfs/build.sh $(abspath $(BIN)) $(BUILD)/kvmbox-initramfs.img "$$modroot" "$$kver"

deps:
	@missing=; for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$missing"; \
		[ "$$(id -u)" = 0 ] || { echo "make deps: run as root to install:$$missing" >&2; exit 1; }; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

run: deps $(BIN)
	KVMBOX=$(abspath $(BIN)) configs/run-demo.sh

# Everything the test scripts run, without running them (a script can then be run alone:
# KVMBOX=$PWD/kvmbox BUILD=$PWD/build bash tests/cli/check.sh).
test-programs: $(BIN) $(UNIT_BINS) $(HELPER_BINS)

check: deps $(BIN) $(UNIT_BINS) $(HELPER_BINS) $(if $(SAN),,$(FUZZ_BINS))
	@KVMBOX=$(abspath $(BIN)) BUILD=$(abspath $(BUILD)) SAN=$(SAN) \
		tests/run.sh $(UNIT_BINS) $(CLI_TESTS) $(if $(SAN),,$(FUZZ_BINS))

bench: deps $(BIN)
	@KVMBOX=$(abspath $(BIN)) tests/bench/check.sh
	@KVMBOX=$(abspath $(BIN)) tests/bench/bridge.sh
	@KVMBOX=$(abspath $(BIN)) tests/bench/bundle.sh
	@KVMBOX=$(abspath $(BIN)) tests/bench/domains.sh
	@KVMBOX=$(abspath $(BIN)) tests/bench/provision.sh
	@KVMBOX=$(abspath $(BIN)) BUILD=$(abspath $(BUILD)) tests/bench/scale.sh

install: $(BIN) $(BUILD)/kvmbox.1
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/kvmbox
	$(DESTDIR)$(PREFIX)/bin/kvmbox --install $(DESTDIR)$(PREFIX)/bin
	install -m 0644 $(BUILD)/kvmbox.1 $(DESTDIR)$(PREFIX)/share/man/man1/kvmbox.1

clean:
	rm -rf build kvmbox

-include $(shell find build -name '*.d' 2>/dev/null)
