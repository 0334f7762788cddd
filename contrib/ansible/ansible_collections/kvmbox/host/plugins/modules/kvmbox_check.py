#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmbox developers
# MIT License (see LICENSE)

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
author: kvmbox developers (!UNKNOWN)
extends_documentation_fragment:
  - kvmbox.host.kvmbox
  - kvmbox.host.kvmbox.attributes
attributes:
  check_mode:
    details:
      - It changes nothing either way.
  diff_mode:
    support: none
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
      description: The rows of kvmbox check, one per check.
      type: list
      elements: dict
      returned: always
      contains:
        id:
          description: The check (C(kvm.module), C(iommu.active)).
          type: str
          returned: always
        status:
          description: C(PASS), C(INFO), C(SKIP), C(WARN) or C(FAIL).
          type: str
          returned: always
        message:
          description: What kvmbox found.
          type: str
          returned: always
        hint:
          description: What fixes it, for a check that did not pass; empty otherwise.
          type: str
          returned: always
    kvmbox_check_failed:
      description: The ids of the checks that said FAIL.
      type: list
      elements: str
      returned: always
    kvmbox_check_warned:
      description: The ids of the checks that said WARN.
      type: list
      elements: str
      returned: always
exit_status:
  description: kvmbox check's exit status (1 when a check said FAIL).
  type: int
  returned: success
cmd:
  description: The kvmbox command line the module ran.
  type: list
  elements: str
  returned: always
stderr:
  description: What kvmbox printed on stderr.
  type: str
  returned: always
rc:
  description: kvmbox's exit status, on failure (on success it is I(exit_status)).
  type: int
  returned: failure
msg:
  description: On failure, the checks that failed with their messages, or kvmbox's error.
  type: str
  returned: failure
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
        module.fail_json(msg=failure_message(envelope, err, rc), ansible_facts=facts, rc=rc, cmd=cmd, stderr=err)
    # Not "rc": Ansible fails any result whose rc is not 0, and exit 1 is a verdict here.
    module.exit_json(changed=False, ansible_facts=facts, exit_status=rc, cmd=cmd, stderr=err)


if __name__ == "__main__":
    main()
