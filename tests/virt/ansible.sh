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
	# Check mode says what the run then does, reboot_required included (the plan knows).
	play provision --check
	expect_rc 0
	expect_eq "check mode" "$(stat_of changed) $(task '[.reboot_required, [.rows[] | .id + " " + .status]]')" \
		'1 [true,["grub would-change","bundle web would-change"]]'
	local planned
	planned=$(task '[.changes[] | [.step, .item, .before, .after]]')
	play provision
	expect_rc 0
	expect_eq "first run" "$(stat_of changed) $(stat_of failed)" "1 0"
	expect_eq "rows" "$(task '[.rows[] | .id + " " + .status]')" '["grub reboot-required","bundle web changed"]'
	expect_eq "reboot_required" "$(task .reboot_required)" true
	expect_eq "changes: the check's" "$(task '[.changes[] | [.step, .item, .before, .after]]')" "$planned"
	expect_match "cmd" "$(task '.cmd | join(" ")')" "^\"$KVMBOX --target $T provision .*/host.conf --json\"\$"
	expect_match "grub" "$(grep ^GRUB_CMDLINE_LINUX_DEFAULT "$T/etc/default/grub")" "iommu=pt"
	[ -f "$T/var/lib/libvirt/images/web/domain.xml" ] || fail "the bundle was not unpacked into the target"
	play provision
	expect_rc 0
	expect_eq "second run" "$(stat_of changed) $(stat_of ok) $(stat_of failed)" "0 1 0"
	# --check: kvmbox plans a changed config and changes nothing.
	local before
	before=$(sha256sum "$T/etc/default/grub")
	sed -i 's/args = iommu=pt/args = iommu=pt intel_iommu=on/' "$TESTS_TMP/provision.yml"
	# -vvv: the tree callback keeps a result's diff only at verbosity 3.
	play provision --check --diff -vvv
	expect_rc 0
	expect_eq "check mode: would change" "$(stat_of changed) $(task '[.rows[] | .status]')" '1 ["would-change","unchanged"]'
	# Ansible's own diff of kvmbox's typed changes (item, before, after): each step's values
	# and each file's lines; never kvmbox's row texts.
	expect_eq "diff: before and after" "$(task '[.diff[] | select(.before_header == "grub") | .before, .after]')" \
		'["GRUB_CMDLINE_LINUX_DEFAULT: quiet iommu=pt\n","GRUB_CMDLINE_LINUX_DEFAULT: quiet iommu=pt intel_iommu=on\n"]'
	expect_eq "no row texts" "$(task '[.diff[] | tostring | select(contains("would change"))] | length')" 0
	expect_match "value before (shown by ansible)" "$OUT" $'\n-GRUB_CMDLINE_LINUX_DEFAULT: quiet iommu=pt\n'
	expect_match "value after" "$OUT" $'\n\\+GRUB_CMDLINE_LINUX_DEFAULT: quiet iommu=pt intel_iommu=on\n'
	expect_match "file line before" "$OUT" $'\n-GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n'
	expect_match "file line after" "$OUT" $'\n\\+GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt intel_iommu=on"\n'
	expect_match "file header" "$OUT" "before: /etc/default/grub"
	expect_eq "check mode changed nothing" "$(sha256sum "$T/etc/default/grub")" "$before"
	local check_diff
	check_diff=$(task '[.reboot_required, .diff]')
	# The run's diff is the check's, and it needs the same reboot.
	play provision --diff -vvv
	expect_rc 0
	expect_eq "the run: the check's diff and reboot" "$(task '[.reboot_required, .diff]')" "$check_diff"
	expect_match "made" "$(grep ^GRUB_CMDLINE_LINUX_DEFAULT "$T/etc/default/grub")" "intel_iommu=on"
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
	# A program kvmbox runs fails: msg carries its own words (they went to stderr, not a row).
	mkdir -p "$T/usr/sbin" "$T/var/log"
	cp "$HELPERS/static/record-exec" "$T/usr/sbin/update-grub"
	playbook update "    - kvmbox.host.kvmbox_provision:
        binary: $KVMBOX
        target: $T
        sections: |
          [grub]
          args = iommu=soft
      environment:
        RECORD_EXIT: 3
        RECORD_STDERR: 'update-grub: /boot/grub: No such file or directory'"
	play update
	expect_rc 2
	expect_match "the step" "$(task .msg)" "^\"grub: /usr/sbin/update-grub exited with status 3"
	expect_match "its error" "$(task .msg)" "; update-grub: /boot/grub: No such file or directory\"\$"
	expect_match "stderr" "$(task .stderr)" "update-grub: /boot/grub: No such file or directory"
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
          graphics: none
          network: none"
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
          graphics: none
          network: none"
	play bigger --check
	expect_eq "check mode: a reboot would be required" "$(stat_of changed) $(task .reboot_required)" "1 true"
	play bigger
	expect_eq "reboot required" "$(stat_of changed) $(task .reboot_required) $(task '[.rows[] | select(.status == "reboot-required") | .id]')" \
		'1 true ["kvmbox-test-ansible","kvmbox-test-ansible memory","kvmbox-test-ansible currentMemory"]'
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

