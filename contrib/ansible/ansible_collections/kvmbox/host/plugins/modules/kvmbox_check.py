#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmbox developers
# MIT License (see galaxy.yml)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kvmbox_check
short_description: kvmbox's host checks as facts
description:
  - Runs C(kvmbox check) on the managed host (hardware virtualization and its firmware switch,
    KVM modules, /dev/kvm, nested virtualization, IOMMU, hugepages, libvirt ...) and returns its
    rows as the fact C(kvmbox_check), with the checks that FAILed and WARNed by id.
  - Changes nothing. A FAIL fails the task only with I(fail_on_fail).
version_added: "0.1.0"
author: kvmbox developers
extends_documentation_fragment:
  - kvmbox.host.kvmbox
options:
  checks:
    description: Check ids or groups (C(kvm), C(iommu.active)); all of them when empty.
    type: list
    elements: str
    default: []
  fail_on_fail:
    description: Fail the task when a check says FAIL.
    type: bool
    default: false
notes:
  - Supports check mode (it changes nothing either way).
"""

EXAMPLES = r"""
- name: What kvmbox thinks of this host
  kvmbox.host.kvmbox_check:

- name: Stop when KVM cannot run here
  kvmbox.host.kvmbox_check:
    checks: [kvm]
    fail_on_fail: true
"""

RETURN = r"""
ansible_facts:
  description: The facts.
  returned: always
  type: dict
  contains:
    kvmbox_check:
      description: The rows of kvmbox check (id, status PASS/INFO/SKIP/WARN/FAIL, message, hint).
      type: list
      elements: dict
    kvmbox_check_failed:
      description: The ids of the checks that said FAIL.
      type: list
      elements: str
    kvmbox_check_warned:
      description: The ids of the checks that said WARN.
      type: list
      elements: str
exit_status:
  description: kvmbox check's exit status (1 when a check said FAIL).
  type: int
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmbox.host.plugins.module_utils.kvmbox import COMMON_ARGS, failure_message, run_kvmbox


def main():
    argument_spec = dict(
        checks=dict(type="list", elements="str", default=[]),
        fail_on_fail=dict(type="bool", default=False),
    )
    argument_spec.update(COMMON_ARGS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    rc, envelope, err, cmd = run_kvmbox(module, ["check"] + list(module.params["checks"]))
    rows = envelope["rows"]
    facts = dict(
        kvmbox_check=rows,
        kvmbox_check_failed=[r["id"] for r in rows if r.get("status") == "FAIL"],
        kvmbox_check_warned=[r["id"] for r in rows if r.get("status") == "WARN"],
    )
    # Exit 1 with FAIL rows is a verdict about the host, not a failure to check it.
    broken = rc not in (0, 1) or (rc == 1 and not facts["kvmbox_check_failed"])
    if broken or (module.params["fail_on_fail"] and facts["kvmbox_check_failed"]):
        module.fail_json(msg=failure_message(envelope, err, rc), ansible_facts=facts, rc=rc, cmd=cmd)
    # Not "rc": Ansible fails any result whose rc is not 0, and exit 1 is a verdict here.
    module.exit_json(changed=False, ansible_facts=facts, exit_status=rc, cmd=cmd)


if __name__ == "__main__":
    main()
