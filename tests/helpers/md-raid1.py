#!/usr/bin/env python3
"""Two members of an md RAID1 (v1.2 superblocks, clean, in sync) holding FS, for the
rescue image's boot tests. The test host's kernel may have no md driver, so mdadm
--create cannot run there: the superblocks are written here by the layout of the
kernel's include/uapi/linux/raid/md_p.h (struct mdp_superblock_1), and the guest's
kernel and mdadm judge them (both check the magic, the offsets and the checksum).

    md-raid1.py FS MEMBER1 MEMBER2"""
import os
import struct
import sys
import uuid

fs_path, members = sys.argv[1], sys.argv[2:]
DATA_OFFSET = 2048  # sectors: the data starts 1 MiB in, as mdadm puts it on small disks
SUPER_OFFSET = 8    # sectors: v1.2 is 4 KiB from the start
fs_sectors = (os.path.getsize(fs_path) + 511) // 512
set_uuid = uuid.UUID("6b766d62-6f78-4d64-8000-000000000001").bytes
MAX_DEV = len(members)


def superblock(dev_number):
    sb = bytearray(256 + 2 * MAX_DEV)
    struct.pack_into("<IIII", sb, 0, 0xA92B4EFC, 1, 0, 0)  # magic, major_version, feature_map, pad0
    sb[16:32] = set_uuid
    sb[32:64] = b"server:root".ljust(32, b"\0")  # set_name: mdadm's HOMEHOST:NAME
    struct.pack_into("<QIIQIII", sb, 64, 1700000000, 1, 0, fs_sectors, 0, MAX_DEV, 0)
    # ctime, level, layout, size, chunksize, raid_disks, bitmap_offset
    struct.pack_into("<QQQQI", sb, 128, DATA_OFFSET, fs_sectors, SUPER_OFFSET, 0, dev_number)
    # data_offset, data_size, super_offset, recovery_offset, dev_number
    sb[168:184] = uuid.UUID(int=dev_number + 1).bytes     # device_uuid
    struct.pack_into("<QQQ", sb, 192, 1700000000, 1, 0xFFFFFFFFFFFFFFFF)  # utime, events, resync_offset (clean)
    struct.pack_into("<I", sb, 220, MAX_DEV)
    for role in range(MAX_DEV):
        struct.pack_into("<H", sb, 256 + 2 * role, role)
    # calc_sb_1_csum: the 32-bit words summed in 64 bits (sb_csum 0), folded once.
    total = sum(struct.unpack_from("<%dI" % (len(sb) // 4), sb))
    if len(sb) % 4:
        total += struct.unpack_from("<H", sb, len(sb) - 2)[0]
    struct.pack_into("<I", sb, 216, ((total & 0xFFFFFFFF) + (total >> 32)) & 0xFFFFFFFF)
    return sb


with open(fs_path, "rb") as f:
    fs = f.read()
for number, path in enumerate(members):
    with open(path, "wb") as out:
        out.truncate((DATA_OFFSET + fs_sectors) * 512)
        out.seek(SUPER_OFFSET * 512)
        out.write(superblock(number))
        out.seek(DATA_OFFSET * 512)
        out.write(fs)
