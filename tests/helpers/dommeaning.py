#!/usr/bin/env python3
"""What a libvirt domain definition means, one fact per line, for comparing two
definitions written by different tools (kvmbox domain new and virt-install):
memory, vCPUs, CPU mode/model/features, firmware, disks, interfaces, graphics, host devices.
Reads the XML on stdin. Attribute order, quoting, element order within a kind
and defaults a tool leaves to libvirt do not show. With --devices, also the
devices virt-install adds for a modern OS (SCSI controllers, channels, the
tablet, balloon, RNG) and each disk's options (--disks: only those). With --os:
the machine family (q35 or pc, any version) and the libosinfo OS in <metadata> too.
With --extras, also what the words beyond those state: vCPUs present of the most,
the topology, the description, serial ports and consoles other than the serial one,
sound, video, USB redirection, every controller but PCI, channels, balloon and RNG.
With --boot, only how it boots: the boot order, whether an installer's kernel and initrd are
given (each tool copies them to a file of its own naming), the command line, on_reboot and
the CD-ROM's medium."""
import sys
import xml.etree.ElementTree as ET

UNITS = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "m": 1024, "mib": 1024, "g": 1 << 20, "gib": 1 << 20}


def kib(elem):
    return int(int(elem.text) * UNITS[(elem.get("unit") or "KiB").lower()])


def boot_meaning(d):
    os_ = d.find("os")
    out = ["boot " + ",".join(b.get("dev") for b in os_.findall("boot")) if os_.find("boot") is not None else "boot -"]
    for k in ("kernel", "initrd"):
        e = os_.find(k)
        out.append(f"{k} {'yes' if e is not None else '-'}")
    cmdline = os_.find("cmdline")
    out.append(f"cmdline {cmdline.text if cmdline is not None else '-'}")
    on_reboot = d.find("on_reboot")
    out.append(f"on_reboot {on_reboot.text if on_reboot is not None else 'restart'}")
    for disk in d.findall("devices/disk[@device='cdrom']"):
        src = disk.find("source")
        out.append(f"cdrom {src.get('file') if src is not None else '-'}")
    return out


def main():
    devices = "--devices" in sys.argv[1:]
    extras = "--extras" in sys.argv[1:]
    disks = devices or extras or "--disks" in sys.argv[1:]  # each disk's driver options, readonly, shareable, serial
    d = ET.fromstring(sys.stdin.read())
    if "--boot" in sys.argv[1:]:
        print("\n".join(boot_meaning(d)))
        return
    out = [f"memory {kib(d.find('memory'))} KiB", f"vcpus {d.find('vcpu').text.strip()}"]
    if "--os" in sys.argv[1:]:
        machine = d.find("os/type").get("machine") or "-"
        out.append("machine " + ("q35" if "q35" in machine else "pc" if machine.startswith("pc") else machine))
        os_ = d.find("metadata/{http://libosinfo.org/xmlns/libvirt/domain/1.0}libosinfo/"
                     "{http://libosinfo.org/xmlns/libvirt/domain/1.0}os")
        out.append(f"osinfo {os_.get('id') if os_ is not None else '-'}")
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
    if extras:
        vcpu = d.find("vcpu")
        out.append(f"vcpus present {vcpu.get('current', vcpu.text.strip())}")
        topo = d.find("cpu/topology")
        if topo is not None:
            out.append("topology " + " ".join(f"{k} {topo.get(k)}" for k in ("sockets", "dies", "cores", "threads")))
        if d.find("description") is not None:
            out.append(f"description {d.find('description').text}")
        for s in dev.findall("serial"):
            src = s.find("source")
            out.append(f"serial {s.get('type')} {src.get('path') if src is not None else '-'}")
        # libvirt makes a console on the serial target (virt-install's <console type='pty'/>) serial port 0.
        serial_console = [c for c in dev.findall("console")
                          if c.find("target") is None or c.find("target").get("type", "serial") == "serial"]
        if not dev.findall("serial") and serial_console:
            out.append(f"serial {serial_console[0].get('type')} -")
        for c in dev.findall("console"):
            t = c.find("target")
            if t is not None and t.get("type", "serial") != "serial":
                out.append(f"console {c.get('type')} {t.get('type')}")
        for s in dev.findall("sound"):
            out.append(f"sound {s.get('model')}")
        for v in dev.findall("video/model"):
            out.append(f"video {v.get('type')}")
        for r in dev.findall("redirdev"):
            out.append(f"redirdev {r.get('bus')} {r.get('type')}")
        controllers = [f"controller {c.get('type')} {c.get('model')}" for c in dev.findall("controller") if c.get("type") != "pci"]
        if dev.find("controller[@type='usb']") is None and "q35" in (d.find("os/type").get("machine") or ""):
            controllers.append("controller usb qemu-xhci")  # libvirt's own on q35
        out.extend(sorted(controllers))
        for c in dev.findall("channel"):
            out.append(f"channel {c.get('type')} {c.find('target').get('name')}")
        for b in dev.findall("memballoon"):
            out.append(f"memballoon {b.get('model')}")
        for r in dev.findall("rng"):
            out.append(f"rng {r.get('model')} {r.find('backend').text}")
        for f in dev.findall("filesystem"):
            drv = f.find("driver")
            out.append(f"filesystem {f.get('type')} {drv.get('type') if drv is not None else 'path'} "
                       f"{f.find('source').get('dir')} {f.find('target').get('dir')} {f.get('accessmode', '-')}")
    print("\n".join(out))


main()
