#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmbox developers
# MIT License (see galaxy.yml)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kvmbox_provision
short_description: Provision a KVM host from a kvmbox host config
description:
  - Runs C(kvmbox provision) on the managed host with C(--json) and reports what kvmbox's envelope says.
  - The config is kvmbox's INI host config (C([kvm]), C([grub]), C([hugepages]), C([bridge NAME]),
    C([bundle NAME]), C([domain NAME]) ...), from a file on the host or given inline.
  - In check mode kvmbox plans (C(--plan)) and changes nothing; with C(--diff) the rows that
    change or would change are shown.
  - A failing step fails the task with kvmbox's message; the other steps' rows are returned.
version_added: "0.1.0"
author: kvmbox developers
extends_documentation_fragment:
  - kvmbox.host.kvmbox
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
  - Supports check mode and diff mode.
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
  description: A step changed something (in check mode, would change).
  type: bool
  returned: always
reboot_required:
  description: A change takes effect at the next boot (kernel arguments).
  type: bool
  returned: always
rows:
  description: One row per step, as kvmbox reports it.
  type: list
  elements: dict
  returned: always
  contains:
    id:
      description: The step (C(grub), C(bridge br0), C(domain web)).
      type: str
    status:
      description: C(changed), C(unchanged), C(would-change), C(reboot-required) or C(failed).
      type: str
    message:
      description: What happened.
      type: str
    hint:
      description: What fixes it, when something is wrong.
      type: str
rc:
  description: kvmbox's exit status.
  type: int
  returned: always
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
