#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmbox developers
# MIT License (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kvmbox_provision
short_description: Provision a KVM host from a kvmbox host config
description:
  - Runs C(kvmbox provision) on the managed host with C(--json) and reports what kvmbox's envelope says.
  - The config is kvmbox's INI host config (C([kvm]), C([grub]), C([hugepages]), C([bridge NAME]),
    C([bundle NAME]), C([domain NAME]) ...), from a file on the host or given inline.
  - In check mode kvmbox plans (C(--plan)) and changes nothing; with C(--diff) the values and
    files that change or would change are shown, before and after.
  - A failing step fails the task with kvmbox's message, and what the program that failed said;
    the other steps' rows are returned.
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
  config:
    description: Path of the host config on the managed host.
    type: path
  sections:
    description: The host config itself (INI text), written to a temporary file on the managed host.
    type: str
  connect:
    description: libvirt URI for the domains (C(--connect)).
    type: str
  continue_on_error:
    description: Run the steps after a failed one too (C(--continue-on-error)).
    type: bool
    default: false
notes:
  - Exactly one of I(config) and I(sections) is required.
"""

EXAMPLES = r"""
- name: The host as /etc/kvmbox/host.conf says
  kvmbox.host.kvmbox_provision:
    config: /etc/kvmbox/host.conf

- name: More hugepages and a bridge, inline
  kvmbox.host.kvmbox_provision:
    sections: |
      [hugepages]
      count = 2048
      persist = yes

      [bridge br1]
      uplink = eno2
      persist = networkd
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
      description: The step the row is about (C(grub), C(bridge br0), C(domain web)).
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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmbox.host.plugins.module_utils.kvmbox import COMMON_ARGS, finish, run_kvmbox


def main():
    argument_spec = dict(
        config=dict(type="path"),
        sections=dict(type="str"),
        connect=dict(type="str"),
        continue_on_error=dict(type="bool", default=False),
    )
    argument_spec.update(COMMON_ARGS)
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("config", "sections")],
        required_one_of=[("config", "sections")],
        supports_check_mode=True,
    )
    config = module.params["config"]
    if module.params["sections"] is not None:
        config = os.path.join(module.tmpdir, "host.conf")
        with open(config, "w") as f:
            f.write(module.params["sections"])
    args = ["provision", config]
    if module.check_mode:
        args.append("--plan")
    if module.params["connect"]:
        args += ["--connect", module.params["connect"]]
    if module.params["continue_on_error"]:
        args.append("--continue-on-error")
    rc, envelope, err, cmd = run_kvmbox(module, args)
    finish(module, rc, envelope, err, cmd)


if __name__ == "__main__":
    main()
