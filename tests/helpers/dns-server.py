#!/usr/bin/env python3
"""A DNS server for kvmbox's tests (Python's standard library only): answers A
queries for the names given with their addresses, NXDOMAIN for anything else,
over UDP on ADDR:53. Prints "ready", then serves until killed.

    dns-server.py ADDR NAME=IP..."""
import socket
import struct
import sys

addr = sys.argv[1]
names = {}
for arg in sys.argv[2:]:
    name, ip = arg.split("=", 1)
    names[name.lower().rstrip(".")] = socket.inet_aton(ip)

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((addr, 53))
print("ready", flush=True)
while True:
    query, peer = sock.recvfrom(512)
    qid, flags, qdcount = struct.unpack("!HHH", query[:6])
    pos, labels = 12, []
    while query[pos]:
        labels.append(query[pos + 1:pos + 1 + query[pos]].decode("ascii", "replace"))
        pos += 1 + query[pos]
    qtype = struct.unpack("!H", query[pos + 1:pos + 3])[0]
    question = query[12:pos + 5]
    ip = names.get(".".join(labels).lower())
    if ip and qtype == 1:
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + ip
        reply = struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + answer
    else:
        rcode = 0 if ip else 3  # a known name without an A record: no answer, not NXDOMAIN
        reply = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, 0, 0, 0) + question
    sock.sendto(reply, peer)
