# -*- coding: utf-8 -*-
# Copyright: kvmbox developers
# MIT License (see LICENSE)
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
    """kvmbox's own words for what failed: its failed rows, then what its stderr adds (a program
    kvmbox ran, such as update-grub, says why it failed there), else its one-line error."""
    rows = [r for r in envelope.get("rows", []) if r.get("status") in FAILED_STATUSES]
    parts = ["%s: %s" % (r.get("id"), r.get("message")) for r in rows]
    said = [r.get("message") or "" for r in rows]
    for line in err.splitlines():
        line = line.strip()
        # kvmbox's own lines ("kvmbox provision: ...") repeat a row's message: said once.
        text = line.split(": ", 1)[1] if line.startswith("kvmbox ") and ": " in line else line
        if line and not any(text in s or (s and s in line) for s in said + parts):
            parts.append(line)
            said.append(text)
    return "; ".join(parts) or "kvmbox exited %d" % rc


def envelope_changes(envelope):
    """Every change the envelope lists that changes something, with the step it belongs to:
    an applet's ("changes") or each provision step's ("steps")."""
    changes = [(envelope.get("applet"), c) for c in envelope.get("changes") or []]
    for step in envelope.get("steps") or []:
        changes += [(step.get("id"), c) for c in step.get("changes") or []]
    return [(step, c) for step, c in changes if c.get("status") in CHANGING_STATUSES]


def ansible_diff(envelope):
    """Ansible's diff from kvmbox's typed changes (item, before, after): each step's values as
    "item: value" lines before and after, and each changed file's old and new text (Ansible
    shows both as a unified diff)."""
    diffs, values = [], {}
    for step, c in envelope_changes(envelope):
        if c.get("kind") == "file":
            diffs.append(dict(
                before_header=c.get("path") or c.get("item"),
                after_header=c.get("path") or c.get("item"),
                before=c.get("before") or "",
                after=c.get("after") or "",
            ))
            continue
        if step not in values:
            values[step] = dict(before_header=step, after_header=step, before="", after="")
            diffs.append(values[step])
        # An absent value is no line: the item appears or goes.
        if c.get("before") is not None:
            values[step]["before"] += "%s: %s\n" % (c.get("item"), c.get("before"))
        if c.get("after") is not None:
            values[step]["after"] += "%s: %s\n" % (c.get("item"), c.get("after"))
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
        stderr=err,
        changes=[dict(c, step=step) for step, c in envelope_changes(envelope)],
        **extra
    )
    if module._diff:
        result["diff"] = ansible_diff(envelope)
    if envelope.get("failed"):
        module.fail_json(msg=failure_message(envelope, err, rc), **result)
    module.exit_json(**result)
