#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmbox developers
# MIT License (see galaxy.yml)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kvmbox_domain
short_description: A libvirt domain made from kvmbox's words, present, running or absent
description:
  - I(state=present) runs C(kvmbox domain new NAME) with I(words) (the same words as
    C(kvmbox domain new)'s options and provision's C([domain]) keys - memory, vcpus, cpu, disk,
    network, graphics, hostdev, hugepages, nested, placement, cdrom, boot, machine, virt-type),
    or C(kvmbox domain define) with I(xml). kvmbox checks the words on the host, creates new
    disks in a storage pool, runs its preflight and defines the domain; the same words again
    change nothing.
  - I(state=running) also starts it and waits until it runs.
  - I(state=absent) runs C(kvmbox domain rm NAME), with I(storage) its disk images too (never
    one another domain uses or a process has open).
  - Check mode is kvmbox's C(--dry-run).
version_added: "0.1.0"
author: kvmbox developers
extends_documentation_fragment:
  - kvmbox.host.kvmbox
options:
  name:
    description: The domain's name.
    type: str
    required: true
  state:
    description: What the domain should be.
    type: str
    choices: [present, running, absent]
    default: present
  words:
    description:
      - The domain's words, as C(kvmbox domain new) takes them; a list for the repeatable ones
        (disk, network, hostdev); C(true) for the flags (hugepages, nested).
    type: dict
    default: {}
  xml:
    description: A domain XML file on the managed host, defined instead of words.
    type: path
  autostart:
    description: Start the domain when libvirtd starts.
    type: bool
    default: false
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
notes:
  - Supports check mode and diff mode.
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

- name: Gone, with its disks
  kvmbox.host.kvmbox_domain:
    name: nfv1
    state: absent
    storage: true
"""

RETURN = r"""
changed:
  description: The domain (or a volume) was made, changed, started or removed; in check mode, would be.
  type: bool
  returned: always
rows:
  description: kvmbox's rows, one per item, BEFORE -> AFTER (the definition, each element, volumes, autostart, state; on removal the state, the definition, each image).
  type: list
  elements: dict
  returned: always
reboot_required:
  description: The domain runs and its new definition waits for its next start (the rows say which elements).
  type: bool
  returned: always
rc:
  description: kvmbox's exit status.
  type: int
  returned: always
"""

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


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "running", "absent"]),
        words=dict(type="dict", default={}),
        xml=dict(type="path"),
        autostart=dict(type="bool", default=False),
        storage=dict(type="bool", default=False),
        prune=dict(type="bool", default=False),
        connect=dict(type="str"),
    )
    argument_spec.update(COMMON_ARGS)
    module = AnsibleModule(argument_spec=argument_spec, mutually_exclusive=[("words", "xml")], supports_check_mode=True)
    p = module.params
    if p["state"] == "absent":
        args = ["domain", "rm", p["name"]] + (["--storage"] if p["storage"] else [])
    elif p["xml"]:
        args = ["domain", "define", p["xml"]]
    else:
        args = ["domain", "new", p["name"]] + word_options(module) + (["--prune"] if p["prune"] else [])
    if p["state"] == "running":
        args.append("--start")
    if p["autostart"] and p["state"] != "absent":
        args.append("--autostart")
    if p["connect"]:
        args += ["--connect", p["connect"]]
    if module.check_mode:
        args.append("--dry-run")
    rc, envelope, err, cmd = run_kvmbox(module, args)
    finish(module, rc, envelope, err, cmd)


if __name__ == "__main__":
    main()
