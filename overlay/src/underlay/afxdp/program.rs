//! The XDP program, assembled here instruction by instruction: no C compiler, clang or
//! BPF toolchain is needed to build vswitch.
//!
//! It runs on every frame the underlay device receives and redirects exactly this
//! node's VXLAN packets into the XSKMAP slot of the receive queue (so to the AF_XDP
//! socket of that queue); everything else goes on to the kernel's stack (`XDP_PASS`).
//! A packet is "ours" when all of these hold, each checked within the bounds the
//! verifier demands:
//!
//! - addressed to the device's MAC (what the kernel would not drop as "other host");
//! - Ethernet II with EtherType IPv4 (no VLAN tag);
//! - IPv4 with a 20-byte header (no options), protocol UDP, not a fragment (MF clear,
//!   offset 0);
//! - IPv4 destination = this node's VTEP address;
//! - UDP destination port = the VXLAN port.
//!
//! What is not ours, including a fragmented VXLAN datagram or one with IP options,
//! reaches the kernel, which handles it as it would without the program.
//!
//! In C, the program reads:
//!
//! ```c
//! SEC("xdp") int vswitch_xsk(struct xdp_md *ctx) {
//!     void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
//!     if (data + 42 > end) return XDP_PASS;
//!     if (*(__u32 *)data != DEV_MAC_0_3 || *(__u16 *)(data + 4) != DEV_MAC_4_5) return XDP_PASS;
//!     if (*(__u16 *)(data + 12) != htons(ETH_P_IP)) return XDP_PASS;
//!     if (*(__u8 *)(data + 14) != 0x45) return XDP_PASS;
//!     if (*(__u8 *)(data + 23) != IPPROTO_UDP) return XDP_PASS;
//!     if (*(__u16 *)(data + 20) & htons(0x3fff)) return XDP_PASS;
//!     if (*(__u32 *)(data + 30) != VTEP_ADDR) return XDP_PASS;
//!     if (*(__u16 *)(data + 36) != htons(VXLAN_PORT)) return XDP_PASS;
//!     return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
//! }
//! ```
//!
//! `bpf_redirect_map`'s last argument is the verdict when the queue has no socket:
//! `XDP_PASS` on the node, `XDP_DROP` in the unit tests, which tell "redirected" from
//! "passed" that way with `BPF_PROG_TEST_RUN` (no device, no socket needed).
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use super::sys::BpfInsn;

/// `XDP_DROP`.
pub const XDP_DROP: i32 = 1;
/// `XDP_PASS`.
pub const XDP_PASS: i32 = 2;
/// `XDP_REDIRECT`.
pub const XDP_REDIRECT: i32 = 4;

// Opcodes (linux/bpf.h: class | size/op | source).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const LDX_MEM_H: u8 = 0x69; // BPF_LDX | BPF_MEM | BPF_H
const LDX_MEM_B: u8 = 0x71; // BPF_LDX | BPF_MEM | BPF_B
const ALU64_MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const ALU64_ADD_K: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K
const ALU64_AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const JMP_JGT_X: u8 = 0x2d; // BPF_JMP | BPF_JGT | BPF_X
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP32_JNE_K: u8 = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K
const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_DW | BPF_IMM
const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// `src_reg` of an `LD_IMM64` whose immediate is a map's descriptor.
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `bpf_redirect_map`.
const FUNC_REDIRECT_MAP: i32 = 51;

/// Offsets into `struct xdp_md`.
const XDP_MD_DATA: i16 = 0;
const XDP_MD_DATA_END: i16 = 4;
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// Ethernet (14) + IPv4 without options (20) + UDP (8).
const HEADERS_LEN: i32 = 42;

/// A program under construction, with forward jumps to the "pass" exit patched at the
/// end.
struct Assembler {
    insns: Vec<BpfInsn>,
    to_pass: Vec<usize>,
}

impl Assembler {
    fn emit(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(BpfInsn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        });
    }

    /// A conditional jump to the pass exit; its offset is filled in by `finish`.
    fn jump_to_pass(&mut self, code: u8, dst: u8, src: u8, imm: i32) {
        self.to_pass.push(self.insns.len());
        self.emit(code, dst, src, 0, imm);
    }

    /// Loads a field of `size` bytes (a `LDX_MEM_*` code) at `off` of the packet (r2)
    /// into r5, and jumps to pass unless it equals `expected`.
    fn expect(&mut self, load: u8, off: i16, expected: i32) {
        self.emit(load, 5, 2, off, 0);
        self.jump_to_pass(JMP_JNE_K, 5, 0, expected);
    }

    fn finish(mut self) -> Vec<BpfInsn> {
        let pass = self.insns.len();
        self.emit(ALU64_MOV_K, 0, 0, 0, XDP_PASS);
        self.emit(EXIT, 0, 0, 0, 0);
        for at in self.to_pass {
            // Jump offsets count from the next instruction; the program has < 64
            // instructions, so the difference always fits.
            let off = i16::try_from(pass - at - 1).unwrap_or(i16::MAX);
            if let Some(insn) = self.insns.get_mut(at) {
                insn.off = off;
            }
        }
        self.insns
    }
}