# kvmbox_domain's words: autostart unset leaves it, false turns it off (check mode as the
# run); the states paused, destroyed and shutdown; a paused domain asked to run says so.
domain_autostart_and_states() {
	local words="        words:
          memory: 64M
          virt-type: qemu
          graphics: none
          network: none"
	playbook auto "    - kvmbox.host.kvmbox_domain:
        binary: $KVMBOX
        name: kvmbox-test-astate
        state: running
        autostart: true
$words"
	play auto
	expect_eq "on" "$(stat_of changed) $(stat_of failed) $($VIRSH dominfo kvmbox-test-astate | awk '/^Autostart/ {print $2}')" "1 0 enable"
	sed -i 's/autostart: true/autostart: false/' "$TESTS_TMP/auto.yml"
	play auto --check
	expect_eq "check mode: would turn it off" "$(stat_of changed) $(task '[.rows[] | select(.status != "unchanged") | .id + " " + .message]')" '1 ["kvmbox-test-astate autostart on -> off"]'
	expect_eq "check mode: still on" "$($VIRSH dominfo kvmbox-test-astate | awk '/^Autostart/ {print $2}')" "enable"
	play auto
	expect_eq "the run as the check" "$(stat_of changed) $(task '[.rows[] | select(.status != "unchanged") | .id + " " + .message]')" '1 ["kvmbox-test-astate autostart on -> off"]'
	expect_eq "off" "$($VIRSH dominfo kvmbox-test-astate | awk '/^Autostart/ {print $2}')" "disable"
	sed -i '/autostart: false/d' "$TESTS_TMP/auto.yml"
	play auto
	expect_eq "unset: left as it is" "$(stat_of changed) $(task '[.rows[] | select(.id | endswith("autostart"))] | length')" "0 0"

	playbook paused "    - kvmbox.host.kvmbox_domain:
        binary: $KVMBOX
        name: kvmbox-test-astate
        state: paused"
	play paused --check
	expect_eq "check mode: would pause" "$(stat_of changed) $($VIRSH domstate kvmbox-test-astate | head -1)" "1 running"
	play paused
	expect_eq "paused" "$(stat_of changed) $(task '[.rows[].message]') $($VIRSH domstate kvmbox-test-astate | head -1)" '1 ["running -> paused"] paused'
	play paused
	expect_eq "paused again: unchanged" "$(stat_of changed) $(stat_of failed)" "0 0"
	play auto
	expect_eq "running asked of a paused domain" "$(stat_of failed)" 1
	expect_match "says so" "$(task .msg)" "domain 'kvmbox-test-astate' is paused: starting does not resume it \\(virsh resume kvmbox-test-astate\\)"
	sed 's/state: paused/state: destroyed/' "$TESTS_TMP/paused.yml" >"$TESTS_TMP/destroyed.yml"
	play destroyed
	expect_eq "destroyed" "$(stat_of changed) $(task '[.rows[].message]') $($VIRSH domstate kvmbox-test-astate | head -1)" '1 ["paused -> shut off"] shut off'
	sed 's/state: paused/state: shutdown/' "$TESTS_TMP/paused.yml" >"$TESTS_TMP/shutdown.yml"
	play shutdown
	expect_eq "shut off already: unchanged" "$(stat_of changed) $(stat_of failed)" "0 0"
	playbook mixed "    - kvmbox.host.kvmbox_domain:
        binary: $KVMBOX
        name: kvmbox-test-astate
        state: paused
$words"
	play mixed
	expect_eq "words with state paused" "$(stat_of failed)" 1
	expect_match "refused" "$(task .msg)" "state=paused acts on the defined domain: words, xml and autostart are for state=present and state=running"
	"$KVMBOX" domain rm kvmbox-test-astate >/dev/null
}

# xml is a file or the XML text; a definition naming another domain than name is refused.
domain_xml_text_and_name() {
	qemu-img create -q -f qcow2 "$POOL_DIR/axml.qcow2" 16M
	domain_xml kvmbox-test-axml "$POOL_DIR/axml.qcow2" >"$TESTS_TMP/axml.xml"
	playbook xmltext "    - kvmbox.host.kvmbox_domain:
        binary: $KVMBOX
        name: kvmbox-test-axml
        xml: |
$(sed 's/^/          /' "$TESTS_TMP/axml.xml")"
	play xmltext --check
	expect_eq "check mode: would define" "$(stat_of changed) $(task '[.rows[0].message]')" '1 ["absent -> defined"]'
	expect_eq "not defined yet" "$($VIRSH list --all --name | grep -c kvmbox-test-axml)" 0
	play xmltext
	expect_eq "defined from the text" "$(stat_of changed) $(stat_of failed) $($VIRSH domstate kvmbox-test-axml | head -1)" "1 0 shut off"
	play xmltext
	expect_eq "again: unchanged" "$(stat_of changed)" 0
	playbook xmlfile "    - kvmbox.host.kvmbox_domain:
        binary: $KVMBOX
        name: kvmbox-test-other
        xml: $TESTS_TMP/axml.xml"
	play xmlfile
	expect_eq "another domain's file" "$(stat_of failed)" 1
	expect_eq "refused" "$(task .msg)" '"xml defines domain '"'"'kvmbox-test-axml'"'"', not '"'"'kvmbox-test-other'"'"'"'
	expect_eq "nothing defined" "$($VIRSH list --all --name | grep -c kvmbox-test-other)" 0
	sed -i 's/name: kvmbox-test-other/name: kvmbox-test-axml/' "$TESTS_TMP/xmlfile.yml"
	play xmlfile
	expect_eq "the file, same domain: unchanged" "$(stat_of changed) $(stat_of failed)" "0 0"
	"$KVMBOX" domain rm kvmbox-test-axml >/dev/null
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
t domain_autostart_and_states
t domain_xml_text_and_name
t documentation_parses
done_testing
