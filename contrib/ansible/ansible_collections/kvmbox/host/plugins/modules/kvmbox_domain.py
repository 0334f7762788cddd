#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmbox developers
# MIT License (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kvmbox_domain
short_description: A libvirt domain made from kvmbox's words, present, running, paused, shut off or absent
description:
  - I(state=present) runs C(kvmbox domain new NAME) with I(words) (the same words as
    C(kvmbox domain new)'s options and provision's C([domain]) keys - memory, vcpus, cpu, disk,
    network, graphics, hostdev, hugepages, nested, placement, cdrom, boot, machine, virt-type),
    or C(kvmbox domain define) with I(xml). kvmbox checks the words on the host, creates new
    disks in a storage pool, runs its preflight and defines the domain; the same words again
    change nothing.
  - I(state=running) also starts it and waits until it runs; a paused domain fails, saying so
    (C(virsh resume) runs it again).
  - I(state=shutdown), I(state=destroyed) and I(state=paused) act on the defined domain named I(name)
    (what C(virsh shutdown), C(destroy) and C(suspend) do) - C(kvmbox domain stop NAME) asks the
    guest to shut down and waits until it is off, C(--force) destroys it, C(kvmbox domain pause NAME)
    suspends it (a shut off domain starts paused). I(words) and I(xml) are for I(state=present)
    and I(state=running).
  - I(state=absent) runs C(kvmbox domain rm NAME), with I(storage) its disk images too (never
    one another domain uses or a process has open).
  - Check mode is kvmbox's C(--dry-run).
version_added: "0.1.0"
author: kvmbox developers (!UNKNOWN)
extends_documentation_fragment:
  - kvmbox.host.kvmbox
  - kvmbox.host.kvmbox.attributes
attributes:
  diff_mode:
    support: full
    details:
      - "The diff is kvmbox's typed changes: each step's values as lines C(ITEM: VALUE) before and after,
        and each changed file's old and new text."
options:
  name:
    description: The domain's name.
    type: str
    required: true
  state:
    description: What the domain should be.
    type: str
    choices: [present, running, shutdown, destroyed, paused, absent]
    default: present
  words:
    description:
      - The domain's words, as C(kvmbox domain new) takes them; a list for the repeatable ones
        (disk, network, hostdev); C(true) for the flags (hugepages, nested).
    type: dict
    default: {}
  xml:
    description:
      - A domain XML file on the managed host, or the XML text itself (it starts with C(<)), defined
        instead of words. The definition must name the domain I(name).
    type: str
  autostart:
    description:
      - Start the domain when libvirtd starts (C(true)), or not (C(false)). Unset, autostart is
        left as it is.
    type: bool
  storage:
    description: With I(state=absent), remove the domain's disk images too.
    type: bool
    default: false
  prune:
    description:
      - Disks the words no longer name leave the definition, their files stay (C(--prune)).
        Without it such a disk is refused, never detached silently.
    type: bool
    default: false
  connect:
    description: libvirt URI (C(--connect)).
    type: str
"""

EXAMPLES = r"""
- name: The notes' nfv1, placed on this host's NUMA nodes and running
  kvmbox.host.kvmbox_domain:
    name: nfv1
    state: running
    autostart: true
    words:
      memory: 100G
      vcpus: 56
      cpu: Haswell,-rtm,-hle,+rdrand,+f16c
      disk: size=100G,pool=default
      network: [bridge=br0,model=e1000, bridge=br1]
      hostdev: 81:00.3
      hugepages: true
      placement: auto

- name: Paused (virsh suspend); state shutdown and destroyed shut it off
  kvmbox.host.kvmbox_domain:
    name: nfv1
    state: paused

- name: Gone, with its disks
  kvmbox.host.kvmbox_domain:
    name: nfv1
    state: absent
    storage: true
"""

RETURN = r"""
changed:
  description: Something changed (in check mode, would change).
  type: bool
  returned: always
