#!/usr/bin/env bash
# The Ansible collection kvmbox.host (contrib/ansible) run for real by Debian's
# ansible-core against localhost: kvmbox_provision on a sandbox target (first run changed,
# second run changed=0, --check changes nothing, a failing step fails the task with
# kvmbox's message), kvmbox_check as facts, kvmbox_domain on the real libvirtd (running,
# unchanged, absent with its volume), and ansible-doc parsing each module's documentation.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

export ANSIBLE_COLLECTIONS_PATH=$PWD/contrib/ansible
# ansible-core's tree callback keeps each host's last task result as JSON: one task per playbook here.
export ANSIBLE_CALLBACKS_ENABLED=tree ANSIBLE_CALLBACK_TREE_DIR=$TESTS_TMP/tree
export ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false ANSIBLE_NOCOLOR=1
export ANSIBLE_HOME=$TESTS_TMP/ansible-home ANSIBLE_LOCAL_TEMP=$TESTS_TMP/ansible-tmp ANSIBLE_REMOTE_TEMP=$TESTS_TMP/ansible-remote

virt_up || { echo "Bail out! libvirtd did not start"; exit 1; }
POOL_DIR=$TESTS_TMP/pool
virt_pool kvmbox-test-pool "$POOL_DIR" || { echo "Bail out! no storage pool"; exit 1; }

# playbook NAME TASKS: a playbook file against localhost (this machine's python3).
playbook() {
	cat >"$TESTS_TMP/$1.yml" <<YML
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: /usr/bin/python3
  tasks:
$2
YML
}
# play NAME [ARGS]: run it, bounded; OUT is ansible's output, RESULT the task's result (JSON).
play() {
	local name=$1
	shift
	rm -f "$TESTS_TMP/tree/localhost"
	OUT=$(timeout -k 5 180 ansible-playbook -i localhost, "$TESTS_TMP/$name.yml" "$@" 2>"$TESTS_TMP/ansible.err")
	RC=$?
	ERR=$(cat "$TESTS_TMP/ansible.err")
	RESULT=$(cat "$TESTS_TMP/tree/localhost" 2>/dev/null)
}
# stat_of NAME: ok, changed, failed ... from the play recap.
stat_of() { sed -n "s/^localhost *:.* $1=\([0-9]*\).*/\1/p" <<<"$OUT"; }
task() { jq -c "$1" <<<"$RESULT" 2>&1; }

sandbox() {
	T=$TESTS_TMP/target
	mkdir -p "$T/etc/default" "$TESTS_TMP/img"
	cp tests/fixtures/grub/debian.grub "$T/etc/default/grub"
	qemu-img create -q -f qcow2 "$TESTS_TMP/img/web.qcow2" 16M
	printf "<domain type='qemu'><name>web</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/><target dev='vda' bus='virtio'/></disk></devices></domain>\n" \
		"$TESTS_TMP/img/web.qcow2" >"$TESTS_TMP/img/web.xml"
	"$KVMBOX" pack "$TESTS_TMP/img/web.xml" -o "$TESTS_TMP/web.kvmbundle" >/dev/null
}

provision_changed_then_unchanged_check_and_failure() {
	sandbox
	playbook provision "    - name: provision the sandbox
      kvmbox.host.kvmbox_provision:
        binary: $KVMBOX
        target: $T
        sections: |
          [grub]
          args = iommu=pt
          update = no

          [bundle web]
          source = $TESTS_TMP/web.kvmbundle
          dest = /var/lib/libvirt/images
      register: provisioned"
	play provision
	expect_rc 0
	expect_eq "first run" "$(stat_of changed) $(stat_of failed)" "1 0"
	expect_eq "rows" "$(task '[.rows[] | .id + " " + .status]')" '["grub reboot-required","bundle web changed"]'
	expect_eq "reboot_required" "$(task .reboot_required)" true
	expect_match "grub" "$(grep ^GRUB_CMDLINE_LINUX_DEFAULT "$T/etc/default/grub")" "iommu=pt"
	[ -f "$T/var/lib/libvirt/images/web/domain.xml" ] || fail "the bundle was not unpacked into the target"
	play provision
	expect_rc 0
	expect_eq "second run" "$(stat_of changed) $(stat_of ok) $(stat_of failed)" "0 1 0"
	# --check: kvmbox plans a changed config and changes nothing.
	local before
	before=$(sha256sum "$T/etc/default/grub")
	sed -i 's/args = iommu=pt/args = iommu=pt intel_iommu=on/' "$TESTS_TMP/provision.yml"
	play provision --check --diff
	expect_rc 0
	expect_eq "check mode: would change" "$(stat_of changed) $(task '[.rows[] | .status]')" '1 ["would-change","unchanged"]'
	expect_match "diff (shown by ansible)" "$OUT" "would-change  grub  2 items would change"
	# Ansible's own diff of kvmbox's typed changes: the value, and the file's lines.
	expect_match "value before" "$OUT" $'\n-grub: GRUB_CMDLINE_LINUX_DEFAULT: quiet iommu=pt\n'
	expect_match "value after" "$OUT" $'\n\\+grub: GRUB_CMDLINE_LINUX_DEFAULT: quiet iommu=pt intel_iommu=on\n'
	expect_match "file line before" "$OUT" $'\n-GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n'
	expect_match "file line after" "$OUT" $'\n\\+GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt intel_iommu=on"\n'
	expect_match "file header" "$OUT" "before: /etc/default/grub"
	expect_eq "check mode changed nothing" "$(sha256sum "$T/etc/default/grub")" "$before"
	# A failing step fails the task with kvmbox's own message.
	playbook broken "    - kvmbox.host.kvmbox_provision:
        binary: $KVMBOX
        target: $T
        sections: |
          [bundle gone]
          source = $TESTS_TMP/gone.kvmbundle"
	play broken
	expect_rc 2
	expect_eq "failed" "$(stat_of failed)" 1
	expect_match "kvmbox's message" "$(task .msg)" "\\[bundle gone\\] cannot be applied: .*gone\\.kvmbundle: No such file or directory"
}

