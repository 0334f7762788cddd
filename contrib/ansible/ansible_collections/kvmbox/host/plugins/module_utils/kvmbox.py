# -*- coding: utf-8 -*-
# Copyright: kvmbox developers
# MIT License (see galaxy.yml)
"""Run the kvmbox binary with --json and turn its envelope into the module's result.
Nothing of kvmbox's logic lives here: kvmbox decides, the envelope says what it did."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

# Options every module shares.
COMMON_ARGS = dict(
    binary=dict(type="str", default="kvmbox"),
    root=dict(type="path"),
    target=dict(type="path"),
)

FAILED_STATUSES = ("failed", "FAIL")
CHANGING_STATUSES = ("changed", "would-change", "reboot-required")


def run_kvmbox(module, args):
    """kvmbox [--root R] [--target T] ARGS... --json: (exit status, envelope, stderr)."""
    binary = module.params["binary"]
    path = binary if "/" in binary else module.get_bin_path(binary, required=True)
    cmd = [path]
    if module.params.get("root"):
        cmd += ["--root", module.params["root"]]
    if module.params.get("target"):
        cmd += ["--target", module.params["target"]]
    cmd += list(args) + ["--json"]
    rc, out, err = module.run_command(cmd)
    try:
        envelope = json.loads(out)
    except ValueError:
        module.fail_json(msg=err.strip() or "kvmbox printed no JSON (exit %d)" % rc, rc=rc, cmd=cmd, stderr=err)
    if not isinstance(envelope, dict) or "rows" not in envelope:
        module.fail_json(msg="kvmbox printed JSON without its envelope", rc=rc, cmd=cmd, stdout=out)
    return rc, envelope, err, cmd


def failure_message(envelope, err, rc):
    """kvmbox's own words for what failed: its failed rows, else its one-line error."""
    rows = [r for r in envelope.get("rows", []) if r.get("status") in FAILED_STATUSES]
    if rows:
        return "; ".join("%s: %s" % (r.get("id"), r.get("message")) for r in rows)
    return err.strip() or "kvmbox exited %d" % rc


def envelope_changes(envelope):
    """Every change the envelope lists, an applet's ("changes") or each provision step's ("steps")."""
    changes = [dict(c) for c in envelope.get("changes") or []]
    for step in envelope.get("steps") or []:
        for c in step.get("changes") or []:
            c = dict(c)
            c["item"] = "%s: %s" % (step.get("id"), c.get("item"))
            changes.append(c)
    return [c for c in changes if c.get("status") in CHANGING_STATUSES]


def ansible_diff(envelope, rows):
    """Ansible's diff from kvmbox's typed changes: the rows that change, the values before and
    after, and each changed file's old and new text (Ansible shows them as a unified diff)."""
    diffs = [dict(prepared="\n".join(
        "%s  %s  %s" % (r.get("status"), r.get("id"), r.get("message"))
        for r in rows
        if r.get("status") in CHANGING_STATUSES
    ) + "\n")]
    values_before, values_after = [], []
    for c in envelope_changes(envelope):
        if c.get("kind") == "file":
            diffs.append(dict(
                before_header=c.get("path") or c.get("item"),
                after_header=c.get("path") or c.get("item"),
                before=c.get("before") or "",
                after=c.get("after") or "",
            ))
        else:
            absent = "(absent)"
            values_before.append("%s: %s\n" % (c.get("item"), absent if c.get("before") is None else c.get("before")))
            values_after.append("%s: %s\n" % (c.get("item"), absent if c.get("after") is None else c.get("after")))
    if values_before:
        diffs.insert(1, dict(before_header="values", after_header="values",
                             before="".join(values_before), after="".join(values_after)))
    return diffs


def finish(module, rc, envelope, err, cmd, **extra):
    """exit_json or fail_json from the envelope."""
    rows = envelope.get("rows", [])
    result = dict(
        changed=bool(envelope.get("changed")),
        reboot_required=bool(envelope.get("reboot_required")),
        rows=rows,
        rc=rc,
        cmd=cmd,
        **extra
    )
    if module._diff:
        result["diff"] = ansible_diff(envelope, rows)
    if envelope.get("failed"):
        module.fail_json(msg=failure_message(envelope, err, rc), stderr=err, **result)
    module.exit_json(**result)