/// The program's instructions for VTEP address `vtep`, VXLAN port `port`, the XSKMAP
/// with descriptor `map_fd`, and `on_miss` ([`XDP_PASS`] on a node) as the verdict for
/// a VXLAN packet on a queue without a socket.
pub fn classifier(
    mac: [u8; 6],
    vtep: Ipv4Addr,
    port: u16,
    map_fd: i32,
    on_miss: i32,
) -> Vec<BpfInsn> {
    // Packet fields are compared as the little-endian loads of their network-order
    // bytes, so the expected values are built the same way.
    let [m0, m1, m2, m3, m4, m5] = mac;
    let mac_head = i32::from_le_bytes([m0, m1, m2, m3]);
    let mac_tail = i32::from(u16::from_le_bytes([m4, m5]));
    let ethertype_ipv4 = i32::from(u16::from_le_bytes([0x08, 0x00]));
    let frag_mask = i32::from(u16::from_le_bytes([0x3f, 0xff]));
    let addr = i32::from_le_bytes(vtep.octets());
    let port = i32::from(u16::from_le_bytes(port.to_be_bytes()));

    let mut asm = Assembler {
        insns: Vec::with_capacity(32),
        to_pass: Vec::new(),
    };
    asm.emit(ALU64_MOV_X, 6, 1, 0, 0); // r6 = ctx
    asm.emit(LDX_MEM_W, 2, 1, XDP_MD_DATA, 0); // r2 = data
    asm.emit(LDX_MEM_W, 3, 1, XDP_MD_DATA_END, 0); // r3 = data_end
    asm.emit(ALU64_MOV_X, 4, 2, 0, 0); // r4 = data
    asm.emit(ALU64_ADD_K, 4, 0, 0, HEADERS_LEN); // r4 += 42
    asm.jump_to_pass(JMP_JGT_X, 4, 3, 0); // if r4 > data_end: pass
    asm.emit(LDX_MEM_W, 5, 2, 0, 0); // destination MAC, bytes 0..4
    asm.jump_to_pass(JMP32_JNE_K, 5, 0, mac_head);
    asm.expect(LDX_MEM_H, 4, mac_tail); // bytes 4..6
    asm.expect(LDX_MEM_H, 12, ethertype_ipv4);
    asm.expect(LDX_MEM_B, 14, 0x45); // version 4, IHL 5
    asm.expect(LDX_MEM_B, 23, 17); // protocol UDP
    asm.emit(LDX_MEM_H, 5, 2, 20, 0); // flags and fragment offset
    asm.emit(ALU64_AND_K, 5, 0, 0, frag_mask); // MF | offset
    asm.jump_to_pass(JMP_JNE_K, 5, 0, 0);
    asm.emit(LDX_MEM_W, 5, 2, 30, 0); // destination address
    asm.jump_to_pass(JMP32_JNE_K, 5, 0, addr);
    asm.expect(LDX_MEM_H, 36, port); // UDP destination port
    asm.emit(LDX_MEM_W, 2, 6, XDP_MD_RX_QUEUE_INDEX, 0); // r2 = rx_queue_index
    asm.emit(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, 0, map_fd); // r1 = &xsks
    asm.emit(0, 0, 0, 0, 0); // (second half of the 64-bit load)
    asm.emit(ALU64_MOV_K, 3, 0, 0, on_miss); // r3 = verdict on a miss
    asm.emit(CALL, 0, 0, 0, FUNC_REDIRECT_MAP);
    asm.emit(EXIT, 0, 0, 0, 0);
    asm.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_on_the_pass_exit() {
        let insns = classifier(
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(192, 168, 1, 1),
            4789,
            3,
            XDP_PASS,
        );
        let pass = insns.len() - 2;
        assert_eq!(insns[pass].code, ALU64_MOV_K);
        assert_eq!(insns[pass].imm, XDP_PASS);
        for (at, insn) in insns.iter().enumerate() {
            if [JMP_JGT_X, JMP_JNE_K, JMP32_JNE_K].contains(&insn.code) {
                let target = at + 1 + usize::try_from(insn.off).unwrap();
                assert_eq!(target, pass, "jump at {at}");
            }
        }
        assert_eq!(insns.last().unwrap().code, EXIT);
    }

    #[test]
    fn constants_are_network_order_loads() {
        let insns = classifier(
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(10, 0, 0, 2),
            4789,
            3,
            XDP_PASS,
        );
        // 10.0.0.2 as a little-endian u32 load of its bytes.
        assert!(insns
            .iter()
            .any(|i| i.code == JMP32_JNE_K && i.imm == 0x0200_000a));
        // 4789 = 0x12b5, bytes 12 b5, loaded little-endian as 0xb512.
        assert!(insns.iter().any(|i| i.code == JMP_JNE_K && i.imm == 0xb512));
    }
}