check_as_facts() {
	playbook facts "    - kvmbox.host.kvmbox_check:
        binary: $KVMBOX"
	play facts
	expect_rc 0
	local expected
	expected=$("$KVMBOX" check --json | jq -c '[.rows[].id]')
	expect_eq "facts are kvmbox's rows" "$(task '[.ansible_facts.kvmbox_check[].id]')" "$expected"
	expect_eq "FAILs listed" "$(task '.ansible_facts.kvmbox_check_failed')" "$("$KVMBOX" check --json | jq -c '[.rows[] | select(.status == "FAIL") | .id]')"
	expect_eq "never changed" "$(stat_of changed)" 0
	playbook socket "    - kvmbox.host.kvmbox_check:
        binary: $KVMBOX
        checks: [libvirt.socket]
        fail_on_fail: true"
	play socket
	expect_rc 0
	expect_eq "libvirt answers" "$(task '.ansible_facts.kvmbox_check[0].status')" '"PASS"'
}

domain_running_unchanged_absent() {
	playbook domain "    - kvmbox.host.kvmbox_domain:
        binary: $KVMBOX
        name: kvmbox-test-ansible
        state: running
        words:
          memory: 64M
          disk: size=32M,pool=kvmbox-test-pool
          graphics: none"
	play domain
	expect_rc 0
	expect_eq "made and started" "$(stat_of changed) $(task '[.rows[].status] | unique')" '1 ["changed"]'
	expect_eq "each element" "$(task '[.rows[].id | sub("kvmbox-test-ansible ?"; "")]')" '["","memory","vcpus","disk vda","graphics","volume kvmbox-test-pool/kvmbox-test-ansible.qcow2","state"]'
	expect_eq state "$($VIRSH domstate kvmbox-test-ansible | head -1)" running
	play domain
	expect_eq "second run" "$(stat_of changed) $(stat_of failed)" "0 0"
	# New words on the running guest: defined for its next start, the result says so.
	playbook bigger "    - kvmbox.host.kvmbox_domain:
        binary: $KVMBOX
        name: kvmbox-test-ansible
        state: running
        words:
          memory: 96M
          disk: size=32M,pool=kvmbox-test-pool
          graphics: none"
	play bigger
	expect_eq "reboot required" "$(stat_of changed) $(task .reboot_required) $(task '[.rows[] | select(.status == "reboot-required") | .id]')" \
		'1 true ["kvmbox-test-ansible","kvmbox-test-ansible memory"]'
	expect_match "runs on 64M" "$($VIRSH dumpxml kvmbox-test-ansible)" "<currentMemory unit='KiB'>65536</currentMemory>"
	playbook gone "    - kvmbox.host.kvmbox_domain:
        binary: $KVMBOX
        name: kvmbox-test-ansible
        state: absent
        storage: true"
	play gone --check
	expect_eq "check mode: would go" "$(stat_of changed)" 1
	expect_eq "still there" "$($VIRSH domstate kvmbox-test-ansible | head -1)" running
	play gone
	expect_eq "removed" "$(stat_of changed) $(stat_of failed)" "1 0"
	expect_file_missing "$POOL_DIR/kvmbox-test-ansible.qcow2"
	play gone
	expect_eq "absent again: unchanged" "$(stat_of changed)" 0
}

documentation_parses() {
	local m
	for m in kvmbox_provision kvmbox_check kvmbox_domain; do
		OUT=$(timeout 60 ansible-doc --json "kvmbox.host.$m" 2>&1)
		expect_eq "$m: ansible-doc" "$(jq -r ".[\"kvmbox.host.$m\"].doc.module" <<<"$OUT" 2>&1)" "$m"
		expect_match "$m: options" "$(jq -r ".[\"kvmbox.host.$m\"].doc.options | keys | join(\" \")" <<<"$OUT" 2>&1)" "binary"
		expect_match "$m: examples" "$(jq -r ".[\"kvmbox.host.$m\"].examples" <<<"$OUT" 2>&1)" "kvmbox.host.$m"
	done
}

t provision_changed_then_unchanged_check_and_failure
t check_as_facts
t domain_running_unchanged_absent
t documentation_parses
done_testing
