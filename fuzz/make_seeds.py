#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (committed; re-run only to change
them). Every seed is a fixture the unit tests already use, or built the same way:

- frame_classify: the frames of vswitch/src/wire/frame.rs tests, the builders of
  benches/src/lib.rs, the inner frame of the kernel VXLAN capture in overlay/src/vxlan.rs,
  and ARP requests the switch answers (switch/tests.rs style).
- virtio_net_hdr: TSO_BYTES of vswitch/src/wire/virtio_net.rs tests and its variants.
- vxlan: KERNEL_ICMP_ECHO and PACKET_BYTES of overlay/src/vxlan.rs tests.
- afxdp_frame: those datagrams in whole Ethernet/IPv4/UDP frames as the AF_XDP underlay
  builds them (overlay/src/underlay/afxdp/frame.rs), and ones it must refuse.
- gso_segment: the super-frames of overlay/src/gso.rs tests (partial checksum seeded the
  way Linux leaves it), behind the 11-byte offload prefix of fuzz_targets/gso_segment.rs.
- control_request: the JSON shapes of vswitch/src/control/proto.rs and
  docs/control-socket.md.
- store_records: the file shapes of vswitch/src/store/file.rs and
  vswitch/src/node_state.rs (docs and tests).
- cni_input: network configs of docs/cni.md and cni-shim tests, and NUL-separated
  CNI_* environments.

The seeds captured from real traffic and real inputs (corpus/<target>/cap-*) are written
by scripts/fuzz-seeds instead; this script leaves them alone.

