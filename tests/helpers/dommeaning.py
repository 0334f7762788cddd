#!/usr/bin/env python3
"""What a libvirt domain definition means, one fact per line, for comparing two
definitions written by different tools (kvmbox domain new and virt-install):
memory, vCPUs, CPU mode/model/features, firmware, disks, interfaces, graphics, host devices.
Reads the XML on stdin. Attribute order, quoting, element order within a kind
and defaults a tool leaves to libvirt do not show. With --devices, also the
devices virt-install adds for a modern OS (SCSI controllers, channels, the
tablet, balloon, RNG) and each disk's options (--disks: only those)."""
import sys
import xml.etree.ElementTree as ET

UNITS = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "m": 1024, "mib": 1024, "g": 1 << 20, "gib": 1 << 20}


def kib(elem):
    return int(int(elem.text) * UNITS[(elem.get("unit") or "KiB").lower()])


def main():
    devices = "--devices" in sys.argv[1:]
    disks = devices or "--disks" in sys.argv[1:]  # each disk's driver options, readonly, shareable, serial
    d = ET.fromstring(sys.stdin.read())
    out = [f"memory {kib(d.find('memory'))} KiB", f"vcpus {d.find('vcpu').text.strip()}"]
    cpu = d.find("cpu")
    if cpu is not None:
        model = cpu.find("model")
        out.append(f"cpu {cpu.get('mode', 'custom')} {model.text if model is not None else '-'}")
        for f in sorted(cpu.findall("feature"), key=lambda f: f.get("name")):
            out.append(f"cpu feature {f.get('name')} {f.get('policy')}")
    os_ = d.find("os")
    if os_ is not None and os_.get("firmware"):
        out.append(f"firmware {os_.get('firmware')}")
        for f in sorted(os_.findall("firmware/feature"), key=lambda f: f.get("name")):
            out.append(f"firmware feature {f.get('name')} {f.get('enabled')}")
    dev = d.find("devices")
    for disk in dev.findall("disk"):
        src = disk.find("source")
        tgt = disk.find("target")
        drv = disk.find("driver")
        out.append(f"disk {disk.get('device')} {src.get('file') if src is not None else '-'} "
                   f"{tgt.get('dev')} {tgt.get('bus')}"
                   + (f" format {drv.get('type')}" if drv is not None and drv.get("type") else "")
                   + "".join(f" {k} {drv.get(k)}" for k in ("cache", "io", "discard", "detect_zeroes")
                             if disks and drv is not None and drv.get(k))
                   + "".join(f" {k}" for k in ("readonly", "shareable") if disks and disk.find(k) is not None)
                   + (f" serial {disk.find('serial').text}" if disks and disk.find("serial") is not None else ""))
    for nic in dev.findall("interface"):
        src = nic.find("source")
        out.append(f"interface {nic.get('type')} {src.get('bridge') or src.get('network')} {nic.find('model').get('type')}")
    for g in dev.findall("graphics"):
        out.append(f"graphics {g.get('type')} listen {g.get('listen')}")
    for h in dev.findall("hostdev"):
        a = h.find("source/address")
        out.append("hostdev %04x:%02x:%02x.%x" % tuple(int(a.get(k), 0) for k in ("domain", "bus", "slot", "function")))
    if devices:
        for c in dev.findall("controller[@type='scsi']"):
            out.append(f"controller scsi {c.get('model')}")
        for c in dev.findall("channel"):
            out.append(f"channel {c.get('type')} {c.find('target').get('name')}")
        for i in dev.findall("input[@type='tablet']"):
            out.append(f"input tablet {i.get('bus')}")
        for b in dev.findall("memballoon"):
            out.append(f"memballoon {b.get('model')}")
        for r in dev.findall("rng"):
            out.append(f"rng {r.get('model')} {r.find('backend').text}")
    print("\n".join(out))


main()