reboot_required:
  description:
    - A change takes effect at the next boot (kernel arguments), or at a running domain's next start.
    - In check mode, whether the run would need it (kvmbox's plan knows).
  type: bool
  returned: always
rows:
  description: kvmbox's rows, as its JSON envelope lists them.
  type: list
  elements: dict
  returned: always
  contains:
    id:
      description: The domain, an element (C(NAME memory), C(NAME disk vda)), a volume, autostart, the state.
      type: str
      returned: always
    status:
      description: C(changed), C(unchanged), C(would-change) (check mode), C(reboot-required), C(failed), C(SKIP), C(INFO) or C(WARN).
      type: str
      returned: always
    message:
      description: What happened, or would happen; for a failure, why.
      type: str
      returned: always
    hint:
      description: What fixes it, when something is wrong; empty otherwise.
      type: str
      returned: always
changes:
  description: kvmbox's typed changes that change something (or would, in check mode), in the order they are made.
  type: list
  elements: dict
  returned: always
  contains:
    step:
      description: The step (C(grub), C(bundle web)) or the applet (C(domain)) the change belongs to.
      type: str
      returned: always
    item:
      description: What changes (C(GRUB_CMDLINE_LINUX_DEFAULT), C(memory), C(/var/lib/libvirt/images)).
      type: str
      returned: always
    status:
      description: C(would-change) (check mode), C(changed) or C(reboot-required).
      type: str
      returned: always
    kind:
      description: C(value), or C(file) (I(before) and I(after) are the file's whole texts).
      type: str
      returned: always
    path:
      description: The file changed, or the object; null when the item says it.
      type: str
      returned: always
    before:
      description: The value before; null when absent.
      type: str
      returned: always
    after:
      description: The value after; null when removed.
      type: str
      returned: always
    note:
      description: Why, or what it takes; may be null.
      type: str
      returned: always
cmd:
  description: The kvmbox command line the module ran.
  type: list
  elements: str
  returned: always
stderr:
  description: What kvmbox (and the programs it ran) printed on stderr.
  type: str
  returned: always
rc:
  description: kvmbox's exit status.
  type: int
  returned: always
msg:
  description: On failure, each failed row's id and message, then what stderr adds (a program kvmbox ran says why there).
  type: str
  returned: failure
"""

import os
from xml.etree import ElementTree

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmbox.host.plugins.module_utils.kvmbox import COMMON_ARGS, finish, run_kvmbox

WORDS = ("memory", "vcpus", "cpu", "machine", "virt-type", "disk", "cdrom", "boot", "network", "graphics",
         "hostdev", "hugepages", "nested", "placement")


def word_options(module):
    """--word=value for each word (a list: one option per value; true: the bare flag)."""
    options = []
    for key, value in module.params["words"].items():
        word = key.replace("_", "-")
        if word not in WORDS:
            module.fail_json(msg="unknown word '%s' (one of: %s)" % (key, " ".join(WORDS)))
        for v in value if isinstance(value, list) else [value]:
            if v is True:
                options.append("--%s" % word)
            elif v is False:
                options.append("--%s=no" % word)
            else:
                options.append("--%s=%s" % (word, v))
    return options


def definition_file(module):
    """The xml option as a file kvmbox defines: the path, or the text written to a file of the
    module's own; refused when it names another domain than name."""
    xml = module.params["xml"]
    is_text = xml.lstrip().startswith("<")
    path = os.path.join(module.tmpdir, "domain.xml") if is_text else xml
    try:
        if is_text:
            with open(path, "w") as f:
                f.write(xml)
        named = ElementTree.parse(path).getroot().findtext("name")
    except (OSError, ElementTree.ParseError) as e:
        module.fail_json(msg="xml: %s" % e)
    if named != module.params["name"]:
        module.fail_json(msg="xml defines domain '%s', not '%s'" % (named, module.params["name"]))
    return path


STATE_ARGS = {"shutdown": ["stop"], "destroyed": ["stop", "--force"], "paused": ["pause"]}


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present",
                   choices=["present", "running", "shutdown", "destroyed", "paused", "absent"]),
        words=dict(type="dict", default={}),
        xml=dict(type="str"),
        autostart=dict(type="bool"),
        storage=dict(type="bool", default=False),
        prune=dict(type="bool", default=False),
        connect=dict(type="str"),
    )
    argument_spec.update(COMMON_ARGS)
    module = AnsibleModule(argument_spec=argument_spec, mutually_exclusive=[("words", "xml")], supports_check_mode=True)
    p = module.params
    if p["state"] in STATE_ARGS and (p["words"] or p["xml"] or p["autostart"] is not None):
        module.fail_json(msg="state=%s acts on the defined domain: words, xml and autostart are for "
                             "state=present and state=running" % p["state"])
    if p["state"] == "absent":
        args = ["domain", "rm", p["name"]] + (["--storage"] if p["storage"] else [])
    elif p["state"] in STATE_ARGS:
        args = ["domain"] + STATE_ARGS[p["state"]] + [p["name"]]
    elif p["xml"]:
        args = ["domain", "define", definition_file(module)]
    else:
        args = ["domain", "new", p["name"]] + word_options(module) + (["--prune"] if p["prune"] else [])
    if p["state"] == "running":
        args.append("--start")
    if p["autostart"] is not None and p["state"] != "absent":
        args.append("--autostart=%s" % ("yes" if p["autostart"] else "no"))
    if p["connect"]:
        args += ["--connect", p["connect"]]
    if module.check_mode:
        args.append("--dry-run")
    rc, envelope, err, cmd = run_kvmbox(module, args)
    finish(module, rc, envelope, err, cmd)


if __name__ == "__main__":
    main()