Usage: python3 fuzz/make_seeds.py   (from anywhere; writes next to this file)
"""

import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def jdump(value):
    return json.dumps(value, separators=(",", ":"))


# --- checksums (RFC 1071), as overlay/src/checksum.rs and benches/src/lib.rs -----------

def fold(s):
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def csum_sum(data):
    if len(data) % 2:
        data = data + b"\0"
    return fold(sum(struct.unpack("!%dH" % (len(data) // 2), data)))


def checksum(data):
    return (~csum_sum(data)) & 0xFFFF


def pseudo_v4(src, dst, proto, length):
    return fold(csum_sum(src) + csum_sum(dst) + proto + length)


def pseudo_v6(src, dst, nh, length):
    return fold(csum_sum(src) + csum_sum(dst) + (length >> 16) + (length & 0xFFFF) + nh)


# --- frames -----------------------------------------------------------------------------

def mac_of(ip):
    return bytes([0x0A, 0x58]) + bytes(ip)


BCAST = b"\xff" * 6
POD_IP = bytes([10, 244, 1, 5])
HOST_IP = bytes([10, 244, 1, 1])
REMOTE_IP = bytes([10, 244, 2, 7])

# frame.rs tests
ARP_REQUEST = bytes([
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05, 0x08, 0x06,
    0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
    0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05, 10, 244, 1, 5,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 244, 1, 6,
]) + bytes(18)
IPV4_UDP = bytes([
    0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x06, 0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05, 0x08, 0x00,
    0x45, 0x00, 0x00, 0x20, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00,
    10, 244, 1, 5, 10, 244, 1, 6,
    0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef,
]) + bytes(14)
VLAN_IPV6 = bytes([
    0x33, 0x33, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05,
    0x81, 0x00, 0x00, 0x64, 0x86, 0xdd,
    0x60, 0x00, 0x00, 0x00, 0x00, 0x08, 0x3a, 0xff,
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    0x80, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
])

# overlay/src/vxlan.rs: the kernel's VXLAN datagram of `ping 10.244.0.2`.
KERNEL_ICMP_ECHO = bytes([
    0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01, 0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x01, 0x08, 0x00,
    0x45, 0x00, 0x00, 0x54, 0x5d, 0x00, 0x40, 0x00, 0x40, 0x01, 0xc7, 0xbe, 0x0a, 0xf4, 0x00,
    0x01, 0x0a, 0xf4, 0x00, 0x02,
    0x08, 0x00, 0x1d, 0x8e, 0x28, 0x60, 0x00, 0x01, 0x60, 0xec, 0x05, 0x6b, 0x00, 0x00, 0x00,
    0x00, 0x88, 0xe6, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
    0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24,
    0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33,
    0x34, 0x35, 0x36, 0x37,
])
VXLAN_PACKET_BYTES = bytes([0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0, 0xde, 0xad, 0xbe, 0xef])


def udp_frame(dst, src, src_ip, dst_ip, frame_len):
    """benches/src/lib.rs udp_frame: valid IPv4 header checksum, no UDP checksum."""
    frame_len = max(frame_len, 14 + 20 + 8)
    ip_len = frame_len - 14
    ip = bytearray([0x45, 0, ip_len >> 8, ip_len & 0xFF, 0, 1, 0x40, 0, 64, 17, 0, 0])
    ip += src_ip + dst_ip
    ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
    udp = struct.pack("!HHHH", 40000, 8080, ip_len - 20, 0)
    frame = dst + src + b"\x08\x00" + bytes(ip) + udp
    return frame + bytes(frame_len - len(frame))


def arp_request(src, sender_ip, target_ip, dst=BCAST, op=1):
    """benches/src/lib.rs arp_request_frame, padded to 60 bytes."""
    frame = dst + src + b"\x08\x06" + bytes([0, 1, 8, 0, 6, 4, 0, op])
    frame += src + sender_ip + bytes(6) + target_ip
    return frame + bytes(60 - len(frame))


def frame_seeds():
    t = "frame_classify"
    write(t, "arp-request", ARP_REQUEST)
    write(t, "ipv4-udp-padded", IPV4_UDP)
    write(t, "ipv4-udp-unpadded", IPV4_UDP[:46])
    write(t, "vlan-ipv6-icmp", VLAN_IPV6)
    lldp = bytearray(IPV4_UDP)
    lldp[12:14] = b"\x88\xcc"
    write(t, "lldp-other", bytes(lldp))
    frag = bytearray(IPV4_UDP)
    frag[20:22] = b"\x00\x10"
    write(t, "ipv4-later-fragment", bytes(frag))
    write(t, "kernel-icmp-echo", KERNEL_ICMP_ECHO[8:])
    pod, host, remote = mac_of(POD_IP), mac_of(HOST_IP), mac_of(REMOTE_IP)
    # The pod asks for an address the switch knows: answered with a Reply.
    write(t, "arp-pod-asks-remote", arp_request(pod, POD_IP, REMOTE_IP))
    write(t, "arp-pod-asks-gateway", arp_request(pod, POD_IP, HOST_IP))
    write(t, "arp-probe", arp_request(pod, bytes(4), POD_IP))
    write(t, "arp-gratuitous", arp_request(pod, POD_IP, POD_IP))
    write(t, "arp-reply", arp_request(host, HOST_IP, POD_IP, dst=pod, op=2))
    write(t, "udp-pod-to-remote", udp_frame(remote, pod, POD_IP, REMOTE_IP, 64))
    write(t, "udp-host-to-pod", udp_frame(pod, host, HOST_IP, POD_IP, 128))
    write(t, "udp-remote-to-pod", udp_frame(pod, remote, REMOTE_IP, POD_IP, 64))
    write(t, "udp-spoofed-source", udp_frame(host, pod, bytes([10, 244, 1, 99]), HOST_IP, 64))


def virtio_seeds():
    t = "virtio_net_hdr"
    tso = bytes([0x01, 0x01, 0x42, 0x00, 0xA8, 0x05, 0x22, 0x00, 0x10, 0x00, 0x00, 0x00])
    write(t, "tso-tcpv4", tso)
    write(t, "plain", bytes(12))
    write(t, "tcpv6-ecn", bytes([0x01, 0x84]) + tso[2:])
    write(t, "uso-udp-l4", struct.pack("<BBHHHHH", 1, 5, 42, 1422, 34, 6, 0))
    write(t, "csum-only", struct.pack("<BBHHHHH", 1, 0, 0, 0, 34, 16, 0))
    write(t, "data-valid", struct.pack("<BBHHHHH", 2, 0, 0, 0, 0, 0, 0))
    write(t, "tso-with-frame", tso + IPV4_UDP)
    write(t, "short", tso[:11])


def vxlan_seeds():
    t = "vxlan"
    write(t, "kernel-icmp-echo", KERNEL_ICMP_ECHO)
    write(t, "vni-123456-short", VXLAN_PACKET_BYTES)
    write(t, "reserved-bits", bytes([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x2A, 0xFF]))
    write(t, "missing-i-flag", bytes([0xF7, 0, 0, 0, 0, 0, 1, 0]) + ARP_REQUEST)
    write(t, "vni1-arp", bytes([0x08, 0, 0, 0, 0, 0, 1, 0]) + ARP_REQUEST)
    write(t, "vni-max-udp", bytes([0x08, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0]) + IPV4_UDP)


def outer_frame(datagram, dst_ip=bytes([192, 168, 250, 11]), port=4789, flags=0x4000):
    """overlay/src/underlay/afxdp/frame.rs build: Ethernet + IPv4 (DF, checksum) + UDP."""
    ip_len = 20 + 8 + len(datagram)
    ip = bytearray([0x45, 0, ip_len >> 8, ip_len & 0xFF, 0, 0, flags >> 8, flags & 0xFF,
                    64, 17, 0, 0])
    ip += bytes([192, 168, 250, 12]) + dst_ip
    ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
    udp = struct.pack("!HHHH", 49152, port, 8 + len(datagram), 0)
    return bytes([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]) + b"\x08\x00" + bytes(ip) + udp + datagram


def afxdp_frame_seeds():
    t = "afxdp_frame"
    write(t, "kernel-icmp-echo", outer_frame(KERNEL_ICMP_ECHO))
    write(t, "vni1-arp-padded", outer_frame(bytes([0x08, 0, 0, 0, 0, 0, 1, 0]) + ARP_REQUEST) + bytes(4))
    write(t, "other-address", outer_frame(KERNEL_ICMP_ECHO, dst_ip=bytes([192, 168, 250, 13])))
    write(t, "other-port", outer_frame(KERNEL_ICMP_ECHO, port=8472))
    write(t, "fragment", outer_frame(KERNEL_ICMP_ECHO, flags=0x2000))


# --- GSO super-frames, as overlay/src/gso.rs tests build them ---------------------------

SRC_MAC = bytes([0x0A, 0x58, 10, 244, 0, 2])
DST_MAC = bytes([0x0A, 0x58, 10, 244, 1, 2])
SRC_V4 = bytes([10, 244, 0, 2])
DST_V4 = bytes([10, 244, 1, 2])
SRC_V6 = bytes([0xFD] + [0] * 14 + [2])
DST_V6 = bytes([0xFD] + [0] * 12 + [1, 0, 2])
ISN = 0xFFFFF000
IP_ID = 0xFFFE
KINDS = {"none": 0, "tcpv4": 1, "tcpv6": 2, "udpl4": 3}


def payload_bytes(n):
    return bytes(((i * 31 + i // 251) % 256) for i in range(n))


def tcp_header():
    """Timestamp option (data offset 8), flags CWR|ACK|PSH|FIN."""
    tcp = struct.pack("!HHII", 40000, 443, ISN, 0x12345678)
    tcp += bytes([0x80, 0x80 | 0x10 | 0x08 | 0x01, 0x01, 0xF5, 0, 0, 0, 0])
    tcp += bytes([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2])
    return tcp


def ipv4_frame(protocol, transport, payload, vlan=False):
    eth = DST_MAC + SRC_MAC + (b"\x81\x00\x00\x64" if vlan else b"") + b"\x08\x00"
    total = 20 + len(transport) + len(payload)
    ip = bytearray(struct.pack("!BBHHBBBBH", 0x45, 0, total, IP_ID, 0x40, 0, 64, protocol, 0))
    ip += SRC_V4 + DST_V4
    ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
    l4 = len(eth) + 20
    frame = bytearray(eth + bytes(ip) + transport + payload)
    csum_offset = 16 if protocol == 6 else 6
    l4_len = len(frame) - l4
    if protocol == 17:
        frame[l4 + 4:l4 + 6] = struct.pack("!H", l4_len)
    frame[l4 + csum_offset:l4 + csum_offset + 2] = struct.pack(
        "!H", pseudo_v4(SRC_V4, DST_V4, protocol, l4_len))
    return bytes(frame), l4, csum_offset, l4 + len(transport)


def ipv6_frame(protocol, transport, payload, extensions=b""):
    eth = DST_MAC + SRC_MAC + b"\x86\xdd"
    first = 0 if extensions else protocol  # hop-by-hop first when there are extensions
    ip = bytes([0x60, 0x01, 0x23, 0x45]) + struct.pack(
        "!HBB", len(extensions) + len(transport) + len(payload), first, 64) + SRC_V6 + DST_V6
    l4 = len(eth) + 40 + len(extensions)
    frame = bytearray(eth + ip + extensions + transport + payload)
    csum_offset = 16 if protocol == 6 else 6
    l4_len = len(frame) - l4
    if protocol == 17:
        frame[l4 + 4:l4 + 6] = struct.pack("!H", l4_len)
    frame[l4 + csum_offset:l4 + csum_offset + 2] = struct.pack(
        "!H", pseudo_v6(SRC_V6, DST_V6, protocol, l4_len))
    return bytes(frame), l4, csum_offset, l4 + len(transport)


def gso_input(kind, needs_csum, csum_start, csum_offset, gso_size, hdr_len, stride, frame):
    flags = (1 if needs_csum else 0) | (KINDS[kind] << 1)
    return struct.pack("<BHHHHH", flags, csum_start, csum_offset, gso_size, hdr_len,
                       stride) + frame


def gso_seeds():
    t = "gso_segment"
    udp = bytes([0x13, 0x88, 0x00, 0x35, 0, 0, 0, 0])
    stride = 14 + 1450  # the pod MTU behind a 1500-byte underlay

    frame, l4, off, hdr = ipv4_frame(6, tcp_header(), payload_bytes(3000))
    write(t, "tso-v4-3-segments", gso_input("tcpv4", True, l4, off, 1398, hdr, stride, frame))
    write(t, "tso-v4-no-csum", gso_input("tcpv4", False, 0, 0, 1398, 0, stride, frame))
    frame, l4, off, hdr = ipv4_frame(6, tcp_header(), payload_bytes(100))
    write(t, "tso-v4-one-segment", gso_input("tcpv4", True, l4, off, 1398, hdr, stride, frame))
    frame, l4, off, hdr = ipv4_frame(6, tcp_header(), payload_bytes(3000), vlan=True)
    write(t, "tso-v4-vlan", gso_input("tcpv4", True, l4, off, 1398, hdr, stride + 4, frame))
    frame, l4, off, hdr = ipv6_frame(6, tcp_header(), payload_bytes(3000))
    write(t, "tso-v6", gso_input("tcpv6", True, l4, off, 1378, hdr, stride, frame))
    hop_by_hop = bytes([6, 0, 1, 4, 0, 0, 0, 0])  # next TCP, 8 bytes, PadN
    frame, l4, off, hdr = ipv6_frame(6, tcp_header(), payload_bytes(2000), hop_by_hop)
    write(t, "tso-v6-hop-by-hop", gso_input("tcpv6", True, l4, off, 1370, hdr, stride, frame))
    frame, l4, off, hdr = ipv4_frame(17, udp, payload_bytes(3000))
    write(t, "uso-v4", gso_input("udpl4", True, l4, off, 1422, hdr, stride, frame))
    frame, l4, off, hdr = ipv6_frame(17, udp, payload_bytes(3000))
    write(t, "uso-v6", gso_input("udpl4", True, l4, off, 1402, hdr, stride, frame))
    frame, l4, off, hdr = ipv4_frame(6, tcp_header(), payload_bytes(333))
    write(t, "none-finish-csum", gso_input("none", True, l4, off, 0, 0, 0, frame))
    write(t, "none-plain", gso_input("none", False, 0, 0, 0, 0, 0, IPV4_UDP))


# --- control socket ---------------------------------------------------------------------

def control_seeds():
    t = "control_request"
    key = {"container_id": "c1", "ifname": "eth0"}
    requests = {
        "add": {"op": "add", **key, "netns": "/run/netns/pod-a", "pod_namespace": "default",
                "pod_name": "a"},
        "del": {"op": "del", **key},
        "check": {"op": "check", **key, "netns": "/run/netns/pod-a"},
        "status": {"op": "status"},
        "gc": {"op": "gc", "valid": [key, {"container_id": "c2", "ifname": "net1"}]},
        "show": {"op": "show"},
        "fdb": {"op": "fdb"},
        "node-add": {"op": "node_add", "name": "hw", "underlay_ip": "192.168.0.50",
                     "subnet": "10.244.9.0/24"},
        "node-remove": {"op": "node_remove", "name": "hw"},
        "node-remove-force": {"op": "node_remove", "name": "b", "force": True},
    }
    for name, value in requests.items():
        write(t, "req-" + name, jdump(value) + "\n")
    counters = {"rx_packets": 12, "rx_bytes": 3456, "tx_packets": 7, "tx_bytes": 890,
                "drops": {"port_security": 2, "malformed": 1}}
    port = {**key, "pod": "default/a", "netns": "/run/netns/pod-a",
            "address": "10.244.1.5/16", "gateway": "10.244.1.1", "mac": "0a:58:0a:f4:01:05",
            "mtu": 1450, "attached": True, "counters": counters}
    show = {"node": "node-a", "subnet": "10.244.1.0/24", "vtep": "192.168.0.1",
            "cluster_cidr": "10.244.0.0/16", "mtu": 1450,
            "host_port": {"ifname": "vsw0", "address": "10.244.1.1/16",
                          "mac": "0a:58:0a:f4:01:01", "counters": counters},
            "overlay": {"vni": 1, "vxlan_port": 4789, "counters": counters},
            "ports": [port],
            "peers": [{"node": "node-b", "vtep": "192.168.0.2", "subnet": "10.244.2.0/24",
                       "static": False}]}
    responses = {
        "done": {"ok": "done"},
        "error": {"error": {"code": "invalid_netns", "message": "gone"}},
        "added": {"ok": {"added": port}},
        "collected": {"ok": {"collected": [key]}},
        "fdb": {"ok": {"fdb": [{"mac": "0a:58:0a:f4:01:05", "location": "default/a:eth0",
                                "age_secs": 3},
                               {"mac": "0a:58:0a:f4:02:07", "location": "vtep:192.168.0.2",
                                "age_secs": 0}]}},
        "show": {"ok": {"show": show}},
    }
    for name, value in responses.items():
        write(t, "resp-" + name, jdump(value) + "\n")


# --- store files ------------------------------------------------------------------------

def store_seeds():
    t = "store_records"
    store = {
        "version": 1, "cluster_cidr": "10.244.0.0/16", "subnet_len": 24, "generation": 7,
        "nodes": {"node-a": {"vtep": "192.168.0.1", "subnet": "10.244.0.0/24",
                             "static": False},
                  "hw": {"vtep": "192.168.0.50", "subnet": "10.244.9.0/24", "static": True}},
        "pods": [{"namespace": "default", "name": "web", "node": "node-a",
                  "ip": "10.244.0.2", "mac": "0a:58:0a:f4:00:02", "container_id": "c1",
                  "ifname": "eth0"}],
    }
    write(t, "store-doc", json.dumps(store, indent=2) + "\n")
    empty = {"version": 1, "cluster_cidr": None, "subnet_len": None, "generation": 0,
             "nodes": {}, "pods": []}
    write(t, "store-empty", json.dumps(empty, indent=2) + "\n")
    write(t, "store-future-version", '{"version": 2, "whatever": true}')
    write(t, "store-half-cluster", jdump({**empty, "cluster_cidr": "10.244.0.0/16"}))
    state = {
        "version": 1, "subnet": "10.244.1.0/24", "last_allocated": "10.244.1.3",
        "attachments": [{"container_id": "c1", "ifname": "eth0", "netns": "/run/netns/a",
                         "pod_namespace": "default", "pod_name": "a", "ip": "10.244.1.3",
                         "mac": "0a:58:0a:f4:01:03"}],
    }
    write(t, "state-doc", json.dumps(state, indent=2) + "\n")
    write(t, "state-other-subnet", jdump({**state, "subnet": "10.244.1.0/30",
                                          "last_allocated": None, "attachments": []}))
    write(t, "state-empty", jdump({"version": 1, "subnet": "10.244.1.0/24",
                                   "last_allocated": None, "attachments": []}))


# --- CNI --------------------------------------------------------------------------------

def cni_seeds():
    t = "cni_input"
    base = {"cniVersion": "1.1.0", "name": "podnet", "type": "vswitch-cni"}
    write(t, "conf-minimal", jdump(base))
    write(t, "conf-socket", jdump({**base, "socket": "/run/vswitch/vswitchd.sock"}))
    write(t, "conf-0.4.0", jdump({**base, "cniVersion": "0.4.0"}))
    prev = {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:05", "mtu": 1450,
                        "sandbox": "/run/netns/pod-a"}],
        "ips": [{"address": "10.244.1.5/16", "gateway": "10.244.1.1", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
        "dns": {"nameservers": ["10.96.0.10"]},
    }
    write(t, "conf-prev-result", jdump({**base, "prevResult": prev}))
    gc = {**base, "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
          "cni.dev/attachments": [{"containerID": "c2", "ifname": "eth0"}]}
    write(t, "conf-gc", jdump(gc))
    write(t, "conf-runtime", jdump({**base, "runtimeConfig": {"portMappings": []},
                                    "args": {"cni": {}}, "ipam": {}}))
    write(t, "version-only", '{"cniVersion":"1.0.0"}')
    env = [
        ("env-add", ["ADD", "c1", "/run/netns/pod-a", "eth0",
                     "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=a"]),
        ("env-del", ["DEL", "c1", "", "eth0", ""]),
        ("env-check", ["CHECK", "c1", "/run/netns/pod-a", "eth0", ""]),
        ("env-status", ["STATUS"]),
        ("env-bad-args", ["ADD", "c1", "/run/netns/pod-a", "eth0", "K8S_POD_NAME"]),
    ]
    for name, values in env:
        write(t, name, "\0".join(values))


if __name__ == "__main__":
    frame_seeds()
    virtio_seeds()
    vxlan_seeds()
    afxdp_frame_seeds()
    gso_seeds()
    control_seeds()
    store_seeds()
    cni_seeds()
